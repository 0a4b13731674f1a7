"""Request validation: every kind of bad input answers INVALID_ARGUMENT with a google.rpc.BadRequest
naming each offending field path and why, all of them at once, through a real gRPC channel.

Validation is exercised through Replan, which validates the whole request first (and, until the
engine is wired, then answers UNIMPLEMENTED); a sample goes through AssessPacing too, which must
answer the same. The property tests at the end break one field (or two) of a random valid snapshot
and check that decoding names exactly that field, never crashes and never hangs.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pyarrow as pa
import pytest
from builders import (
    AS_OF,
    CAMPAIGN_START,
    FORMS,
    SERIES_MEASURES,
    DealSpec,
    Form,
    SnapshotSpec,
    arrow_ipc,
    build_snapshot,
    deal_arrow_table,
    deal_path,
    flight,
    random_snapshot_spec,
    replan_request,
)
from conftest import bad_request, rpc_error
from google.protobuf.message import Message
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reallocator.core.model import Policy
from reallocator.v1 import common_pb2, snapshot_pb2
from reallocator.v1 import reallocator_service_pb2 as pb
from reallocator.v1 import reallocator_service_pb2_grpc as pb_grpc
from reallocator.wire.snapshot import decode_snapshot
from reallocator.wire.violations import MAX_ROWS_PER_CHECK, FieldViolation, Violations

Invalid = Callable[..., list[FieldViolation]]

BASE = random_snapshot_spec(4, seed=7, n_sellers=2, n_channels=2, n_buckets=4)
"""4 deals, 2 sellers, 2 channels, 4 hourly buckets ending at AS_OF; a LIFETIME + DAY budget."""

AS_OF_SECONDS = int(AS_OF.timestamp())
DAY = timedelta(days=1)
MONDAY, TUESDAY = 1, 2  # google.type.DayOfWeek


def request(form: Form = "deals", spec: SnapshotSpec = BASE) -> pb.ReplanRequest:
    return replan_request(build_snapshot(spec, form))


def fields(violations: list[FieldViolation]) -> list[str]:
    return sorted(v.field for v in violations)


def test_the_base_request_is_valid_in_every_form(
    passes_validation: Callable[[Message], None],
) -> None:
    for form in FORMS:
        passes_validation(request(form))


# --- one kind of bad input at a time --------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    form: Form
    mutate: Callable[[pb.ReplanRequest], None]
    expected: tuple[tuple[str, str], ...]  # (field path, fragment of its description)


CASES: list[Case] = []


def case(
    *expected: tuple[str, str], form: Form = "deals"
) -> Callable[[Callable[[pb.ReplanRequest], None]], Callable[[pb.ReplanRequest], None]]:
    """Registers a change of the base request in `form` and the violations it must cause."""

    def register(fn: Callable[[pb.ReplanRequest], None]) -> Callable[[pb.ReplanRequest], None]:
        CASES.append(Case(fn.__name__, form, fn, expected))
        return fn

    return register


def case_family(
    name: str,
    values: list[Any],
    set_value: Callable[[pb.ReplanRequest, Any], None],
    *expected: tuple[str, str],
) -> None:
    """Registers one case per value: `set_value(request, value)` must cause `expected`."""

    def setter(value: Any) -> Callable[[pb.ReplanRequest], None]:
        return lambda r: set_value(r, value)

    for value in values:
        CASES.append(Case(f"{name}[{value!r}]", "deals", setter(value), expected))


# snapshot header


@case(("snapshot", "required"))
def missing_snapshot(r: pb.ReplanRequest) -> None:
    r.ClearField("snapshot")


@case(("snapshot.campaign_id", "required"))
def missing_campaign_id(r: pb.ReplanRequest) -> None:
    r.snapshot.campaign_id = ""


@case(("snapshot.as_of", "required"))
def missing_as_of(r: pb.ReplanRequest) -> None:
    r.snapshot.ClearField("as_of")


@case(("snapshot.as_of", "out of range"))
def as_of_out_of_range(r: pb.ReplanRequest) -> None:
    r.snapshot.as_of.seconds = 253402300800  # 10000-01-01


@case(("snapshot.currency_code", "required"))
def missing_currency(r: pb.ReplanRequest) -> None:
    r.snapshot.currency_code = ""


case_family(
    "bad_currency",
    ["usd", "US", "EURO", "U$D", "USD\n", " USD"],
    lambda r, code: setattr(r.snapshot, "currency_code", code),
    ("snapshot.currency_code", "ISO 4217"),
)
case_family(
    "bad_time_zone",
    # "America" names a directory of the tz database, not a zone
    ["Mars/Olympus_Mons", "America", "../etc/passwd", "Europe/Paris "],
    lambda r, name: setattr(r.snapshot, "time_zone", name),
    ("snapshot.time_zone", "time zone"),
)


# deals, per-deal form


@case(("snapshot.deals[1].allocation", "must not be negative (got -5)"))
def negative_allocation(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[1].allocation = -5


@case(("snapshot.deals[0].delivered.spend_micros", "must not be negative"))
def negative_spend(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[0].delivered.spend_micros = -1


@case(("snapshot.deals[0].supply.wins", "must not be negative"))
def negative_wins(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[0].supply.wins = -3


case_family(
    "bad_value_per_unit",
    [math.nan, -1.0, -1e-300, math.inf, 1.0000001e100, 1.7e308],
    lambda r, value: setattr(r.snapshot.deals[3], "value_per_unit", value),
    ("snapshot.deals[3].value_per_unit", "must be finite and non-negative"),
)
case_family(
    "bad_participation_rate",
    [0.0, 1.5, -0.2, math.nan, math.inf],
    lambda r, rate: setattr(r.snapshot.deals[1].supply, "participation_rate", rate),
    ("snapshot.deals[1].supply.participation_rate", "must be in (0, 1]"),
)


@case(("snapshot.deals[0].max_allocation", "must be >= min_allocation"))
def min_above_max(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[0].max_allocation = 100
    r.snapshot.deals[0].min_allocation = 101


@case(("snapshot.deals[3].min_allocation", "must not be negative"))
def negative_min_allocation(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[3].min_allocation = -1


@case(("snapshot.deals[1].supply.available_inventory", "must not be negative"))
def negative_available_inventory(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[1].supply.available_inventory = -10


@case(("snapshot.deals[0].supply.capacity_forecast", "must not be negative (got -1)"))
def negative_capacity_forecast(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[0].supply.capacity_forecast = -1


@case(("snapshot.deals[2].seller_id", "unknown seller 'nope'"))
def unknown_seller(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[2].seller_id = "nope"


@case(("snapshot.deals[3].channel_id", "unknown channel 'radio'"))
def unknown_channel(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[3].channel_id = "radio"


@case(("snapshot.deals[0].seller_id", "required"))
def missing_seller_id(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[0].seller_id = ""


@case(("snapshot.deals[1].deal_id", "required"))
def missing_deal_id(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[1].deal_id = ""


@case(("snapshot.deals[2].deal_id", "duplicate deal_id 'deal-000000' (first at row 0)"))
def duplicate_deal_ids(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[2].deal_id = r.snapshot.deals[0].deal_id


@case(("snapshot.deals[0].deal_type", "DealType"))
def unspecified_deal_type(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[0].deal_type = common_pb2.DEAL_TYPE_UNSPECIFIED


@case(("snapshot.deals[1].status", "DealStatus"))
def unknown_deal_status(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[1].status = 9  # type: ignore[assignment]


@case(("snapshot.deals[3].ecpm_micros", "must not be negative"))
def negative_ecpm(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[3].ecpm_micros = -1


@case(("snapshot.deals[2].cost_per_unit_micros", "must not be negative"))
def negative_cost_per_unit(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[2].cost_per_unit_micros = -5


@case(("snapshot.deals[2].last_plan_application.apply_time", "after"))
def plan_applied_after_as_of(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[2].last_plan_application.apply_time.seconds = AS_OF_SECONDS + 60


@case(("snapshot.deals[2].last_plan_application.apply_time", "out of range"))
def plan_apply_time_out_of_range(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[2].last_plan_application.apply_time.nanos = -1


@case(("snapshot.deals[2].last_plan_application.delivered_at_apply", "must not be negative"))
def negative_delivered_at_apply(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[2].last_plan_application.delivered_at_apply = -1


@case(("snapshot.deals_table", "not both"))
def deals_and_deals_table(r: pb.ReplanRequest) -> None:
    r.snapshot.deals_table.CopyFrom(request("columns").snapshot.deals_table)


@case(("snapshot.deals", "at least one deal"))
def no_deals(r: pb.ReplanRequest) -> None:
    r.snapshot.ClearField("deals")


@case(("snapshot.deals_table", "at least one deal"), form="columns")
def empty_deal_columns(r: pb.ReplanRequest) -> None:
    r.snapshot.deals_table.ClearField("recent_delivery")
    r.snapshot.deals_table.columns.Clear()
    r.snapshot.deals_table.columns.SetInParent()


@case(("snapshot.deals_table", "at least one deal"), form="arrow")
def empty_arrow_table(r: pb.ReplanRequest) -> None:
    r.snapshot.deals_table.ClearField("recent_delivery")
    r.snapshot.deals_table.arrow_ipc = arrow_ipc(deal_arrow_table([]))


@case(("snapshot.deals_table", "set columns or arrow_ipc"), form="columns")
def deals_table_without_format(r: pb.ReplanRequest) -> None:
    r.snapshot.deals_table.ClearField("columns")


# deals, packed columns


@case(
    ("snapshot.deals_table.columns.deal_id[3]", "duplicate deal_id 'deal-000001' (first at row 1)"),
    form="columns",
)
def duplicate_deal_ids_in_columns(r: pb.ReplanRequest) -> None:
    ids = r.snapshot.deals_table.columns.deal_id
    ids[3] = ids[1]


@case(("snapshot.deals_table.columns.allocation", "has 3 values but deal_id has 4"), form="columns")
def column_length_mismatch(r: pb.ReplanRequest) -> None:
    del r.snapshot.deals_table.columns.allocation[-1]


@case(("snapshot.deals_table.columns.channel_id", "required column is empty"), form="columns")
def required_column_empty(r: pb.ReplanRequest) -> None:
    r.snapshot.deals_table.columns.ClearField("channel_id")


@case(
    ("snapshot.deals_table.columns.allocation[2]", "must not be negative (got -7)"), form="columns"
)
def negative_allocation_in_columns(r: pb.ReplanRequest) -> None:
    r.snapshot.deals_table.columns.allocation[2] = -7


@case(("snapshot.deals_table.columns.seller_id[0]", "unknown seller 'nope'"), form="columns")
def unknown_seller_in_columns(r: pb.ReplanRequest) -> None:
    r.snapshot.deals_table.columns.seller_id[0] = "nope"


@case(("snapshot.deals_table.columns.participation_rate[1]", "(0, 1]"), form="columns")
def participation_above_one_in_columns(r: pb.ReplanRequest) -> None:
    r.snapshot.deals_table.columns.participation_rate[1] = 1.5


@case(
    ("snapshot.deals_table.columns.cost_per_unit_micros[2]", "must not be negative"), form="columns"
)
def negative_cost_per_unit_in_columns(r: pb.ReplanRequest) -> None:
    cols = r.snapshot.deals_table.columns
    if not cols.cost_per_unit_micros:  # compact columns omit an all-unset column
        cols.cost_per_unit_micros.extend([0] * len(cols.deal_id))
    cols.cost_per_unit_micros[2] = -5


# deals, Arrow IPC


@case(("snapshot.deals_table.arrow_ipc", "not a readable Arrow IPC stream"), form="arrow")
def bad_arrow_bytes(r: pb.ReplanRequest) -> None:
    r.snapshot.deals_table.arrow_ipc = b"this is not Arrow"


def _arrow(r: pb.ReplanRequest, deals: list[DealSpec], **columns: pa.Array) -> None:
    table = deal_arrow_table(deals)
    for name, values in columns.items():
        table = table.append_column(name, values)
    r.snapshot.deals_table.arrow_ipc = arrow_ipc(table)


def _with_deal(row: int, **changes: Any) -> list[DealSpec]:
    return list(BASE.replace_deal(row, **changes).deals)


@case(
    ("snapshot.deals_table.arrow_ipc.allocation[1]", "must not be negative (got -3)"), form="arrow"
)
def negative_allocation_in_arrow(r: pb.ReplanRequest) -> None:
    _arrow(r, _with_deal(1, allocation=-3))


@case(("snapshot.deals_table.arrow_ipc.deal_id[3]", "duplicate deal_id"), form="arrow")
def duplicate_deal_ids_in_arrow(r: pb.ReplanRequest) -> None:
    _arrow(r, _with_deal(3, deal_id=BASE.deals[0].deal_id))


@case(("snapshot.deals_table.arrow_ipc.colour", "unknown column"), form="arrow")
def unknown_arrow_column(r: pb.ReplanRequest) -> None:
    _arrow(r, list(BASE.deals), colour=pa.array(["red"] * 4))


@case(("snapshot.deals_table.arrow_ipc.has_min_allocation", "unknown column"), form="arrow")
def has_column_in_arrow(r: pb.ReplanRequest) -> None:
    _arrow(r, list(BASE.deals), has_min_allocation=pa.array([True] * 4))


def _replace_arrow_column(r: pb.ReplanRequest, name: str, values: pa.Array) -> None:
    table = deal_arrow_table(BASE.deals)
    table = table.set_column(table.column_names.index(name), name, values)
    r.snapshot.deals_table.arrow_ipc = arrow_ipc(table)


# A column whose Arrow type cannot hold the DealColumns field is named: never crashed on, never
# silently converted.


@case(("snapshot.deals_table.arrow_ipc.allocation", ""), form="arrow")
def arrow_allocation_as_text(r: pb.ReplanRequest) -> None:
    _replace_arrow_column(r, "allocation", pa.array(["1", "2", "x", "4"]))


@case(("snapshot.deals_table.arrow_ipc.allocation", ""), form="arrow")
def arrow_allocation_as_fractions(r: pb.ReplanRequest) -> None:
    _replace_arrow_column(r, "allocation", pa.array([1.5, 2.0, 3.7, 4.0]))


@case(("snapshot.deals_table.arrow_ipc.deal_id", ""), form="arrow")
def arrow_deal_id_as_bool(r: pb.ReplanRequest) -> None:
    _replace_arrow_column(r, "deal_id", pa.array([True, False, None, None]))


@case(("snapshot.deals_table.arrow_ipc.allocation", ""), form="arrow")
def duplicate_arrow_column(r: pb.ReplanRequest) -> None:
    _arrow(r, list(BASE.deals), allocation=pa.array([1, 2, 3, 4], pa.int64()))


# recent delivery, per-deal series


@case(("snapshot.deals[0].recent_delivery.impressions", "has 3 buckets, expected 4"))
def series_of_inconsistent_lengths(r: pb.ReplanRequest) -> None:
    del r.snapshot.deals[0].recent_delivery.impressions[-1]


@case(("snapshot.deals[1].recent_delivery", "must share window_start"))
def series_not_sharing_window_start(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[1].recent_delivery.window_start.seconds -= 3600


@case(
    *(
        (f"snapshot.deals[2].recent_delivery.{measure}", "has 5 buckets")
        for measure in ("spend_micros", "impressions", "avails", "wins")
    )
)
def series_longer_than_the_others(r: pb.ReplanRequest) -> None:
    series = r.snapshot.deals[2].recent_delivery
    for measure in (series.spend_micros, series.impressions, series.avails, series.wins):
        measure.append(0)


@case(("snapshot.deals[3].recent_delivery", "must share window_start"))
def series_not_sharing_bucket_width(r: pb.ReplanRequest) -> None:
    series = r.snapshot.deals[3].recent_delivery
    series.bucket_width.seconds = 1800
    series.window_start.seconds += 2 * 3600


@case(("snapshot.deals[0].recent_delivery.window_start", "at or before as_of"))
def series_ending_after_as_of(r: pb.ReplanRequest) -> None:
    for deal in r.snapshot.deals:
        deal.recent_delivery.window_start.seconds = AS_OF_SECONDS


@case(("snapshot.deals[0].recent_delivery.bucket_width", "must be positive"))
def series_without_bucket_width(r: pb.ReplanRequest) -> None:
    for deal in r.snapshot.deals:
        deal.recent_delivery.ClearField("bucket_width")


@case(("snapshot.deals[3].recent_delivery.avails", "must not be negative"))
def negative_series_value(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[3].recent_delivery.avails[2] = -4


# recent delivery, matrix


@case(
    (
        "snapshot.deals_table.recent_delivery.spend_micros",
        "has 15 values, expected deal count x bucket_count = 4 x 4",
    ),
    form="columns",
)
def delivery_matrix_size_mismatch(r: pb.ReplanRequest) -> None:
    del r.snapshot.deals_table.recent_delivery.spend_micros[-1]


@case(("snapshot.deals_table.recent_delivery.window_start", "at or before as_of"), form="columns")
def delivery_matrix_ending_after_as_of(r: pb.ReplanRequest) -> None:
    r.snapshot.deals_table.recent_delivery.window_start.seconds = AS_OF_SECONDS


@case(("snapshot.deals_table.recent_delivery.wins[5]", "must not be negative"), form="arrow")
def negative_delivery_matrix_value(r: pb.ReplanRequest) -> None:
    r.snapshot.deals_table.recent_delivery.wins[5] = -1


@case(("snapshot.deals_table.recent_delivery.bucket_width", "must be positive"), form="columns")
def delivery_matrix_without_bucket_width(r: pb.ReplanRequest) -> None:
    r.snapshot.deals_table.recent_delivery.ClearField("bucket_width")


@case(
    ("snapshot.deals_table.recent_delivery.arrow_ipc", "not a readable Arrow IPC stream"),
    form="columns",
)
def bad_delivery_matrix_arrow(r: pb.ReplanRequest) -> None:
    matrix = r.snapshot.deals_table.recent_delivery
    for name in ("spend_micros", "impressions", "avails", "wins"):
        matrix.ClearField(name)  # type: ignore[arg-type]
    matrix.arrow_ipc = b"not arrow"


# pacing


@case(("snapshot.pacing.end_time", "must be after start_time"))
def campaign_end_before_start(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.end_time.FromDatetime(CAMPAIGN_START - DAY)


@case(("snapshot.pacing.flights[0].end_time", "must be after start_time"))
def flight_end_before_start(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.flights.append(flight("f1", CAMPAIGN_START + DAY, CAMPAIGN_START))


@case(("snapshot.pacing.flights[0].end_time", "required"))
def flight_without_end(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.flights.append(flight("f1", CAMPAIGN_START, CAMPAIGN_START + DAY))
    r.snapshot.pacing.flights[0].ClearField("end_time")


@case(("snapshot.pacing.flights[0].start_time", "flight 'b' overlaps flight 'a'"))
def overlapping_flights(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.flights.extend(
        [
            flight("b", CAMPAIGN_START + 3 * DAY, CAMPAIGN_START + 8 * DAY),
            flight("a", CAMPAIGN_START, CAMPAIGN_START + 5 * DAY),
        ]
    )


@case(("snapshot.pacing.flights[1].flight_id", "duplicate flight_id 'a'"))
def duplicate_flight_ids(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.flights.extend(
        [
            flight("a", CAMPAIGN_START, CAMPAIGN_START + DAY),
            flight("a", CAMPAIGN_START + DAY, CAMPAIGN_START + 2 * DAY),
        ]
    )


@case(("snapshot.pacing.budgets[2].period", "at most one budget per period"))
def two_budgets_for_one_period(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.budgets.add(period=common_pb2.PERIOD_DAY, amount=5)


@case(("snapshot.pacing.flights[0].budgets[1].period", "at most one budget per period"))
def two_budgets_for_one_period_in_a_flight(r: pb.ReplanRequest) -> None:
    week = common_pb2.PERIOD_WEEK
    r.snapshot.pacing.flights.append(
        flight("f1", CAMPAIGN_START, CAMPAIGN_START + DAY, (week, 10), (week, 20))
    )


@case(("snapshot.pacing.budgets[0].period", "LIFETIME budget needs start and end dates"))
def lifetime_budget_without_start(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.ClearField("start_time")


@case(("snapshot.pacing.budgets[0].period", "LIFETIME budget needs start and end dates"))
def lifetime_budget_without_end(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.ClearField("end_time")


@case(("snapshot.pacing.budgets[1].amount", "must not be negative"))
def negative_budget(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.budgets[1].amount = -1


@case(("snapshot.pacing.budgets[2].period", "must be one of"))
def budget_without_period(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.budgets.add(amount=5)


@case(("snapshot.pacing.budget_type", "unknown value 99"))
def unknown_budget_type(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.budget_type = 99  # type: ignore[assignment]


@case(("snapshot.pacing.custom_curve.hour_weights", "24 (hour of day) or 168 (hour of week)"))
def custom_curve_of_wrong_length(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.custom_curve.hour_weights.extend([1.0] * 23)


@case(("snapshot.pacing.custom_curve.hour_weights", "must not be all zero"))
def custom_curve_all_zero(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.mode = common_pb2.PACING_MODE_CUSTOM
    r.snapshot.pacing.custom_curve.hour_weights.extend([0.0] * 168)


@case(("snapshot.pacing.custom_curve.hour_weights", "required by PACING_MODE_CUSTOM"))
def custom_curve_missing(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.mode = common_pb2.PACING_MODE_CUSTOM


@case(("snapshot.pacing.custom_curve.hour_weights[5]", "must be finite and non-negative"))
def custom_curve_negative_weight(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.custom_curve.hour_weights.extend([1.0] * 5 + [-1.0] + [1.0] * 18)


@case(("snapshot.pacing.custom_curve.hour_weights[0]", "must be finite and non-negative"))
def custom_curve_nan_weight(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.custom_curve.hour_weights.extend([math.nan] + [1.0] * 23)


def _windows(r: pb.ReplanRequest, *windows: tuple[int, int, int]) -> None:
    for day, start, end in windows:
        r.snapshot.pacing.dayparting.windows.add(day=day, start_hour=start, end_hour=end)  # type: ignore[arg-type]


@case(("snapshot.pacing.dayparting.windows[2]", "overlaps another window"))
def dayparting_overlapping_windows(r: pb.ReplanRequest) -> None:
    _windows(r, (MONDAY, 8, 12), (TUESDAY, 0, 24), (MONDAY, 10, 14))


@case(("snapshot.pacing.dayparting.windows[0].start_hour", "must be in 0-23 (got 24)"))
def dayparting_start_hour_24(r: pb.ReplanRequest) -> None:
    _windows(r, (MONDAY, 24, 24))


@case(("snapshot.pacing.dayparting.windows[1].start_hour", "must be in 0-23 (got -1)"))
def dayparting_negative_start_hour(r: pb.ReplanRequest) -> None:
    _windows(r, (MONDAY, 8, 9), (MONDAY, -1, 3))


@case(("snapshot.pacing.dayparting.windows[0].end_hour", "at most 24 (got 25)"))
def dayparting_end_hour_25(r: pb.ReplanRequest) -> None:
    _windows(r, (MONDAY, 20, 25))


@case(("snapshot.pacing.dayparting.windows[0].end_hour", "must be after start_hour"))
def dayparting_end_not_after_start(r: pb.ReplanRequest) -> None:
    _windows(r, (MONDAY, 10, 10))


@case(("snapshot.pacing.dayparting.windows[0].day", "MONDAY..SUNDAY"))
def dayparting_unspecified_day(r: pb.ReplanRequest) -> None:
    _windows(r, (0, 8, 12))


@case(("snapshot.pacing.dayparting.windows", "at least one active window"))
def dayparting_without_windows(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.dayparting.SetInParent()


@case(("snapshot.pacing.even.catch_up_fraction", "must be in (0, 1]"))
def catch_up_fraction_zero(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.even.catch_up_fraction = 0.0


@case(("snapshot.pacing.front_loaded.fraction", "must be in [0, 1)"))
def front_loaded_fraction_one(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.front_loaded.fraction = 1.0


@case(("snapshot.pacing.back_loaded.share", "must be in [0, 1]"))
def back_loaded_share_nan(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.back_loaded.share = math.nan


def _change(r: pb.ReplanRequest, seconds: int, flight_id: str = "") -> None:
    change = r.snapshot.pacing.budget_changes.add(
        period=common_pb2.PERIOD_DAY, flight_id=flight_id, old_amount=10, new_amount=20
    )
    change.change_time.seconds = seconds


@case(("snapshot.pacing.budget_changes[0].change_time", "must not be after the snapshot's as_of"))
def budget_change_after_as_of(r: pb.ReplanRequest) -> None:
    _change(r, AS_OF_SECONDS + 3600)


@case(("snapshot.pacing.budget_changes[0].flight_id", "unknown flight 'zz'"))
def budget_change_of_unknown_flight(r: pb.ReplanRequest) -> None:
    _change(r, AS_OF_SECONDS - 3600, flight_id="zz")


@case(("snapshot.pacing.max_spend_micros", "must not be negative"))
def negative_max_spend(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.max_spend_micros = -1


# sellers and channels


@case(("snapshot.sellers[0].limits.max_total", "must be >= min_total"))
def seller_min_total_above_max(r: pb.ReplanRequest) -> None:
    r.snapshot.sellers[0].limits.min_total = 10
    r.snapshot.sellers[0].limits.max_total = 5


@case(("snapshot.sellers[1].limits.max_share", "must be a share in [0, 1]"))
def seller_share_above_one(r: pb.ReplanRequest) -> None:
    r.snapshot.sellers[1].limits.max_share = 1.5


@case(("snapshot.sellers[0].limits.min_total", "must not be negative"))
def seller_negative_min_total(r: pb.ReplanRequest) -> None:
    r.snapshot.sellers[0].limits.min_total = -1


@case(("snapshot.channels[0].limits.min_share", "must be a share in [0, 1]"))
def channel_negative_share(r: pb.ReplanRequest) -> None:
    r.snapshot.channels[0].limits.min_share = -0.1


@case(("snapshot.channels[1].limits.max_share", "must be >= min_share"))
def channel_min_share_above_max(r: pb.ReplanRequest) -> None:
    r.snapshot.channels[1].limits.min_share = 0.6
    r.snapshot.channels[1].limits.max_share = 0.4


@case(
    (
        "snapshot.sellers[2].seller_id",
        "duplicate seller_id 'seller-0' (first at snapshot.sellers[0])",
    )
)
def duplicate_seller_ids(r: pb.ReplanRequest) -> None:
    r.snapshot.sellers.add(seller_id="seller-0")


@case(("snapshot.channels[2].channel_id", "duplicate channel_id 'channel-1'"))
def duplicate_channel_ids(r: pb.ReplanRequest) -> None:
    r.snapshot.channels.add(channel_id="channel-1")


@case(("snapshot.sellers[2].seller_id", "required"))
def seller_without_id(r: pb.ReplanRequest) -> None:
    r.snapshot.sellers.add(display_name="no id")


# policy


@case(("policy.over_threshold", "> 1.0"))
def over_threshold_below_one(r: pb.ReplanRequest) -> None:
    r.policy.over_threshold = 0.95


@case(("policy.under_threshold", "> 0.0"))
def under_threshold_negative(r: pb.ReplanRequest) -> None:
    r.policy.under_threshold = -0.1


@case(("policy.confidence_threshold", "<= 100"))
def confidence_above_100(r: pb.ReplanRequest) -> None:
    r.policy.confidence_threshold = 101.0


@case(("policy.stalled_window", "must be positive"))
def negative_stalled_window(r: pb.ReplanRequest) -> None:
    r.policy.stalled_window.seconds = -1


@case(("policy.stalled_window", "must be positive"))
def zero_stalled_window(r: pb.ReplanRequest) -> None:
    r.policy.stalled_window.SetInParent()


@case(("policy.min_evidence", "must not be negative"))
def negative_min_evidence(r: pb.ReplanRequest) -> None:
    r.policy.min_evidence.seconds = -60


@case(("policy.requests.cooldown", "must not be negative"))
def negative_cooldown(r: pb.ReplanRequest) -> None:
    r.policy.requests.cooldown.seconds = -1


@case(("policy.requests.answer_time", "must not be negative"))
def negative_answer_time(r: pb.ReplanRequest) -> None:
    r.policy.requests.answer_time.seconds = -3600


@case(("policy.min_evidence_impressions", "must not be negative"))
def negative_min_evidence_impressions(r: pb.ReplanRequest) -> None:
    r.policy.min_evidence_impressions = -1


@case(("policy.severity.critical_share", "must be >= material_share"))
def critical_below_material(r: pb.ReplanRequest) -> None:
    r.policy.severity.critical_share = 0.05


@case(("policy.relaxation.deal_limits", "> 0.0"))
def zero_relaxation_weight(r: pb.ReplanRequest) -> None:
    r.policy.relaxation.deal_limits = 0.0


@case(("policy.churn.deal", "must be finite"))
def nan_churn(r: pb.ReplanRequest) -> None:
    r.policy.churn.deal = math.nan


def _policy_number(group: str, name: str, value: float) -> Callable[[pb.ReplanRequest], None]:
    return lambda r: setattr(getattr(r.policy, group), name, value)


# Beyond these bounds weight x amount overflows float64 (the plan's objective became inf).
for _group, _name, _value, _bound in (
    ("churn", "deal", 1e101, "<= 1e+100"),
    ("churn", "channel", 1.7e308, "<= 1e+100"),
    ("relaxation", "group_bounds", 1e300, "<= 1e+100"),
    ("relaxation", "deal_limits", 2e100, "<= 1e+100"),
    ("step_limits", "max_step_rel", 1e300, "<= 1000000.0"),
    ("step_limits", "max_step_rel_per_hour", 1e7, "<= 1000000.0"),
    ("step_limits", "max_step_rel_per_day", 1.7e308, "<= 1000000.0"),
):
    CASES.append(
        Case(
            f"huge_{_name}",
            "deals",
            _policy_number(_group, _name, _value),
            ((f"policy.{_group}.{_name}", _bound),),
        )
    )


@case(("policy.step_limits.max_step_abs", "must not be negative"))
def negative_step(r: pb.ReplanRequest) -> None:
    r.policy.step_limits.max_step_abs = -1


@case(("policy.auto_apply.max_severity", "unknown value 9"))
def unknown_auto_apply_severity(r: pb.ReplanRequest) -> None:
    r.policy.auto_apply.max_severity = 9  # type: ignore[assignment]


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_named_with_its_field_path(invalid: Invalid, c: Case) -> None:
    r = request(c.form)
    c.mutate(r)
    violations = invalid(r)
    assert fields(violations) == sorted(path for path, _ in c.expected), violations
    for path, fragment in c.expected:
        (violation,) = [v for v in violations if v.field == path]
        assert fragment in violation.description, violation
        assert violation.description.strip(), violation


SHARED = [
    "missing_snapshot",
    "missing_campaign_id",
    "negative_allocation",
    "duplicate_deal_ids_in_columns",
    "bad_arrow_bytes",
    "overlapping_flights",
    "series_not_sharing_window_start",
    "seller_share_above_one",
    "critical_below_material",
]


@pytest.mark.parametrize("name", SHARED)
def test_assess_pacing_validates_like_replan(invalid: Invalid, name: str) -> None:
    (c,) = [c for c in CASES if c.name == name]
    replan = request(c.form)
    c.mutate(replan)
    assess = pb.AssessPacingRequest(policy=replan.policy)
    if replan.HasField("snapshot"):
        assess.snapshot.CopyFrom(replan.snapshot)
    assert invalid(assess, rpc="AssessPacing") == invalid(replan)


def test_case_names_are_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))


# --- valid edge cases ----------------------------------------------------------------------


EDGES: list[Case] = []


def edge(form: Form = "deals") -> Callable[[Callable[[pb.ReplanRequest], None]], Any]:
    """Registers a change of the base request in `form` that keeps it valid."""

    def register(fn: Callable[[pb.ReplanRequest], None]) -> Callable[[pb.ReplanRequest], None]:
        EDGES.append(Case(fn.__name__, form, fn, ()))
        return fn

    return register


@edge()
def series_on_some_deals_only(r: pb.ReplanRequest) -> None:
    r.snapshot.deals[1].ClearField("recent_delivery")


@edge()
def default_time_zone(r: pb.ReplanRequest) -> None:
    r.snapshot.time_zone = ""


@edge()
def boundary_values(r: pb.ReplanRequest) -> None:
    deal = r.snapshot.deals[0]
    deal.supply.participation_rate = 1.0
    deal.value_per_unit = 0.0
    deal.min_allocation = deal.max_allocation = deal.allocation = 0
    deal.supply.available_inventory = 0
    r.snapshot.sellers[0].limits.min_share = 0.0
    r.snapshot.sellers[0].limits.max_share = 1.0
    r.snapshot.sellers[1].limits.min_total = r.snapshot.sellers[1].limits.max_total = 7


@edge()
def adjacent_flights_and_windows(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.flights.extend(
        [
            flight("b", CAMPAIGN_START + 5 * DAY, AS_OF + DAY, (common_pb2.PERIOD_LIFETIME, 9)),
            flight("a", CAMPAIGN_START, CAMPAIGN_START + 5 * DAY, (common_pb2.PERIOD_DAY, 1)),
        ]
    )
    _windows(r, (MONDAY, 8, 12), (MONDAY, 12, 24), (MONDAY, 0, 8), (7, 0, 24))
    _change(r, AS_OF_SECONDS, flight_id="b")


@edge()
def custom_curve_with_zero_hours(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.mode = common_pb2.PACING_MODE_CUSTOM
    r.snapshot.pacing.custom_curve.hour_weights.extend([0.0] * 167 + [2.5])


@edge()
def campaign_lifetime_budget_over_flights_without_campaign_dates(r: pb.ReplanRequest) -> None:
    # PacingTarget.start_time: "Required by a PERIOD_LIFETIME budget when there are no flights."
    r.snapshot.pacing.ClearField("start_time")
    r.snapshot.pacing.ClearField("end_time")
    r.snapshot.pacing.flights.append(flight("f1", CAMPAIGN_START, AS_OF + 3 * DAY))


@edge()
def non_spend_goal_with_money_cap(r: pb.ReplanRequest) -> None:
    r.snapshot.pacing.budget_type = common_pb2.BUDGET_TYPE_IMPRESSIONS
    r.snapshot.pacing.max_spend_micros = 0


@edge(form="columns")
def columns_nan_participation_means_unset(r: pb.ReplanRequest) -> None:
    r.snapshot.deals_table.columns.participation_rate[1] = math.nan
    r.snapshot.deals_table.columns.ClearField("seller_order_id")


@edge(form="arrow")
def arrow_with_required_columns_only(r: pb.ReplanRequest) -> None:
    required = ["deal_id", "seller_id", "channel_id", "deal_type", "allocation"]
    r.snapshot.deals_table.arrow_ipc = arrow_ipc(deal_arrow_table(BASE.deals).select(required))


@edge()
def policy_at_its_bounds(r: pb.ReplanRequest) -> None:
    p = r.policy
    p.over_threshold, p.under_threshold, p.confidence_threshold = 1.0001, 0.9999, 100.0
    p.stalled_window.seconds = 1
    p.min_evidence.SetInParent()
    p.severity.material_share = p.severity.critical_share = 0.2
    p.auto_apply.max_severity = common_pb2.SEVERITY_CRITICAL
    p.relaxation.group_bounds = 1e-9


@pytest.mark.parametrize("c", EDGES, ids=[c.name for c in EDGES])
def test_valid_edge_cases_pass(passes_validation: Callable[[Message], None], c: Case) -> None:
    r = request(c.form)
    c.mutate(r)
    passes_validation(r)


# --- all at once, and bounded ----------------------------------------------------------------


def test_every_violation_is_listed_at_once(
    invalid: Invalid, stub: pb_grpc.ReallocatorServiceStub
) -> None:
    r = request("deals")
    r.snapshot.campaign_id = ""
    r.snapshot.deals[1].allocation = -1
    r.policy.over_threshold = 0.95
    violations = invalid(r)
    assert fields(violations) == [
        "policy.over_threshold",
        "snapshot.campaign_id",
        "snapshot.deals[1].allocation",
    ]
    error = rpc_error(lambda: stub.Replan(r, timeout=10))
    assert "(and 2 more)" in (error.details() or "")


def test_violations_across_every_section_are_listed_at_once(invalid: Invalid) -> None:
    r = request("columns")
    s = r.snapshot
    s.currency_code = "usd"
    s.pacing.budgets.add(period=common_pb2.PERIOD_DAY, amount=1)
    s.sellers.add(seller_id="seller-1")
    s.deals_table.columns.allocation[0] = -1
    s.deals_table.columns.channel_id[3] = "radio"
    s.deals_table.recent_delivery.avails[0] = -1
    r.policy.confidence_threshold = -1
    assert fields(invalid(r)) == [
        "policy.confidence_threshold",
        "snapshot.currency_code",
        "snapshot.deals_table.columns.allocation[0]",
        "snapshot.deals_table.columns.channel_id[3]",
        "snapshot.deals_table.recent_delivery.avails[0]",
        "snapshot.pacing.budgets[2].period",
        "snapshot.sellers[2].seller_id",
    ]


@pytest.mark.parametrize(
    ("form", "series_path"),
    [
        ("deals", "snapshot.deals[3].recent_delivery.avails"),
        ("columns", "snapshot.deals_table.recent_delivery.avails[14]"),
    ],
)
def test_recent_delivery_is_checked_beside_other_violations(
    invalid: Invalid, form: Form, series_path: str
) -> None:
    r = request(form)
    r.snapshot.campaign_id = ""
    if form == "deals":
        r.snapshot.deals[3].recent_delivery.avails[2] = -4
    else:
        r.snapshot.deals_table.recent_delivery.avails[3 * 4 + 2] = -4
    assert fields(invalid(r)) == ["snapshot.campaign_id", series_path]


def test_100k_bad_rows_give_a_bounded_error(
    stub: pb_grpc.ReallocatorServiceStub, large_columns_snapshot: snapshot_pb2.CampaignSnapshot
) -> None:
    r = replan_request(large_columns_snapshot)
    n = len(r.snapshot.deals_table.columns.deal_id)
    r.snapshot.deals_table.columns.ClearField("allocation")
    r.snapshot.deals_table.columns.allocation.extend([-1] * n)
    error = rpc_error(lambda: stub.Replan(r, timeout=60))
    violations = bad_request(error)
    prefix = "snapshot.deals_table.columns.allocation"
    assert [v.field for v in violations[:MAX_ROWS_PER_CHECK]] == [
        f"{prefix}[{i}]" for i in range(MAX_ROWS_PER_CHECK)
    ]
    (last,) = violations[MAX_ROWS_PER_CHECK:]
    assert last.description == f"... and {n - MAX_ROWS_PER_CHECK} more rows with the same problem"
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None and status.ByteSize() < 8 * 1024


def test_bad_rows_deep_in_a_large_table_are_found(
    invalid: Invalid, large_columns_snapshot: snapshot_pb2.CampaignSnapshot
) -> None:
    r = replan_request(large_columns_snapshot)
    cols = r.snapshot.deals_table.columns
    cols.deal_id[99_999] = cols.deal_id[12]
    cols.seller_id[77_777] = "nope"
    assert fields(invalid(r)) == [
        "snapshot.deals_table.columns.deal_id[99999]",
        "snapshot.deals_table.columns.seller_id[77777]",
    ]


# --- property: corrupting one field names exactly that field --------------------------------


def _decode(msg: snapshot_pb2.CampaignSnapshot) -> tuple[object, list[FieldViolation]]:
    errors = Violations()
    result = decode_snapshot(msg, Policy(), errors)
    return result, errors.items


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except Exception:
        return False
    return True


NEGATIVE = st.integers(-(2**63), -1)
_COUNTERS = (
    "allocation",
    "spend_micros",
    "impressions",
    "clicks",
    "completes",
    "requests",
    "avails",
    "bids",
    "wins",
)
_NAN_OR_NEGATIVE = st.one_of(
    st.just(math.nan), st.floats(max_value=0.0, exclude_max=True), st.just(math.inf)
)
_RATE_OUT_OF_RANGE = st.one_of(
    st.floats(max_value=0.0, allow_nan=False), st.floats(min_value=1.0, exclude_min=True)
)
_UNKNOWN_NAME = st.text(min_size=1, max_size=12)


@st.composite
def _deal_corruption(
    draw: st.DrawFn, spec: SnapshotSpec, row: int
) -> tuple[dict[str, Any], str, str]:
    """(changes to deal `row`, the DealColumns field they break, a fragment of the reason)."""
    kind = draw(
        st.sampled_from(
            [
                *_COUNTERS,
                "ecpm_micros",
                "cost_per_unit_micros",
                "delivered_at_apply",
                "min_allocation",
                "max_allocation",
                "max_below_min",
                "available_inventory",
                "capacity_forecast",
                "value_per_unit",
                "participation_rate",
                "seller_id",
                "channel_id",
                "no_seller_id",
                "deal_id",
                "duplicate_deal_id",
                "deal_type",
                "status",
                "plan_apply_unix_seconds",
            ]
        )
    )
    as_of = int(spec.as_of.timestamp())
    if kind in _COUNTERS or kind in ("min_allocation", "available_inventory", "capacity_forecast"):
        return {kind: draw(NEGATIVE)}, kind, "negative"
    if kind == "ecpm_micros":
        return {kind: draw(NEGATIVE), "cost_per_unit_micros": None}, kind, "negative"
    if kind == "cost_per_unit_micros":
        return {kind: draw(NEGATIVE)}, kind, "negative"
    if kind == "delivered_at_apply":
        return {kind: draw(NEGATIVE), "plan_apply_unix_seconds": as_of - 60}, kind, "negative"
    if kind == "max_allocation":
        return {kind: draw(NEGATIVE), "min_allocation": None}, kind, "negative"
    if kind == "max_below_min":
        low = draw(st.integers(1, 2**53))  # above 2**53 is its own violation
        high = draw(st.integers(0, low - 1))
        return {"min_allocation": low, "max_allocation": high}, "max_allocation", "min_allocation"
    if kind == "value_per_unit":
        return {kind: draw(_NAN_OR_NEGATIVE)}, kind, "finite"
    if kind == "participation_rate":
        return {kind: draw(_RATE_OUT_OF_RANGE)}, kind, "(0, 1]"
    if kind in ("seller_id", "channel_id"):
        known = spec.seller_ids if kind == "seller_id" else spec.channel_ids
        name = draw(_UNKNOWN_NAME.filter(lambda s: s not in known))
        return {kind: name}, kind, "unknown"
    if kind == "no_seller_id":
        return {"seller_id": ""}, "seller_id", "required"
    if kind == "deal_id":
        return {kind: ""}, kind, "required"
    if kind == "duplicate_deal_id":
        first = draw(st.integers(0, row - 1)) if row else None
        if first is None:  # row 0 cannot repeat an earlier row: repeat it later instead
            return {}, "deal_id", "duplicate"
        return {"deal_id": spec.deals[first].deal_id}, "deal_id", "duplicate"
    if kind == "deal_type":
        value = draw(st.integers(-(2**31), 2**31 - 1).filter(lambda v: not 1 <= v <= 4))
        return {kind: value}, kind, "DealType"
    if kind == "status":
        value = draw(st.integers(-(2**31), 2**31 - 1).filter(lambda v: not 0 <= v <= 3))
        return {kind: value}, kind, "DealStatus"
    assert kind == "plan_apply_unix_seconds"
    return {kind: draw(st.integers(as_of + 1, 253402300799))}, kind, "as_of"


def _set_currency(code: str) -> Callable[[snapshot_pb2.CampaignSnapshot], None]:
    return lambda s: setattr(s, "currency_code", code)


def _set_time_zone(name: str) -> Callable[[snapshot_pb2.CampaignSnapshot], None]:
    return lambda s: setattr(s, "time_zone", name)


def _set_as_of(seconds: int) -> Callable[[snapshot_pb2.CampaignSnapshot], None]:
    return lambda s: setattr(s.as_of, "seconds", seconds)


def _end_at(seconds: int) -> Callable[[snapshot_pb2.CampaignSnapshot], None]:
    return lambda s: setattr(s.pacing.end_time, "seconds", seconds)


Mutation = Callable[[snapshot_pb2.CampaignSnapshot], None]
HEADER_KINDS = ("campaign_id", "currency", "time_zone", "as_of", "end_time")


@st.composite
def _header_corruption(
    draw: st.DrawFn, spec: SnapshotSpec, kinds: tuple[str, ...] = HEADER_KINDS
) -> tuple[Mutation, str]:
    """(a change to the built message, the path it breaks) for a snapshot-level field."""
    kind = draw(st.sampled_from(kinds))
    if kind == "campaign_id":
        return (lambda s: setattr(s, "campaign_id", "")), "snapshot.campaign_id"
    if kind == "currency":
        code = draw(
            st.one_of(st.sampled_from(["usd", "USD\n", "EU", "€UR"]), st.text(max_size=5)).filter(
                lambda c: re.fullmatch("[A-Z]{3}", c) is None
            )
        )
        return _set_currency(code), "snapshot.currency_code"
    if kind == "time_zone":
        name = draw(
            st.one_of(
                st.sampled_from(["America", "Mars/Base", "utc", "GMT+25"]), _UNKNOWN_NAME
            ).filter(lambda n: not _is_zone(n))
        )
        return _set_time_zone(name), "snapshot.time_zone"
    if kind == "as_of":
        seconds = draw(
            st.one_of(st.integers(253402300800, 2**62), st.integers(-(2**62), -62135596801))
        )
        return _set_as_of(seconds), "snapshot.as_of"
    start = int(spec.pacing.start_time.seconds)
    return _end_at(draw(st.integers(start - 10**9, start))), "snapshot.pacing.end_time"


def _series_path(form: Form, row: int, bucket: int, n_buckets: int, measure: str) -> str:
    if form == "deals":
        return f"snapshot.deals[{row}].recent_delivery.{measure}"
    return f"snapshot.deals_table.recent_delivery.{measure}[{row * n_buckets + bucket}]"


@st.composite
def _row_corruption(
    draw: st.DrawFn, spec: SnapshotSpec, form: Form
) -> tuple[SnapshotSpec, str, str]:
    """(the spec with one deal field or one recent-delivery value broken, its path in `form`,
    a fragment of the reason)."""
    n = len(spec.deals)
    row = draw(st.integers(0, n - 1))
    if spec.delivery is not None and draw(st.integers(0, 4)) == 0:
        measure = draw(st.sampled_from(SERIES_MEASURES))
        bucket = draw(st.integers(0, spec.delivery.n_buckets - 1))
        values = spec.delivery.measure(measure).copy()
        values[row, bucket] = draw(NEGATIVE)
        delivery = dataclasses.replace(spec.delivery, **{measure: values})  # type: ignore[arg-type]
        path = _series_path(form, row, bucket, spec.delivery.n_buckets, measure)
        return spec.replace(delivery=delivery), path, "negative"
    changes, column, fragment = draw(_deal_corruption(spec, row))
    if not changes:  # row 0 cannot repeat an earlier id: the last row repeats row 0's
        row = n - 1
        changes = {"deal_id": spec.deals[0].deal_id}
    return spec.replace_deal(row, **changes), deal_path(form, row, column), fragment


@st.composite
def _valid_specs(draw: st.DrawFn) -> SnapshotSpec:
    return random_snapshot_spec(
        draw(st.integers(2, 6)),
        draw(st.integers(0, 2**16)),
        n_sellers=draw(st.integers(1, 3)),
        n_channels=draw(st.integers(1, 3)),
        n_buckets=draw(st.sampled_from([0, 3])),
    )


@st.composite
def corrupted_snapshots(draw: st.DrawFn) -> tuple[snapshot_pb2.CampaignSnapshot, str, str]:
    """A random valid snapshot in a random form with one field broken, that field's path, and a
    fragment of the reason."""
    spec = draw(_valid_specs())
    form: Form = draw(st.sampled_from(FORMS))
    if draw(st.booleans()):
        mutate, path = draw(_header_corruption(spec))
        msg = build_snapshot(spec, form)
        mutate(msg)
        return msg, path, ""
    spec, path, fragment = draw(_row_corruption(spec, form))
    return build_snapshot(spec, form), path, fragment


@st.composite
def twice_corrupted_snapshots(draw: st.DrawFn) -> tuple[snapshot_pb2.CampaignSnapshot, list[str]]:
    """One snapshot-level field and one deal (or delivery) field broken independently."""
    spec = draw(_valid_specs())
    form: Form = draw(st.sampled_from(FORMS))
    mutate, header_path = draw(_header_corruption(spec, ("campaign_id", "currency", "end_time")))
    spec, row_path, _ = draw(_row_corruption(spec, form))
    msg = build_snapshot(spec, form)
    mutate(msg)
    return msg, sorted([header_path, row_path])


_QUICK = settings(
    max_examples=200, deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.too_slow]
)


@_QUICK
@given(corrupted_snapshots())
def test_corrupting_one_field_names_exactly_that_field(
    corrupted: tuple[snapshot_pb2.CampaignSnapshot, str, str],
) -> None:
    msg, path, fragment = corrupted
    result, violations = _decode(msg)
    assert result is None
    assert [v.field for v in violations] == [path], violations
    assert fragment in violations[0].description


@_QUICK
@given(twice_corrupted_snapshots())
def test_two_independent_corruptions_are_both_named(
    corrupted: tuple[snapshot_pb2.CampaignSnapshot, list[str]],
) -> None:
    msg, paths = corrupted
    result, violations = _decode(msg)
    assert result is None
    assert fields(violations) == paths, violations


@settings(
    max_examples=12,
    derandomize=True,  # a fixed sample; the decode-level tests above do the exploring
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow],
)
@given(corrupted_snapshots())
def test_corrupting_one_field_answers_invalid_argument_over_grpc(
    stub: pb_grpc.ReallocatorServiceStub, corrupted: tuple[snapshot_pb2.CampaignSnapshot, str, str]
) -> None:
    msg, path, _ = corrupted
    try:
        stub.Replan(replan_request(msg), timeout=10)
    except grpc.RpcError as error:
        assert [v.field for v in bad_request(error)] == [path]
    else:
        pytest.fail("a corrupted snapshot was accepted")
