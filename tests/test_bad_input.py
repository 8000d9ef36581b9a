"""Every command refuses bad input at its boundary: exit 2, one line on stderr, nothing written, in bounded time.

The table ``CASES`` lists, per command, inputs a new user gets wrong: a bad path, a wrong type, an out-of-range
number, nan/inf, an unwritable output, corrupted weights, a wrong CRS. To cover a new command, add rows for it:
``test_every_command_has_bad_input_cases`` enumerates the commands from ``build_parser`` and fails naming any
command without rows. Most rows run in-process (``terrasynth.cli.main``); rows with ``subprocess=True`` run
``python -m terrasynth.cli`` as a user would.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from tests.fake_models import save_tiny_model
from tests.fakes import (
    ORIGIN_X,
    ORIGIN_Y,
    UTM_33N,
    make_paired_tiles,
    make_scene_folder,
    png_header,
    random_mask,
    sample_features,
    write_geojson,
    write_mask_png,
    write_rgb,
)

from terrasynth.cli import build_parser, main

IN_PROCESS_S = 15.0  # generous for a loaded 2-core machine; a refusal takes milliseconds once imports are done
SUBPROCESS_S = 60.0
UNWRITABLE = "/proc/terrasynth-out"  # no one, root included, can create anything under /proc
UTM_GRID = f"{ORIGIN_X},{ORIGIN_Y - 32},{ORIGIN_X + 32},{ORIGIN_Y}"  # a UTM 33N box, given for a WGS84 GeoJSON


@dataclass(frozen=True)
class Case:
    command: str  # the words naming the command, as in `terrasynth --help`
    kind: str  # bad path, wrong type, out of range, nan/inf, unwritable output, corrupted weights, wrong CRS, ...
    argv: Callable[[SimpleNamespace, Path], list]  # (inputs, a fresh output path) -> the arguments after `terrasynth`
    says: str = ""  # a piece of the one error line
    subprocess: bool = False

    @property
    def id(self) -> str:
        return f"{self.command}: {self.kind}: {self.says}"


def generate(i, out, *extra):
    return ["generate", "--model", i.model, "--out", out, "--prompt", "fields", "--steps", "1", "-q", *extra]


def synthesize(i, out, *extra):
    return ["synthesize", i.paired, "--out", out, "--model", i.model, "--steps", "1", "-q", *extra]


def train(command):
    def argv(i, out, *extra):
        return [command, "--paired", i.paired, "--out", out, "--max-steps", "1", *extra]

    return argv


def export(i, out, *extra):
    return ["export", "--model", i.model, "--out", out, "--sampling-steps", "2", *extra]


def finetune(i, out, *extra):
    return ["finetune", "--method", "lora", "--base", i.model, "--data", i.images, "--out", out, *extra]


def serve(i, out, *extra):
    return ["study", "serve", "--real", i.real, "--fake", i.fake, "--db", f"sqlite:///{out}.db", *extra]


def report(i, out, *extra):
    return ["study", "report", "--db", f"sqlite:///{i.study_db}", "--out", out, *extra]


def detect_train(i, out, *extra):
    return ["detect", "train", "--real", i.real, "--fake", i.fake, "--out", out, *extra]


def detect_calibrate(i, out, *extra):
    return ["detect", "calibrate", "--real", i.genuine, "--out", out, *extra]


def detect_eval(i, out, *extra):
    return ["detect", "eval", "--real", i.real, "--fake", i.fake, *extra]


def evaluate(i, out, *extra):
    return ["evaluate", "--real", i.many_real, "--fake", i.many_fake, "--out", out, *extra]


def recognition(command, data):
    def argv(i, out, *extra):
        return [command, data, i.scenes if data == "--scenes" else i.paired, "--out", out, *extra]

    return argv


def utility(task):
    def argv(i, out, *extra):
        real = i.scenes if task == "classify" else i.paired
        return ["utility", task, "--real", real, "--generator", i.model, "--out", out, *extra]

    return argv


def rows(command: str, base: Callable, *cases: tuple) -> list[Case]:
    """``(kind, extra arguments or a function of (inputs, out), says[, subprocess])`` rows on one base command."""
    made = []
    for kind, extra, says, *via in cases:
        if callable(extra):
            argv = extra
        else:

            def argv(i, out, extra=extra):
                return base(i, out, *[e(i, out) if callable(e) else e for e in extra])

        made.append(Case(command, kind, argv, says, bool(via and via[0])))
    return made


def with_out(base: Callable, out: Callable, *extra) -> Callable:
    """``base`` with ``--out`` replaced by ``out(inputs, out)``."""

    def argv(i, path):
        return base(i, out(i, path), *extra)

    return argv


def existing_file(i, out):
    return i.text_file


def under_a_file(i, out):
    return i.text_file / "out"


def unwritable(i, out):
    return UNWRITABLE


CASES: list[Case] = [
    *rows(
        "generate",
        generate,
        ("bad path", ["--layout", "missing.png"], "missing.png: file not found (--layout)"),
        ("wrong type", ["--n", "two"], "invalid int value"),
        ("out of range", ["--n", "0"], "--n 0"),
        ("out of range", ["--seed", "-5"], "--seed -5"),
        ("out of range", ["--seed", str(2**32)], "--seed 4294967296"),
        ("out of range", ["--seed", str(2**32 - 1), "--n", "2"], "up to seed 4294967296"),
        ("out of range", ["--steps", "0"], "--steps 0"),
        ("out of range", ["--init-image", lambda i, o: i.image, "--strength", "1.5"], "--strength 1.5"),
        ("nan/inf", ["--guidance", "nan"], "--guidance nan", True),
        ("nan/inf", ["--guidance", "inf"], "--guidance inf"),
        ("nan/inf", ["--guidance-rescale=-inf"], "--guidance-rescale -inf"),
        ("corrupted weights", lambda i, out: generate(i, out)[:2] + [i.broken_model] + generate(i, out)[3:], "trunc"),
        ("bad path", lambda i, out: ["generate", "--model", "no-such-model", "--out", out], "model folder not found"),
        ("too small", ["--layout", lambda i, o: i.tiny_mask], "below the 16 px minimum"),
        ("too large", ["--height", "4096", "--width", "4096"], "over --max-pixels"),
        ("too large", ["--layout", lambda i, o: i.mask, "--max-pixels", "100"], "over --max-pixels 100"),
        ("too large", ["--init-image", lambda i, o: i.bomb], "20000×20000 = 400,000,000 pixels, over --max-pixels"),
        ("wrong CRS", ["--layout", lambda i, o: i.geojson, "--grid", "0,0,64,64"], "without --grid-crs"),
        (
            "wrong CRS",
            ["--layout", lambda i, o: i.geojson, "--grid", "0,0,64,64", "--grid-crs", "EPSG:32633"],
            "no feature falls inside",
        ),
        ("wrong CRS", ["--layout", lambda i, o: i.geojson, "--grid-crs", "EPSG:not-a-crs"], "is not a CRS"),
        ("wrong CRS", ["--layout", lambda i, o: i.wgs84_geojson, "--grid", UTM_GRID], "CRS EPSG:4326"),
        ("nan/inf", ["--layout", lambda i, o: i.geojson, "--grid", "0,0,nan,64"], "--grid nan"),
        ("credentials", ["--c2pa-cert", lambda i, o: i.ca_cert, "--c2pa-key", lambda i, o: i.sec1_key], "pkcs8 -topk8"),
        ("credentials", ["--c2pa-cert", lambda i, o: i.self_signed, "--c2pa-key", lambda i, o: i.pkcs8_key], "self-"),
        ("credentials", ["--c2pa-cert", lambda i, o: i.self_signed], "needs --c2pa-key"),
        ("unwritable output", with_out(generate, existing_file), "an existing file"),
        ("unwritable output", with_out(generate, under_a_file), "is a file"),
        ("unwritable output", with_out(generate, unwritable), "cannot write"),
        ("existing output", with_out(generate, lambda i, o: i.earlier_run, "--n", "1"), "--overwrite"),
    ),
    *rows(
        "synthesize",
        synthesize,
        ("bad path", lambda i, out: ["synthesize", "missing", "--out", out], "no such file or folder"),
        ("wrong type", ["--per-layout", "x"], "invalid int value"),
        ("out of range", ["--per-layout", "0"], "--per-layout 0"),
        ("out of range", ["--seed", "-1"], "--seed -1"),
        ("out of range", ["--batch-size", "0"], "--batch-size 0"),
        ("nan/inf", ["--guidance", "nan"], "--guidance nan"),
        ("corrupted weights", lambda i, out: synthesize(i, out)[:4] + ["--model", i.broken_model], "truncated"),
        ("credentials", ["--c2pa-cert", lambda i, o: i.ca_cert, "--c2pa-key", lambda i, o: i.sec1_key], "pkcs8 -topk8"),
        ("unwritable output", with_out(synthesize, existing_file), "an existing file"),
        ("unwritable output", with_out(synthesize, unwritable), "cannot write"),
    ),
    *rows(
        "info",
        lambda i, out, *extra: ["info", *extra],
        ("bad path", ["missing.png"], "file not found (FILE)"),
        ("bad path", [lambda i, o: i.real], "a folder, where a file is wanted"),
        ("wrong type", [lambda i, o: i.image, "--json=yes"], "ignored explicit argument"),
        ("too large", [lambda i, o: i.bomb], "image of 400,000,000 pixels is above the"),
    ),
    *rows(
        "verify",
        lambda i, out, *extra: ["verify", *extra],
        ("bad path", ["missing.png"], "file not found (FILE)"),
        ("bad path", [lambda i, o: i.image, "--detector", "no-such-detector"], "not a detector folder"),
        ("corrupted weights", [lambda i, o: i.image, "--detector", lambda i, o: i.broken_detector], "truncated"),
        ("too large", [lambda i, o: i.bomb], "image of 400,000,000 pixels is above the 64,000,000-pixel limit"),
    ),
    *rows(
        "demo",
        lambda i, out, *extra: ["demo", "--out", out, *extra],
        ("wrong type", ["--steps", "x"], "invalid int value"),
        ("out of range", ["--steps", "0"], "--steps 0"),
        ("unwritable output", with_out(lambda i, out: ["demo", "--out", out], existing_file), "an existing file"),
        ("unwritable output", with_out(lambda i, out: ["demo", "--out", out], unwritable), "cannot write"),
    ),
    *[
        case
        for command in ("train", "train-autoencoder", "train-pix2pix")
        for case in rows(
            command,
            train(command),
            ("bad path", ["--paired", "missing"], "folder not found (--paired)"),
            ("bad path", ["--config", "missing.json"], "file not found (--config)"),
            ("bad path", ["--resume", "missing"], "folder not found (--resume)"),
            ("wrong type", ["--batch-size", "x"], "invalid int value"),
            ("out of range", ["--max-steps", "0"], "--max-steps 0"),
            ("out of range", ["--checkpoint-every", "-1"], "--checkpoint-every -1"),
            ("unwritable output", with_out(train(command), existing_file), "an existing file"),
            ("unwritable output", with_out(train(command), unwritable), "cannot write"),
            ("existing output", with_out(train(command), lambda i, o: i.run_with_checkpoint), "--resume latest"),
        )
    ],
    *rows(
        "train",
        train("train"),
        ("corrupted weights", ["--init-from", lambda i, o: i.broken_model], "truncated"),
        ("bad path", ["--autoencoder", "missing"], "folder not found (--autoencoder)"),
    ),
    *rows(
        "export",
        export,
        ("bad path", lambda i, out: ["export", "--run", "missing", "--out", out], "folder not found (--run)"),
        (
            "corrupted weights",
            lambda i, out: ["export", "--model", i.broken_model, "--out", out, "--name", "x"],
            "trun",
        ),
        ("corrupted weights", ["--vae", lambda i, o: i.broken_model], "truncated"),
        ("wrong type", ["--sampling-steps", "x"], "invalid int value"),
        ("out of range", ["--sampling-steps", "0"], "--sampling-steps 0"),
        ("nan/inf", ["--mean-prior-start", "nan"], "--mean-prior-start nan"),
        ("nan/inf", ["--guidance-scale", "nan"], "--guidance-scale nan"),
        ("unwritable output", with_out(export, existing_file), "an existing file"),
        ("unwritable output", with_out(export, unwritable), "cannot write"),
    ),
    *rows(
        "finetune",
        finetune,
        ("bad path", ["--data", "missing"], "folder not found (--data)"),
        ("wrong type", ["--resolution", "x"], "invalid int value"),
        ("wrong choice", ["--method", "magic"], "invalid choice"),
        ("out of range", ["--seed", "-1"], "--seed -1"),
        ("out of range", ["--gsd", "-1"], "--gsd -1"),
        ("nan/inf", ["--learning-rate", "nan"], "--learning-rate nan"),
        ("corrupted weights", ["--base", lambda i, o: i.broken_model], "truncated"),
        ("unwritable output", with_out(finetune, existing_file), "an existing file"),
        ("unwritable output", with_out(finetune, unwritable), "cannot write"),
    ),
    *rows(
        "study serve",
        serve,
        (
            "bad path",
            lambda i, out: ["study", "serve", "--real", "missing", "--fake", i.fake],
            "folder not found (--real)",
        ),
        ("wrong type", ["--port", "http"], "invalid int value"),
        ("out of range", ["--port", "70000"], "--port 70000"),
        ("out of range", ["--images-per-rater", "0"], "--images-per-rater 0"),
        ("out of range", ["--seed", "-1"], "--seed -1"),
        ("unwritable output", lambda i, out: serve(i, out)[:-1] + [f"sqlite:///{i.text_file}/s.db"], "does not exist"),
        ("unwritable output", lambda i, out: serve(i, out)[:-1] + [f"sqlite:///{i.real}"], "a folder"),
    ),
    *rows(
        "study report",
        report,
        ("bad path", lambda i, out: ["study", "report", "--db", "sqlite:///missing.db", "--out", out], "not found"),
        ("bad path", ["--scores", "detector=missing.csv"], "scores file not found (--scores)"),
        ("wrong type", ["--seed", "x"], "invalid int value"),
        ("out of range", ["--seed", "-1"], "--seed -1"),
        ("unwritable output", with_out(report, existing_file), "an existing file"),
        ("unwritable output", with_out(report, unwritable), "cannot write"),
    ),
    *rows(
        "detect train",
        detect_train,
        ("bad path", lambda i, out: ["detect", "train", "--real", "missing", "--fake", i.fake, "--out", out], "not f"),
        ("wrong type", ["--input-size", "x"], "invalid int value"),
        ("out of range", ["--calibration-fraction", "1.5"], "--calibration-fraction 1.5"),
        ("out of range", ["--fake-jpeg", "0"], "--fake-jpeg 0"),
        ("nan/inf", ["--calibration-fraction", "nan"], "--calibration-fraction nan"),
        ("unwritable output", with_out(detect_train, existing_file), "an existing file"),
        ("unwritable output", with_out(detect_train, unwritable), "cannot write"),
    ),
    *rows(
        "detect calibrate",
        detect_calibrate,
        (
            "bad path",
            lambda i, out: ["detect", "calibrate", "--real", "missing", "--out", out],
            "folder not found (--real)",
        ),
        ("too few images", lambda i, out: ["detect", "calibrate", "--real", i.real, "--out", out], "at least 50"),
        ("wrong type", ["--max-images", "x"], "invalid int value"),
        ("out of range", ["--max-images", "10"], "--max-images 10 is under 50"),
        ("out of range", ["--seed", "-1"], "--seed -1"),
        ("wrong type", ["--detector", "spectral"], "no calibrated verdicts"),
        ("corrupted weights", ["--detector", lambda i, o: i.broken_detector], "truncated"),
        ("unwritable output", with_out(detect_calibrate, existing_file), "an existing file"),
        ("unwritable output", with_out(detect_calibrate, unwritable), "cannot write"),
    ),
    *rows(
        "detect eval",
        detect_eval,
        (
            "bad path",
            lambda i, out: ["detect", "eval", "--real", i.real, "--fake", "missing"],
            "folder not found (--fake)",
        ),
        ("wrong type", ["--max-images", "x"], "invalid int value"),
        ("out of range", ["--max-images", "0"], "--max-images 0"),
        ("out of range", ["--seed", "-1"], "--seed -1"),
        ("corrupted weights", ["--detector", lambda i, o: i.broken_detector], "truncated"),
    ),
    *rows(
        "detect scan",
        lambda i, out, *extra: ["detect", "scan", i.real, "--out", f"{out}.csv", *extra],
        (
            "bad path",
            lambda i, out: ["detect", "scan", "missing", "--out", f"{out}.csv"],
            "no such file or folder",
            True,
        ),
        ("unwritable output", lambda i, out: ["detect", "scan", i.real, "--out", i.real], "an existing folder"),
        ("unwritable output", lambda i, out: ["detect", "scan", i.real, "--out", f"{i.text_file}/s.csv"], "not exist"),
        ("unwritable output", lambda i, out: ["detect", "scan", i.real, "--out", f"{UNWRITABLE}.csv"], "cannot write"),
        ("corrupted weights", ["--detector", lambda i, o: i.broken_detector], "truncated"),
    ),
    *rows(
        "detect localize",
        lambda i, out, *extra: ["detect", "localize", i.image, "--out", f"{out}.png", *extra],
        ("bad path", lambda i, out: ["detect", "localize", "missing.png", "--out", f"{out}.png"], "file not found"),
        ("unwritable output", lambda i, out: ["detect", "localize", i.image, "--out", f"{out}.jpg"], "end in .png"),
        ("unwritable output", lambda i, out: ["detect", "localize", i.image, "--out", f"{out}/m.png"], "not exist"),
        (
            "too large",
            lambda i, out: ["detect", "localize", i.bomb, "--out", f"{out}.png"],
            "image of 400,000,000 pixels is above the 64,000,000-pixel limit",
        ),
        ("corrupted weights", ["--detector", lambda i, o: i.broken_detector], "truncated"),
    ),
    *rows(
        "evaluate",
        evaluate,
        ("bad path", lambda i, out: ["evaluate", "--real", "missing", "--fake", i.fake, "--out", out], "not found"),
        ("too few", lambda i, out: ["evaluate", "--real", i.real, "--fake", i.many_fake, "--out", out], "at least 12"),
        ("wrong type", ["--kid-subsets", "x"], "invalid int value"),
        ("out of range", ["--kid-subsets", "0"], "--kid-subsets 0"),
        ("out of range", ["--features", "magic"], "unknown magic"),
        ("nan/inf", ["--memorisation-quantile", "nan"], "--memorisation-quantile nan"),
        ("corrupted weights", ["--segmenter", lambda i, o: i.broken_model], "truncated"),
        ("unwritable output", with_out(evaluate, existing_file), "an existing file"),
        ("unwritable output", with_out(evaluate, unwritable), "cannot write"),
    ),
    *[
        case
        for command, data in (("train-domain", "--scenes"), ("train-segmenter", "--paired"))
        for case in rows(
            command,
            recognition(command, data),
            ("bad path", lambda i, out, c=command, d=data: [c, d, "missing", "--out", out], "folder not found"),
            ("wrong type", ["--steps", "x"], "invalid int value"),
            ("out of range", ["--size", "0"], "--size 0"),
            ("out of range", ["--seed", "-1"], "--seed -1"),
            ("unwritable output", with_out(recognition(command, data), existing_file), "an existing file"),
        )
    ],
    *[
        case
        for task in ("classify", "segment")
        for case in rows(
            f"utility {task}",
            utility(task),
            ("bad path", ["--real", "missing"], "folder not found (--real)"),
            ("wrong type", ["--seeds", "x"], "invalid int value", task == "classify"),
            ("out of range", ["--seeds", "0"], "--seeds 0"),
            ("corrupted weights", lambda i, out, t=task: utility(t)(i, out)[:5] + [i.broken_model, "--out", out], "tr"),
            ("unwritable output", with_out(utility(task), existing_file), "an existing file"),
            ("unwritable output", with_out(utility(task), unwritable), "cannot write"),
        )
    ],
]


def command_paths(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    """Every runnable command of the parser, as the words naming it (``detect scan``)."""
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                words = f"{prefix} {name}".strip()
                found |= command_paths(sub, words) or {words}
    return found


def test_every_command_has_bad_input_cases():
    covered = {case.command for case in CASES}
    missing = sorted(command_paths(build_parser()) - covered)
    assert not missing, f"commands without bad-input cases in tests/test_bad_input.py: {', '.join(missing)}"
    assert covered <= command_paths(build_parser()), "cases for commands that no longer exist"


def _make_chain(folder: Path) -> SimpleNamespace:
    """A CA-issued signing certificate with its key as PKCS#8 and as SEC1, and a self-signed certificate."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common_name):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def certificate(subject, public_key, issuer, signing_key):
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(signing_key, hashes.SHA256())
        )

    pem = serialization.Encoding.PEM
    signed = certificate("signer", key.public_key(), "test CA", ca_key).public_bytes(pem)
    ca = certificate("test CA", ca_key.public_key(), "test CA", ca_key).public_bytes(pem)
    self_signed = certificate("me", key.public_key(), "me", key).public_bytes(pem)
    none = serialization.NoEncryption()
    paths = SimpleNamespace(
        ca_cert=folder / "chain.pem",
        self_signed=folder / "self-signed.pem",
        pkcs8_key=folder / "key.pem",
        sec1_key=folder / "key-sec1.pem",
    )
    folder.mkdir(parents=True)
    paths.ca_cert.write_bytes(signed + ca)
    paths.self_signed.write_bytes(self_signed)
    paths.pkcs8_key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, none))
    paths.sec1_key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, none))
    return paths


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> SimpleNamespace:
    """Valid inputs for every command, plus the broken ones the rows name; made once for the module."""
    root = tmp_path_factory.mktemp("bad-input")
    rng = np.random.default_rng(0)
    model = save_tiny_model(root / "model")
    broken_model = root / "broken-model"
    shutil.copytree(model, broken_model)
    _truncate(next(iter(sorted(broken_model.rglob("*.safetensors")))))
    broken_detector = root / "broken-detector"
    broken_detector.mkdir()
    (broken_detector / "detector.json").write_text("{}")
    (broken_detector / "weights.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    names = ("real", "fake", "many-real", "many-fake", "genuine")
    real, fake, many_real, many_fake, genuine = (root / name for name in names)
    for folder, count in ((real, 4), (fake, 4), (many_real, 12), (many_fake, 6), (genuine, 50)):
        for index in range(count):
            write_rgb(folder / f"{index:04d}.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    run_with_checkpoint = root / "run"
    (run_with_checkpoint / "checkpoint-1").mkdir(parents=True)
    (run_with_checkpoint / "checkpoint-1" / "state.json").write_text('{"step": 1}')
    earlier_run = root / "earlier-run"
    write_rgb(earlier_run / "generated-000.png", np.zeros((16, 16, 3), np.uint8))
    text_file = root / "notes.txt"
    text_file.write_text("not a folder\n")
    study_db = root / "study.db"
    study_db.write_bytes(b"")
    images = root / "images"
    write_rgb(images / "a.png", np.zeros((32, 32, 3), np.uint8))
    (root / "bomb.png").write_bytes(png_header(20000, 20000))
    return SimpleNamespace(
        root=root,
        model=model,
        broken_model=broken_model,
        broken_detector=broken_detector,
        real=real,
        fake=fake,
        genuine=genuine,
        many_real=many_real,
        many_fake=many_fake,
        image=real / "0000.png",
        images=images,
        bomb=root / "bomb.png",
        mask=write_mask_png(root / "layout.png", random_mask(rng, 32)),
        tiny_mask=write_mask_png(root / "tiny.png", random_mask(rng, 3)),
        geojson=write_geojson(root / "fields.geojson", sample_features(), crs=UTM_33N),
        wgs84_geojson=write_geojson(root / "wgs84.geojson", sample_features(15.0, 50.0, 0.001)),
        paired=make_paired_tiles(root / "paired", n=2),
        scenes=make_scene_folder(root / "scenes", n=1),
        earlier_run=earlier_run,
        run_with_checkpoint=run_with_checkpoint,
        text_file=text_file,
        study_db=study_db,
        **vars(_make_chain(root / "c2pa")),
    )


def _snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folders`` with its size and modification time."""
    found = {}
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            stat = path.lstat()
            found[str(path)] = (stat.st_size if path.is_file() else -1, stat.st_mtime_ns)
    return found


def _run(argv: list[str], capsys, in_subprocess: bool, cwd: Path) -> tuple[int, str]:
    if in_subprocess:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(
            [sys.executable, "-m", "terrasynth.cli", *argv],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=env,
            timeout=SUBPROCESS_S,
        )
        return done.returncode, done.stderr
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own refusals
        code = exit.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default outputs (study.db, terrasynth-demo) would land here
    out = tmp_path / "out"
    argv = [str(a) for a in case.argv(inputs, out)]
    before = _snapshot(inputs.root, tmp_path)
    started = time.monotonic()
    code, stderr = _run(argv, capsys, case.subprocess, tmp_path)
    elapsed = time.monotonic() - started
    lines = stderr.strip().splitlines()
    assert code == 2, f"exit {code} for {argv}: {stderr}"
    assert len(lines) == 1 and lines[0].startswith("terrasynth: error: "), stderr
    assert case.says in lines[0], lines[0]
    assert _snapshot(inputs.root, tmp_path) == before, "something was written"
    assert not Path(UNWRITABLE).exists()
    assert elapsed < (SUBPROCESS_S if case.subprocess else IN_PROCESS_S), f"took {elapsed:.1f} s"


def test_evaluate_hint_counts_both_halves_of_the_real_set():
    """The real set is halved for the floor, so the hint asks for twice the per-set minimum."""
    from terrasynth.errors import InputError
    from terrasynth.evaluate.evaluation import MIN_PER_SET, check_set_size

    with pytest.raises(InputError, match=f"give at least {2 * MIN_PER_SET} images"):
        check_set_size(4, "real halves", MIN_PER_SET, needed=2 * MIN_PER_SET)
    with pytest.raises(InputError, match=f"give at least {MIN_PER_SET} images"):
        check_set_size(4, "fake")


def test_a_folder_the_user_cannot_write_is_named_with_the_reason(tmp_path, monkeypatch):
    """As root (these tests' usual user) permissions do not bite, so the refusal of the probe file is simulated:
    the error names the output, the folder tried and the reason, and leaves nothing behind."""
    import tempfile

    from terrasynth.cli import validation
    from terrasynth.errors import InputError

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(InputError, match=r"out: --out: cannot write in .* \(Permission denied\)"):
        validation.output_folder(tmp_path / "out")
    with pytest.raises(InputError, match=r"scores\.csv: --out: cannot write in .* \(Permission denied\)"):
        validation.output_file(tmp_path / "scores.csv")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere; the simulated test above stands in")
def test_a_read_only_folder_is_refused_for_a_normal_user(tmp_path, capsys):
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    code = main(["demo", "--out", str(folder / "out")])
    assert code == 2 and "cannot write" in capsys.readouterr().err and list(folder.iterdir()) == []
