"""What the decoders keep between calls (a campaign's policy, pacing target, group ids and
checked deal ids, the same call after call) changes no answer: a call served from them returns
what a fresh decode returns, with the same violations in the same order."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from builders import build_snapshot, random_snapshot_spec

from reallocator.core.model import Budget, BudgetChange, PacingSpec, Period, Policy
from reallocator.v1 import pacing_pb2, policy_pb2, snapshot_pb2
from reallocator.wire import deals as wire_deals
from reallocator.wire import pacing as wire_pacing
from reallocator.wire import policy as wire_policy
from reallocator.wire import snapshot as wire_snapshot
from reallocator.wire.deals import RawDeals
from reallocator.wire.encode import encode_pacing
from reallocator.wire.limits import DEFAULT_LIMITS
from reallocator.wire.violations import FieldViolation, Violations

START = datetime(2026, 11, 1, tzinfo=UTC)


def _target(changes: int = 3) -> pacing_pb2.PacingTarget:
    daypart = np.zeros((7, 24), dtype=bool)
    daypart[:, 6:22] = True
    return encode_pacing(
        PacingSpec(
            start=START,
            end=START + timedelta(days=30),
            budgets=(Budget(Period.LIFETIME, 100_000), Budget(Period.DAY, 5_000)),
            custom_weights=np.arange(24, dtype=float) + 1,
            daypart=daypart,
            budget_changes=tuple(
                BudgetChange(START + timedelta(days=10 - 3 * i), Period.DAY, 5_000, 6_000 + i)
                for i in range(changes)
            ),
        )
    )


def _fresh(msg: pacing_pb2.PacingTarget, as_of: datetime | None) -> tuple[PacingSpec, list]:
    errors = Violations()
    spec = wire_pacing._decode(msg, "snapshot.pacing", as_of, errors, DEFAULT_LIMITS)
    return spec, errors.items


def _decoded(msg: pacing_pb2.PacingTarget, as_of: datetime | None) -> tuple[PacingSpec, list]:
    errors = Violations()
    spec = wire_pacing.decode_pacing(msg, "snapshot.pacing", as_of, errors)
    return spec, errors.items


def _same_spec(a: PacingSpec, b: PacingSpec) -> None:
    for name in PacingSpec.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y, name


@pytest.mark.parametrize("days", [0, 2, 5, 8, 11, 40])
def test_a_shared_pacing_target_is_checked_against_each_as_of(days: int) -> None:
    """Changes on days 4, 7 and 10 (listed newest first), the target kept from a valid call
    on day 12: as_of before, between and after them is checked as a fresh decode checks it."""
    msg = _target()
    wire_pacing._DECODED.clear()
    assert not _decoded(msg, START + timedelta(days=12))[1]
    assert len(wire_pacing._DECODED) == 1
    for as_of in (START + timedelta(days=days), START + timedelta(days=days, hours=1)):
        spec, errors = _decoded(msg, as_of)
        fresh, fresh_errors = _fresh(msg, as_of)
        _same_spec(spec, fresh)
        assert errors == fresh_errors
        assert bool(errors) == (days < 10)
    assert len(wire_pacing._DECODED) == 1


def test_a_target_with_a_change_after_as_of_is_not_kept() -> None:
    wire_pacing._DECODED.clear()
    _, errors = _decoded(_target(), START + timedelta(days=5))
    assert [v.field for v in errors] == [
        "snapshot.pacing.budget_changes[0].change_time",
        "snapshot.pacing.budget_changes[1].change_time",
    ]
    assert not wire_pacing._DECODED


def test_an_invalid_pacing_target_is_decoded_afresh_with_its_violations() -> None:
    msg = _target()
    msg.custom_curve.hour_weights[3] = -1.0
    msg.budget_changes[0].old_amount = -5
    wire_pacing._DECODED.clear()
    for _ in range(2):
        spec, errors = _decoded(msg, START + timedelta(days=5))
        fresh, fresh_errors = _fresh(msg, START + timedelta(days=5))
        assert errors and errors == fresh_errors
        _same_spec(spec, fresh)
    assert not wire_pacing._DECODED


def test_a_shared_pacing_target_is_read_only() -> None:
    wire_pacing._DECODED.clear()
    spec, _ = _decoded(_target(), START + timedelta(days=20))
    assert spec.daypart is not None and spec.custom_weights is not None
    with pytest.raises(ValueError):
        spec.daypart[0, 0] = False
    again, _ = _decoded(_target(), START + timedelta(days=21))
    assert again is spec


def test_a_policy_is_decoded_once_per_message_and_defaults() -> None:
    wire_policy._DECODED.clear()
    msg = policy_pb2.Policy(over_threshold=1.5, under_threshold=0.5)
    defaults = Policy()
    first = wire_policy.decode_policy(msg, defaults, Violations())
    assert wire_policy.decode_policy(msg, defaults, Violations()) is first
    assert first.over_threshold == 1.5 and first.under_threshold == 0.5
    other = Policy(confidence_threshold=10.0)
    assert wire_policy.decode_policy(msg, other, Violations()).confidence_threshold == 10.0
    assert wire_policy.decode_policy(msg, defaults, Violations()) == first


def test_a_policy_repeats_its_violations_at_its_path() -> None:
    wire_policy._DECODED.clear()
    msg = policy_pb2.Policy(over_threshold=0.5, confidence_threshold=200.0)
    defaults = Policy()
    runs = []
    for path in ("policy", "policy", "request.policy"):
        errors = Violations()
        wire_policy.decode_policy(msg, defaults, errors, path)
        runs.append([(v.field, v.description) for v in errors.items])
    assert runs[0] == runs[1] and len(runs[0]) == 3  # the second from the one decode kept
    assert len(wire_policy._DECODED) == 2
    assert [f.replace("request.", "", 1) for f, _ in runs[2]] == [f for f, _ in runs[0]]


def test_group_ids_are_shared_and_equal_to_a_fresh_index() -> None:
    sellers = [snapshot_pb2.Seller(seller_id=f"s{i}") for i in range(5)]
    a = wire_snapshot._groups(
        sellers, "seller_id", "snapshot.sellers", Violations(), DEFAULT_LIMITS
    )
    b = wire_snapshot._groups(
        sellers, "seller_id", "snapshot.sellers", Violations(), DEFAULT_LIMITS
    )
    assert a.index is b.index and a is not b
    pd.testing.assert_index_equal(
        a.index, pd.Index([f"s{i}" for i in range(5)], name="seller_id", dtype=object)
    )
    many = [f"s{i}" for i in range(wire_snapshot._SHARED_IDS + 1)]
    assert wire_snapshot._group_ids(many, "seller_id") is not wire_snapshot._group_ids(
        many, "seller_id"
    )


def _raw_deals(msg: snapshot_pb2.CampaignSnapshot, form: str, errors: Violations) -> RawDeals:
    if form == "deals":
        return wire_deals.from_messages(msg.deals, "snapshot.deals")
    if form == "columns":
        raw = wire_deals.from_columns(msg.deals_table.columns, "columns", errors)
    else:
        raw = wire_deals.from_arrow(msg.deals_table.arrow_ipc, "arrow_ipc", errors)
    assert raw is not None
    return raw


def _checked(
    msg: snapshot_pb2.CampaignSnapshot, form: str, sellers: list[str], channels: list[str],
    max_id_length: int,
) -> tuple[pd.DataFrame, list[FieldViolation]]:  # fmt: skip
    errors = Violations()
    raw = _raw_deals(msg, form, errors)
    limits = dataclasses.replace(DEFAULT_LIMITS, max_id_length=max_id_length)
    known = pd.Index(sellers, dtype=object), pd.Index(channels, dtype=object)
    table = wire_deals.check_deals(raw, *known, None, errors, limits)
    return table, errors.items


@pytest.mark.parametrize("form", ["deals", "columns", "arrow"])
def test_checked_ids_kept_change_no_answer(form: str) -> None:
    """A table's ids that passed their checks are not checked again with the same sellers,
    channels and length limit: the table and the violations of every later call are those of
    a fresh check, whatever changed (a seller or channel no longer listed, a shorter limit, a
    repeated or emptied id), and a failure is never kept."""
    spec = random_snapshot_spec(30, seed=4, n_buckets=0)
    msg = build_snapshot(spec, form)  # type: ignore[arg-type]
    edited = build_snapshot(spec, "deals")
    edited.deals[2].deal_id = edited.deals[0].deal_id
    edited.deals[3].seller_id = ""
    sellers, channels = list(spec.seller_ids), list(spec.channel_ids)
    cases = [
        (msg, form, sellers, channels, 256),
        (msg, form, sellers[1:], channels, 256),
        (msg, form, sellers, channels[:-1], 256),
        (msg, form, sellers, channels, 3),
        (edited, "deals", sellers, channels, 256),
    ]
    fresh = []
    for case in cases:
        wire_deals._PASSED_TEXT.clear()
        fresh.append(_checked(*case))
        assert not wire_deals._PASSED_TEXT or not fresh[-1][1]  # a failure is never kept
    assert not fresh[0][1] and all(items for _, items in fresh[1:])
    wire_deals._PASSED_TEXT.clear()
    for _ in range(2):
        for case, (table, items) in zip(cases, fresh, strict=True):
            again, again_items = _checked(*case)
            assert again_items == items
            pd.testing.assert_frame_equal(again, table)
    assert wire_deals._PASSED_TEXT  # the passing ids were kept: the later calls read them
    edited_table, _ = _checked(*cases[0])
    edited_table.loc[0, "deal_id"] = "edited"  # a table's edit reaches no kept array
    pd.testing.assert_frame_equal(_checked(*cases[0])[0], fresh[0][0])


def test_no_ids_kept_for_a_large_table(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = random_snapshot_spec(5, seed=4, n_buckets=0)
    raw = _raw_deals(build_snapshot(spec, "deals"), "deals", Violations())
    sellers, channels = pd.Index(spec.seller_ids), pd.Index(spec.channel_ids)
    assert wire_deals._text_key(raw, sellers, channels, DEFAULT_LIMITS) is not None
    monkeypatch.setattr(wire_deals, "KEPT_TEXT_ROWS", 4)
    assert wire_deals._text_key(raw, sellers, channels, DEFAULT_LIMITS) is None
