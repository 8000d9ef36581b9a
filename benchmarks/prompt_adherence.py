"""Prompt adherence of text-only generation: the scene classifier's accuracy on images generated for each scene
prompt, divided by its accuracy on real tiles of those scenes (the ceiling).

    python benchmarks/prompt_adherence.py --scenes ../shared/data/rsscn7 --per-class 8

The classifier is the shipped domain encoder (EfficientNet-Lite0 fine-tuned on the RSSCN7 train split; val
accuracy in src/terrasynth/weights/domain/training.json) unless --classifier names another. Real tiles are the
``--split`` (default test) of the scene folder, which neither the classifier nor the model trained on. Images are
generated with no layout from the class's caption paraphrases ("aerial image of a forest", "satellite image of a
forest", ...), cycling through them, and cached under ``--work``. Prints the table and the command; writes
``--json`` atomically.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

from terrasynth.data.scene_folder import SceneFolder
from terrasynth.data.transforms import Resize
from terrasynth.evaluate.prompt_adherence import adherence_ratio, class_accuracies
from terrasynth.files import write_json_atomic
from terrasynth.models.registry import WEIGHTS_DIR


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", default="../shared/data/rsscn7")
    parser.add_argument("--split", default="test", help="real tiles scored (the ceiling)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--classifier", help=f"scene classifier folder (default: {WEIGHTS_DIR / 'domain'})")
    parser.add_argument("--per-class", type=int, default=8, help="generated images per scene class")
    parser.add_argument("--steps", type=int, help="sampling steps (default: the model's own)")
    parser.add_argument("--guidance", type=float, help="guidance scale (default: the model's own)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="runs/prompt-adherence-work", help="cache of generated images")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


@torch.no_grad()
def predict(classifier, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    classifier.eval()
    return torch.cat(
        [classifier(images[i : i + batch_size].float()).argmax(1) for i in range(0, len(images), batch_size)]
    )


def stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    samples = [dataset[i] for i in range(len(dataset))]
    return torch.stack([s["image"] for s in samples]), torch.tensor([int(s["label"]) for s in samples])


def main(argv=None, bundle=None) -> dict:
    args = parse_args(argv)
    command = "python benchmarks/prompt_adherence.py " + " ".join(sys.argv[1:] if argv is None else argv)
    from terrasynth.generate.batch import generate_for_scene_classes
    from terrasynth.generate.sampling import Sampling
    from terrasynth.models.recognition import Classifier, load_model

    classifier_folder = Path(args.classifier) if args.classifier else WEIGHTS_DIR / "domain"
    classifier = load_model(classifier_folder)
    if not isinstance(classifier, Classifier):
        raise SystemExit(f"{classifier_folder}: expected a scene classifier folder, got a segmenter")
    names = list(classifier.config.class_names)

    # 1. real tiles: the ceiling
    real = SceneFolder(args.scenes, args.split, transforms=Resize(args.size))
    real_images, real_labels = stack(real)
    # the folder's class order may differ from the classifier's: map by name
    to_classifier = torch.tensor([names.index(c) for c in real.classes])
    real_scores = class_accuracies(predict(classifier, real_images), to_classifier[real_labels], len(names))

    # 2. generated: per-class images from the scene prompts alone
    if bundle is None:
        from terrasynth.generate.api import load_pipeline

        bundle = load_pipeline(args.model)
    sampling = Sampling(args.steps, args.guidance)
    out = Path(args.work) / f"model-{bundle[2][:12]}-steps{args.steps}-g{args.guidance}-seed{args.seed}-{args.size}px"
    start = time.perf_counter()
    generate_for_scene_classes(
        bundle, real.classes, out, args.per_class, sampling, args.seed, args.size, progress=not args.quiet
    )
    seconds = time.perf_counter() - start
    generated = SceneFolder(out, "all", transforms=Resize(args.size))
    generated_images, generated_labels = stack(generated)
    to_classifier_generated = torch.tensor([names.index(c) for c in generated.classes])
    predicted = predict(classifier, generated_images)
    generated_scores = class_accuracies(predicted, to_classifier_generated[generated_labels], len(names))
    ratio = adherence_ratio(generated_scores, real_scores)
    confusion = torch.zeros(len(names), len(names), dtype=torch.long)
    for t, p in zip(to_classifier_generated[generated_labels], predicted):
        confusion[t, p] += 1

    results = {
        "command": command,
        "model": bundle[1],
        "model_sha256": bundle[2],
        "classifier": str(classifier_folder),
        "classes": names,
        "real": {**real_scores, "split": args.split, "scenes": str(args.scenes)},
        "generated": {**generated_scores, "per_class_n": args.per_class, "seed": args.seed},
        "adherence_ratio": ratio,
        "confusion_generated": confusion.tolist(),
        "generation_seconds": seconds,
    }
    print(f"command: {command}")
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"model {bundle[1]} (sha256 {bundle[2][:12]}); classifier {classifier_folder}")
    print(f"{'class':12s} {'real acc':>9s} {'generated acc':>14s}")
    for c, name in enumerate(names):
        r, g = real_scores["per_class"][c], generated_scores["per_class"][c]
        print(f"{name:12s} {'-' if r is None else f'{r:9.3f}'} {'-' if g is None else f'{g:14.3f}'}")
    print(
        f"mean over classes: real {sum(v for v in real_scores['per_class'] if v is not None) / len(names):.3f} "
        f"(N = {real_scores['n']}), generated "
        f"{sum(v for v in generated_scores['per_class'] if v is not None) / len(names):.3f} "
        f"(N = {generated_scores['n']}, {args.per_class} per class)"
    )
    print(f"prompt adherence (generated ÷ real, mean per-class accuracy): {ratio:.3f}")
    print("confusion on generated images (rows: prompted class, columns: predicted)")
    print("  " + " ".join(f"{n[:6]:>6s}" for n in names))
    for name, row in zip(names, confusion.tolist()):
        print(f"  {' '.join(f'{v:6d}' for v in row)}  {name}")
    if args.json:
        write_json_atomic(args.json, results)
    return results


if __name__ == "__main__":
    main()
