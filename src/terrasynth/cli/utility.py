"""``terrasynth utility classify | segment``: does synthetic data help a few-shot learner?"""

from __future__ import annotations

from ..errors import InputError


def cmd_utility(args) -> int:
    import dataclasses

    from ..utility.experiments import ClassificationStudyConfig, SegmentationStudyConfig
    from ..utility.study import parse_list, parse_shots, quick_config, run_study

    task = args.utility_command
    if args.quick:
        config = quick_config(task)
    else:
        config = ClassificationStudyConfig() if task == "classify" else SegmentationStudyConfig()
    changes: dict = {}
    if args.shots:
        changes["shots"] = parse_shots(args.shots)
    if args.ratio:
        changes["ratios"] = parse_list(args.ratio, float, "--ratio")
    if args.conditions:
        changes["conditions"] = parse_list(args.conditions, str, "--conditions")
    if task == "classify" and args.learners:
        changes["learners"] = parse_list(args.learners, str, "--learners")
    flags = {
        "seeds": args.seeds,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "size": args.size,
        "eval_split": args.eval_split,
        "generation_steps": args.generation_steps,
        "generation_size": getattr(args, "generation_size", None),
    }
    changes.update({k: v for k, v in flags.items() if v is not None})
    try:
        config = dataclasses.replace(config, **changes)
    except (TypeError, ValueError) as error:
        raise InputError(None, f"invalid utility settings: {error}") from None
    report = run_study(
        task,
        args.real,
        args.generator,
        args.out,
        config,
        progress=not args.quiet,
        echo=(lambda line: None) if args.quiet else print,
    )
    print(report["table"])
    print(
        f"{report['runs']} runs in {args.out}/runs; tables: {args.out}/summary.md, {args.out}/summary.csv; "
        f"plot: {report['plot']}"
    )
    return 0


def add_commands(commands, common) -> None:
    utility = commands.add_parser("utility", help="does synthetic data help? few-shot real vs real + synthetic grids")
    utility_commands = utility.add_subparsers(dest="utility_command", required=True)
    for name, helptext in (
        ("classify", "scene classification (a folder per class)"),
        ("segment", "land-cover segmentation (paired tiles; synthetic images from real layouts)"),
    ):
        sub = utility_commands.add_parser(name, help=helptext, parents=[common])
        sub.add_argument("--real", required=True, help="real data: scene folder (classify) or paired tiles (segment)")
        sub.add_argument(
            "--generator",
            required=True,
            help="model folder or shipped name (images generated into OUT/synthetic), or a folder of synthetic "
            "images: a class-per-folder tree (classify) or <layout id>-000.png files (segment)",
        )
        sub.add_argument("--out", required=True, help="study folder (runs/, summary.md/.csv/.json, curves.png)")
        sub.add_argument("--shots", help="real examples per class (pairs for segment), e.g. 5,10,25,50,all")
        sub.add_argument("--seeds", type=int, help="seeds per cell (default 3)")
        sub.add_argument("--ratio", help="synthetic-to-real ratio(s), e.g. 1 or 0.5,1,4 (default 1)")
        sub.add_argument("--conditions", help="subset of real,real+synthetic,synthetic,bridged")
        if name == "classify":
            sub.add_argument("--learners", help="effnet,small_cnn (default both)")
        sub.add_argument("--steps", type=int, help="training steps per run (default 300)")
        sub.add_argument("--batch-size", type=int)
        sub.add_argument("--size", type=int, help="image size in memory (default 128; 256 for full size)")
        sub.add_argument("--eval-split", choices=["val", "test"], help="real split scored (default test)")
        sub.add_argument("--generation-steps", type=int, help="sampling steps of a model generator (default 20)")
        if name == "classify":
            sub.add_argument("--generation-size", type=int, help="pixels of generated scenes (default 256)")
        sub.add_argument("--quick", action="store_true", help="a small grid for a first look (flags override it)")
        sub.set_defaults(func=cmd_utility)
