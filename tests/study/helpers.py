"""Study test helpers: tiny real and synthetic tile sets, and a live server on 127.0.0.1 (uvicorn in a
thread, on a socket bound to a free port)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
from tests.fakes import make_provenance_record, write_rgb

from terrasynth.generate.provenance import utc_timestamp, write_png

ADMIN_PASSWORD = "correct horse battery staple"


def make_study_sets(root: Path, n_real: int = 4, n_fake: int = 4, size: int = 32, seed: int = 0) -> tuple[Path, Path]:
    """``root/real`` (JPEG and PNG, no metadata) and ``root/fake`` (PNG with a provenance record, as generated
    files have). File names overlap between the sets on purpose."""
    rng = np.random.default_rng(seed)
    real, fake = root / "real", root / "fake"
    for i in range(n_real):
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        write_rgb(real / f"{i:04d}.{'jpg' if i % 2 else 'png'}", pixels)
    for i in range(n_fake):
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        record = make_provenance_record(
            i, size, model="fake", steps=1, guidance_scale=1.0, scheduler="ddim", created=utc_timestamp()
        )
        fake.mkdir(parents=True, exist_ok=True)
        write_png(fake / f"{i:04d}.png", pixels, record)
    return real, fake


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a background thread; ``stop()`` ends it within seconds."""

    def __init__(self, app, startup_timeout: float = 20.0):
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + startup_timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.stop()
                raise RuntimeError("the study server did not start")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.socket.close()
        if self.thread.is_alive():
            raise RuntimeError("the study server did not stop")
