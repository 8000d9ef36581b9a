"""How faithfully an autoencoder reproduces colour, per layout class: the round trip (encode → decode) of
real paired tiles, scored by PSNR and by the mean RGB of each class's pixels, real against reconstructed.

    python benchmarks/autoencoder_colour.py --data ../shared/data/landcoverai_pairs --split val \
        --autoencoder src/terrasynth/weights/default --autoencoder runs/decoder-v3/autoencoder

With ``--reference-split val`` it also scores FD, KID, precision and recall on effnet features of each round trip
(and of the tiles themselves) against that split, as benchmarks/realism.py does: no generator that decodes through an
autoencoder can score better than the autoencoder's own round trip.

It also scores layout fidelity (the shipped segmenter's mIoU against the layout) of the tiles and of each round
trip: LandCover.ai's water is teal-grey (mean RGB about 101, 116, 113 on the test split), and a decoder that
renders it greyer makes the segmenter miss water, whatever the diffusion model does. ``--segmenter none`` skips it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from terrasynth.data.paired_tiles import PairedTiles
from terrasynth.data.transforms import Resize
from terrasynth.models.embedded import decode_images, load_autoencoder_and_correction

sys.path.insert(0, str(Path(__file__).resolve().parent))  # realism.py, for the FD/KID helper


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/landcoverai_pairs")
    parser.add_argument("--split", default="val")
    parser.add_argument("--autoencoder", action="append", required=True, help="autoencoder or model folder")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--reference-split", help="also score FD, KID, precision, recall (effnet) against this split")
    parser.add_argument("--segmenter", default="shipped", help="layout segmenter folder, 'shipped' or 'none'")
    return parser.parse_args(argv)


@torch.no_grad()
def round_trip(vae, correction, images: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size] * 2 - 1
        out.append(decode_images(vae, vae.encode(batch).latent_dist.mode(), correction))
    return torch.cat(out)


def specks(images: torch.Tensor) -> dict:
    """The magenta-speck share of ``images``' pixels, and the share of images holding a speck (≥ 4 pixels)."""
    from terrasynth.evaluate.defects import magenta_image_share, magenta_share

    return {"magenta_share": magenta_share(images), "images_with_speck": magenta_image_share(images)}


def class_colours(images: torch.Tensor, layouts: torch.Tensor, num_classes: int) -> list[list[float] | None]:
    """Mean RGB (0–255) of each class's pixels over all tiles; None for an absent class."""
    pixels = images.permute(0, 2, 3, 1).reshape(-1, 3) * 255
    flat = layouts.reshape(-1)
    return [pixels[flat == c].mean(0).tolist() if (flat == c).any() else None for c in range(num_classes)]


def main(argv=None) -> dict:
    args = parse_args(argv)
    dataset = PairedTiles(args.data, args.split, transforms=Resize(args.size))
    count = min(args.limit, len(dataset))
    samples = [dataset[i] for i in range(count)]
    images = torch.stack([s["image"] for s in samples])
    layouts = torch.stack([s["layout"] for s in samples])
    names = dataset.class_table.names
    results = {"real": {"colours": class_colours(images, layouts, len(names)), **specks(images)}}
    realism = None
    if args.reference_split:
        realism = realism_against(args.data, args.reference_split, args.size, count)
        results["real"].update(realism(images))
    fidelity = None
    if args.segmenter != "none":
        fidelity = layout_fidelity(None if args.segmenter == "shipped" else args.segmenter, layouts)
        results["real"].update(fidelity(images))
    for folder in args.autoencoder:
        vae, correction = load_autoencoder_and_correction(folder)
        reconstruction = round_trip(vae.eval(), correction, images)
        mse = (reconstruction - images).pow(2).mean((1, 2, 3)).clamp(min=1e-10)
        results[folder] = {
            "psnr": float((10 * torch.log10(1 / mse)).mean()),
            "colours": class_colours(reconstruction, layouts, len(names)),
            **specks(reconstruction),
        }
        if realism is not None:
            results[folder].update(realism(reconstruction))
        if fidelity is not None:
            results[folder].update(fidelity(reconstruction))
    print(f"python benchmarks/autoencoder_colour.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"{args.data} split {args.split}: {count} tiles at {args.size} px; mean RGB per layout class")
    print(f"{'':48s} {'PSNR':>6s}  " + "  ".join(f"{n:>15s}" for n in names))
    for name, row in results.items():
        cells = "  ".join(f"{'-':>15s}" if c is None else f"{c[0]:5.0f}{c[1]:5.0f}{c[2]:5.0f}" for c in row["colours"])
        psnr = f"{row['psnr']:6.2f}" if "psnr" in row else f"{'':6s}"
        print(f"{name[-48:]:48s} {psnr}  {cells}")
    print("magenta specks (evaluate/defects.py): share of pixels, images with a speck of >= 4 pixels")
    for name, row in results.items():
        with_speck = round(row["images_with_speck"] * count)
        print(f"{name[-48:]:48s} {row['magenta_share'] * 1e6:7.1f} per million  {with_speck} of {count}")
    if realism is not None:
        print(f"against {count} {args.reference_split} tiles, effnet features at {args.size} px")
        for name, row in results.items():
            print(
                f"{name[-48:]:48s} FD {row['fd_effnet']:7.2f}  KID {row['kid_effnet']:.4f}  "
                f"precision {row['precision_effnet']:.3f}  recall {row['recall_effnet']:.3f}"
            )
    if fidelity is not None:
        print("layout fidelity (segmenter prediction against the layout)")
        for name, row in results.items():
            per_class = " ".join(f"{n}={'-' if v is None else f'{v:.3f}'}" for n, v in zip(names, row["iou_per_class"]))
            print(f"{name[-48:]:48s} mIoU {row['miou']:.3f}  {per_class}")
    return results


def layout_fidelity(segmenter_folder: str | None, layouts: torch.Tensor):
    """A function scoring images by the segmenter's mIoU and per-class IoU against ``layouts``."""
    from terrasynth.evaluate.layout_fidelity import layout_scores, load_segmenter

    segmenter = load_segmenter(segmenter_folder)

    def scores(images: torch.Tensor) -> dict:
        result = layout_scores(segmenter, list(images), list(layouts))
        return {"miou": result["miou"], "iou_per_class": result["iou_per_class"]}

    return scores


def realism_against(root: str, split: str, size: int, limit: int):
    """A function scoring images by FD, KID, precision and recall (effnet features) against the first ``limit``
    tiles of ``split``."""
    from realism import effnet_scores

    reference = PairedTiles(root, split, transforms=Resize(size))
    return effnet_scores(torch.stack([reference[i]["image"] for i in range(min(limit, len(reference)))]), size)


if __name__ == "__main__":
    main()
