"""A throw-away PostgreSQL server for tests: initdb into a temp dir, start on a free
loopback port, yield a URL, stop and delete at the end.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
``postgres`` user (``runuser``); the data and socket directories are chowned to it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HACK = Path(__file__).resolve().parent.parent / "hack" / "postgres.sh"


def bindir() -> Path | None:
    try:
        out = subprocess.run(
            ["bash", str(HACK), "bindir"], capture_output=True, text=True, check=True
        )
    except (subprocess.CalledProcessError, OSError):
        return None
    return Path(out.stdout.strip())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One running server: its URL, and :meth:`restart` (same port, same data)."""

    def __init__(self, bins: Path, root: Path, as_user: list[str], port: int) -> None:
        self.bins, self.root, self.as_user, self.port = bins, root, as_user, port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [
                *self.as_user,
                str(self.bins / "postgres"),
                "-D",
                str(self.root / "data"),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.root),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"PostgreSQL did not start: {err[-2000:]}") from None
                time.sleep(0.1)  # poll interval while the server starts

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (SIGINT: open sessions are ended, as in a restart for
        maintenance) or ``immediate`` (SIGQUIT: a crash-like stop)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            # Signal the postmaster itself: ``runuser`` (when running as root) does not
            # forward signals to it.
            sig = signal.SIGQUIT if mode == "immediate" else signal.SIGINT
            pid_file = self.root / "data" / "postmaster.pid"
            try:
                os.kill(int(pid_file.read_text().split()[0]), sig)
            except (OSError, ValueError, IndexError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()
        self.proc = None

    def restart(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop and start again on the same port with the same data directory."""
        self.stop(mode)
        self.start(timeout)


@contextmanager
def postgres_instance(timeout: float = 30.0) -> Iterator[PostgresServer]:
    """Start a server in a temp dir; yield it (``.url``, ``.restart()``); delete it after."""
    bins = bindir()
    if bins is None:
        raise RuntimeError("PostgreSQL is not installed: run `make postgres`")
    root = Path(tempfile.mkdtemp(prefix="sgop-pg-"))
    data = root / "data"
    data.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
        os.chmod(root, 0o755)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *as_user,
            str(bins / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    server = PostgresServer(bins, root, as_user, _free_port())
    try:
        server.start(timeout)
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_server(timeout: float = 30.0) -> Iterator[str]:
    """Start a server; yield ``postgresql://postgres@127.0.0.1:PORT/postgres``."""
    with postgres_instance(timeout) as server:
        yield server.url
