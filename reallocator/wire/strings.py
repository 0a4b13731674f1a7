"""Lengths of the strings a request carries outside its snapshot (request ids, names, etags,
page tokens, reviewers, comments, seller messages): each is checked before the request is
served, since every one of them is logged, used as a key or stored (a 100 MB request_id was
accepted as an idempotency key). The snapshot's strings have checks of their own
(`WireLimits.max_id_length` and the decoders)."""

from __future__ import annotations

from google.protobuf.message import Message

from reallocator.wire.violations import Violations

MAX_TEXT_LENGTH = 4_096
"""Characters of an identifier, name, etag, token or other short string of a request."""
MAX_NOTE_LENGTH = 16_384
"""Characters of free text a person writes (a reviewer's comment, a seller's message)."""
NOTES = frozenset({"comment", "message"})

SNAPSHOT = "reallocator.v1.CampaignSnapshot"


def check_strings(msg: Message, errors: Violations, prefix: str = "") -> None:
    """Every string field of `msg` and its sub-messages, but a CampaignSnapshot's, within its
    limit; each one over it is named (AIP-193 path) with its length."""
    for field, value in msg.ListFields():
        path = f"{prefix}{field.name}"
        if field.message_type is not None:
            if field.message_type.full_name == SNAPSHOT:
                continue
            if field.is_repeated:
                if field.message_type.GetOptions().map_entry:
                    continue  # no request carries a map of strings
                for i, item in enumerate(value):
                    check_strings(item, errors, f"{path}[{i}].")
            else:
                check_strings(value, errors, f"{path}.")
        elif field.type == field.TYPE_STRING:
            most = MAX_NOTE_LENGTH if field.name in NOTES else MAX_TEXT_LENGTH
            texts = list(value) if field.is_repeated else [value]
            for i, text in enumerate(texts):
                if len(text) > most:
                    where = f"{path}[{i}]" if field.is_repeated else path
                    errors.add(where, f"at most {most} characters (got {len(text)})")


__all__ = ["MAX_NOTE_LENGTH", "MAX_TEXT_LENGTH", "check_strings"]
