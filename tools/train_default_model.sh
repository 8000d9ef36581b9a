#!/usr/bin/env bash
# Train (or continue training) the shipped default model on ../shared/data, then export it into the package.
# Every stage resumes from its last checkpoint, so run this again after a kill or in a later session.
#
#   bash tools/train_default_model.sh AE_STEPS DIFFUSION_STEPS
#
# Logs: runs/autoencoder/metrics.jsonl, runs/diffusion/metrics.jsonl; validation grids in */validation/.
set -euo pipefail
cd "$(dirname "$0")/.."
ae_steps="${1:-1500}"
diffusion_steps="${2:-100000}"
terrasynth train-autoencoder --config configs/autoencoder.json --max-steps "$ae_steps" --resume latest
terrasynth train --config configs/default_model.json --max-steps "$diffusion_steps" --resume latest
terrasynth export --run runs/diffusion --out src/terrasynth/weights/default --fp16
