"""The wire forms of deals (per-deal messages, packed columns, Arrow IPC; recent delivery as
per-deal series, a packed matrix or an Arrow matrix) decode to identical tables, equal to what the
deals say."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from builders import (
    AS_OF,
    FORMS,
    DealSpec,
    Form,
    RecentDelivery,
    SnapshotSpec,
    arrow_ipc,
    build_snapshot,
    deal_arrow_table,
    random_snapshot_spec,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reallocator.core.model import (
    DEAL_COLUMNS,
    INT64_MAX,
    TEXT_DTYPE,
    CampaignSnapshot,
    DealStatus,
    Policy,
    PriceKind,
    is_text_array,
)
from reallocator.v1 import common_pb2, snapshot_pb2
from reallocator.wire import deals as wire_deals
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import Violations

SELLERS = ("seller-a", "seller-b", "seller-c")
CHANNELS = ("display", "ctv")
AS_OF_SECONDS = int(AS_OF.timestamp())


def decode(msg: snapshot_pb2.CampaignSnapshot) -> CampaignSnapshot:
    errors = Violations()
    result = decode_snapshot(msg, Policy(), errors)
    assert not errors.items, errors.items
    assert result is not None
    return result


def expected_deals(deals: tuple[DealSpec, ...]) -> pd.DataFrame:
    """The canonical table the deals describe, written from model.DEAL_COLUMNS' documentation."""
    rows: dict[str, list[Any]] = {
        "deal_id": [d.deal_id for d in deals],
        "seller_id": [d.seller_id for d in deals],
        "channel_id": [d.channel_id for d in deals],
        "order_id": [d.seller_order_id for d in deals],
        "deal_type": [d.deal_type for d in deals],
        "premium": [d.premium for d in deals],
        "status": [d.status or DealStatus.ACTIVE for d in deals],
        "locked": [d.locked for d in deals],
        "allocation": [d.allocation for d in deals],
        "min_allocation": [d.min_allocation or 0 for d in deals],
        "max_allocation": [
            INT64_MAX if d.max_allocation is None else d.max_allocation for d in deals
        ],
        **{
            k: [getattr(d, k) for d in deals]
            for k in ("spend_micros", "impressions", "clicks", "completes", "requests")
        },
        "price_kind": [
            PriceKind.ECPM if d.cost_per_unit_micros is None else PriceKind.PER_UNIT for d in deals
        ],
        "price_micros": [
            d.ecpm_micros if d.cost_per_unit_micros is None else d.cost_per_unit_micros
            for d in deals
        ],
        "value_per_unit": [1.0 if d.value_per_unit is None else d.value_per_unit for d in deals],
        **{k: [getattr(d, k) for d in deals] for k in ("avails", "bids", "wins")},
        "participation_rate": [
            np.nan if d.participation_rate is None else d.participation_rate for d in deals
        ],
        "available_inventory": [
            -1 if d.available_inventory is None else d.available_inventory for d in deals
        ],
        "plan_applied_at": [
            -1 if d.plan_apply_unix_seconds is None else d.plan_apply_unix_seconds for d in deals
        ],
        "delivered_at_plan": [
            0 if d.plan_apply_unix_seconds is None else d.delivered_at_apply for d in deals
        ],
        "capacity_forecast": [
            -1 if d.capacity_forecast is None else d.capacity_forecast for d in deals
        ],
    }
    return pd.DataFrame(rows).astype(DEAL_COLUMNS)[list(DEAL_COLUMNS)]


