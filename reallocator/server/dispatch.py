"""Generic gRPC handlers for a service descriptor: requests arrive as raw bytes and are parsed in
the handler, so undecodable bytes answer INVALID_ARGUMENT (grpcio's own deserialiser would answer
INTERNAL), validation errors map to a BadRequest in one place, and methods the servicer does not
implement answer UNIMPLEMENTED."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import message, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from reallocator.server.errors import abort_with, bad_request_status
from reallocator.server.logs import note_request
from reallocator.store.errors import StoreError
from reallocator.wire.violations import FieldViolation, InvalidRequest

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
    note_request(request)  # the campaign id for the call's log line
    return request


def _unary(
    method: MethodDescriptor, impl: Callable[..., Any]
) -> Callable[[bytes, grpc.ServicerContext], Any]:
    def handle(data: bytes, context: grpc.ServicerContext) -> Any:
        request = _parse(method, data, context)
        try:
            return impl(request, context)
        except InvalidRequest as exc:
            abort_with(context, bad_request_status(exc.violations))
        except StoreError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), _cut_message(str(exc)))

    return handle


def _streaming(
    method: MethodDescriptor, impl: Callable[..., Any]
) -> Callable[[bytes, grpc.ServicerContext], Iterator[Any]]:
    def handle(data: bytes, context: grpc.ServicerContext) -> Iterator[Any]:
        request = _parse(method, data, context)
        try:
            yield from impl(request, context)
        except InvalidRequest as exc:
            abort_with(context, bad_request_status(exc.violations))

    return handle


def _cut_message(text: str, most: int = 1000) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def _unimplemented(method: MethodDescriptor) -> Callable[[bytes, grpc.ServicerContext], Any]:
    def handle(data: bytes, context: grpc.ServicerContext) -> Any:
        _parse(method, data, context)
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method.full_name} is not implemented yet")

    return handle


class Encoded:
    """A response a servicer serialised already (to check its size on the bytes sent): the
    message for whoever reads it on the way out (call log, metrics), the bytes for the wire."""

    def __init__(self, response: message.Message, data: bytes) -> None:
        self.message = response
        self.data = data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.message, name)


def _serializer(out: type[message.Message]) -> Callable[[Any], bytes]:
    """Responses as they come: a message is serialised, an `Encoded` one goes out as it is."""

    def serialize(response: Any) -> bytes:
        return response.data if isinstance(response, Encoded) else out.SerializeToString(response)

    return serialize


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
                fn, request_deserializer=None, response_serializer=_serializer(out)
            )
        else:
            fn = _unary(method, impl) if impl else _unimplemented(method)
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=None, response_serializer=_serializer(out)
            )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
