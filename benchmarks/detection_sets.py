"""The detection benchmark's image sets: real tiles of two sources and synthetic tiles of six or seven generator
families.

    python benchmarks/detection_sets.py --out runs/detection-sets-v3

Every real tile is given a side (``a`` or ``b``, a seeded hash of its block of 32 neighbouring tile ids, so that
neighbours cut from one scene stay together); a synthetic image made from a real tile (its layout, its pixels)
inherits that tile's side, so a protocol that trains on side ``a`` and tests on side ``b`` never shows the detector
the content it is tested on, nor the tiles next to it. ``manifest.csv`` lists every image with
``path, label, family, generator, source, side`` (and ``mask`` for composites: the ground truth of where the
synthetic pixels are). Real tiles are referenced where they lie; synthetic images are written as lossless PNG
without a watermark (so no detector can learn the mark). A set already written is not made again.

Families (``family`` column; ``generator`` names the member):
- ``ldm``: the embedded model at every version in git history whose denoiser or decoder differs (v2, v4, v6.1, v13,
  v20), from LandCover.ai layouts, plus v20 text-only scenes of the seven RSSCN7 classes (source ``text``);
- ``aligned``: real tiles passed through each distinct autoencoder only, encode -> decode (Rajan et al., ICLR 2025);
- ``sdedit``: real tiles redrawn by v20 from their own latents at strengths 0.3, 0.5 and 0.7;
- ``composite``: real tiles with a region (25-60 % of the area) replaced by the same tile's redraw (v20 SDEdit at
  strength 0.7, or another version's autoencoder round trip): spliced, seam-free tampering;
- ``pix2pix``: the shipped pix2pix baseline from layouts;
- ``colourfill``: the colour fill + noise baseline from layouts;
- ``smallae`` (with ``--small-autoencoders N``): N real tiles through each of four small autoencoders of other
  designs (up-sampling by nearest + convolution, transposed convolution, sub-pixel convolution, bilinear +
  convolution), trained here for minutes on side-``a`` real tiles (``benchmarks/small_autoencoders.py``).

Model versions are read from git history (``git archive``), so this script needs the repository's history.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from terrasynth.data.images import read_image
from terrasynth.data.paired_tiles import PairedTiles
from terrasynth.data.splits import block_key

# version -> commit that shipped it; only versions whose denoiser or decoder differ from all others are listed
# (v1 = v2's decoder, v5 = v4's, v6 = v6.1's weights, v14/v18 = v13's denoiser with other decoders).
VERSIONS = {"v2": "35bafbc", "v4": "84c1e2b", "v6.1": "dc529da", "v13": "1c25177", "v20": "54119e3"}
# one checkout per distinct autoencoder
AUTOENCODERS = {
    "v1": "6639a6b",
    "v3": "894d794",
    "v4": "84c1e2b",
    "v6": "90336ff",
    "v13": "1c25177",
    "v14": "682f5ee",
    "v20": "54119e3",
}
WEIGHTS = "src/terrasynth/weights/default"
COLUMNS = ("path", "label", "family", "generator", "source", "side", "mask")


def hashed_side(key: str, seed: int) -> str:
    digest = hashlib.sha256(f"{seed}/{key}".encode()).digest()
    return "a" if digest[0] % 2 == 0 else "b"


def side_of(tile_id: str, seed: int) -> str:
    """The side of a real tile, by a seeded hash of its block (``terrasynth.data.splits.block_key``): tiles cut from
    one scene have consecutive ids and look alike, so each block of 32 neighbours lies on one side."""
    return hashed_side(block_key(tile_id), seed)


def checkout_version(commit: str, cache: Path) -> Path:
    folder = cache / commit
    if not (folder / "terrasynth_model.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit, WEIGHTS], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder), "--strip-components=4"], input=archive, check=True)
    return folder


def save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(array).save(tmp)
    tmp.replace(path)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    return np.clip(np.rint(image.permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)


def real_tiles(args) -> list[dict]:
    rows = []
    for path in sorted(Path(args.landcover, "images").glob("*.jpg")):
        rows.append({"path": str(path), "source": "landcoverai", "id": path.stem})
    for path in sorted(Path(args.rsscn7).rglob("*.jpg")):
        rows.append({"path": str(path), "source": "rsscn7", "id": f"{path.parent.name}/{path.stem}"})
    for row in rows:
        row.update(label=0, family="real", generator=row["source"], side=side_of(row["id"], args.seed), mask="")
    return rows


def pick(rows: list[dict], n: int, rng: np.random.Generator, source: str | None = None) -> list[dict]:
    pool = [r for r in rows if source is None or r["source"] == source]
    return [pool[i] for i in sorted(rng.choice(len(pool), min(n, len(pool)), replace=False))]


class SetWriter:
    """Writes one synthetic image and its manifest row; skips images already on disk."""

    def __init__(self, out: Path):
        self.out = out
        self.rows: list[dict] = []

    def target(self, family: str, generator: str, name: str) -> Path:
        return self.out / family / generator / f"{name.replace('/', '_')}.png"

    def add(self, path: Path, family: str, generator: str, source: str, side: str, mask: str = "") -> None:
        self.rows.append(
            {
                "path": str(path),
                "label": 1,
                "family": family,
                "generator": generator,
                "source": source,
                "side": side,
                "mask": mask,
            }
        )


def make_ldm(args, writer: SetWriter, layouts: PairedTiles, chosen: list[int], sides: list[str]) -> None:
    from terrasynth.generate.pipeline import LayoutToImagePipeline

    for version, commit in VERSIONS.items():
        folder = checkout_version(commit, Path(args.cache))
        pipe = None
        for start in range(0, len(chosen), args.batch):
            batch = chosen[start : start + args.batch]
            targets = [writer.target("ldm", version, layouts.ids[i]) for i in batch]
            if not all(t.exists() for t in targets):
                pipe = pipe or LayoutToImagePipeline.from_pretrained(folder)
                samples = [layouts[i] for i in batch]
                output = pipe(
                    [s["caption"] for s in samples],
                    layout=torch.stack([s["layout"] for s in samples]),
                    num_images=len(batch),
                    seed=args.seed + start,
                    batch_size=args.batch,
                )
                for image, target in zip(output.images, targets):
                    save_png(to_uint8(image), target)
            for i, target in zip(batch, targets):
                writer.add(target, "ldm", version, "landcoverai", sides[i])
        print(f"ldm {version}: {len(chosen)} images", flush=True)
    # text-only scenes of the RSSCN7 classes from the shipped model
    from terrasynth.data.captions import scene_paraphrases

    pipe = None
    classes = ["grass", "field", "industry", "river_lake", "forest", "resident", "parking"]
    for index, name in enumerate(classes):
        targets = [writer.target("ldm", "v20-text", f"{name}-{k:02d}") for k in range(args.per_scene)]
        if not all(t.exists() for t in targets):
            pipe = pipe or LayoutToImagePipeline.from_pretrained(checkout_version(VERSIONS["v20"], Path(args.cache)))
            prompts = scene_paraphrases(name)
            output = pipe(
                [prompts[k % len(prompts)] for k in range(args.per_scene)],
                num_images=args.per_scene,
                seed=args.seed + 1000 * index,
                batch_size=args.batch,
            )
            for image, target in zip(output.images, targets):
                save_png(to_uint8(image), target)
        for k, target in enumerate(targets):
            writer.add(target, "ldm", "v20-text", "text", hashed_side(f"{name}-{k}", args.seed))
    print(f"ldm v20-text: {len(classes) * args.per_scene} images", flush=True)


@torch.no_grad()
def round_trip(model, image: torch.Tensor) -> torch.Tensor:
    return model.decode_latents(model.encode_images(image[None]))[0]


def make_aligned(args, writer: SetWriter, tiles: list[dict]) -> None:
    from terrasynth.models.embedded import EmbeddedDiffusionModel

    for version, commit in AUTOENCODERS.items():
        model = None
        for tile in tiles:
            target = writer.target("aligned", version, tile["id"])
            if not target.exists():
                model = model or EmbeddedDiffusionModel.from_pretrained(checkout_version(commit, Path(args.cache)))
                save_png(to_uint8(round_trip(model, read_image(tile["path"]))), target)
            writer.add(target, "aligned", version, tile["source"], tile["side"])
        print(f"aligned {version}: {len(tiles)} images", flush=True)


def make_small_autoencoders(args, writer: SetWriter, reals: list[dict], tiles: list[dict]) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from small_autoencoders import DESIGNS, small_round_trip, train_small_autoencoder
    from terrasynth.detect.detector import read_rgb

    training = [r for r in reals if r["side"] == "a"]
    training = [training[i] for i in np.random.default_rng(args.seed + 7).permutation(len(training))[:600]]
    pixels = None
    for design in DESIGNS:
        targets = [writer.target("smallae", design.name, tile["id"]) for tile in tiles]
        if not all(t.exists() for t in targets):
            pixels = pixels or [read_rgb(r["path"]) for r in training]
            start = time.perf_counter()
            model = train_small_autoencoder(design, pixels, Path(args.out) / "smallae-weights" / design.name)
            print(f"smallae {design.name}: trained or loaded in {time.perf_counter() - start:.0f} s", flush=True)
            for tile, target in zip(tiles, targets):
                if not target.exists():
                    save_png(small_round_trip(model, read_rgb(tile["path"]), 2**design.stages), target)
        for tile, target in zip(tiles, targets):
            writer.add(target, "smallae", design.name, tile["source"], tile["side"])
        print(f"smallae {design.name}: {len(tiles)} images", flush=True)


def layout_of(tile: dict, layouts: PairedTiles) -> torch.Tensor | None:
    if tile["source"] != "landcoverai":
        return None
    return layouts.read_layout(tile["id"]) if hasattr(layouts, "read_layout") else _mask(tile, layouts)


def _mask(tile: dict, layouts: PairedTiles) -> torch.Tensor:
    mask = np.asarray(Image.open(Path(layouts.root) / "masks" / f"{tile['id']}.png"))
    return torch.from_numpy(mask.astype(np.int64)).clamp(0, len(layouts.class_table) - 1)


@torch.no_grad()
def redraw(pipe, tile: dict, layouts: PairedTiles, strength: float, seed: int) -> torch.Tensor:
    image = read_image(tile["path"])
    latents = pipe.model.encode_images(image[None])
    layout = layout_of(tile, layouts)
    prompt = "aerial image" if layout is None else ""
    output = pipe(prompt, layout=layout, init_latents=latents, strength=strength, seed=seed, height=256, width=256)
    return output.images[0]


def make_sdedit(args, writer: SetWriter, tiles: list[dict], layouts: PairedTiles) -> None:
    from terrasynth.generate.pipeline import LayoutToImagePipeline

    pipe = None
    strengths = (0.3, 0.5, 0.7)
    for index, tile in enumerate(tiles):
        strength = strengths[index % len(strengths)]
        generator = f"v20-s{strength}"
        target = writer.target("sdedit", generator, tile["id"])
        if not target.exists():
            pipe = pipe or LayoutToImagePipeline.from_pretrained(checkout_version(VERSIONS["v20"], Path(args.cache)))
            save_png(to_uint8(redraw(pipe, tile, layouts, strength, args.seed + index)), target)
        writer.add(target, "sdedit", generator, tile["source"], tile["side"])
    print(f"sdedit: {len(tiles)} images", flush=True)


def region_mask(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A random rectangle or ellipse covering 25-60 % of the tile."""
    area = rng.uniform(0.25, 0.6) * size * size
    aspect = rng.uniform(0.6, 1.6)
    h = int(min(size, np.sqrt(area / aspect)))
    w = int(min(size, area / max(h, 1)))
    top, left = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    mask = np.zeros((size, size), bool)
    if rng.random() < 0.5:
        mask[top : top + h, left : left + w] = True
    else:
        yy, xx = np.mgrid[:size, :size]
        cy, cx = top + h / 2, left + w / 2
        mask = ((yy - cy) / (h / 2 * 1.13)) ** 2 + ((xx - cx) / (w / 2 * 1.13)) ** 2 <= 1
    return mask