def assert_same_snapshot(a: CampaignSnapshot, b: CampaignSnapshot) -> None:
    pd.testing.assert_frame_equal(a.deals, b.deals)
    pd.testing.assert_frame_equal(a.sellers, b.sellers)
    pd.testing.assert_frame_equal(a.channels, b.channels)
    assert (a.campaign_id, a.as_of, a.timezone, a.currency) == (
        b.campaign_id,
        b.as_of,
        b.timezone,
        b.currency,
    )
    assert a.pacing == b.pacing
    if a.delivery is None or b.delivery is None:
        assert a.delivery is b.delivery is None
        return
    assert (a.delivery.window_start, a.delivery.bucket) == (
        b.delivery.window_start,
        b.delivery.bucket,
    )
    for measure in ("spend_micros", "impressions", "avails", "wins"):
        x, y = getattr(a.delivery, measure), getattr(b.delivery, measure)
        # float64 with NaN rows, or the matrix form's integers as sent: the same values.
        assert x.dtype.kind in "fiu" and y.dtype.kind in "fiu"
        np.testing.assert_array_equal(x.astype(np.float64), y.astype(np.float64))  # NaN == NaN


# --- strategies ----------------------------------------------------------------------------

NON_NEGATIVE = st.integers(0, 2**53 // 8)  # amounts and their sums over 8 deals within 2**53
NAMES = st.text(min_size=1, max_size=8)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def deal_specs(draw: st.DrawFn, deal_id: str) -> DealSpec:
    min_allocation = draw(optional(NON_NEGATIVE))
    applied = draw(optional(st.integers(1, AS_OF_SECONDS)))  # 0 = never in DealColumns
    return DealSpec(
        deal_id=deal_id,
        seller_id=draw(st.sampled_from(SELLERS)),
        channel_id=draw(st.sampled_from(CHANNELS)),
        seller_order_id=draw(st.text(max_size=6)),
        deal_type=draw(st.integers(1, 4)),
        premium=draw(st.booleans()),
        status=draw(st.integers(0, 3)),
        locked=draw(st.booleans()),
        allocation=draw(NON_NEGATIVE),
        min_allocation=min_allocation,
        max_allocation=draw(optional(st.integers(min_allocation or 0, 2**63 - 1))),
        spend_micros=draw(NON_NEGATIVE),
        impressions=draw(NON_NEGATIVE),
        clicks=draw(NON_NEGATIVE),
        completes=draw(NON_NEGATIVE),
        requests=draw(NON_NEGATIVE),
        ecpm_micros=draw(st.integers(0, 10**12)),
        cost_per_unit_micros=draw(optional(st.integers(1, 10**12))),
        value_per_unit=draw(optional(st.floats(min_value=0.0, max_value=1e100))),
        avails=draw(NON_NEGATIVE),
        bids=draw(NON_NEGATIVE),
        wins=draw(NON_NEGATIVE),
        participation_rate=draw(
            optional(st.floats(min_value=0.0, max_value=1.0, exclude_min=True))
        ),
        available_inventory=draw(optional(NON_NEGATIVE)),
        capacity_forecast=draw(optional(NON_NEGATIVE)),
        plan_apply_unix_seconds=applied,
        delivered_at_apply=draw(NON_NEGATIVE) if applied is not None else 0,
    )


@st.composite
def recent_deliveries(draw: st.DrawFn, n_deals: int) -> RecentDelivery:
    n_buckets = draw(st.integers(0, 5))
    width = timedelta(seconds=draw(st.integers(1, 6 * 3600)))
    ends_before_as_of = timedelta(seconds=draw(st.integers(0, 10**6)))
    shape = (n_deals, n_buckets)

    def measure() -> np.ndarray:
        return draw(hnp.arrays(np.int64, shape, elements=NON_NEGATIVE))

    return RecentDelivery(
        window_start=AS_OF - width * max(n_buckets - 1, 0) - ends_before_as_of,
        bucket_width=width,
        spend_micros=measure(),
        impressions=measure(),
        avails=measure(),
        wins=measure(),
    )


@st.composite
def snapshot_specs(draw: st.DrawFn) -> SnapshotSpec:
    ids = draw(st.lists(NAMES, min_size=1, max_size=8, unique=True))
    deals = tuple(draw(deal_specs(deal_id)) for deal_id in ids)
    delivery = draw(optional(recent_deliveries(len(deals))))
    return SnapshotSpec(deals=deals, seller_ids=SELLERS, channel_ids=CHANNELS, delivery=delivery)


# --- the property --------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=snapshot_specs(),
    compact_columns=st.booleans(),
    compact_arrow=st.booleans(),
    matrix_arrow=st.booleans(),
)
def test_every_form_decodes_to_the_same_tables(
    spec: SnapshotSpec, compact_columns: bool, compact_arrow: bool, matrix_arrow: bool
) -> None:
    per_deal = decode(build_snapshot(spec, "deals"))
    columns = decode(
        build_snapshot(spec, "columns", compact=compact_columns, matrix_arrow=matrix_arrow)
    )
    arrow = decode(build_snapshot(spec, "arrow", compact=compact_arrow, matrix_arrow=matrix_arrow))
    pd.testing.assert_frame_equal(per_deal.deals, expected_deals(spec.deals))
    assert_same_snapshot(per_deal, columns)
    assert_same_snapshot(per_deal, arrow)
    if spec.delivery is not None:
        assert per_deal.delivery is not None
        for measure in ("spend_micros", "impressions", "avails", "wins"):
            expected = spec.delivery.measure(measure).astype(np.float64)
            np.testing.assert_array_equal(getattr(per_deal.delivery, measure), expected)


