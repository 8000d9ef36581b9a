"""``accelerate launch --num_processes 2 -m terrasynth.cli synthesize`` on CPU: the same items, and the same pixels
within 1/255, as one process; one index, written once."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tests.fake_models import save_tiny_model
from tests.fakes import make_paired_tiles

from terrasynth.cli import main

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def index_ids(out: Path) -> list[str]:
    with open(out / "index.csv", encoding="utf-8") as file:
        return [row["id"] for row in csv.DictReader(file)]


def test_two_processes_make_the_same_items_and_pixels_as_one(tmp_path, capsys):
    model = save_tiny_model(tmp_path / "model", seed=2, conditioning="none")
    pairs = make_paired_tiles(tmp_path / "pairs", n=3, size=32)
    args = ["synthesize", str(pairs), "--model", str(model), "--steps", "2", "--per-layout", "2", "--no-watermark"]
    assert main([*args, "--out", str(tmp_path / "one"), "--batch-size", "4", "-q"]) == 0
    assert "on 1 process(es)" in capsys.readouterr().out
    # On a machine without a GPU, --multi_gpu makes accelerate start the processes with torchrun; they form a
    # gloo group on CPU.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(free_port()), "-m", "terrasynth.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [*launch, *args, "--out", str(tmp_path / "two"), "--batch-size", "3", "-q"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("on 2 process(es)") == 1  # one process reports, and writes the index
    assert "6 images written" in done.stdout
    assert index_ids(tmp_path / "two") == index_ids(tmp_path / "one") and len(index_ids(tmp_path / "one")) == 6
    for name in index_ids(tmp_path / "one"):
        a, b = (np.asarray(Image.open(tmp_path / run / "images" / f"{name}.png"), np.int16) for run in ("one", "two"))
        assert np.abs(a - b).max() <= 1, name