def make_composites(args, writer: SetWriter, tiles: list[dict], layouts: PairedTiles) -> None:
    from terrasynth.generate.pipeline import LayoutToImagePipeline
    from terrasynth.models.embedded import EmbeddedDiffusionModel

    rng = np.random.default_rng(args.seed + 7)
    pipe, other = None, None
    for index, tile in enumerate(tiles):
        kind = "sdedit" if index % 2 == 0 else "aligned-v13"
        target = writer.target("composite", kind, tile["id"])
        mask_path = target.with_name(target.stem + ".mask.png")
        mask = region_mask(rng)
        if not (target.exists() and mask_path.exists()):
            if kind == "sdedit":
                pipe = pipe or LayoutToImagePipeline.from_pretrained(
                    checkout_version(VERSIONS["v20"], Path(args.cache))
                )
                fake = to_uint8(redraw(pipe, tile, layouts, 0.7, args.seed + index))
            else:
                other = other or EmbeddedDiffusionModel.from_pretrained(checkout_version("1c25177", Path(args.cache)))
                fake = to_uint8(round_trip(other, read_image(tile["path"])))
            real = np.asarray(Image.open(tile["path"]).convert("RGB"))
            save_png(np.where(mask[..., None], fake, real), target)
            save_png((mask * 255).astype(np.uint8), mask_path)
        writer.add(target, "composite", kind, tile["source"], tile["side"], str(mask_path))
    print(f"composite: {len(tiles)} images", flush=True)


