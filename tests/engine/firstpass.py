"""One fingerprint of everything a first pass produced, to compare two ways of reading
the same rows (Arrow batches against row by row)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import pytest

from sendgrid_operator.api.export import FileSource, Segment, SegmentSource
from sendgrid_operator.engine import sources
from sendgrid_operator.engine.mapping import CompiledMapping
from sendgrid_operator.engine.outcomes import MappingError, RunStopped, SourceError
from sendgrid_operator.engine.reading import Prepared, read_segments
from sendgrid_operator.engine.state import ExportState


def digest(prepared: Prepared) -> str:
    """SHA-256 over the per-row arrays, counts, samples, the spool's bytes and each
    record's segment and row number."""
    h = hashlib.sha256()
    for part in (
        prepared.keys,
        prepared.content,
        prepared.spool.lengths,
        prepared.keep,
        prepared.present_extra,
    ):
        h.update(bytes(part))
    h.update(repr(sorted(prepared.invalid_by_reason.items())).encode())
    h.update(repr(prepared.invalid_samples).encode())
    h.update(repr(prepared.segments).encode())
    h.update(repr((prepared.profiles, prepared.payload_bytes, prepared.seg_starts)).encode())
    h.update(Path(prepared.spool.path).read_bytes())
    h.update(repr(list(prepared.spool.scan())).encode())  # (index, segment, row, encoded)
    return h.hexdigest()


Ticks = list[tuple[int, int | None]]


def first_pass(
    file: FileSource,
    mapping: CompiledMapping,
    *,
    batches: bool,
    max_profiles: int,
    max_body: int = 5_900_000,
    patches: Mapping[str, object] | None = None,
) -> tuple[str, Ticks]:
    """``read_segments`` over two segments of ``file`` (one salt, list ``L1``), with its
    source's ``batches`` removed unless ``batches``; the digest (or why it stopped) and the
    progress ticks."""
    ticks: Ticks = []
    state = ExportState.new(["L1"])
    state.salt = b"0123456789abcdef"
    segments = [
        Segment(name="a", source=SegmentSource(file=file)),
        Segment(name="b", source=SegmentSource(file=file)),
    ]
    with pytest.MonkeyPatch.context() as mp:
        for target, value in (patches or {}).items():
            mp.setattr(target, value)
        if not batches:
            source = sources.file_source_factory(file)
            mp.delattr(source, "batches")
        try:
            prepared = read_segments(
                segments,
                mapping,
                state,
                ["L1"],
                None,  # type: ignore[arg-type]  # file paths need no resolver
                max_profiles=max_profiles,
                max_body=max_body,
                tick=lambda n, total: ticks.append((n, total)),
            )
        except (RunStopped, SourceError, MappingError) as exc:
            return f"stopped: {type(exc).__name__} {getattr(exc, 'reason', '')} {exc}", ticks
    try:
        return digest(prepared), ticks
    finally:
        prepared.spool.remove()
