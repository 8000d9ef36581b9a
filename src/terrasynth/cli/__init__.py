"""``terrasynth <command>``: the command line over the whole toolkit.

Errors a user can fix (missing files, bad layouts, wrong model folders) print one line and exit with status 2.
Every command's arguments are checked first (``validation.validate``), before any model loads or file is written.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from ..errors import TerrasynthError
from . import detect, evaluate, generate, study, train, utility, validation

# In this order in ``terrasynth --help``: generate, synthesize, info, demo, train-autoencoder, train, export,
# finetune, train-pix2pix, train-domain, train-segmenter, study, detect, verify, evaluate, utility.
AREAS = (generate, train, study, detect, evaluate, utility)


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line on stderr and exit status 2, like every other error a user can fix."""

    def error(self, message: str):
        command = self.prog.removeprefix("terrasynth").strip() or "terrasynth"
        self.exit(2, f"terrasynth: error: {command}: {message} (see {self.prog} --help)\n")


def _with_parents(common: argparse.ArgumentParser):
    class SubcommandParser(OneLineParser):
        def __init__(self, **kwargs):
            kwargs.setdefault("parents", [common])
            super().__init__(**kwargs)

    return SubcommandParser


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="terrasynth", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"terrasynth {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_with_parents(common))
    for area in AREAS:
        area.add_commands(commands, common)
    validation.add_generate_options(commands.choices["generate"])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        validation.validate(args)
        return args.func(args)
    except TerrasynthError as error:
        print(f"terrasynth: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("terrasynth: interrupted", file=sys.stderr)
        return 130
