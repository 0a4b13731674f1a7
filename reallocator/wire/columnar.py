"""Repeated messages from columns: a large plan's deal rows and schedules serialised as
protobuf wire bytes by numpy and Arrow, then parsed into the answer in one call.

Adding messages one at a time costs ~2 us each in Python (a keyword call per row and the
lists behind it): ~0.45 s of a 100k-deal FULL answer, where upb parses the same 63 MB in
~30 ms. Here numpy encodes each numeric field as varints for all rows at once, strings stay
Arrow buffers, Arrow joins each row's pieces in C++, and `merge_repeated` parses the result
into the message (`MergeFromString` appends to a repeated field). Field numbers and types
come from the message descriptors, so the bytes follow the .proto.

The format is protobuf's (protobuf.dev/programming-guides/encoding): each field is a key
varint (field number << 3 | wire type) and then a varint, eight little-endian bytes (double)
or a length and that many bytes (strings, sub-messages, packed repeated scalars). Fields may
come in any order and zeros may be written; the message parsed from them is the same, and
serialising it again gives protobuf's canonical bytes. Integers travel as int64 (enough for
every field the plan has). Below about 1,000 rows a message per row is cheaper (numpy's fixed
cost per call): `wire/plan.py` picks (`COLUMNAR_FROM`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

IntArray = npt.NDArray[np.int64]

_VARINT, _FIXED64, _LENGTH = 0, 1, 2
_VARINT_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_ENUM,
        FieldDescriptor.TYPE_BOOL,
    }
)
_LIMITS = np.array([1 << (7 * k) for k in range(1, 10)], dtype=np.uint64)
_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)
_BINARY = pa.large_binary()
_EMPTY = pa.scalar(b"", _BINARY)

Column: TypeAlias = npt.NDArray[Any] | pa.Array | pa.ChunkedArray | list[str] | bytes
"""A field's values: a numpy vector (a scalar field), an n x h integer matrix (a packed
repeated field), strings (Arrow, a list or an object array), or one serialised sub-message
that every row carries."""


def varint_lengths(values: npt.NDArray[np.integer[Any]]) -> IntArray:
    """Bytes each value takes as a varint (1 to 10; a negative int64 or int32 takes 10, as
    protobuf writes its two's complement)."""
    v = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    lengths = np.ones(v.shape, dtype=np.int64)
    for limit in _LIMITS:  # plan amounts stop at 5 or 6 bytes: the loop ends at the widest
        wider = v >= limit
        if not wider.any():
            break
        lengths += wider
    return lengths


def varints(
    values: npt.NDArray[np.integer[Any]], *, key: int | None = None, lengths: IntArray | None = None
) -> tuple[npt.NDArray[np.uint8], IntArray]:
    """The varints of `values` (flattened, row-major) back to back, each after `key`'s bytes
    when one is given, and the bytes each took. The work is values x the widest one's bytes:
    callers encode a column at a time, so a negative amount (ten bytes) widens one column."""
    v = np.ascontiguousarray(values, dtype=np.int64).reshape(-1).view(np.uint64)
    if lengths is None:
        lengths = varint_lengths(v)
    lengths = lengths.reshape(-1)
    width = int(lengths.max()) if v.size else 1
    head = np.zeros(0, np.uint8) if key is None else varints(np.array([key]))[0]
    out = np.empty((v.size, head.size + width), dtype=np.uint8)
    out[:, : head.size] = head
    kept = np.ones(out.shape, dtype=bool) if width > 1 else None
    for k in range(width):  # column by column: 3-4x faster than broadcasting n x width
        byte = out[:, head.size + k]
        np.bitwise_and(v >> _SHIFTS[k], 0x7F, out=byte, casting="unsafe")
        if kept is not None and k + 1 < width:  # a continuation bit on all but the last
            more = lengths > k + 1
            byte |= more.view(np.uint8) << 7
            kept[:, head.size + k + 1] = more
    return (out if kept is None else out[kept]).reshape(-1), lengths + head.size


def _key(number: int, wire_type: int) -> int:
    return number << 3 | wire_type


def _binary(data: npt.NDArray[np.uint8], lengths: IntArray) -> pa.Array:
    """Per-row byte strings as one Arrow column over `data` (not copied)."""
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(
        _BINARY, lengths.size, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _keyed(key: int, values: IntArray) -> tuple[pa.Array, IntArray]:
    """Each value as a varint after the key's bytes, one row each; and the bytes per row."""
    data, sizes = varints(values, key=key)
    return _binary(data, sizes), sizes


def _packed(matrix: IntArray, lengths: IntArray) -> tuple[pa.Array, IntArray]:
    """Each row of an n x h matrix as its h varints back to back; and the bytes per row."""
    data, _ = varints(matrix, lengths=lengths)
    sizes = lengths.sum(axis=1)
    return _binary(data, sizes), sizes


def _doubles(
    doubles: list[tuple[int, npt.NDArray[np.float64]]], n: int
) -> tuple[pa.Array, IntArray]:
    """Every double field of a row: its key and eight little-endian bytes each."""
    keys = [varints(np.array([key]))[0] for key, _ in doubles]
    out = np.empty((n, sum(k.size + 8 for k in keys)), dtype=np.uint8)
    at = 0
    for key, (_, values) in zip(keys, doubles, strict=True):
        out[:, at : at + key.size] = key
        at += key.size
        out[:, at : at + 8] = np.ascontiguousarray(values, "<f8").view(np.uint8).reshape(n, 8)
        at += 8
    sizes = np.full(n, out.shape[1], dtype=np.int64)
    return _binary(out.reshape(-1), sizes), sizes


def _strings(values: Any, n: int, name: str) -> tuple[pa.Array, IntArray]:
    """UTF-8 bytes per row (Arrow's own buffers when given Arrow strings); and their sizes."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        listed = values if isinstance(values, list) else np.asarray(values, object).tolist()
        values = pa.array(listed, pa.large_string())
    if len(values) != n:
        raise ValueError(f"{name}: {len(values)} strings for {n} rows")
    text = values.cast(pa.large_string()).cast(_BINARY).fill_null(b"")
    sizes = np.asarray(pc.binary_length(text).to_numpy(zero_copy_only=False), dtype=np.int64)
    return text, sizes


def _column(values: Any, n: int, name: str, ndim: int) -> npt.NDArray[Any]:
    array = np.asarray(values)
    if array.ndim != ndim or array.shape[0] != n:
        raise ValueError(f"{name}: shape {array.shape} for {n} rows")
    return array


def repeated_bytes(container: type[Message], field: str, columns: Mapping[str, Column]) -> bytes:
    """`container`'s repeated message field `field` with one element per row of `columns`
    (keyed by the element's field names), as wire bytes; see `merge_repeated`."""
    return bytes(repeated_view(container, field, columns))


def repeated_view(
    container: type[Message], field: str, columns: Mapping[str, Column]
) -> memoryview:
    """`repeated_bytes` without the copy into `bytes`: appended to a serialised `container`,
    they are that many more elements of `field` (a parser reads a message's fields in any
    order and a repeated field's elements wherever they come; see `framed`)."""
    return _joined(container, field, columns)


def framed(container: type[Message], field: str, parts: Sequence[bytes | memoryview]) -> bytes:
    """`parts` joined as the bytes of `container`'s message field `field` (its key, the parts'
    total length, the parts): a message serialised by parts, one copy of each."""
    head = framed_head(container, field, sum(len(part) for part in parts))
    return b"".join((head, *parts))


def framed_head(container: type[Message], field: str, size: int) -> bytes:
    """The key and length that precede `size` bytes of `container`'s field `field` (a
    length-delimited one: a message, bytes or a string)."""
    return _length_head(container.DESCRIPTOR.fields_by_name[field].number, size)


def _length_head(number: int, size: int) -> bytes:
    """Field `number`'s key as a length-delimited field, then `size`, as varints."""
    return varints(np.array([_key(number, _LENGTH), size]))[0].tobytes()


def merge_repeated(msg: Message, field: str, columns: Mapping[str, Column]) -> None:
    """Appends one element per row of `columns` to `msg`'s repeated message field `field`."""
    view = _joined(type(msg), field, columns)
    if len(view):
        msg.MergeFromString(view)  # type: ignore[arg-type]  # any buffer: no 60 MB copy


def _joined(container: type[Message], field: str, columns: Mapping[str, Column]) -> memoryview:
    """The elements' bytes, each framed as the container's field (key, length, element)."""
    outer = container.DESCRIPTOR.fields_by_name[field]
    n = next((len(v) for v in columns.values() if not isinstance(v, bytes)), None)
    if n is None:
        raise ValueError("at least one column must vary by row")
    if n == 0:
        return memoryview(b"")
    pieces: list[pa.Array | pa.Scalar] = []  # per field, its bytes in every row, in order
    body = np.zeros(n, dtype=np.int64)  # bytes of each element

    def add(piece: pa.Array | pa.Scalar, sizes: IntArray | int) -> None:
        nonlocal body
        pieces.append(piece)
        body = body + sizes

    doubles: list[tuple[int, npt.NDArray[np.float64]]] = []
    for name, values in columns.items():
        f = outer.message_type.fields_by_name[name]
        if isinstance(values, bytes):  # a sub-message every row carries
            head = _length_head(f.number, len(values))
            add(pa.scalar(head + values, _BINARY), len(head) + len(values))
        elif f.type == FieldDescriptor.TYPE_STRING:
            text, sizes = _strings(values, n, name)
            add(*_keyed(_key(f.number, _LENGTH), sizes))
            add(text, sizes)
        elif f.type == FieldDescriptor.TYPE_DOUBLE:
            doubles.append((_key(f.number, _FIXED64), _column(values, n, name, 1)))
        elif f.type not in _VARINT_TYPES:
            raise ValueError(f"{name}: field type {f.type} is not supported")
        elif f.is_repeated:  # packed: key, length, then the values
            matrix = _column(values, n, name, 2).astype(np.int64, copy=False)
            lengths = varint_lengths(matrix)
            add(*_keyed(_key(f.number, _LENGTH), lengths.sum(axis=1)))
            add(*_packed(matrix, lengths))
        else:
            value = _column(values, n, name, 1).astype(np.int64, copy=False)
            add(*_keyed(_key(f.number, _VARINT), value))
    if doubles:
        add(*_doubles(doubles, n))
    frame, _ = _keyed(_key(outer.number, _LENGTH), body)
    joined = pc.binary_join_element_wise(frame, *pieces, _EMPTY)
    offsets = np.frombuffer(joined.buffers()[1], np.int64, n + 1, joined.offset * 8)
    return memoryview(joined.buffers()[2])[int(offsets[0]) : int(offsets[-1])]


__all__ = ["merge_repeated", "repeated_bytes", "varint_lengths", "varints"]
