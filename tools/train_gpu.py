"""Train a larger embedded model on one GPU in at most 9 minutes, and write its fp16 weights to a folder.

    python tools/train_gpu.py --out runs/gpu-model/model            # on a machine with one CUDA GPU (an H100)
    python tools/train_gpu.py --out DIR --smoke --paired P --scenes S  # 2 steps per stage, any device (the test)

Stages, each through the project's own training code with the configs in configs/gpu/ (docs/train_gpu.md):
1. ``autoencoder``: a wider autoencoder with a deeper decoder than the shipped one (channels 64/128/256 against
   32/64/128; decoder 2 layers per block), trained from scratch with L1 + perceptual + KL and, from step 600, the
   PatchGAN loss; batch 16 of 128-px crops, 1,000 steps.
2. ``latents``: the training tiles encoded with it on the GPU, into the cache the denoiser stage reads (the
   training code would encode them on the CPU).
3. ``diffusion``: a denoiser of the shipped architecture on the new latents from scratch (zero-terminal SNR,
   v-prediction, min-SNR+1 weighting), batch 64 whole tiles, 4,000 steps, the last 1,000 cooling down.
4. ``export``: the EMA weights as a model folder in float16, with a mean prior fitted on the GPU and the shipped
   model's sampling defaults (13 steps, guidance 3, prior start 0.95); written to ``OUT.partial`` and renamed.

Step counts come from the CPU step times of the shipped stages (docs/default_model.md: 2.8 s for an autoencoder
step at batch 8 and 2.25 s for a denoiser step at batch 16 whole tiles, on 2 threads), this autoencoder's
measured cost (3.6× the shipped one's per step) and an **assumed H100 speed-up of 150× over those 2 CPU threads**
for these small convolutional networks in float32 (TF32 convolutions): about 0.13 s per autoencoder step (plus
about 0.05 s of JPEG decoding on the CPU) and 0.06 s per denoiser step. That is 3 + 4 minutes of training and about
1.5 minutes of start-up, encoding and export. If the GPU is slower than assumed, the time guard still ends the
run in time: each training stage runs in a child process with a deadline, and one that is still running at its
deadline is stopped and finished from its last checkpoint (every 100 autoencoder and 250 denoiser steps).

Resume: run the same command again after a kill. A finished stage is skipped (``RUN/<stage>.done``), a training
stage that was cut off resumes from its last checkpoint (``--resume latest``), and the export is redone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs" / "gpu"
STAGES = ("autoencoder", "latents", "diffusion", "export")
BUDGET_S = 540  # 9 minutes, the whole run
# Seconds each stage may take at most (the training stages' deadlines; the rest is reserved for the others).
STAGE_LIMITS_S = {"autoencoder": 200, "diffusion": 260}
SMOKE_STEPS = 2

log = logging.getLogger("train_gpu")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="model folder to write (fp16 safetensors + JSON)")
    parser.add_argument("--run", default="runs/gpu-model", help="folder of the training runs and stage markers")
    parser.add_argument("--paired", default="../shared/data/landcoverai_pairs")
    parser.add_argument("--scenes", default="../shared/data/rsscn7")
    parser.add_argument("--resolution", type=int, default=256, help="tile size the denoiser trains at")
    parser.add_argument("--crop", type=int, help="autoencoder crop size (default: the config's 128)")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole run")
    parser.add_argument(
        "--smoke",
        action="store_true",
        default=os.environ.get("TS_GPU_SMOKE") == "1",
        help=f"{SMOKE_STEPS} steps per training stage, batch 2, narrow networks, stages in this process, no "
        "deadlines (also TS_GPU_SMOKE=1)",
    )
    parser.add_argument("--allow-cpu", action="store_true", help="run the full step counts without a GPU")
    parser.add_argument("--stop-after", choices=STAGES, help="stop after this stage (to test a resume)")
    parser.add_argument("--no-mean-prior", action="store_true", help="export without a mean prior")
    return parser.parse_args(argv)


def stage_configs(args, run: Path) -> tuple[dict, dict]:
    """The two training configs: configs/gpu/*.json with this run's data, folders and (for --smoke) steps."""
    autoencoder = json.loads((CONFIGS / "autoencoder.json").read_text())
    diffusion = json.loads((CONFIGS / "diffusion.json").read_text())
    for config in (autoencoder, diffusion):
        config["paired_roots"] = [args.paired] if args.paired else []
        config["scene_roots"] = [args.scenes] if args.scenes else []
    autoencoder["output_dir"] = str(run / "autoencoder")
    diffusion["output_dir"] = str(run / "diffusion")
    diffusion["autoencoder_path"] = str(run / "autoencoder" / "autoencoder")
    diffusion["resolution"] = args.resolution
    if args.crop:
        autoencoder["crop"] = args.crop
    if args.smoke:
        # the same code path with narrower networks, so the CPU test stays short; the full-size networks are
        # built and run once in the test of the configs
        smoke_autoencoder = {**autoencoder["autoencoder"], "block_out_channels": [32, 32, 32]}
        autoencoder["autoencoder"] = diffusion["model"]["autoencoder"] = smoke_autoencoder
        diffusion["model"]["denoiser"].update(block_out_channels=[16, 16, 32, 32], layers_per_block=1)
        for config in (autoencoder, diffusion):
            config.update(max_steps=SMOKE_STEPS, batch_size=2, checkpoint_every=SMOKE_STEPS)
        autoencoder["adversarial_start"] = 1
        diffusion.update(warmup_steps=1, lr_decay_steps=1)
    return autoencoder, diffusion


def write_config(config: dict, path: Path) -> Path:
    from terrasynth.files import write_json_atomic

    write_json_atomic(path, config)
    return path


def run_training(command: str, config_path: Path, deadline: float | None, max_steps: int | None = None) -> None:
    """``terrasynth COMMAND --config CONFIG --resume latest``: in a child process stopped at ``deadline`` (a
    time.monotonic() value; None: in this process, no deadline). A stopped run is finished from its last checkpoint:
    the same command with --max-steps at that checkpoint's step exports it without training further."""
    argv = [command, "--config", str(config_path), "--resume", "latest", "--quiet"]
    if max_steps is not None:
        argv += ["--max-steps", str(max_steps)]
    if deadline is None:
        from terrasynth.cli import main

        if main(argv) != 0:
            raise SystemExit(f"terrasynth {' '.join(argv)} failed")
        return
    env = {**os.environ, "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1"}
    child = subprocess.Popen([sys.executable, "-m", "terrasynth.cli", *argv], env=env)
    try:
        code = child.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        step = last_checkpoint_step(Path(json.loads(config_path.read_text())["output_dir"]))
        if step is None:
            raise SystemExit(
                f"{command} reached its deadline before its first checkpoint: lower its max_steps"
            ) from None
        log.warning("%s stopped at its deadline; finishing from its checkpoint at step %d", command, step)
        run_training(command, config_path, None, max_steps=step)
        return
    if code != 0:
        raise SystemExit(f"terrasynth {' '.join(argv)} failed with exit status {code}")


def last_checkpoint_step(run_dir: Path) -> int | None:
    from terrasynth.train.checkpoints import list_checkpoints

    checkpoints = list_checkpoints(run_dir)
    return None if not checkpoints else int(Path(checkpoints[-1]).name.split("-")[-1])


def encode_latents(diffusion_config: Path, device) -> None:
    """The denoiser stage's latent cache, encoded on ``device``: the same fingerprint and file the training code
    writes, so train_diffusion loads it instead of encoding 2,601 tiles on the CPU."""
    import hashlib

    from terrasynth.config import config_from_dict
    from terrasynth.files import read_json
    from terrasynth.train.diffusion import DiffusionTrainConfig, build_latent_cache, save_latent_cache
    from terrasynth.train.diffusion import _dataset_fingerprint as dataset_fingerprint
    from terrasynth.train.export import build_model

    config = config_from_dict(DiffusionTrainConfig, read_json(diffusion_config), diffusion_config)
    model = build_model(config.model, config.init_from, config.autoencoder_path)
    # as train_diffusion computes it, on the CPU weights
    vae_sha = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.vae.parameters())).hexdigest()
    fingerprint = dataset_fingerprint(config, vae_sha)
    path = Path(config.output_dir) / "latent-cache"
    path.parent.mkdir(parents=True, exist_ok=True)
    cache = build_latent_cache(model.to(device), config, progress=False)
    save_latent_cache(cache, path, fingerprint)


def export(args, diffusion_config: Path, out: Path, device) -> None:
    """The run's EMA weights as a float16 model folder at ``out`` (by way of ``out.partial``), with a mean prior
    fitted on ``device`` and the shipped model's sampling defaults."""
    import torch

    from terrasynth.config import config_from_dict
    from terrasynth.files import read_json
    from terrasynth.models.embedded import EmbeddedDiffusionModel
    from terrasynth.train.diffusion import DiffusionTrainConfig
    from terrasynth.train.export import MeanPriorSource, export_checkpoint, set_mean_prior

    config = config_from_dict(DiffusionTrainConfig, read_json(diffusion_config), diffusion_config)
    checkpoint = Path(config.output_dir) / f"checkpoint-{last_checkpoint_step(Path(config.output_dir))}"
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    export_checkpoint(config, checkpoint, partial, guidance_scale=3.0, sampling_steps=13)
    model = EmbeddedDiffusionModel.from_pretrained(partial).to(device)
    source = None if args.no_mean_prior or not args.paired else MeanPriorSource(args.paired, size=args.resolution)
    set_mean_prior(model, source, {"start": 0.95} if source else None)
    model.to("cpu").save_pretrained(partial, dtype=torch.float16)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)


def main(argv=None) -> Path:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    started = time.monotonic()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not (args.smoke or args.allow_cpu):
        raise SystemExit("no CUDA GPU: the full run takes hours on a CPU (use --smoke, or --allow-cpu to insist)")
    run, out = Path(args.run), Path(args.out)
    run.mkdir(parents=True, exist_ok=True)
    autoencoder, diffusion = stage_configs(args, run)
    autoencoder_path = write_config(autoencoder, run / "autoencoder.json")
    diffusion_path = write_config(diffusion, run / "diffusion.json")

    def deadline(stage: str) -> float | None:
        if args.smoke:
            return None
        left = args.budget - (time.monotonic() - started)
        reserve = 90.0 if stage == "autoencoder" else 45.0  # the stages after it: encoding, export
        if stage == "autoencoder":
            reserve += STAGE_LIMITS_S["diffusion"]
        return time.monotonic() + max(min(STAGE_LIMITS_S[stage], left - reserve), 30.0)

    actions = {
        "autoencoder": lambda: run_training("train-autoencoder", autoencoder_path, deadline("autoencoder")),
        "latents": lambda: encode_latents(diffusion_path, device),
        "diffusion": lambda: run_training("train", diffusion_path, deadline("diffusion")),
        "export": lambda: export(args, diffusion_path, out, device),
    }
    for stage in STAGES:
        marker = run / f"{stage}.done"
        if marker.exists() and stage != "export":
            log.info("stage %s: done before, skipped", stage)
        else:
            stage_start = time.monotonic()
            log.info("stage %s: started at %.0f s", stage, stage_start - started)
            actions[stage]()
            marker.touch()
            log.info("stage %s: %.1f s", stage, time.monotonic() - stage_start)
        if args.stop_after == stage:
            log.info("stopped after stage %s (--stop-after)", stage)
            return out
    log.info("done in %.1f s: %s", time.monotonic() - started, out)
    return out


if __name__ == "__main__":
    main()
