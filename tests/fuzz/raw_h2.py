"""A gRPC caller below grpcio, on raw HTTP/2 (the `h2` library), for what a well-behaved client
library never sends: a message whose compressed flag and bytes are the caller's own (a gzip
bomb), a length prefix that lies, a body trickled a byte at a time, a stream left open."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions

_GZIP: dict[tuple[int, bytes], bytes] = {}


def gzip_of_zeros(size: int, head: bytes = b"", container: str = "gzip") -> bytes:
    """gzip (or zlib: grpc's "deflate") of `head` then zeros up to `size` bytes in all, built
    a MiB at a time (so the caller never holds what it inflates to); about 1 KB per MiB."""
    key = (size, head + container.encode())
    if key not in _GZIP:
        packer = zlib.compressobj(1, zlib.DEFLATED, 31 if container == "gzip" else 15)
        parts = [packer.compress(head)]
        block = bytes(1 << 20)
        left = size - len(head)
        while left > 0:
            parts.append(packer.compress(block[: min(left, len(block))]))
            left -= len(block)
        parts.append(packer.flush())
        _GZIP[key] = b"".join(parts)
    return _GZIP[key]


def grpc_frame(payload: bytes, *, compressed: bool = False, declared: int | None = None) -> bytes:
    """One gRPC length-prefixed message; `declared` overrides the length it states."""
    length = len(payload) if declared is None else declared
    return struct.pack(">BI", 1 if compressed else 0, length) + payload


@dataclass
class Answer:
    """What came back: the grpc-status (None when the stream never ended cleanly), its
    message, the response messages' bytes, and whether the server reset the stream."""

    status: int | None = None
    message: str = ""
    data: bytes = b""
    reset: bool = False
    closed: bool = False
    headers: dict[str, str] = field(default_factory=dict)


class RawChannel:
    """One HTTP/2 connection to a gRPC server (plaintext, prior knowledge)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.answers: dict[int, Answer] = {}

    def open(self, path: str, encoding: str = "identity", timeout: str | None = "30S") -> int:
        """Starts a call (headers sent, body not yet); returns its stream id. `timeout`: the
        grpc-timeout header, None for none (a call the server may wait on for ever)."""
        stream = self.conn.get_next_available_stream_id()
        headers = [
            (":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", "localhost"), ("content-type", "application/grpc"),
            ("te", "trailers"), ("grpc-encoding", encoding),
            ("grpc-accept-encoding", "identity"),
        ]  # fmt: skip
        if timeout is not None:
            headers.append(("grpc-timeout", timeout))
        self.conn.send_headers(stream, headers)
        self.answers[stream] = Answer()
        self.sock.sendall(self.conn.data_to_send())
        return stream

    def send(self, stream: int, data: bytes, *, end: bool = True, deadline: float = 60.0) -> None:
        """Sends `data` on `stream` as flow control allows (reading the server meanwhile)."""
        until = time.monotonic() + deadline
        view = memoryview(data)
        while view:
            if self.answers[stream].closed or self.answers[stream].reset:
                return  # the server answered (refused) before reading it all
            window = min(
                self.conn.local_flow_control_window(stream), self.conn.max_outbound_frame_size
            )
            if window <= 0:
                if time.monotonic() > until or not self.pump(1.0):
                    return
                continue
            try:
                self.conn.send_data(stream, bytes(view[:window]))
            except h2.exceptions.StreamClosedError:
                return
            view = view[window:]
            self.sock.sendall(self.conn.data_to_send())
        if end:
            try:
                self.conn.end_stream(stream)
            except h2.exceptions.StreamClosedError:
                return
            self.sock.sendall(self.conn.data_to_send())

    def pump(self, wait: float) -> bool:
        """Reads what the server sent within `wait` seconds; False when the connection closed."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            return True
        except OSError:
            return False
        if not data:
            return False
        for event in self.conn.receive_data(data):
            answer = self.answers.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if answer is not None:
                    answer.data += event.data
            elif isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                if answer is not None:
                    answer.headers.update(dict(event.headers))  # type: ignore[arg-type]
                    if "grpc-status" in answer.headers:
                        answer.status = int(answer.headers["grpc-status"])
                        answer.message = answer.headers.get("grpc-message", "")
            elif isinstance(event, h2.events.StreamEnded):
                if answer is not None:
                    answer.closed = True
            elif isinstance(event, h2.events.StreamReset):
                if answer is not None:
                    answer.reset = True
            elif isinstance(event, h2.events.ConnectionTerminated):
                return False
        self.sock.sendall(self.conn.data_to_send())
        return True

    def wait(self, stream: int, timeout: float = 30.0) -> Answer:
        """The answer on `stream`, once it ended (or the connection did, or `timeout`)."""
        until = time.monotonic() + timeout
        answer = self.answers[stream]
        while not (answer.closed or answer.reset) and time.monotonic() < until:
            if not self.pump(0.5):
                break
        return answer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def call(port: int, path: str, body: bytes, encoding: str = "identity") -> Answer:
    """One whole call: headers, `body` (gRPC-framed already), the answer."""
    channel = RawChannel(port)
    try:
        stream = channel.open(path, encoding)
        channel.send(stream, body)
        return channel.wait(stream)
    finally:
        channel.close()


__all__ = ["Answer", "RawChannel", "call", "grpc_frame", "gzip_of_zeros"]