def test_a_larger_random_portfolio_decodes_identically_in_every_form() -> None:
    spec = random_snapshot_spec(3_000, seed=21, n_buckets=24)
    decoded: dict[str, CampaignSnapshot] = {f: decode(build_snapshot(spec, f)) for f in FORMS}
    decoded["arrow-matrix"] = decode(build_snapshot(spec, "arrow", matrix_arrow=True))
    pd.testing.assert_frame_equal(decoded["deals"].deals, expected_deals(spec.deals))
    for other in ("columns", "arrow", "arrow-matrix"):
        assert_same_snapshot(decoded["deals"], decoded[other])


# --- the documented differences between the forms ------------------------------------------

TWO = (
    DealSpec("d0", "seller-a", "display", allocation=100),
    DealSpec(
        "d1",
        "seller-b",
        "ctv",
        allocation=200,
        min_allocation=0,
        max_allocation=0,
        cost_per_unit_micros=7,
        value_per_unit=2.5,
        participation_rate=0.5,
        available_inventory=0,
        capacity_forecast=0,
        plan_apply_unix_seconds=AS_OF_SECONDS - 60,
        delivered_at_apply=9,
    ),
)
TWO_SPEC = SnapshotSpec(deals=TWO, seller_ids=SELLERS, channel_ids=CHANNELS)


def _with_columns(**columns: list[Any]) -> snapshot_pb2.CampaignSnapshot:
    msg = build_snapshot(TWO_SPEC, "columns", compact=False)
    cols = msg.deals_table.columns
    for name, values in columns.items():
        cols.ClearField(name)  # type: ignore[arg-type]
        getattr(cols, name).extend(values)
    return msg


def test_deal_columns_encodings_of_unset() -> None:
    expected = decode(build_snapshot(TWO_SPEC, "deals")).deals
    pd.testing.assert_frame_equal(expected, expected_deals(TWO))
    variants = {
        # a value counts only where its has_ flag is set
        "has_flags": _with_columns(
            min_allocation=[55, 0],
            max_allocation=[66, 0],
            available_inventory=[77, 0],
            capacity_forecast=[88, 0],
        ),
        # participation NaN = unset; plan_apply_unix_seconds 0 = never applied
        "nan_and_zero": _with_columns(
            participation_rate=[float("nan"), 0.5], plan_apply_unix_seconds=[0, AS_OF_SECONDS - 60]
        ),
        # cost_per_unit_micros overrides ecpm_micros where > 0
        "price": _with_columns(ecpm_micros=[0, 123_456], cost_per_unit_micros=[0, 7]),
    }
    for name, msg in variants.items():
        pd.testing.assert_frame_equal(decode(msg).deals, expected, obj=name)


