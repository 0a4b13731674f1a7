"""Generic gRPC handlers for a service descriptor: requests arrive as raw bytes and are parsed in
the handler, so undecodable bytes answer INVALID_ARGUMENT (grpcio's own deserialiser would answer
INTERNAL); every error a method raises becomes a status through one table
(`server/status_map.py`), an unforeseen one INTERNAL with a request id (logged, never a traceback
or request bytes to the caller); methods the servicer does not implement answer UNIMPLEMENTED."""

from __future__ import annotations

import logging
import re
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import message, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from reallocator.server.errors import abort_with, bad_request_status, short_text
from reallocator.server.status_map import internal_status, status_for
from reallocator.wire.violations import FieldViolation

log = logging.getLogger(__name__)


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _parse(method: MethodDescriptor, data: bytes, context: grpc.ServicerContext) -> message.Message:
    request = message_factory.GetMessageClass(method.input_type)()
    try:
        request.ParseFromString(data)
    except message.DecodeError as exc:
        violation = FieldViolation(
            "", f"request bytes are not a valid {method.input_type.full_name}: {exc}"
        )
        abort_with(context, bad_request_status([violation]))
    return request


def _fail(method: MethodDescriptor, exc: Exception, context: grpc.ServicerContext) -> None:
    """Ends the call with the status the table gives `exc` (raises, as abort does). An abort the
    method made itself (the context already has a code) passes through unchanged."""
    if context.code() is not None:  # type: ignore[attr-defined]
        raise exc
    status = status_for(exc)
    if status is None:
        request_id = uuid.uuid4().hex[:16]
        # The stack, the type and a cut message: enough to find the bug, and no request bytes
        # beyond what a short message may quote.
        log.error(
            "request %s: %s failed with %s: %s\n%s",
            request_id,
            method.full_name,
            type(exc).__name__,
            short_text(str(exc), 300),
            "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
        )
        status = internal_status(request_id)
    elif isinstance(exc, MemoryError):
        log.warning("%s: out of memory (RESOURCE_EXHAUSTED)", method.full_name)
    abort_with(context, status)


def _unary(
    method: MethodDescriptor, impl: Callable[..., Any]
) -> Callable[[bytes, grpc.ServicerContext], Any]:
    def handle(data: bytes, context: grpc.ServicerContext) -> Any:
        request = _parse(method, data, context)
        try:
            return impl(request, context)
        except Exception as exc:  # every error maps to a status in one place
            _fail(method, exc, context)

    return handle


def _streaming(
    method: MethodDescriptor, impl: Callable[..., Any]
) -> Callable[[bytes, grpc.ServicerContext], Iterator[Any]]:
    def handle(data: bytes, context: grpc.ServicerContext) -> Iterator[Any]:
        request = _parse(method, data, context)
        try:
            yield from impl(request, context)
        except Exception as exc:  # every error maps to a status in one place
            _fail(method, exc, context)

    return handle


def _unimplemented(method: MethodDescriptor) -> Callable[[bytes, grpc.ServicerContext], Any]:
    def handle(data: bytes, context: grpc.ServicerContext) -> Any:
        _parse(method, data, context)
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method.full_name} is not implemented yet")

    return handle


def generic_handler(service: ServiceDescriptor, servicer: object) -> grpc.GenericRpcHandler:
    """One handler per method of `service`, bound to `servicer.<snake_case name>` if it exists."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in service.methods:
        out = message_factory.GetMessageClass(method.output_type)
        impl = getattr(servicer, snake_case(method.name), None)
        if method.client_streaming:
            raise NotImplementedError("client-streaming methods are not supported")
        if method.server_streaming:
            fn = _streaming(method, impl) if impl else _unimplemented(method)
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                fn, request_deserializer=None, response_serializer=out.SerializeToString
            )
        else:
            fn = _unary(method, impl) if impl else _unimplemented(method)
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=None, response_serializer=out.SerializeToString
            )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
