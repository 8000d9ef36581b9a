"""``terrasynth detect train | eval | scan`` and ``terrasynth verify``: telling synthetic images apart."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .overrides import load_or_default


def cmd_detect_train(args) -> int:
    from ..detect.detector import DetectorConfig, load_image_folders, train_detector
    from ..detect.perturb import match_jpeg

    flags = {"method": args.method, "input_size": args.input_size, "epochs": args.epochs, "seed": args.seed}
    trained_on = {"real": [str(p) for p in args.real], "fake": [str(p) for p in args.fake], "fake_jpeg": args.fake_jpeg}
    config = load_or_default(DetectorConfig, args.config, {**flags, "trained_on": trained_on})
    real = load_image_folders(args.real, args.max_images, config.seed)
    fake = match_jpeg(load_image_folders(args.fake, args.max_images, config.seed), args.fake_jpeg)
    detector = train_detector(config, real, fake, args.calibration_fraction)
    detector.save(args.out)
    print(f"{config.method} detector trained on {len(real)} real + {len(fake)} synthetic images: {args.out}")
    print(f"operating point: {detector.config.operating_point}")
    return 0


# with a clean and an edited copy of each, 50 genuine images give 100 calibration statistics: the fewest for which
# p <= 0.01, the *synthetic* verdict, can be reached at all (conformal p-values are at least 1 / (n + 1))
MIN_CALIBRATION_IMAGES = 50


def cmd_detect_calibrate(args) -> int:
    import dataclasses

    from ..detect.detector import load_image_folders, resolve_detector

    out = Path(args.out)
    real = load_image_folders(args.real, args.max_images, args.seed)  # unreadable files are skipped with a warning
    if len(real) < MIN_CALIBRATION_IMAGES:
        raise InputError(
            args.real[0], f"only {len(real)} readable images", f"calibration needs {MIN_CALIBRATION_IMAGES}"
        )
    detector = resolve_detector(args.detector)
    detector.calibrate(real)
    calibrated_on = {"calibrated_on": [str(p) for p in args.real], "calibration_images": len(real)}
    detector.config = dataclasses.replace(detector.config, trained_on={**detector.config.trained_on, **calibrated_on})
    detector.save(out)
    print(f"{args.detector} detector recalibrated on {len(real)} genuine images: {out}")
    print(f"operating point: {detector.config.operating_point}")
    return 0


def cmd_detect_eval(args) -> int:
    from ..detect.detector import load_image_folders, resolve_detector
    from ..detect.evaluate import robustness_table
    from ..detect.perturb import PERTURBATIONS, match_jpeg

    detector = resolve_detector(args.detector)
    names = args.perturb or list(PERTURBATIONS)
    unknown = sorted(set(names) - set(PERTURBATIONS))
    if unknown:
        raise InputError(None, f"unknown perturbation(s) {', '.join(unknown)}", f"known: {', '.join(PERTURBATIONS)}")
    real = load_image_folders(args.real, args.max_images, args.seed)
    fake = match_jpeg(load_image_folders(args.fake, args.max_images, args.seed), args.fake_jpeg)
    table = robustness_table(detector, real, fake, names, args.seed)
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    config = detector.config
    print(f"{config.method} detector; {len(real)} real, {len(fake)} synthetic; {config.operating_point}")
    print(f"{'perturbation':<14}{'AUC':>8}{'acc':>8}{'TPR@1%':>8}{'F1':>8}")
    for name, row in table.items():
        print(f"{name:<14}{row['auc']:8.4f}{row['accuracy']:8.4f}{row['tpr@1%fpr']:8.4f}{row['f1']:8.4f}")
    return 0


def calibration_note(detector) -> str:
    """Which genuine imagery the p-values describe, and how to make them describe the user's."""
    trained_on = detector.config.trained_on or {}
    if "calibrated_on" in trained_on:
        folders = ", ".join(trained_on["calibrated_on"])
        return f"p-values calibrated on {trained_on.get('calibration_images', '?')} genuine images of {folders}"
    return (
        "p-values calibrated on the detector's own real tiles; for imagery of another sensor or region, run "
        "`terrasynth detect calibrate --real GENUINE_DIR --out DIR` first (docs/detection.md)"
    )


def cmd_detect_scan(args) -> int:
    from collections import Counter

    from ..detect.detector import resolve_detector
    from ..detect.scan import list_files, scan_folder

    list_files(args.folder, recursive=not args.no_recursive)  # a missing or empty folder fails before any model loads
    detector = resolve_detector(args.detector)
    rows = scan_folder(detector, args.folder, args.out, recursive=not args.no_recursive)
    counts = Counter(row["status"] for row in rows)
    verdicts = Counter(row["verdict"] for row in rows if row["status"] == "ok")
    print(f"{len(rows)} files scanned -> {args.out}")
    print(f"operating point: {detector.config.operating_point}")
    print(calibration_note(detector))
    print("status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print("verdict: " + (", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())) or "none"))
    return 0


