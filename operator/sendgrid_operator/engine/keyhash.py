"""Email keys for the first pass, hashed in a helper process while the pass goes on.

Why: the state keys every contact by ``blake2b(email, digest_size=8, key=salt)`` (so it
holds no address), about 0.8 µs of Python per row that holds the GIL. In the first pass
that cost twice: the rows' own hashing, and the read-ahead thread waiting for the GIL
between its kernel calls while this thread hashed. A helper process (a bare interpreter,
``python -I -S``, a few MB) hashes the fast path's emails instead; this process sends it
each run of emails as the Arrow buffers they already are and puts the keys in place when
they come back, in order, while it spools the next rows.

The helper only makes the pass faster, never different: keys are the same bytes as
:meth:`~sendgrid_operator.engine.state.ExportState.email_key`, and when the helper cannot
be started, dies or answers short, the keys it owes are computed here. The salt reaches
it on its standard input, never on its command line.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import struct
import subprocess
import sys
import threading
from array import array
from collections import deque
from typing import IO

import pyarrow as pa

log = logging.getLogger(__name__)

#: Below this many fast-path rows a run hashes them itself (starting the helper costs
#: ~20 ms, which small exports would not win back).
HELPER_MIN_ROWS = 65_536
#: Runs of emails sent but not yet hashed; bounds the memory held for them.
MAX_PENDING = 2

_HEADER = struct.Struct("<III")  # rows, first offset, data length; rows == 0: stop
_PEAK = struct.Struct("<Q")

# The helper: reads the salt, then runs of emails (offsets + data), answers each with
# 8-byte digests in order; at the end, its peak resident memory (KiB).
_HELPER = r"""
import sys, struct
from array import array
try:
    from _blake2 import blake2b  # hashlib's own, without loading OpenSSL (4 MB)
except ImportError:
    from hashlib import blake2b
read, write = sys.stdin.buffer.read, sys.stdout.buffer.write
flush = sys.stdout.buffer.flush
def exact(n):
    data = read(n)
    if len(data) != n:
        raise SystemExit(0)
    return data
key = exact(exact(1)[0])
keyed = blake2b(digest_size=8, key=key).copy  # the key's block, compressed once
header = struct.Struct("<III")
while True:
    rows, base, size = header.unpack(exact(header.size))
    if rows == 0:
        break
    offsets = array("i")
    offsets.frombytes(exact(4 * (rows + 1)))
    data = exact(size)
    for at in range(0, rows, 4096):
        write(b"".join([
            (h := keyed()).update(data[a - base:b - base]) or h.digest()
            for a, b in zip(offsets[at:at + 4096], offsets[at + 1:at + 4097])
        ]))
    flush()
peak = 0
try:  # Linux only; elsewhere the peak is not known (0)
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1])
except OSError:
    pass
