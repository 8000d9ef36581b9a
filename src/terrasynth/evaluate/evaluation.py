"""The realism table from image sets: distribution scores per extractor, paired scores, layout fidelity and
memorisation, with the real-vs-real floor. Used by ``terrasynth evaluate`` and ``benchmarks/realism.py``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..data.images import is_image_file, read_mask
from ..errors import InputError
from .features import DomainExtractor, Extractor, ImageSet, build_extractor, load_image_set, resize_batch, score_name
from .metrics import density_coverage, frechet_distance, inception_score_analogue, kid, precision_recall
from .report import score

log = logging.getLogger(__name__)

K_PRECISION_RECALL = 3
K_DENSITY_COVERAGE = 5
MIN_PER_SET = max(K_PRECISION_RECALL, K_DENSITY_COVERAGE) + 1  # k-NN radii need k other samples


def check_set_size(count: int, what: str, minimum: int = MIN_PER_SET, needed: int | None = None) -> None:
    """Refuse a set of ``count`` images under ``minimum``; ``needed`` is how many the user must give for the set
    to reach it (the real set is halved for the floor, so it needs twice the minimum)."""
    if count < minimum:
        raise InputError(
            None,
            f"{what}: {count} image(s), but the distribution metrics need at least {minimum} per set "
            f"(density/coverage uses k={K_DENSITY_COVERAGE} nearest neighbours)",
            f"give at least {minimum if needed is None else needed} images",
        )


def extract_all(extractors: dict[str, Extractor], images) -> dict[str, np.ndarray]:
    return {name: extractor.features(images) for name, extractor in extractors.items()}


def distribution_row(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    extractors: dict[str, Extractor],
    candidate_images=None,
    kid_subsets: int = 100,
    seed: int = 0,
) -> dict[str, dict]:
    """FD, KID (± std over subsets), precision, recall, density, coverage per extractor, plus the
    Inception-Score analogue when a domain extractor and ``candidate_images`` are given."""
    row: dict[str, dict] = {}
    for name, extractor in extractors.items():
        real, fake = reference[name], candidate[name]
        meta = {
            **{k: extractor.descriptor[k] for k in ("resize", "input_size")},
            "extractor": name,
            "n_real": int(len(real)),
            "n_fake": int(len(fake)),
        }
        row[score_name("FD", name)] = score(frechet_distance(real, fake), **meta)
        k = kid(real, fake, subsets=kid_subsets, seed=seed)
        row[score_name("KID", name)] = score(
            k["mean"], k["std"], subsets=k["subsets"], subset_size=k["subset_size"], **meta
        )
        pr = precision_recall(real, fake, K_PRECISION_RECALL)
        dc = density_coverage(real, fake, K_DENSITY_COVERAGE)
        row[f"precision_{name}"] = score(pr["precision"], k=K_PRECISION_RECALL, **meta)
        row[f"recall_{name}"] = score(pr["recall"], k=K_PRECISION_RECALL, **meta)
        row[f"density_{name}"] = score(dc["density"], k=K_DENSITY_COVERAGE, **meta)
        row[f"coverage_{name}"] = score(dc["coverage"], k=K_DENSITY_COVERAGE, **meta)
        if isinstance(extractor, DomainExtractor) and candidate_images is not None:
            inception = inception_score_analogue(extractor.probabilities(candidate_images))
            row["IS_domain"] = score(
                inception["mean"],
                inception["std"],
                splits=inception["splits"],
                extractor=name,
                resize=meta["resize"],
                input_size=meta["input_size"],
                n_fake=meta["n_fake"],
            )
    return row


def paired_row(real_images: torch.Tensor, fake_images: torch.Tensor, perceptual_net=None) -> dict[str, dict]:
    from .paired import paired_metrics

    values = paired_metrics(real_images, fake_images, perceptual_net)
    size = int(real_images.shape[-1])
    meta = {"n_pairs": values["n_pairs"], "input_size": size, "resize": "bilinear-antialias"}
    row = {
        "SSIM": score(values["ssim"]["mean"], values["ssim"]["std"], **meta),
        "PSNR": score(values["psnr"]["mean"], values["psnr"]["std"], cap_db=values["psnr_cap_db"], **meta),
    }
    if "perceptual_effnet" in values:
        row["perceptual_effnet"] = score(
            values["perceptual_effnet"]["mean"],
            values["perceptual_effnet"]["std"],
            extractor="effnet endpoints",
            **meta,
        )
    return row


def layout_row(segmenter, images, layouts) -> dict[str, dict]:
    from .layout_fidelity import layout_scores

    values = layout_scores(segmenter, images, layouts)
    meta = {"n": values["n"], "segmenter": "trained on real pairs"}
    names = segmenter.config.class_names or tuple(str(i) for i in range(len(values["iou_per_class"])))
    per_class = dict(zip(names, values["iou_per_class"]))
    return {
        "mIoU": score(values["miou"], iou_per_class=per_class, **meta),
        "pixel_accuracy": score(values["pixel_accuracy"], **meta),
    }


def size_note(image_set: ImageSet, what: str, size: int) -> str | None:
    sizes = image_set.sizes
    if len(sizes) > 1:
        shown = ", ".join(f"{h}×{w}" for h, w in sizes[:5])
        return (
            f"{what}: images of mixed sizes ({shown}); all resized explicitly to {size}×{size} "
            "(bilinear, antialiased) for paired and pixel metrics, and to each extractor's input size"
        )
    if sizes and sizes[0] != (size, size):
        return f"{what}: {sizes[0][0]}×{sizes[0][1]} images resized to {size}×{size} (bilinear, antialiased)"
    return None


def _read_layouts(folder: Path, stems: list[str], num_classes: int | None) -> list[torch.Tensor]:
    if not folder.is_dir():
        raise InputError(folder, "layouts folder not found")
    by_stem = {p.stem: p for p in folder.iterdir() if is_image_file(p)}
    layouts = []
    for stem in stems:
        key = stem if stem in by_stem else stem.rsplit("-", 1)[0]  # generated files are <id>-000.png
        if key not in by_stem:
            raise InputError(folder, f"no layout for {stem!r}", "layouts are matched by file name (<id>.png)")
        layouts.append(read_mask(by_stem[key], num_classes))
    return layouts


def _pair_stems(real: ImageSet, fake: ImageSet) -> list[tuple[int, int]]:
    real_index = {s: i for i, s in enumerate(real.stems)}
    pairs = []
    for j, stem in enumerate(fake.stems):
        key = stem if stem in real_index else stem.rsplit("-", 1)[0]
        if key in real_index:
            pairs.append((real_index[key], j))
    return pairs


def evaluate_folders(
    real: str | Path,
    fake: str | Path,
    out: str | Path,
    features=("effnet",),
    pairs: bool = False,
    layouts: str | Path | None = None,
    train: str | Path | None = None,
    strict: bool = False,
    size: int | None = None,
    segmenter: str | Path | None = None,
    domain_encoder: str | Path | None = None,
    inception_weights: str | Path | None = None,
    kid_subsets: int = 100,
    memorisation_quantile: float = 0.01,
    seed: int = 0,
    command: str | None = None,
) -> dict:
    """Score a folder of generated images against a folder of real ones and write the report to ``out``.

    The real folder is split at random (seeded) into two disjoint halves of equal size: half A is the
    reference, half B the real-vs-real floor; the generated set is sub-sampled to the size of B, so every row
    has the same N. With ``pairs``, generated ``<id>-000.png`` (or ``<id>.png``) is matched to real ``<id>.*``
    for SSIM, PSNR and the perceptual distance (on all pairs). ``layouts`` (masks named by id) adds layout
    fidelity; ``train`` (the generator's training images) adds the memorisation check.
    """
    from .report import write_report

    notes: list[str] = []
    real_set, fake_set = load_image_set(real, strict), load_image_set(fake, strict)
    for image_set, what in ((real_set, "real"), (fake_set, "generated")):
        if image_set.skipped:
            notes.append(
                f"{what}: skipped {len(image_set.skipped)} unreadable file(s) "
                f"(e.g. {image_set.skipped[0][0].name}); use --strict to fail instead"
            )
    size = size or real_set.sizes[0][0]
    for image_set, what in ((real_set, "real"), (fake_set, "generated")):
        note = size_note(image_set, what, size)
        if note:
            notes.append(note)
    half = len(real_set) // 2
    check_set_size(
        half,
        f"{real}: the real-vs-real floor splits the real set in two halves of {half}",
        MIN_PER_SET,
        needed=2 * MIN_PER_SET,
    )
    check_set_size(len(fake_set), str(fake))
    generator = np.random.default_rng(seed)
    order = generator.permutation(len(real_set))
    reference_idx, floor_idx = sorted(order[:half]), sorted(order[half : 2 * half])
    n = min(half, len(fake_set))
    fake_idx = sorted(generator.permutation(len(fake_set))[:n])
    notes.append(
        f"real-vs-real floor: the {len(real_set)} real images split at random (seed {seed}) into "
        f"two disjoint halves of {half}: reference A and floor B; generated images sub-sampled to {n}"
    )
    extractors = {name: build_extractor(name, domain_encoder, inception_weights) for name in features}
    real_images = resize_batch(real_set.images, size)
    fake_images = resize_batch(fake_set.images, size)
    reference = extract_all(extractors, real_images[reference_idx])
    rows = {
        "real vs real (floor)": distribution_row(
            reference,
            extract_all(extractors, real_images[floor_idx]),
            extractors,
            real_images[floor_idx],
            kid_subsets,
            seed,
        ),
        "generated": distribution_row(
            reference,
            extract_all(extractors, fake_images[fake_idx]),
            extractors,
            fake_images[fake_idx],
            kid_subsets,
            seed,
        ),
    }
    results: dict = {
        "command": command,
        "floor": "real vs real (floor)",
        "extractors": {name: e.descriptor for name, e in extractors.items()},
        "inputs": {"real": real_set.summary(), "generated": fake_set.summary(), "size": size},
        "notes": notes,
        "rows": rows,
    }
    if pairs:
        matched = _pair_stems(real_set, fake_set)
        if not matched:
            raise InputError(
                fake,
                "--pairs: no generated file matches a real file's name",
                "name generated images <id>.png or <id>-000.png after the real <id>.*",
            )
        from ..models.features import EffNetFeatures

        net = extractors["effnet"].net if "effnet" in extractors else EffNetFeatures()
        r = real_images[[i for i, _ in matched]]
        f = fake_images[[j for _, j in matched]]
        rows["generated"].update(paired_row(r, f, net))
        rows["real vs real (floor)"].update(
            {
                "SSIM": score(1.0, n_pairs=len(matched), note="identical pairs"),
                "PSNR": score(100.0, n_pairs=len(matched), note="identical pairs (capped)"),
            }
        )
        notes.append(
            f"paired metrics on {len(matched)} generated/real pairs matched by file name; the floor row's "
            "SSIM/PSNR are those of identical images (the ceiling)"
        )
    if layouts is not None:
        from .layout_fidelity import load_segmenter

        model = load_segmenter(segmenter)
        classes = model.config.num_classes
        fake_layouts = _read_layouts(Path(layouts), fake_set.stems, classes)
        real_layouts = _read_layouts(Path(layouts), real_set.stems, classes)
        layout_size = [resize_layout(lay, size) for lay in fake_layouts]
        rows["generated"].update(layout_row(model, list(fake_images), layout_size))
        rows["real vs real (floor)"].update(
            layout_row(model, list(real_images), [resize_layout(lay, size) for lay in real_layouts])
        )
        notes.append("layout fidelity: the floor row's mIoU is the segmenter on the real tiles (the ceiling)")
    if train is not None:
        from .memorisation import memorisation_scores

        train_set = load_image_set(train, strict)
        extractor = extractors.get("effnet") or build_extractor("effnet")
        train_features = extractor.features(resize_batch(train_set.images, size))
        held_out = extractor.features(real_images)
        fake_features = extractor.features(fake_images)
        memo = memorisation_scores(train_features, fake_features, held_out, memorisation_quantile)
        memo["flagged_files"] = [(fake_set.paths[i].name, train_set.paths[t].name, d) for i, t, d in memo["flagged"]]
        results["memorisation"] = memo
        rows["generated"]["memorised_fraction"] = score(
            memo["flagged_fraction"],
            extractor="effnet",
            quantile=memorisation_quantile,
            n_fake=len(fake_set),
            n_train=len(train_set),
        )
        real_memo = memorisation_scores(train_features, held_out, held_out, memorisation_quantile)
        rows["real vs real (floor)"]["memorised_fraction"] = score(
            real_memo["flagged_fraction"], extractor="effnet", quantile=memorisation_quantile, n_fake=len(real_set)
        )
    grids = {"real (reference)": list(real_images[reference_idx][:16]), "generated": list(fake_images[fake_idx][:16])}
    write_report(out, results, grids)
    return results


def resize_layout(layout: torch.Tensor, size: int) -> torch.Tensor:
    if tuple(layout.shape[-2:]) == (size, size):
        return layout
    return torch.nn.functional.interpolate(layout[None, None].float(), (size, size), mode="nearest")[0, 0].long()