def localize_paths(out: str) -> tuple[Path, Path]:
    """(binary mask, probability map) for ``--out MASK.png``: the map is written beside it as MASK-probability.png."""
    mask = Path(out)
    return mask, mask.with_name(f"{mask.stem}-probability{mask.suffix}")


def cmd_detect_localize(args) -> int:
    import numpy as np

    from ..data.grids import write_png
    from ..detect.detector import read_rgb, resolve_detector

    mask_path, map_path = localize_paths(args.out)
    if mask_path.suffix.lower() != ".png":
        raise InputError(mask_path, "--out must be a .png file", "e.g. --out mask.png")
    if not mask_path.parent.is_dir():
        raise InputError(mask_path.parent, "output folder not found", "create it first")
    for path in (mask_path, map_path):
        if path.exists() and not args.overwrite:
            raise InputError(path, "already exists", "pass --overwrite or choose another --out")
    image = read_rgb(args.image)
    detector = resolve_detector(args.detector)
    if not hasattr(detector, "localize"):
        raise InputError(
            args.detector, f"the {detector.config.method} detector cannot localise", "use a probe detector (default)"
        )
    detector.check_size(image.shape[1], image.shape[0], args.image)
    probability = detector.localize(image)
    write_png(map_path, np.clip(np.rint(probability * 255), 0, 255).astype(np.uint8))
    write_png(mask_path, np.where(probability > 0.5, 255, 0).astype(np.uint8))
    share = float((probability > 0.5).mean())
    print(f"{args.image}: {share:.1%} of the pixels synthetic at the operating point")
    print(f"mask: {mask_path}; probability map: {map_path}")
    return 0


def cmd_verify(args) -> int:
    from ..detect.detector import resolve_detector, shipped_detector_or_none
    from ..detect.verify import verify_file

    detector = resolve_detector(args.detector) if args.detector else shipped_detector_or_none()
    result = verify_file(args.file, detector)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"file: {result['file']} ({result['width']}x{result['height']})")
    record = result["provenance"]
    if record is None:
        print("provenance: none" + (f" ({result['provenance_error']})" if "provenance_error" in result else ""))
    else:
        print(f"provenance: synthetic={record['synthetic']} model={record['model']} created={record['created']}")
        print(f"  watermark declared: {record['watermark']}")
    _print_credentials(result["content_credentials"])
    mark = result["watermark"]
    if "error" in mark:
        print(f"watermark ({mark['scheme']}): {mark['error']}")
    else:
        found = f"payload {mark['payload']}" if mark["valid"] else "no valid payload"
        line = f"watermark ({mark['scheme']}): {found}"
        if "marked_share" in mark:
            line += f", covering {mark['marked_share']:.0%} of the image"
        if "bit_accuracy" in mark:
            line += f", bit accuracy {mark['bit_accuracy']:.3f} vs the record, matches record: {mark['matches_record']}"
        print(line)
    detector_result = result["detector"]
    if detector_result is None:
        print("detector: none installed (pass --detector DIR)")
    elif "error" in detector_result:
        print(f"detector ({detector_result['method']}): {detector_result['error']}")
    else:
        calibrated = f", p-value {detector_result['p_value']:.4g}" if "p_value" in detector_result else ""
        print(
            f"detector ({detector_result['method']}): score {detector_result['score']:.4f}{calibrated} -> "
            f"{detector_result['verdict']} [{detector_result['operating_point']}]"
        )
        if "domain_detail" in detector_result:
            print(f"  outside the calibrated domain: {detector_result['domain_detail']}")
        if "evidence" in detector_result:
            print(f"  evidence: {detector_result['evidence']}")
        if "p_value" in detector_result:
            print(f"  {calibration_note(detector)}")
        if "localize" in detector_result:
            print(f"  where: {detector_result['localize']}")
    print(f"summary: {result['summary']}")
    return 0


def _print_credentials(credentials: dict | None) -> None:
    if credentials is None:
        print("content credentials (C2PA): none")
        return
    if "error" in credentials:
        print(f"content credentials (C2PA): not checked ({credentials['error']})")
        return
    signer = credentials["signer"]
    print(f"content credentials (C2PA): {credentials['status']}")
    print(f"  signer: {signer['common_name']} (issuer {signer['issuer']}, {signer['algorithm']})")
    print(f"  claim generator: {credentials['claim_generator']}; source type: {credentials['digital_source_type']}")
    if "matches_metadata" in credentials:
        print(f"  terrasynth record matches the metadata: {credentials['matches_metadata']}")
    for failure in credentials["failures"]:
        print(f"  validation: {failure}")


