#!/usr/bin/env bash
# Wall time of the README's first command on a fresh virtual environment: install, then `terrasynth demo`.
#   bash benchmarks/install_and_demo.sh [workdir]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
cd "$work"
echo "command: python3 -m venv .venv && .venv/bin/pip install $repo && .venv/bin/terrasynth demo --out demo"
start=$(date +%s)
python3 -m venv .venv
.venv/bin/pip install -q "$repo"
installed=$(date +%s)
.venv/bin/terrasynth demo --out demo -q
done_at=$(date +%s)
echo "install: $((installed - start)) s"
echo "demo:    $((done_at - installed)) s"
echo "total:   $((done_at - start)) s"
