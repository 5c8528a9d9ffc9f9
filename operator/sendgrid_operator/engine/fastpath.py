"""The common case of :func:`.mapping.convert_row`, a whole Arrow batch at a time.

Why: validating and encoding each row in Python was most of a full run's CPU time. Most
rows are plain: an ASCII address that only needs lower-casing, and text fields with no
whitespace at either end, nothing JSON must escape, and within their length limits. For
those the result of ``convert_row`` can be computed with ``pyarrow.compute`` for the whole
batch: the lower-cased address and the contact's JSON, concatenated from its pieces.

The fast path never decides a row it is not sure about: every row that is not plainly
valid (a null or empty address, anything non-ASCII in it, whitespace or a character JSON
escapes at the edge of a field, a field over its limit, a custom field, a column that is
not a string column...) is left to ``convert_row``, which gives the exact answer, reason
included. Python's and utf8proc's notions of whitespace and case differ outside ASCII, so
the fast path never trims or lower-cases anything but ASCII: it only *checks* that a
field needs no trimming (its first and last characters are printable ASCII), and only
lower-cases addresses that are all ASCII. ``tests/engine/test_fastpath.py`` compares both
paths on generated rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_operator.engine.mapping import EMAIL_RE, MAX_LOCAL_PART, CompiledMapping

#: ``EMAIL_RE`` for RE2: the same pattern (ASCII classes only), where ``$`` already means
#: the end of the text (Python's ``$`` also matches before a final newline; the fast path
#: only claims addresses RE2 matches, which never end in one).
EMAIL_PATTERN = EMAIL_RE.pattern
#: A field ``str.strip`` leaves as it is and ``orjson`` copies verbatim: printable ASCII
#: other than ``"`` and ``\`` first and last, nothing below U+0020, ``"`` or ``\`` between.
PLAIN_TEXT = r'^[!#-\[\]-~](?:[^\x00-\x1f"\\]*[!#-\[\]-~])?$'

_STRING_TYPES = (pa.string(), pa.large_string())


def usable(compiled: CompiledMapping, arrays: Mapping[str, Any]) -> bool:
    """Whether the fast path can judge this batch at all."""
    if compiled.custom:
        return False
    for column in (compiled.email_column, *(c for c, _, _ in compiled.reserved)):
        array = arrays.get(column)
        if array is None or array.type not in _STRING_TYPES:
            return False
    return True


def convert_batch(compiled: CompiledMapping, arrays: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """``(good, emails, contacts)``: a boolean array, true where the row is plainly valid,
    and for those rows the lower-cased email (a string array) and the encoded contact
    (a binary array), exactly what ``convert_row`` returns for them (elsewhere: anything).
    Call only when :func:`usable` says so."""
    raw = arrays[compiled.email_column]
    if raw.type != pa.string():
        raw = raw.cast(pa.string())
    email = pc.ascii_lower(raw)
    at = pc.find_substring(email, "@")
    good = pc.and_kleene(
        pc.and_kleene(
            pc.match_substring_regex(email, EMAIL_PATTERN),
            pc.less_equal(pc.binary_length(email), 254),
        ),
        pc.and_kleene(pc.greater(at, 0), pc.less_equal(at, MAX_LOCAL_PART)),
    )
    pieces: list[Any] = ['{"email":"', email, '"']
    empty = pa.scalar("", pa.string())
    for column, sg_field, limit in compiled.reserved:
        value = arrays[column]
        if value.type != pa.string():
            value = value.cast(pa.string())
        lengths = pc.binary_length(value)
        present = pc.greater(lengths, 0)  # null where the value is null
        fine = pc.match_substring_regex(value, PLAIN_TEXT)
        if limit is not None and (pc.max(lengths).as_py() or 0) > limit:
            # only then can a value be over (a value has at most as many characters as bytes)
            fine = pc.and_kleene(fine, pc.less_equal(pc.utf8_length(value), limit))
        if value.null_count == 0 and pc.all(present).as_py():
            # present in every row (the common case): its pieces join the contact directly
            good = pc.and_kleene(good, fine)
            pieces += [f',"{sg_field}":"', value, '"']
            continue
        # absent (null or ""), or plain and within the limit
        good = pc.and_kleene(good, pc.or_kleene(pc.invert(present.fill_null(False)), fine))
        piece = pc.binary_join_element_wise(f',"{sg_field}":"', value, '"', "")
        pieces.append(pc.if_else(present.fill_null(False), piece, empty))
    pieces.append("}")
    encoded = pc.binary_join_element_wise(*pieces, "")
    return good.fill_null(False), email, encoded.cast(pa.binary())