def make_baselines(args, writer: SetWriter, layouts: PairedTiles, chosen: list[int], sides: list[str]) -> None:
    from terrasynth.evaluate.baselines import ColourFill
    from terrasynth.generate.pix2pix_generator import Pix2PixGenerator
    from terrasynth.models.registry import resolve_model_path

    pix2pix = Pix2PixGenerator.from_pretrained(resolve_model_path("pix2pix"))
    fill = None
    for i in chosen:
        target = writer.target("pix2pix", "shipped", layouts.ids[i])
        if not target.exists():
            sample = layouts[i]
            save_png(to_uint8(pix2pix("", layout=sample["layout"], seed=args.seed + i).images[0]), target)
        writer.add(target, "pix2pix", "shipped", "landcoverai", sides[i])
        target = writer.target("colourfill", "fitted", layouts.ids[i])
        if not target.exists():
            if fill is None:
                train = [layouts[j] for j in range(0, len(layouts), 4)]
                fill = ColourFill(len(layouts.class_table)).fit(
                    [s["image"] for s in train], [s["layout"] for s in train]
                )
            save_png(to_uint8(fill.generate(layouts[i]["layout"], seed=args.seed + i)), target)
        writer.add(target, "colourfill", "fitted", "landcoverai", sides[i])
    print(f"pix2pix, colourfill: {len(chosen)} images each", flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landcover", default="../shared/data/landcoverai_pairs")
    parser.add_argument("--rsscn7", default="../shared/data/rsscn7")
    parser.add_argument("--out", default="runs/detection-sets-v3")
    parser.add_argument("--cache", default="runs/model-versions", help="model versions checked out of git")
    parser.add_argument("--per-version", type=int, default=40, help="layouts per ldm version (and per baseline)")
    parser.add_argument("--per-scene", type=int, default=4, help="text-only scenes per RSSCN7 class")
    parser.add_argument("--aligned", type=int, default=60, help="real tiles per autoencoder")
    parser.add_argument("--sdedit", type=int, default=60)
    parser.add_argument("--composites", type=int, default=80)
    parser.add_argument(
        "--small-autoencoders", type=int, default=0, help="real tiles per small autoencoder (family smallae; 0: none)"
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", nargs="+", default=["ldm", "aligned", "sdedit", "composite", "baselines"])
    return parser.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    print(f"command: python benchmarks/detection_sets.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    torch.manual_seed(args.seed)
    out = Path(args.out)
    writer = SetWriter(out)
    reals = real_tiles(args)
    layouts = PairedTiles(args.landcover, "all")
    rng = np.random.default_rng(args.seed)
    chosen = sorted(int(i) for i in rng.choice(len(layouts), min(args.per_version, len(layouts)), replace=False))
    sides = {i: side_of(layouts.ids[i], args.seed) for i in range(len(layouts))}
    start = time.perf_counter()
    half = lambda n: pick(reals, n // 2, rng, "landcoverai") + pick(reals, n - n // 2, rng, "rsscn7")  # noqa: E731
    aligned_tiles, sdedit_tiles, composite_tiles = half(args.aligned), half(args.sdedit), half(args.composites)
    # drawn after the others, so that adding this family leaves every other family's tiles as they were
    small_tiles = half(args.small_autoencoders) if args.small_autoencoders else []
    if small_tiles:
        make_small_autoencoders(args, writer, reals, small_tiles)
    if "baselines" in args.families:
        make_baselines(args, writer, layouts, chosen, sides)
    if "aligned" in args.families:
        make_aligned(args, writer, aligned_tiles)
    if "composite" in args.families:
        make_composites(args, writer, composite_tiles, layouts)
    if "sdedit" in args.families:
        make_sdedit(args, writer, sdedit_tiles, layouts)
    if "ldm" in args.families:
        make_ldm(args, writer, layouts, chosen, sides)
    rows = reals + writer.rows
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "manifest.csv.tmp"
    with tmp.open("w", newline="") as handle:
        csv_writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        csv_writer.writeheader()
        csv_writer.writerows(rows)
    tmp.replace(out / "manifest.csv")
    counts = {}
    for row in rows:
        counts[row["family"]] = counts.get(row["family"], 0) + 1
    print(f"manifest: {out / 'manifest.csv'}: {counts} in {time.perf_counter() - start:.0f} s")
    return out / "manifest.csv"


if __name__ == "__main__":
    main()