def test_an_empty_optional_column_means_unset_for_every_deal() -> None:
    spec = SnapshotSpec(
        deals=tuple(DealSpec(f"d{i}", "seller-a", "ctv", allocation=i) for i in range(3)),
        seller_ids=SELLERS,
        channel_ids=CHANNELS,
    )
    msg = build_snapshot(spec, "columns", compact=True)
    present = {f.name for f, _ in msg.deals_table.columns.ListFields()}
    assert present == {"deal_id", "seller_id", "channel_id", "deal_type", "allocation"}
    pd.testing.assert_frame_equal(decode(msg).deals, expected_deals(spec.deals))


def test_arrow_nulls_mean_unset() -> None:
    table = deal_arrow_table(TWO)
    assert "has_min_allocation" not in table.column_names
    assert table.column("min_allocation").null_count == 1
    msg = build_snapshot(TWO_SPEC, "arrow")
    pd.testing.assert_frame_equal(decode(msg).deals, expected_deals(TWO))


def _arrow_variant(**columns: pa.Array) -> snapshot_pb2.CampaignSnapshot:
    table = deal_arrow_table(TWO)
    for name, values in columns.items():
        table = table.set_column(table.column_names.index(name), name, values)
    msg = build_snapshot(TWO_SPEC, "arrow")
    msg.deals_table.arrow_ipc = arrow_ipc(table)
    return msg


@pytest.mark.parametrize(
    "variant",
    [
        {"allocation": pa.array([100, 200], pa.int32()), "deal_type": pa.array([2, 2], pa.uint8())},
        # narrow integers with nulls: filled in their own width, widened by numpy
        {"status": pa.array([None, 0], pa.int8()), "clicks": pa.array([0, None], pa.int16())},
        {"premium": pa.array([False, None]), "locked": pa.array([None, False])},
        {"deal_id": pa.array(["d0", "d1"], pa.large_string())},
        {"value_per_unit": pa.array([None, 2.5], pa.float32())},
        # dictionary-encoded strings: what pandas categoricals and most Arrow writers send
        {"seller_id": pa.array(["seller-a", "seller-b"]).dictionary_encode()},
        {"channel_id": pa.array(["display", "ctv"]).dictionary_encode()},
    ],
    ids=[
        "narrow-ints",
        "narrow-null-ints",
        "null-bools",
        "large-string",
        "float32",
        "dict-seller",
        "dict-channel",
    ],
)
def test_arrow_column_types_that_hold_the_same_values_decode_the_same(
    variant: dict[str, pa.Array],
) -> None:
    pd.testing.assert_frame_equal(decode(_arrow_variant(**variant)).deals, expected_deals(TWO))


def test_column_steps_kept_per_schema_follow_each_table_s_own_types() -> None:
    """What is done with each Arrow column is decided once per schema (names and types): a
    table of the same names in other types is read by its own, and a bad one again says so."""
    for variant in (
        {},
        {"allocation": pa.array([100, 200], pa.int32())},
        {"allocation": pa.array([100, 200], pa.uint64())},
        {},
    ):
        pd.testing.assert_frame_equal(decode(_arrow_variant(**variant)).deals, expected_deals(TWO))
    for _ in range(2):
        errors = Violations()
        msg = _arrow_variant(
            allocation=pa.array([1.0, 2.0]), deal_type=pa.array([1, 2**63], pa.uint64())
        )
        assert decode_snapshot(msg, Policy(), errors) is None
        assert [e.field for e in errors.items] == [
            "snapshot.deals_table.arrow_ipc.deal_type",
            "snapshot.deals_table.arrow_ipc.allocation",
        ]
        assert "cannot carry int64" in errors.items[1].description


@pytest.mark.parametrize("column", ["deal_id", "allocation", "status"])
def test_a_dictionary_column_arrow_cannot_decode_is_a_violation_of_that_column(
    column: str,
) -> None:
    """A dictionary whose values are lists (or structs) has no cast back to its values: the
    column is named with the reason, never an Arrow error escaping the decoder (INTERNAL)."""
    values = pa.array([[1, 2], [3]], pa.list_(pa.int64()))
    encoded = pa.DictionaryArray.from_arrays(pa.array([0, 1], pa.int32()), values)
    errors = Violations()
    assert decode_snapshot(_arrow_variant(**{column: encoded}), Policy(), errors) is None
    assert [e.field for e in errors.items] == [f"snapshot.deals_table.arrow_ipc.{column}"]
    assert "dictionary values cannot be decoded" in errors.items[0].description


