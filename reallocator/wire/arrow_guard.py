"""Checks an Arrow IPC stream from a caller before anything in it is inflated or converted.

A corrupted stream read with `read_all()` can crash the process when a column is converted (a
string column's offsets pointing outside its data), and a 300 KB zstd body can declare, and
inflate to, gigabytes. So the stream is walked message by message first:

1. every message's metadata is read (a few bytes of flatbuffer) and each body buffer's place is
   checked against the body it lies in;
2. with compression, each buffer starts with the uncompressed length Arrow will allocate: their
   sum over the stream must stay within `max_bytes` BEFORE any of them is inflated;
3. only then are the batches read, each validated in full (`validate(full=True)`: offsets,
   lengths, UTF-8 of strings), before a column is touched.

The flatbuffer reader below reads only the fields of `Message.fbs` this needs (Message.header,
RecordBatch.length/nodes/buffers/compression, DictionaryBatch.data) and checks every offset it
follows against the metadata's size, so garbage metadata is an error, never a wild read.
"""

from __future__ import annotations

import contextlib
import functools
import struct
import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

THREADED_BYTES = 1 << 20
"""Streams above this many bytes are read with Arrow's thread pool."""


class StreamRejected(ValueError):
    """The stream is malformed or declares more than the limits allow (the message says which)."""


_STRUCTS = {fmt: struct.Struct(fmt) for fmt in ("<B", "<H", "<I", "<i", "<q")}
"""The scalars the reader reads, compiled once (a stream's metadata takes ~35 reads)."""


