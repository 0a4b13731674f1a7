"""Protobuf message helpers the adapters share."""

from __future__ import annotations

from collections.abc import Container

from google.protobuf.message import Message


def copy_except(source: Message, out: Message, skip: Container[str]) -> None:
    """`source`'s set fields into `out`, those named in `skip` left out and never copied: a
    large request's snapshot or a 100k-deal plan's rows would cost more to copy whole and clear
    than the fields kept cost one by one."""
    for field, value in source.ListFields():
        if field.name in skip:
            continue
        if field.is_repeated:
            getattr(out, field.name).extend(value)
        elif field.message_type is not None:
            getattr(out, field.name).CopyFrom(value)
        else:
            setattr(out, field.name, value)