# --- delivery ------------------------------------------------------------------------------


def test_deals_without_a_series_get_rows_of_nan() -> None:
    spec = random_snapshot_spec(5, seed=4, n_buckets=6)
    msg = build_snapshot(spec, "deals")
    for row in (1, 4):
        msg.deals[row].ClearField("recent_delivery")
    delivery = decode(msg).delivery
    assert delivery is not None and delivery.n_buckets == 6
    assert spec.delivery is not None
    for measure in ("spend_micros", "impressions", "avails", "wins"):
        values = getattr(delivery, measure)
        assert np.isnan(values[[1, 4]]).all()
        np.testing.assert_array_equal(
            values[[0, 2, 3]], spec.delivery.measure(measure)[[0, 2, 3]].astype(np.float64)
        )


def test_per_deal_series_values_round_as_python_floats() -> None:
    """Each measure is read as an integer and becomes a float as Python's float(int) rounds it,
    in its own row and measure, beyond 2**53 too."""
    spec = random_snapshot_spec(3, seed=4, n_buckets=3)
    msg = build_snapshot(spec, "deals")
    big = [2**53 + 1, 2**62 + 3, 2**63 - 1]
    for row, deal in enumerate(msg.deals):
        for m, measure in enumerate(("spend_micros", "impressions", "avails", "wins")):
            values = getattr(deal.recent_delivery, measure)
            values[:] = [v - 10 * row - m for v in big]
    delivery = decode(msg).delivery
    assert delivery is not None
    for m, measure in enumerate(("spend_micros", "impressions", "avails", "wins")):
        expected = [[float(v - 10 * row - m) for v in big] for row in range(3)]
        np.testing.assert_array_equal(getattr(delivery, measure), np.array(expected))


@pytest.mark.parametrize("form", FORMS)
def test_no_recent_delivery_decodes_to_none(form: Form) -> None:
    assert (
        decode(build_snapshot(random_snapshot_spec(4, seed=2, n_buckets=0), form)).delivery is None
    )


def test_the_pacing_target_is_decoded() -> None:
    msg = build_snapshot(TWO_SPEC, "deals")
    msg.pacing.mode = common_pb2.PACING_MODE_CUSTOM
    msg.pacing.custom_curve.hour_weights.extend([1.0] * 24)
    msg.pacing.dayparting.windows.add(day=1, start_hour=8, end_hour=12)
    pacing = decode(msg).pacing
    assert pacing.custom_weights is not None and pacing.custom_weights.shape == (24,)
    assert pacing.daypart is not None and pacing.daypart.shape == (7, 24)
    assert pacing.daypart.sum() == 4 and pacing.daypart[0, 8:12].all()
    assert {(b.period.value, b.amount) for b in pacing.budgets} == {
        ("LIFETIME", 10**13),
        ("DAY", 10**12),
    }


