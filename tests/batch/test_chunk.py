"""Decoding a chunk at once is decoding each campaign alone: the same canonical deal rows for
clean campaigns, the same errors for bad ones, whatever the mix."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
from builders import build_snapshot, random_snapshot_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reallocator.batch import chunk as chunk_module
from reallocator.batch.book import book_rows
from reallocator.batch.campaign import Decoded, Options, decode
from reallocator.batch.chunk import decode_chunk
from reallocator.batch.runner import group_book

_CACHE: dict[int, tuple[dict[str, Any], pd.DataFrame]] = {}


def _campaign(seed: int) -> tuple[dict[str, Any], pd.DataFrame]:
    if seed not in _CACHE:
        _CACHE[seed] = book_rows(
            build_snapshot(random_snapshot_spec(6, seed, n_buckets=0), "arrow")
        )
    row, deals = _CACHE[seed]
    return dict(row), deals.copy()


def _book(n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, deals = zip(*(_campaign(s) for s in range(n)), strict=True)
    return pd.DataFrame(list(rows)), pd.concat(deals, ignore_index=True)


def _decode_both(
    campaigns: pd.DataFrame, deals: pd.DataFrame
) -> tuple[list[Decoded], list[Decoded]]:
    book = group_book(campaigns, deals)
    c = book.chunk(0, len(book.rows))
    together = decode_chunk(c.rows, c.deals, c.starts, c.stops, Options())
    alone = [
        decode(row, c.deals.slice(int(a), int(b - a)), Options())
        for row, a, b in zip(c.rows, c.starts, c.stops, strict=True)
    ]
    return together, alone


def _same(together: list[Decoded], alone: list[Decoded]) -> None:
    for t, a in zip(together, alone, strict=True):
        assert [(v.field, v.description) for v in t.errors.items] == [
            (v.field, v.description) for v in a.errors.items
        ]
        assert (t.snapshot is None) == (a.snapshot is None)
        if t.snapshot is not None and a.snapshot is not None:
            pd.testing.assert_frame_equal(t.snapshot.deals, a.snapshot.deals)
            assert t.snapshot.as_of == a.snapshot.as_of
        assert t.relax == a.relax


def test_a_clean_chunk_is_checked_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Campaigns share deal and seller ids (each campaign's own); one check, same rows."""
    campaigns, deals = _book(5)
    calls = []
    monkeypatch.setattr(chunk_module, "decode", lambda *a: calls.append(a) or decode(*a))
    together, alone = _decode_both(campaigns, deals)
    assert calls == []  # no campaign decoded alone
    assert all(t.snapshot is not None for t in together)
    _same(together, alone)


def test_a_seller_of_another_campaign_is_unknown() -> None:
    """Campaign 0's deal names a seller only campaign 1 lists: campaign 0 alone is INVALID."""
    campaigns, deals = _book(3)
    first = deals.index[deals["campaign_id"] == "campaign-0"][2]
    deals.loc[first, "seller_id"] = "seller-only-in-1"
    sellers = json.loads(campaigns.loc[1, "sellers"])
    campaigns.loc[1, "sellers"] = json.dumps([*sellers, {"sellerId": "seller-only-in-1"}])
    together, alone = _decode_both(campaigns, deals)
    _same(together, alone)
    assert together[0].snapshot is None
    assert "unknown seller 'seller-only-in-1'" in together[0].errors.items[0].description
    assert together[1].snapshot is not None and together[2].snapshot is not None


_BAD = {
    "allocation": -1,
    "deal_id": "",
    "deal_type": 9,
    "value_per_unit": float("nan"),
    "max_allocation": -3,
    "plan_apply_unix_seconds": 4_000_000_000,  # after as_of
    "seller_id": "nobody",
}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 5), st.sampled_from([*_BAD, "duplicate"])),
        max_size=3,
    ),
    st.booleans(),
)
def test_any_mix_of_bad_rows_gives_each_campaign_its_own_errors(
    edits: list[tuple[int, int, str]], bad_currency: bool
) -> None:
    campaigns, deals = _book(4)
    for campaign, row, column in edits:
        at = deals.index[deals["campaign_id"] == f"campaign-{campaign}"]
        if column == "duplicate":
            deals.loc[at[row], "deal_id"] = deals.loc[at[(row + 1) % len(at)], "deal_id"]
        else:
            deals.loc[at[row], column] = _BAD[column]
    if bad_currency:
        campaigns.loc[2, "currency_code"] = "euros"
    together, alone = _decode_both(campaigns, deals)
    _same(together, alone)