class _Flat:
    """Bounds-checked reads of one flatbuffer."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _unpack(self, fmt: str, at: int) -> int:
        reader = _STRUCTS[fmt]
        if at < 0 or at + reader.size > len(self.data):
            raise StreamRejected("message metadata is truncated or corrupt")
        value: int = reader.unpack_from(self.data, at)[0]
        return value

    def root(self) -> int:
        return self._unpack("<I", 0)

    def _field(self, table: int, index: int) -> int:
        """Position of field `index` of the table at `table`, or 0 when absent."""
        vtable = table - self._unpack("<i", table)
        vsize = self._unpack("<H", vtable)
        slot = 4 + 2 * index
        if slot + 2 > vsize:
            return 0
        offset = self._unpack("<H", vtable + slot)
        return table + offset if offset else 0

    def scalar(self, table: int, index: int, fmt: str, default: int = 0) -> int:
        at = self._field(table, index)
        return self._unpack(fmt, at) if at else default

    def ref(self, table: int, index: int) -> int:
        """Position of the table/vector field `index` refers to, or 0 when absent."""
        at = self._field(table, index)
        return at + self._unpack("<I", at) if at else 0

    def structs(self, vector: int) -> npt.NDArray[np.int64]:
        """A vector of structs of two int64 (FieldNode, Buffer), one row each (read as one
        array: a batch of 30 columns has ~70 of them)."""
        if not vector:
            return np.zeros((0, 2), dtype=np.int64)
        n = self._unpack("<I", vector)
        if vector + 4 + n * 16 > len(self.data):
            raise StreamRejected("message metadata is truncated or corrupt")
        return np.frombuffer(self.data, dtype="<i8", count=2 * n, offset=vector + 4).reshape(n, 2)


_RECORD_BATCH = 3
_DICTIONARY_BATCH = 2


@dataclass(frozen=True)
class _Batch:
    rows: int
    buffers: npt.NDArray[np.int64]  # (offset, length) per buffer
    compressed: bool


CACHED_METADATA_BYTES = 4096
"""Metadata up to this size is parsed once (`_batch_of`); a deals batch's is ~1 KB. Larger is
parsed every time, so a caller cannot pin large buffers in the cache."""


def _batch_of(metadata: bytes) -> _Batch | None:
    """The RecordBatch a message carries (itself or inside a DictionaryBatch), else None. Kept
    per metadata (a pure function of its bytes; a campaign's stream has the same metadata call
    after call where its ids' lengths and its nulls do not change: ~10 us a message read again;
    a rejection is raised again, not kept)."""
    if len(metadata) <= CACHED_METADATA_BYTES:
        return _kept_batch_of(metadata)
    return _parse_batch(metadata)


def _parse_batch(metadata: bytes) -> _Batch | None:
    flat = _Flat(metadata)
    message = flat.root()
    kind = flat.scalar(message, 1, "<B")
    header = flat.ref(message, 2)
    if kind == _DICTIONARY_BATCH and header:
        header = flat.ref(header, 1)
    elif kind != _RECORD_BATCH:
        return None
    if not header:
        raise StreamRejected("a batch message without its header")
    rows = flat.scalar(header, 0, "<q")
    nodes = flat.structs(flat.ref(header, 1))
    buffers = flat.structs(flat.ref(header, 2))
    length, nulls = nodes[:, 0], nodes[:, 1]
    if rows < 0 or bool(((length < 0) | (nulls < 0) | (nulls > length)).any()):
        raise StreamRejected("a batch declares a negative length or more nulls than values")
    return _Batch(rows, buffers, compressed=bool(flat.ref(header, 3)))


_kept_batch_of = functools.lru_cache(maxsize=256)(_parse_batch)


def _declared_bytes(batch: _Batch, body: pa.Buffer) -> int:
    """Bytes the batch will occupy once read: its buffers as they lie in the body, or, when
    compressed, the uncompressed lengths their 8-byte prefixes declare."""
    size = body.size
    offsets, lengths = batch.buffers[:, 0], batch.buffers[:, 1]
    # Compared before adding: offset + length cannot wrap once both are in [0, size].
    if bool(((offsets < 0) | (lengths < 0) | (offsets > size) | (lengths > size - offsets)).any()):
        raise StreamRejected("a buffer lies outside its message body")
    if not batch.compressed:
        return int(lengths.sum())
    total = 0
    for offset, length in batch.buffers.tolist():
        if length == 0:
            continue
        if length < 8:
            raise StreamRejected("a compressed buffer without its length prefix")
        declared = struct.unpack_from("<q", body, offset)[0] if offset + 8 <= size else -2
        if declared < -1:
            raise StreamRejected("a compressed buffer declares a negative length")
        total += length - 8 if declared == -1 else declared  # -1: stored uncompressed
    return total


@dataclass(frozen=True)
class CheckedStream:
    """An Arrow IPC stream's table, checked (`read_stream`), with its schema message's metadata
    as a key for what a reader decides per schema: equal bytes are an equal schema, so no
    schema is compared (comparing a fresh schema costs ~9 us). None above
    CACHED_METADATA_BYTES, so a caller cannot pin a large one in a cache."""

    table: pa.Table
    schema_key: bytes | None


def read_checked(data: bytes, max_bytes: int) -> pa.Table:
    """The table of an Arrow IPC stream, checked as the module docstring says; raises
    StreamRejected (or a pyarrow error) for any inconsistency."""
    return read_stream(data, max_bytes).table


def read_stream(data: bytes, max_bytes: int) -> CheckedStream:
    """`read_checked`'s table with its schema key. The usual stream (its schema, then plain
    record batches) is read from the messages the checks walked; any other, or one that fails,
    is read again by Arrow's stream reader, which says what is wrong with it."""
    source = pa.py_buffer(data)
    total = 0
    messages: list[pa.ipc.Message] = []
    plain = True  # the schema first, then uncompressed record batches only
    reader = pa.ipc.MessageReader.open_stream(source)
    while True:
        try:
            message = reader.read_next_message()
        except StopIteration:
            break
        messages.append(message)
        if message.type == "schema":  # no batch: its metadata Arrow verified as it read it
            plain = plain and len(messages) == 1
            continue
        batch = _batch_of(message.metadata.to_pybytes())
        if batch is None:
            plain = False
            continue
        plain = plain and message.type == "record batch" and not batch.compressed
        total += _declared_bytes(batch, message.body)
        if total > max_bytes:
            raise StreamRejected(
                f"declares more than {max_bytes} bytes of data once decompressed (max_arrow_bytes)"
            )
    key = None
    if messages and messages[0].type == "schema":
        metadata = messages[0].metadata
        key = metadata.to_pybytes() if metadata.size <= CACHED_METADATA_BYTES else None
    table = None
    if plain and messages:
        with contextlib.suppress(pa.ArrowException, ValueError, OSError):  # said by the reader
            table = _from_messages(messages, key)
    if table is None:
        table = _from_reader(source, len(data))
    return CheckedStream(table, key)


