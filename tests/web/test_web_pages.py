"""The dashboard's pages, CSRF protection and review through Starlette's TestClient, on a real
SQLite audit store populated the way Replan populates it."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from web_data import record, record_campaign, snapshots

from reallocator.config import Principal, SecurityConfig
from reallocator.server.auth import hash_token
from reallocator.store.sql import SqlStore
from reallocator.v1 import plan_pb2
from reallocator.web import queries
from reallocator.web.app import Settings, create_app
from reallocator.web.security import CSRF_COOKIE, CSRF_FIELD
from reallocator.web.views import DEAL_SORTS, deal_frame, deal_page, delivered_total, plan_rows

Recorded = tuple[SqlStore, dict[str, list[plan_pb2.Plan]]]


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Recorded]:
    """Store with `alpha` (30 deals, 3 snapshots, 3 channels) and `beta` (12 deals, 2)."""
    folder: Path = tmp_path_factory.mktemp("web-store")
    store = SqlStore.open(f"sqlite:///{folder / 'store.db'}")
    plans = {
        "alpha": record_campaign(store, "alpha", 30, 3, 11, n_channels=3),
        "beta": record_campaign(store, "beta", 12, 2, 12, n_channels=2),
    }
    yield store, plans
    store.close()


def _figure(html: str, name: str) -> dict[str, Any]:
    found = re.search(
        rf'<script type="application/json" id="{name}-data">(.*?)</script>', html, re.S
    )
    assert found, f"no {name} figure in the page"
    figure: dict[str, Any] = json.loads(found.group(1))
    return figure


def _csrf(html: str) -> str:
    found = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', html)  # htmx sends it as a header
    assert found
    form = re.search(rf'name="{CSRF_FIELD}" value="([0-9a-f]+)"', html)
    assert form is None or form.group(1) == found.group(1)
    return found.group(1)


def test_the_campaign_list_shows_each_campaign_its_newest_plan_and_pending_reviews(
    recorded: Recorded,
) -> None:
    store, plans = recorded
    client = TestClient(create_app(store))
    page = client.get("/")
    assert page.status_code == 200
    rows = re.findall(r'<tr data-campaign="([^"]+)">(.*?)</tr>', page.text, re.S)
    assert {c for c, _ in rows} == {"alpha", "beta"}
    for campaign, row in rows:
        assert "PROPOSED" in row and '<strong class="pending">1</strong>' in row
        assert f">{len(plans[campaign])}</td>" in row  # plans recorded
        figures = {f.name: f for f in plans[campaign][-1].rationale.factors}
        cells = re.findall(r'<td class="num[^"]*">([^<]*)</td>', row)
        assert cells[:2] == [
            figures["campaign pacing ratio"].display_value,
            f"{figures['alerts'].value:.0f}",
        ]
    only = client.get("/campaigns", params={"q": "alp"})
    assert 'data-campaign="alpha"' in only.text and 'data-campaign="beta"' not in only.text
    none = client.get("/campaigns", params={"state": "APPLIED"})
    assert "data-campaign" not in none.text and "No campaign matches" in none.text
    by_id = client.get("/campaigns", params={"sort": "campaign"})
    assert re.findall(r'data-campaign="([^"]+)"', by_id.text) == ["alpha", "beta"]
    pacing = {c: next(f.value for f in p[-1].rationale.factors if f.name == "campaign pacing ratio")
              for c, p in plans.items()}  # fmt: skip
    by_pacing = client.get("/campaigns", params={"sort": "pacing"})
    assert re.findall(r'data-campaign="([^"]+)"', by_pacing.text) == sorted(pacing, key=pacing.get)


def test_the_campaign_page_charts_one_delivered_point_per_snapshot(recorded: Recorded) -> None:
    store, plans = recorded
    client = TestClient(create_app(store))
    page = client.get("/campaigns/alpha")
    assert page.status_code == 200
    chart = _figure(page.text, "spend-chart")
    traces = {t["name"]: t for t in chart["data"]}
    delivered = traces["delivered"]
    expected = [
        round(delivered_total(m) / 1e6, 2) for m in snapshots("alpha", 30, 3, 11, n_channels=3)
    ]
    assert delivered["y"] == expected and len(delivered["x"]) == 3
    assert expected == sorted(expected) and expected[0] < expected[-1]
    assert len(traces["pacing curve (expected)"]["x"]) == 200
    plan = plans["alpha"][-1]
    projection = traces["plan (delivered + allocated)"]["y"]
    assert projection[0] == pytest.approx(expected[-1], abs=0.01)
    newest = snapshots("alpha", 30, 3, 11, n_channels=3)[-1]
    end = (delivered_total(newest) + plan.allocated) / 1e6
    assert projection[-1] == pytest.approx(end, abs=0.01)
    moves = _figure(page.text, "moves-chart")
    before, after = moves["data"]
    assert before["x"] == [c.id for c in plan.channels]
    assert after["y"] == [round(c.new_allocation / 1e6, 2) for c in plan.channels]
    # Amounts in the campaign's currency, as the plan's rationale writes them.
    assert re.search(r"\d{1,3}(,\d{3})*\.\d\d USD", page.text)
    assert plan.name in page.text and f'name="etag" value="{plan.etag}"' in page.text
    assert "Seller requests" in page.text and "Alerts (" in page.text


def test_an_unknown_campaign_is_not_found(recorded: Recorded) -> None:
    store, _ = recorded
    client = TestClient(create_app(store))
    assert client.get("/campaigns/nope").status_code == 404
    assert client.get("/campaigns/nope/history").status_code == 404


def test_the_deals_table_sorts_filters_and_pages(recorded: Recorded) -> None:
    store, plans = recorded
    client = TestClient(create_app(store))
    plan = plans["alpha"][-1]
    url = "/campaigns/alpha/deals"
    page = client.get(url, params={"plan": plan.name, "sort": "deal"})
    ids = re.findall(r'<th scope="row">(deal-\d+)</th>', page.text)
    assert ids == sorted(d.deal_id for d in plan.deals)[:30]
    cut = client.get(url, params={"plan": plan.name, "sort": "-delta"})
    first = re.findall(r'<th scope="row">(deal-\d+)</th>', cut.text)[0]
    assert first == max(plan.deals, key=lambda d: d.delta).deal_id
    moved = sorted(plan.deals, key=lambda d: -abs(d.delta))[0]
    top = client.get(url, params={"plan": plan.name})
    assert re.findall(r'<th scope="row">(deal-\d+)</th>', top.text)[0] == moved.deal_id
    one = client.get(url, params={"plan": plan.name, "q": plan.deals[4].deal_id})
    assert re.findall(r'<th scope="row">(deal-\d+)</th>', one.text) == [plan.deals[4].deal_id]
    assert client.get(url, params={"plan": plan.name, "sort": "bogus"}).status_code == 400
    assert client.get(url, params={"plan": plan.name, "page": "x"}).status_code == 400
    assert client.get(url, params={"plan": "campaigns/alpha/plans/0"}).status_code == 404


def test_the_review_panel_says_what_the_full_plan_says(recorded: Recorded) -> None:
    """Moves and schedules on the page come from the plan's stored tables, their words rendered
    for the rows shown: the words of the plan read whole."""
    store, plans = recorded
    client = TestClient(create_app(store))
    plan = store.get_plan(plans["beta"][-1].name)  # FULL: every row and schedule with words
    page = client.get("/campaigns/beta").text
    moved = [d for d in plan.deals if d.delta != 0]
    assert moved and plan.schedules
    assert page.count('name="reject" value=') == len(moved)
    for text in [d.rationale for d in moved] + [s.rationale for s in plan.schedules[:20]]:
        assert html.escape(text, quote=False) in page or html.escape(text) in page, text
    assert f"Buyer-side schedules ({len(plan.schedules)})" in page


def test_a_review_needs_the_csrf_token_of_this_browser(recorded: Recorded) -> None:
    store, plans = recorded
    client = TestClient(create_app(store))
    plan = plans["beta"][-1]
    form = {"plan": plan.name, "etag": plan.etag, "decision": "approve", "comment": "x"}
    assert client.post("/review", data=form).status_code == 403  # no cookie, no token
    page = client.get("/campaigns/beta")
    token = _csrf(page.text)
    assert client.cookies.get(CSRF_COOKIE)
    assert client.post("/review", data=form).status_code == 403  # cookie, no token
    assert client.post("/review", data={**form, CSRF_FIELD: "0" * 64}).status_code == 403
    stranger = TestClient(create_app(store))  # another browser: its own cookie
    stranger.get("/")
    assert stranger.post("/review", data={**form, CSRF_FIELD: token}).status_code == 403
    other_site = client.post(
        "/review", data={**form, CSRF_FIELD: token}, headers={"origin": "https://evil.example"}
    )
    assert other_site.status_code == 403
    assert store.get_plan(plan.name).state == plan_pb2.PLAN_STATE_PROPOSED  # nothing changed
    # Another dashboard process (another secret) does not accept this one's tokens either.
    other = TestClient(create_app(store, Settings()))
    other.cookies = client.cookies
    assert other.post("/review", data={**form, CSRF_FIELD: token}).status_code == 403
    # A valid token on a plan changed since it was read (stale etag): refused, nothing changes.
    stale = client.post("/review", data={**form, CSRF_FIELD: token, "etag": "stale"})
    assert stale.status_code == 409 and "changed since it was read" in stale.text
    assert store.get_plan(plan.name).state == plan_pb2.PLAN_STATE_PROPOSED


def test_approve_then_a_stale_second_decision_is_refused(recorded: Recorded) -> None:
    store, plans = recorded
    client = TestClient(create_app(store), follow_redirects=False)
    plan = plans["alpha"][-1]
    token = _csrf(client.get("/campaigns/alpha").text)
    form = {CSRF_FIELD: token, "plan": plan.name, "etag": plan.etag, "comment": "looks right"}
    done = client.post("/review", data={**form, "decision": "approve"})
    assert done.status_code == 303 and done.headers["location"] == "/campaigns/alpha"
    stored = store.get_plan(plan.name)
    assert stored.state == plan_pb2.PLAN_STATE_APPROVED
    assert (stored.history[-1].actor, stored.history[-1].comment) == ("web", "looks right")
    again = client.post("/review", data={**form, "etag": stored.etag, "decision": "reject"})
    assert again.status_code == 409 and "only a PROPOSED plan" in again.text
    assert store.get_plan(plan.name).state == plan_pb2.PLAN_STATE_APPROVED
    # htmx gets the review panel back, with the new state and no form.
    panel = client.get("/campaigns/alpha/review-panel")
    assert 'id="plan-state" class="badge state-approved"' in panel.text
    assert 'name="decision"' not in panel.text
    history = client.get("/campaigns/alpha/history")
    steps = re.findall(r'<tr class="step-([a-z-]+)">', history.text)
    assert steps[:2] == ["snapshot", "plan"] and steps[-1] == "review"
    assert steps.count("snapshot") == 3 and steps.count("superseded") == 2
    assert "looks right" in history.text


def test_reject_through_htmx_returns_the_panel_with_the_new_state(recorded: Recorded) -> None:
    store, plans = recorded
    client = TestClient(create_app(store))
    plan = plans["beta"][-1]
    token = _csrf(client.get("/campaigns/beta").text)
    form = {"plan": plan.name, "etag": plan.etag, "decision": "reject", "comment": "too much",
            "reviewer": "  Ana   Lima "}  # fmt: skip
    panel = client.post("/review", data=form, headers={"hx-request": "true", "x-csrf-token": token})
    assert panel.status_code == 200 and "rejected by Ana Lima" in panel.text
    assert store.get_plan(plan.name).history[-1].actor == "Ana Lima"  # the name typed
    assert 'class="badge state-rejected"' in panel.text
    assert store.get_plan(plan.name).state == plan_pb2.PLAN_STATE_REJECTED
    assert client.post("/review", data={**form, "decision": "maybe"},
                       headers={"x-csrf-token": token}).status_code == 400  # fmt: skip
    assert client.post("/review", data={**form, "etag": ""},
                       headers={"x-csrf-token": token}).status_code == 400  # fmt: skip
    missing = client.post("/review", data={**form, "plan": "campaigns/beta/plans/none"},
                          headers={"x-csrf-token": token})  # fmt: skip
    assert missing.status_code == 404 and "no plan" in missing.text


def test_events_after_an_id_are_the_store_events_recorded_since(recorded: Recorded) -> None:
    store, _ = recorded
    before = queries.last_event_id(store.engine)
    assert [e.id for e in queries.events_after(store.engine, before)] == []
    newer = record(store, snapshots("beta", 8, 1, 77)[0], actor="svc", approve=True)
    seen = queries.events_after(store.engine, before)
    assert [(e.plan_name, e.state) for e in seen] == [(newer.name, "APPROVED")]
    assert queries.events_after(store.engine, before, campaign="alpha") == []


def test_assets_are_served_locally(recorded: Recorded) -> None:
    store, _ = recorded
    client = TestClient(create_app(store))
    plotly = client.get("/assets/plotly.min.js")
    assert plotly.status_code == 200 and plotly.headers["content-type"].startswith(
        "text/javascript"
    )
    assert len(plotly.content) > 1_000_000
    assert "htmx" in client.get("/static/htmx.min.js").text[:2000]
    assert client.get("/static/app.css").status_code == 200
    response = client.get("/campaigns/alpha")
    page = response.text
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing from the internet
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert not re.search(r"<script>|<script\s+(?!type=\"application/json\"|src=)", page)


def test_with_tokens_reading_needs_read_and_deciding_needs_review(recorded: Recorded) -> None:
    store, _ = recorded
    security = SecurityConfig(tokens=(
        Principal("viewer", frozenset({"read"}), hash_token("view-token")),
        Principal("ana", frozenset({"read", "review"}), hash_token("review-token")),
    ))  # fmt: skip
    app = create_app(store, Settings(security=security))
    anonymous = TestClient(app, follow_redirects=False)
    assert anonymous.get("/").headers["location"] == "/login"
    assert anonymous.get("/", headers={"hx-request": "1"}).status_code == 401
    assert anonymous.get("/", headers={"authorization": "Bearer wrong"}).status_code == 303
    viewer = TestClient(app, headers={"authorization": "Bearer view-token"})
    page = viewer.get("/campaigns/alpha")
    assert page.status_code == 200 and "signed in as viewer" in page.text
    newest = store.list_plans("beta")[0][0]
    form = {CSRF_FIELD: _csrf(page.text), "plan": newest.name, "etag": newest.etag,
            "decision": "approve"}  # fmt: skip
    assert viewer.post("/review", data=form).status_code == 403
    # A browser signs in once; the token is then a cookie.
    browser = TestClient(app, follow_redirects=False)
    login = browser.get("/login")
    assert (
        browser.post("/login", data={CSRF_FIELD: _csrf(login.text), "token": "nope"}).status_code
        == 401
    )
    signed = browser.post("/login", data={CSRF_FIELD: _csrf(login.text), "token": "review-token"})
    assert signed.status_code == 303
    assert "signed in as ana" in browser.get("/").text
    # Signed in, the decision is the token's: a name typed in the form does not count.
    fresh = record(store, snapshots("beta", 8, 1, 78)[0], actor="svc")
    page = browser.get("/campaigns/beta")
    assert 'name="reviewer"' not in page.text
    form = {CSRF_FIELD: _csrf(page.text), "plan": fresh.name, "etag": fresh.etag,
            "decision": "approve", "reviewer": "mallory"}  # fmt: skip
    assert browser.post("/review", data=form).status_code == 303
    assert store.get_plan(fresh.name).history[-1].actor == "ana"


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 40), seed=st.integers(0, 1000))
def test_delivered_total_reads_every_deal_form_alike(n: int, seed: int) -> None:
    from builders import FORMS, build_snapshot, random_snapshot_spec

    spec = random_snapshot_spec(n, seed, n_buckets=0)
    totals = {form: delivered_total(build_snapshot(spec, form)) for form in FORMS}
    assert set(totals.values()) == {sum(d.spend_micros for d in spec.deals)}


def test_a_snapshot_that_cannot_be_read_is_reported_not_fatal(
    tmp_path: Path,
) -> None:
    store = SqlStore.open(f"sqlite:///{tmp_path / 'store.db'}")
    good = snapshots("gamma", 8, 2, 31)
    record(store, good[0], actor="svc")
    record(store, good[1], snapshot=b"not a snapshot", actor="svc")
    page = TestClient(create_app(store)).get("/campaigns/gamma")
    assert page.status_code == 200
    assert "the recorded snapshot cannot be read (DecodeError" in page.text
    delivered = [t for t in _figure(page.text, "spend-chart")["data"] if t["name"] == "delivered"]
    assert len(delivered[0]["x"]) == 1  # the readable snapshot only
    store.close()


@settings(max_examples=25, deadline=None)
@given(
    sort=st.sampled_from(DEAL_SORTS),
    size=st.integers(1, 9),
    query=st.sampled_from(["", "seller-1", "channel-0", "deal-00001", "nothing"]),
)
def test_deal_pages_cover_every_matching_deal_once_in_order(
    recorded: Recorded, sort: str, size: int, query: str
) -> None:
    store, plans = recorded
    plan = plans["alpha"][0]  # never reviewed by these tests: its rows do not change
    # The pages read the stored tables, with words rendered for the rows shown.
    rows = plan_rows(store.get_plan(plan.name, "none"), store.plan_tables(plan.name))
    frame = deal_frame(rows, None)
    first, total = deal_page(plan, rows, frame, sort=sort, query=query, page=0, size=size)
    pages = [first]
    while sum(map(len, pages)) < total:
        more = deal_page(plan, rows, frame, sort=sort, query=query, page=len(pages), size=size)
        pages.append(more[0])
    # The same pages as from the plan's own messages, words included.
    whole = plan_rows(plan, None)
    again = deal_page(plan, whole, deal_frame(whole, None), sort=sort, query=query, page=0,
                      size=size)  # fmt: skip
    assert again == (first, total)
    by_id = {d.deal_id: d for d in plan.deals}
    assert all(line.rationale == by_id[line.deal_id].rationale != "" for line in first)
    seen = [line for page in pages for line in page]
    matching = [d for d in plan.deals if query in (d.deal_id + d.seller_id + d.channel_id)
                or not query]  # fmt: skip
    assert sorted(x.deal_id for x in seen) == sorted(d.deal_id for d in matching)
    delta = {d.deal_id: d.delta for d in plan.deals}
    keys = {
        "delta": lambda d: -abs(delta[d]),
        "-delta": lambda d: -delta[d],
        "deal": lambda d: d,
        "new": lambda d: next(x.new_allocation for x in plan.deals if x.deal_id == d),
        "-new": lambda d: -next(x.new_allocation for x in plan.deals if x.deal_id == d),
    }
    if sort in keys:
        order = [keys[sort](x.deal_id) for x in seen]
        assert order == sorted(order)


def test_moves_decided_one_by_one_revise_the_plan(tmp_path: Path) -> None:
    """Approve one move and reject another: the plan is re-solved with the rejected deal
    pinned (ReviewPlan's revision), the reviewed plan is superseded, and the page shows it."""
    store = SqlStore.open(f"sqlite:///{tmp_path / 'moves.db'}")
    plan = record_campaign(store, "delta", 24, 1, 5, n_channels=3)[-1]
    moved = [d for d in plan.deals if d.delta != 0]
    assert len(moved) >= 2
    client = TestClient(create_app(store), follow_redirects=False)
    page = client.get("/campaigns/delta").text
    assert page.count('name="reject" value=') == len(moved)
    form = {CSRF_FIELD: _csrf(page), "plan": plan.name, "etag": plan.etag,
            "decision": "moves", "reject": [moved[0].deal_id], "comment": "keep it"}  # fmt: skip
    done = client.post("/review", data=form, headers={"hx-request": "true"})
    assert done.status_code == 200 and "1 move(s) rejected" in done.text
    assert store.get_plan(plan.name).state == plan_pb2.PLAN_STATE_SUPERSEDED
    (revision,) = [p for p in store.list_plans("delta")[0] if p.previous_plan == plan.name]
    revised = store.get_plan(revision.name)
    assert moved[0].deal_id not in [d.deal_id for d in revised.deals if d.delta != 0]
    assert revised.state in (plan_pb2.PLAN_STATE_APPROVED, plan_pb2.PLAN_STATE_PROPOSED)
    assert "keep it" in revised.history[0].comment
    assert f'data-plan="{revised.name}"' in client.get("/campaigns/delta").text
    unknown = client.post(
        "/review", data={**form, "etag": revised.etag, "plan": revised.name, "reject": ["nope"]}
    )
    if revised.state == plan_pb2.PLAN_STATE_PROPOSED:
        assert unknown.status_code == 400 and "deals not in the plan" in unknown.text
    else:
        assert unknown.status_code == 409
    store.close()