write(struct.pack("<Q", peak))
flush()
"""


class _Run:
    """``count`` keys owed at ``start`` of the keys array, for ``emails``."""

    __slots__ = ("count", "digests", "done", "emails", "start")

    def __init__(self, start: int, emails: pa.Array) -> None:
        self.start = start
        self.count = len(emails)
        self.emails: pa.Array | None = emails
        self.digests: bytes | None = None
        self.done = threading.Event()  # set when the helper answered or cannot


class KeyHasher:
    """Appends email keys to a keys array, hashing large runs in a helper process.

    :meth:`add` appends placeholders for a run of emails and queues them; :meth:`fill`
    puts the finished ones in place (call it before reading the keys), and :meth:`close`
    stops the helper. Keys are ``int.from_bytes(digest, "little")``, as the state's.
    """

    def __init__(self, salt: bytes, *, min_rows: int | None = None) -> None:
        self._salt = salt
        self._min_rows = HELPER_MIN_ROWS if min_rows is None else min_rows
        self._seen = 0
        self._runs: deque[_Run] = deque()
        self._queue: queue.Queue[_Run | None] = queue.Queue(maxsize=MAX_PENDING)
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._failed = False
        self.helper_peak_kib = 0
        self.helper_rows = 0

    # -- the caller's side ---------------------------------------------------------------
    def add(self, keys: array[int], emails: pa.Array) -> None:
        """Append the keys of ``emails`` (a string array of lower-cased addresses) to
        ``keys``: at once, or as placeholders that :meth:`fill` replaces."""
        self._seen += len(emails)
        if (
            self._failed
            or emails.type != pa.string()
            or (self._proc is None and (self._seen < self._min_rows or not self._start()))
        ):
            keys.extend(_as_keys(self._digests(emails)))
            return
        run = _Run(len(keys), emails)
        keys.frombytes(bytes(8 * run.count))
        self._runs.append(run)
        if not self._enqueue(run):
            run.done.set()  # no helper to answer: fill() hashes it here
        self._place(keys, wait=False)

    def fill(self, keys: array[int]) -> None:
        """Put every owed key in place (waits for the helper)."""
        self._place(keys, wait=True)

    def ready(self, keys: array[int]) -> int:
        """Put the answered keys in place without waiting; keys before the returned
        index are final."""
        self._place(keys, wait=False)
        return self._runs[0].start if self._runs else len(keys)

    def close(self) -> None:
        """Stop the helper (idempotent); keys still owed are dropped."""
        if self._thread is not None:
            self._enqueue(None)
            self._thread.join()
            self._thread = None
        if self._proc is not None:
            stdin = self._proc.stdin
            if stdin is not None and not stdin.closed:
                with contextlib.suppress(OSError):
                    stdin.close()  # the helper stops at the end of its input
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck helper
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        self._runs.clear()

    def _place(self, keys: array[int], wait: bool) -> None:
        runs = self._runs
        while runs:
            run = runs[0]
            if run.digests is None:
                if not wait:
                    return
                self._wait(run)
            digests = run.digests
            if digests is None:  # the helper failed before answering: hashed here
                assert run.emails is not None
                digests = self._digests(run.emails)
            keys[run.start : run.start + run.count] = _as_keys(digests)
            runs.popleft()

    def _enqueue(self, item: _Run | None) -> bool:
        """Queue ``item`` for the helper's thread, unless that thread has ended."""
        thread = self._thread
        while thread is not None and thread.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        self._failed = True
        return False

    def _wait(self, run: _Run) -> None:
        thread = self._thread
        while not run.done.is_set():
            if thread is None or not thread.is_alive():
                return
            run.done.wait(timeout=0.5)

    def _digests(self, emails: pa.Array) -> bytes:
        # a copy of the keyed state per email: the key's block is compressed once
        keyed = hashlib.blake2b(digest_size=8, key=self._salt).copy
        values = emails.cast(pa.binary()).to_pylist()
        return b"".join([(h := keyed()).update(e) or h.digest() for e in values])  # type: ignore[func-returns-value]

    # -- the helper ----------------------------------------------------------------------
    def _start(self) -> bool:
        if not sys.executable or getattr(sys, "frozen", False):
            self._failed = True  # no interpreter to run the helper with (a frozen binary)
            return False
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _HELPER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            log.debug("no key-hashing helper (%s); hashing here", exc)
            self._failed = True
            return False
        self._proc = proc
        self._thread = threading.Thread(
            target=self._serve, args=(proc,), name="sgexport-keyhash", daemon=True
        )
        self._thread.start()
        return True

    def _serve(self, proc: subprocess.Popen[bytes]) -> None:
        """The helper's I/O, one run at a time (a run is written, then its answer read)."""
        stdin, stdout = proc.stdin, proc.stdout
        assert stdin is not None and stdout is not None
        current: _Run | None = None
        try:
            stdin.write(bytes([len(self._salt)]) + self._salt)
            while True:
                current = run = self._queue.get()
                if run is None:
                    break
                emails = run.emails
                assert emails is not None
                _, offsets, data = emails.buffers()
                first = emails.offset
                bounds = memoryview(offsets)[4 * first : 4 * (first + run.count + 1)].cast("i")
                base, end = bounds[0], bounds[-1]
                stdin.write(_HEADER.pack(run.count, base, end - base))
                stdin.write(bounds)
                if data is not None and end > base:
                    stdin.write(memoryview(data)[base:end])
                stdin.flush()
                run.digests = _read_exact(stdout, 8 * run.count)
                run.emails = None
                run.done.set()
                current = None
                self.helper_rows += run.count
            stdin.write(_HEADER.pack(0, 0, 0))
            stdin.flush()
            self.helper_peak_kib = _PEAK.unpack(_read_exact(stdout, _PEAK.size))[0]
        except Exception as exc:  # any failure: the keys are hashed here instead
            log.warning("the key-hashing helper failed (%s); hashing here", exc)
            self._failed = True
            proc.kill()
            # fill() hashes these here: the run being served, and those still queued
            if current is not None:
                current.done.set()
            while (queued := self._queue.get()) is not None:
                queued.done.set()
        finally:
            stdout.close()
            if not stdin.closed:
                with contextlib.suppress(OSError):
                    stdin.close()


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    parts = []
    while size:
        part = stream.read(size)
        if not part:
            raise ValueError("the helper closed its output early")
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _as_keys(digests: bytes) -> array[int]:
    """8-byte little-endian digests as the keys array's integers."""
    keys = array("Q")
    keys.frombytes(digests)
    if sys.byteorder != "little":  # pragma: no cover - big-endian machines
        keys.byteswap()
    return keys