def compressed_stream(data: bytes) -> bool:
    """Whether the stream's first batch is compressed (read from its metadata alone; False for
    anything unreadable, which `read_stream` then says). Only a compressed stream is worth a
    thread (`StreamReading`): a plain one is read without a copy, and there the thread's start
    and hand-over only cost (decode wall in process, minimum of 40: 3k deals 2.22 -> 2.47 ms,
    10k 4.05 -> 4.29 ms)."""
    try:
        reader = pa.ipc.MessageReader.open_stream(pa.py_buffer(data))
        for _ in range(4):  # the schema, maybe dictionaries, then the first record batch
            message = reader.read_next_message()
            if message.type == "schema":
                continue
            batch = _batch_of(message.metadata.to_pybytes())
            if batch is not None:
                return batch.compressed
    except (StopIteration, pa.ArrowException, StreamRejected, ValueError, OSError):
        return False
    return False


class StreamReading:
    """`read_stream` of a stream on a thread of its own, started now, its answer (or its
    exception) taken by `result`. For a large compressed stream whose decompression Arrow does
    outside the GIL: the caller checks something else meanwhile (a 100k-deal snapshot's 41 MB
    series: ~55 ms of zstd beside ~35 ms of the deals' checks)."""

    def __init__(self, data: bytes, max_bytes: int) -> None:
        self.data = data
        self._max_bytes = max_bytes
        self._stream: CheckedStream | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, name="arrow-read", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            self._stream = read_stream(self.data, self._max_bytes)
        except BaseException as exc:  # raised again by `result`, in the caller
            self._error = exc

    def result(self) -> CheckedStream:
        """What `read_stream(data, max_bytes)` returns, or raises what it raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._stream is not None
        return self._stream


def _from_messages(messages: list[pa.ipc.Message], key: bytes | None) -> pa.Table:
    """The table of a stream's schema message and its uncompressed record batches, each batch
    validated in full: what `_from_reader` reads, without parsing the stream a second time
    (~7 us a stream). Uncompressed only: Arrow reads a lone message with its thread pool.
    `key`: the schema message's (CheckedStream.schema_key)."""
    schema = _schema_of(messages[0], key)
    batches = []
    for message in messages[1:]:
        batch_read = pa.ipc.read_record_batch(message, schema)
        batch_read.validate(full=True)
        batches.append(batch_read)
    return pa.Table.from_batches(batches, schema=schema)


_SCHEMAS: dict[bytes, pa.Schema] = {}
"""Schemas read, with their names decoded, per schema message (a pure function of its bytes;
a campaign's streams carry the same one call after call: ~6 us a stream read again). A Schema
is immutable, so tables share it; a bounded handful, a rejection raised again, not kept."""


def _schema_of(message: pa.ipc.Message, key: bytes | None) -> pa.Schema:
    """The schema a stream's schema message says, its field names decoded (`_decode_names`)."""
    schema = _SCHEMAS.get(key) if key is not None else None
    if schema is None:
        schema = pa.ipc.read_schema(message)
        _decode_names(schema)
        if key is not None:
            if len(_SCHEMAS) >= 64:
                _SCHEMAS.clear()
            _SCHEMAS[key] = schema
    return schema


def _from_reader(source: pa.Buffer, size: int) -> pa.Table:
    """The table of a stream read by Arrow's stream reader, each batch validated in full."""
    # Arrow decompresses the buffers of a batch on its thread pool: for a small stream the
    # hand-offs cost more than the work (~0.5 ms of a 50-deal Replan under load).
    options = pa.ipc.IpcReadOptions(use_threads=size > THREADED_BYTES)
    stream = pa.ipc.open_stream(source, options=options)
    batches = []
    for batch_read in stream:
        batch_read.validate(full=True)
        batches.append(batch_read)
    # The batches are the table's columns, each validated in full above. The table's own full
    # validation would add only the names' check (and wrap every column first: ~15 us).
    _decode_names(stream.schema)
    return pa.Table.from_batches(batches, schema=stream.schema)


def _decode_names(schema: pa.Schema) -> None:
    """Decodes the field names: one that is not UTF-8 raises UnicodeDecodeError (a ValueError)
    here, among the stream's checks, not later where a column is read by name."""
    schema.names  # noqa: B018  # the property decodes them


__all__ = [
    "CheckedStream",
    "StreamReading",
    "StreamRejected",
    "compressed_stream",
    "read_checked",
    "read_stream",
]
