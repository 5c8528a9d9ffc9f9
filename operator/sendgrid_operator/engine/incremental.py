"""Incremental runs: which contacts to send, and the state the next run starts from.

Why apart from :mod:`.state`: that module is the storage format; this one is the rule.
A contact is sent when it is new or its content hash differs from the state's (``--full``
sends every one). After the run, a contact is recorded with its content hash only if its
job completed and SendGrid did not reject it; a contact sent but not applied keeps its old
ownership with content 0, so the next run sends it again. Ownership bits are added for
the lists a contact was applied to (except lists where mirror saw it as a member this
export does not own) and cleared for memberships mirror removed.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_operator.engine.reading import Prepared
from sendgrid_operator.engine.state import MAX_LISTS, ExportState


def _u64(values: array[int] | Sequence[int]) -> pa.Array:
    if isinstance(values, array):
        return pa.Array.from_buffers(pa.uint64(), len(values), [None, pa.py_buffer(values)])
    return pa.array(values, pa.uint64())


def _u32(values: array[int]) -> pa.Array:
    return pa.Array.from_buffers(pa.uint32(), len(values), [None, pa.py_buffer(values)])


def _mask(values: bytearray) -> pa.Array:
    return pa.Array.from_buffers(pa.uint8(), len(values), [None, pa.py_buffer(values)]).cast(
        pa.bool_()
    )


def to_send(prepared: Prepared, state: ExportState, full: bool) -> tuple[bytearray, int]:
    """A mask over the spool of the contacts to send, and how many were unchanged.

    Vectorised over every spooled row (duplicates included, then masked by ``keep``), so
    no per-contact Python object is made: this is the whole cost of an unchanged re-run
    after reading."""
    send = bytearray(prepared.keep)
    if full or not len(state) or not prepared.profiles:
        return send, 0
    where = pc.index_in(_u64(prepared.keys), value_set=state.keys)
    previous = pc.take(state.content, where)
    changed = pc.fill_null(pc.not_equal(previous, _u32(prepared.content)), True)
    selected = pc.and_(_mask(prepared.keep), changed).cast(pa.uint8())
    send = bytearray(selected.buffers()[1].to_pybytes()[: len(send)])
    return send, prepared.profiles - send.count(1)


def _remap_flags(state: ExportState, list_ids: Sequence[str]) -> pa.Array:
    """The old flags with bits moved to the positions of ``list_ids`` (others dropped)."""
    if list(state.list_ids) == list(list_ids) or not len(state):
        return state.flags
    flags = pa.array([0] * len(state), pa.uint16())
    for old_bit, list_id in enumerate(state.list_ids):
        if list_id not in list_ids:
            continue
        new_bit = list(list_ids).index(list_id)
        has = pc.not_equal(pc.bit_wise_and(state.flags, pa.scalar(1 << old_bit, pa.uint16())), 0)
        flags = pc.if_else(has, pc.bit_wise_or(flags, pa.scalar(1 << new_bit, pa.uint16())), flags)
    return flags


def next_state(
    state: ExportState,
    list_ids: Sequence[str],
    prepared: Prepared,
    send: bytearray,
    applied: bytearray,
    foreign: Mapping[str, array[int]] | None = None,
    removed: Mapping[str, Sequence[int]] | None = None,
) -> ExportState:
    """The state after this run (see the module docstring for the rules)."""
    list_ids = list(list_ids)[:MAX_LISTS]
    all_bits = (1 << len(list_ids)) - 1
    kept = prepared.kept_indices()
    keys = pc.take(_u64(prepared.keys), kept)
    content = pc.take(_u32(prepared.content), kept)
    was_sent = pc.take(_mask(send), kept)
    was_applied = pc.take(_mask(applied), kept)
    known = pc.or_(was_applied, pc.invert(was_sent))
    new_content = pc.if_else(known, content, pa.scalar(0, pa.uint32()))
    bits = pc.if_else(was_applied, pa.scalar(all_bits, pa.uint16()), pa.scalar(0, pa.uint16()))
    for position, list_id in enumerate(list_ids):
        others = (foreign or {}).get(list_id)
        if others:
            not_ours = pc.is_in(keys, value_set=_u64(others))
            bits = pc.if_else(
                not_ours,
                pc.bit_wise_and(bits, pa.scalar(all_bits & ~(1 << position), pa.uint16())),
                bits,
            )
    if len(state):
        current = pa.table({"key": keys, "c_content": new_content, "c_bits": bits})
        old = pa.table({"key": state.keys, "o_flags": _remap_flags(state, list_ids)})
        joined = current.join(old, keys="key", join_type="full outer", use_threads=False)
        del current, old
        key = joined.column("key").combine_chunks()
        flags = pc.bit_wise_or(
            pc.fill_null(joined.column("c_bits"), 0), pc.fill_null(joined.column("o_flags"), 0)
        ).combine_chunks()
        flags = flags.cast(pa.uint16())
        new = pc.fill_null(joined.column("c_content"), 0).combine_chunks().cast(pa.uint32())
        del joined
    else:  # first run (or state lost): nothing to merge
        key, flags, new = keys, bits, new_content
    for list_id, gone in (removed or {}).items():
        if not gone or list_id not in list_ids:
            continue
        bit = 1 << list_ids.index(list_id)
        hit = pc.is_in(key, value_set=_u64(gone))
        flags = pc.if_else(
            hit, pc.bit_wise_and(flags, pa.scalar(0xFFFF & ~bit, pa.uint16())), flags
        )
        # a removed contact that comes back must be sent again (to be re-added)
        new = pc.if_else(hit, pa.scalar(0, pa.uint32()), new)
    live = pc.or_(pc.not_equal(new, 0), pc.not_equal(flags, 0))
    table = pa.table({"key": key, "content": new, "flags": flags}).filter(live)
    table = table.sort_by("key")
    return ExportState(
        state.salt,
        list_ids,
        table.column("key").combine_chunks(),
        table.column("content").combine_chunks(),
        table.column("flags").combine_chunks(),
    )