def _add_fake_jpeg(parser) -> None:
    parser.add_argument(
        "--fake-jpeg",
        type=int,
        metavar="Q",
        help="re-encode synthetic images as JPEG at quality Q first, to match "
        "real tiles stored as JPEG (so the detector cannot learn the file format)",
    )


def add_commands(commands, common) -> None:
    detect = commands.add_parser("detect", help="real-vs-synthetic detector: train, evaluate, scan a folder")
    detect_commands = detect.add_subparsers(dest="detect_command", required=True)
    dtrain = detect_commands.add_parser("train", help="train a detector (spectral or CNN) on real and synthetic tiles")
    dtrain.add_argument(
        "--method", choices=["spectral", "cnn", "probe"], help="default spectral; probe is the shipped kind"
    )
    dtrain.add_argument("--real", action="append", required=True, help="folder of real tiles (repeatable)")
    dtrain.add_argument("--fake", action="append", required=True, help="folder of synthetic tiles (repeatable)")
    dtrain.add_argument("--out", required=True, help="detector folder to write")
    dtrain.add_argument("--config", help="DetectorConfig JSON (flags override it)")
    dtrain.add_argument("--input-size", type=int, help="tile size in pixels (default 64)")
    dtrain.add_argument("--epochs", type=int, help="CNN epochs")
    dtrain.add_argument("--max-images", type=int, help="at most this many images per class (seeded sample)")
    dtrain.add_argument(
        "--calibration-fraction", type=float, default=0.2, help="share held back to set the 1%% FPR operating point"
    )
    dtrain.add_argument("--seed", type=int)
    _add_fake_jpeg(dtrain)
    dtrain.set_defaults(func=cmd_detect_train)
    dcal = detect_commands.add_parser(
        "calibrate",
        help="set a probe detector's p-values on known-genuine images of your own region and sensor (no retraining)",
    )
    dcal.add_argument("--real", action="append", required=True, help="folder of genuine images (repeatable)")
    dcal.add_argument("--out", required=True, help="detector folder to write")
    dcal.add_argument("--detector", default="default", help="detector folder or shipped name (probe, the default)")
    dcal.add_argument("--max-images", type=int, help="at most this many images (seeded sample)")
    dcal.add_argument("--seed", type=int, default=0)
    dcal.add_argument("--overwrite", action="store_true", help="replace an existing detector folder")
    dcal.set_defaults(func=cmd_detect_calibrate)
    deval = detect_commands.add_parser("eval", help="AUC, accuracy, TPR at 1%% FPR, F1, clean and perturbed")
    deval.add_argument(
        "--detector", default="default", help="detector folder or shipped name (probe, the default; spectral, cnn)"
    )
    deval.add_argument("--real", action="append", required=True, help="held-out real tiles (repeatable)")
    deval.add_argument("--fake", action="append", required=True, help="held-out synthetic tiles (repeatable)")
    deval.add_argument("--perturb", action="append", help="perturbation name (repeatable; default all)")
    deval.add_argument("--max-images", type=int)
    deval.add_argument("--seed", type=int, default=0)
    _add_fake_jpeg(deval)
    deval.add_argument("--json", action="store_true")
    deval.set_defaults(func=cmd_detect_eval)
    dscan = detect_commands.add_parser("scan", help="score every file in a folder; write a CSV with verdicts")
    dscan.add_argument("folder", help="folder of images (recursive), or one image")
    dscan.add_argument(
        "--detector", default="default", help="detector folder or shipped name (probe, the default; spectral, cnn)"
    )
    dscan.add_argument("--out", required=True, help="CSV to write (file,status,score,verdict,threshold,detail)")
    dscan.add_argument("--no-recursive", action="store_true", help="only the folder's own files")
    dscan.set_defaults(func=cmd_detect_scan)

    dlocal = detect_commands.add_parser(
        "localize", help="where in an image the synthetic pixels are: a probability map and a binary mask"
    )
    dlocal.add_argument("image")
    dlocal.add_argument("--out", required=True, help="binary mask PNG (the probability map goes beside it)")
    dlocal.add_argument("--detector", default="default", help="detector folder or shipped name (probe)")
    dlocal.add_argument("--overwrite", action="store_true", help="replace existing output files")
    dlocal.set_defaults(func=cmd_detect_localize)

    verify = commands.add_parser(
        "verify", help="provenance metadata, Content Credentials, watermark and detector score of one file"
    )
    verify.add_argument("file")
    verify.add_argument("--detector", help="detector folder or shipped name (default: the shipped one, if any)")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_verify)
