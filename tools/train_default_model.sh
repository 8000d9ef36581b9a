#!/usr/bin/env bash
# Remake the shipped default model (terrasynth-default-v20) from nothing: the eleven training stages of
# configs/default_model/ in order, with the exports between them, then the mean prior. docs/default_model.md
# explains each stage.
#
#   bash tools/train_default_model.sh [OUT]        # OUT: the finished model folder (default runs/default-model/v20)
#
# Needs ../shared/data/landcoverai_pairs and ../shared/data/rsscn7 (the paths in the configs) and writes every run
# and intermediate model under runs/default-model/. It never touches src/terrasynth/weights/default: compare the
# result with it, or copy it there yourself.
#
# Resume after a kill: run the same command again. A finished stage is skipped (runs/default-model/*.done); a
# training stage that was cut off resumes from its last checkpoint (--resume latest; the runs draw every random
# choice from (seed, step), so a resumed run repeats what an uninterrupted one would do), and an export that was
# cut off is redone.
#
# Time: about 9 hours on 2 CPU threads, the hardware the shipped model was trained on (x86_64, PyTorch CPU, 2
# threads; the sum of the logged stage times in docs/default_model.md). No GPU is needed; on one, the same
# commands run unchanged.
#
# Smoke test: TS_MAX_STEPS=2 TS_STOP_AFTER=3 bash tools/train_default_model.sh caps every training stage at 2
# steps and stops after stage 3 (each denoiser stage first encodes the 2,601 training tiles, about 9 min on 2 idle
# threads, so this takes half an hour or more); delete runs/default-model afterwards, or the real run resumes from
# those steps.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -x .venv/bin/terrasynth ]]; then PATH="$PWD/.venv/bin:$PATH"; fi
runs=runs/default-model
out="${1:-$runs/v20}"
data=../shared/data/landcoverai_pairs
configs=configs/default_model
mkdir -p "$runs"

# stage NUMBER NAME COMMAND...: run COMMAND unless the stage is marked done, then mark it.
stage() {
    local number="$1" name="$2"
    shift 2
    if [[ -e "$runs/$number-$name.done" ]]; then
        echo "== stage $number ($name): done before, skipped"
    else
        echo "== stage $number ($name): $(date -u +%H:%M:%S) UTC"
        "$@"
        touch "$runs/$number-$name.done"
    fi
    if [[ -n "${TS_STOP_AFTER:-}" && "$((10#$number))" -ge "$TS_STOP_AFTER" ]]; then
        echo "stopped after stage $number (TS_STOP_AFTER)"
        exit 0
    fi
}

# export_to FOLDER ARGS...: terrasynth export into FOLDER by way of FOLDER.partial, so a cut-off export is redone.
export_to() {
    local folder="$1"
    shift
    rm -rf "$folder.partial"
    terrasynth export "$@" --out "$folder.partial"
    rm -rf "$folder"
    mv "$folder.partial" "$folder"
}

steps() { if [[ -n "${TS_MAX_STEPS:-}" ]]; then echo --max-steps "$TS_MAX_STEPS"; fi; }
ae() { terrasynth train-autoencoder --config "$configs/$1" $(steps) --resume latest; }
dm() { terrasynth train --config "$configs/$1" $(steps) --resume latest; }

# v1: an autoencoder, then a denoiser on its latents (SD's noise schedule).
v1() {
    dm 02_diffusion.json
    export_to $runs/v1 --run $runs/02-diffusion --fp16
}
# v2: zero-terminal SNR, min-SNR+1 loss weighting, 128-px latent crops; continues v1's denoiser.
v2() {
    dm 03_diffusion_zero_snr.json
    export_to $runs/v2 --run $runs/03-diffusion-zero-snr --fp16
}
# v3: the decoder refined for colour (encoder frozen).
v3() {
    ae 04_decoder_colour.json
    export_to $runs/v3 --model $runs/v2 --vae $runs/04-decoder-colour/autoencoder --name terrasynth-default-v3 --fp16
}
# v4/v5 (stages 05, 06): the autoencoder fine-tuned for smooth latents, and v3's denoiser moved into them.
# v6.1 (stages 07, 08): a decoder trained on posterior modes, then the local colour correction (fit only).
v6_1() {
    ae 08_colour_correction_local.json
    export_to $runs/v6.1 --model $runs/06-diffusion-smooth-latents/model \
        --vae $runs/08-colour-correction-local/autoencoder --name terrasynth-default-v6.1 --fp16
}
# v13: the decoder refined with an adaptive adversarial loss; default guidance 3.
v13() {
    ae 09_decoder_adversarial.json
    export_to $runs/v13 --model $runs/v6.1 --vae $runs/09-decoder-adversarial/autoencoder \
        --name terrasynth-default-v13 --guidance-scale 3 --fp16
}
# v14: the decoder refined on noisy latents.
v14() {
    ae 10_decoder_latent_noise.json
    export_to $runs/v14 --model $runs/v13 --vae $runs/10-decoder-latent-noise/autoencoder \
        --name terrasynth-default-v14 --guidance-scale 3 --fp16
}
# v18: the decoder refined on v14's own redraws of real latents, paired with their tiles.
v18() {
    ae 11_decoder_denoised_pairs.json
    export_to $runs/v18 --model $runs/v14 --vae $runs/11-decoder-denoised-pairs/autoencoder \
        --name terrasynth-default-v18 --fp16
}
# v20, as shipped: v18's weights, a mean prior fitted on the training tiles (start 0.95), 13 sampling steps.
v20() {
    export_to "$out" --model $runs/v18 --name terrasynth-default-v20 --fp16 \
        --mean-prior "$data" --mean-prior-start 0.95 --sampling-steps 13 --guidance-scale 3
}

stage 01 autoencoder ae 01_autoencoder.json
stage 02 diffusion v1
stage 03 diffusion-zero-snr v2
stage 04 decoder-colour v3
stage 05 autoencoder-smooth ae 05_autoencoder_smooth.json
stage 06 diffusion-smooth-latents dm 06_diffusion_smooth_latents.json
stage 07 decoder-modes ae 07_decoder_modes.json
stage 08 colour-correction-local v6_1
stage 09 decoder-adversarial v13
stage 10 decoder-latent-noise v14
stage 11 decoder-denoised-pairs v18
stage 12 mean-prior v20
echo "done: $out (compare with src/terrasynth/weights/default; figures: docs/realism.md)"