@pytest.mark.parametrize("rows", [5, 1_500])
def test_arrow_strings_validate_as_objects_do(rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large Arrow table keeps its strings as Arrow strings (no objects): its violations and
    its canonical table are the ones the object path gives, for every string check (empty,
    duplicate, unknown seller/channel, too long counted in characters, not bytes)."""
    from reallocator.wire import deals as wire_deals

    ids = [f"d{i}" for i in range(rows)]
    ids[3], ids[4] = ids[1], ""  # a duplicate, an empty one
    sellers = ["s1"] * rows
    sellers[2] = "nobody"
    channels = ["c1"] * rows
    channels[1] = ""
    orders: list[str | None] = [None] * rows
    orders[0] = "é" * 128  # 128 characters, 256 bytes: within max_id_length
    orders[2] = "x" * 129
    table = pa.table(
        {
            "deal_id": pa.array(ids),
            "seller_id": pa.array(sellers),
            "channel_id": pa.array(channels),
            "seller_order_id": pa.array(orders, pa.string()),
            "deal_type": pa.array([1] * rows, pa.int32()),
            "allocation": pa.array([10] * rows, pa.int64()),
        }
    )

    def decoded(arrow_from: int) -> tuple[list[Any], pd.DataFrame]:
        monkeypatch.setattr(wire_deals, "ARROW_TEXT_FROM", arrow_from)
        errors = Violations()
        raw = wire_deals.from_arrow_table(table, "t", errors)
        assert raw is not None
        limits = dataclasses.replace(wire_deals.DEFAULT_LIMITS, max_id_length=128)
        out = wire_deals.check_deals(raw, pd.Index(["s1"]), pd.Index(["c1"]), None, errors, limits)
        return errors.items, out

    arrow_errors, arrow_table = decoded(0)
    object_errors, object_table = decoded(10**9)
    assert arrow_errors == object_errors
    paths = {e.field for e in arrow_errors}
    assert paths >= {"t.deal_id[3]", "t.deal_id[4]", "t.seller_id[2]", "t.channel_id[1]",
                     "t.seller_order_id[2]"}  # fmt: skip
    assert "t.seller_order_id[0]" not in paths
    pd.testing.assert_frame_equal(arrow_table, object_table)


@given(
    values=st.lists(st.sampled_from(["", "a", "b", "seller-a", "é", "a\x00"]), max_size=40),
    known=st.lists(st.sampled_from(["a", "b", "seller-a", "é", "z", 7]), unique=True, max_size=5),
)
@settings(max_examples=150, deadline=None)
def test_membership_and_repeats_read_the_same_from_objects_and_arrow_strings(
    values: list[str], known: list[str]
) -> None:
    """Small tables' strings are objects checked with sets, large ones Arrow strings checked
    with pandas' hashing: both say the same."""
    objects = np.array(values, dtype=object)
    arrow = pd.array(values, dtype=TEXT_DTYPE)
    index = pd.Index(known, dtype=object)
    np.testing.assert_array_equal(wire_deals._isin(objects, index), wire_deals._isin(arrow, index))
    np.testing.assert_array_equal(wire_deals._duplicated(objects), wire_deals._duplicated(arrow))
    np.testing.assert_array_equal(
        wire_deals._duplicated(objects), pd.Series(values, dtype=object).duplicated().to_numpy()
    )


@given(
    values=st.lists(st.text(st.sampled_from("ab\u00e9\u4e2d-0"), max_size=6), max_size=60),
    distinct=st.booleans(),
    limit=st.integers(1, 8),
)
@settings(max_examples=200, deadline=None)
def test_repeats_and_id_lengths_of_arrow_strings_are_the_row_by_row_ones(
    values: list[str], distinct: bool, limit: int
) -> None:
    """Arrow strings all distinct are told by Arrow's `unique`, ids no longer in bytes than the
    limit are passed by their offsets: the same repeats and the same violations (named by
    characters) as pandas and the per-row count."""
    if distinct:
        values = list(dict.fromkeys(values))
    arrow = pd.array(values, dtype=TEXT_DTYPE)
    np.testing.assert_array_equal(
        wire_deals._duplicated(arrow), pd.Series(values, dtype=object).duplicated().to_numpy()
    )
    n = len(values)
    table = pa.table(
        {
            "deal_id": pa.array(values, pa.string()),
            "seller_id": pa.array(values[::-1], pa.string()),
            "channel_id": pa.array(["c"] * n, pa.string()),
            "seller_order_id": pa.array(values, pa.string()),
            "deal_type": pa.array([1] * n, pa.int32()),
            "allocation": pa.array([10] * n, pa.int64()),
        }
    )
    with pytest.MonkeyPatch.context() as patch:  # the ids as Arrow strings, however few
        patch.setattr(wire_deals, "ARROW_TEXT_FROM", 0)
        raw = wire_deals.from_arrow_table(table, "t", Violations())
    assert raw is not None
    assert n == 0 or all(is_text_array(raw.table[c]) for c in ("deal_id", "order_id"))
    errors = Violations()
    limits = dataclasses.replace(wire_deals.DEFAULT_LIMITS, max_id_length=limit)
    wire_deals._check_id_lengths(raw, errors, limits)
    expected = Violations()
    for column in ("deal_id", "seller_id", "channel_id", "order_id"):
        lengths = np.array([len(v) for v in raw.table[column].tolist()], dtype=np.float64)
        expected.rows(
            raw.form.path(column),
            lengths > limit,
            lambda i, lengths=lengths: f"longer than {limit} characters ({lengths[i]:.0f})",
        )
    assert errors.items == expected.items


def test_group_limits_empty_partial_and_unset_read_as_they_say() -> None:
    """An empty limits message (what a default encoder writes) is no limit; a partial one sets
    only its fields; ids are named where they are missing or repeated."""
    msg = build_snapshot(TWO_SPEC, "arrow")
    msg.sellers[0].limits.SetInParent()
    msg.sellers[1].limits.min_total = 5
    msg.channels[0].limits.max_share = 0.5
    sellers = decode(msg).sellers
    assert sellers.loc["seller-a"].isna().all()
    assert sellers.loc["seller-b", "min_total"] == 5
    assert sellers.loc["seller-b", ["max_total", "min_share", "max_share"]].isna().all()
    assert decode(msg).channels.loc["display", "max_share"] == 0.5
    msg.sellers.add(seller_id="seller-a")
    msg.sellers.add(seller_id="")
    errors = Violations()
    assert decode_snapshot(msg, Policy(), errors) is None
    assert [(v.field, v.description.split(" (")[0]) for v in errors.items] == [
        ("snapshot.sellers[3].seller_id", "duplicate seller_id 'seller-a'"),
        ("snapshot.sellers[4].seller_id", "required"),
    ]


@pytest.mark.parametrize("arrow_text", [False, True])
def test_the_canonical_table_owns_its_data(arrow_text: bool) -> None:
    """The decoders' deals table has DEAL_COLUMNS' dtypes and owns its data: an edit of the
    table reaches none of the decoded arrays (the cache of checked ids keeps some)."""
    from reallocator.core.model import text_array

    rng = np.random.default_rng(3)
    n = 7
    columns: dict[str, Any] = {}
    for name, dtype in DEAL_COLUMNS.items():
        if dtype == "str":
            values = np.array([f"{name}-{i}" for i in range(n)], dtype=object)
            columns[name] = text_array(values) if arrow_text else values
        else:
            columns[name] = rng.integers(0, 100, n).astype(dtype)
    built = wire_deals._canonical(columns)
    assert {c: str(t) for c, t in built.dtypes.items()} == DEAL_COLUMNS
    built.loc[0, "allocation"] = -5
    built.loc[0, "deal_id"] = "edited"
    assert columns["allocation"][0] != -5 and columns["deal_id"][0] == "deal_id-0"
    assert isinstance(built.index, pd.RangeIndex) and len(built) == n


@given(
    hnp.arrays(
        np.int64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=50),
        elements=st.sampled_from([0, 1, 7, -3, 2**40, 2**50, 2**52, 2**53, 2**53 + 1, 2**62])
        | st.integers(-(2**63), 2**63 - 1),
    )
)
@settings(max_examples=300, deadline=None)
def test_amount_sums_beyond_the_limit_are_the_clipped_float_sums_beyond_it(
    amounts: np.ndarray,
) -> None:
    """Integer sums stand for the clipped float sums only where they are the same numbers."""
    clipped = np.minimum(np.maximum(amounts, 0), wire_deals.MAX_AMOUNT).astype(np.float64)
    np.testing.assert_array_equal(
        wire_deals._sums_beyond(amounts), clipped.sum(axis=1) > wire_deals.MAX_AMOUNT
    )
