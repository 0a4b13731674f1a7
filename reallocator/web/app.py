"""The pacing dashboard: a Starlette app rendering Jinja2 templates, with htmx for partial
updates and plotly.js for charts, every asset served from this package or an installed one (no
internet needed). It reads the audit store (SqlStore and web/queries.py) and changes it only
through SqlStore.review, the same etag and state rules as ReviewPlan.

Pages: the campaign list (/), a campaign (/campaigns/{id}) and its decision history
(/campaigns/{id}/history). /events streams new plan events as server-sent events (the store's
plan_events table, polled by id); pages re-fetch what changed through htmx.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from reallocator.config import SecurityConfig
from reallocator.core.model import Policy
from reallocator.core.plan.builder import PlanRejected
from reallocator.lifecycle import PlanLifecycle
from reallocator.server.auth import Caller, Denied
from reallocator.store.errors import NotFound, StaleEtag, StoreError, WrongState
from reallocator.store.sql import SqlStore
from reallocator.v1 import plan_pb2
from reallocator.web import queries, views
from reallocator.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    TOKEN_COOKIE,
    CsrfError,
    WebAuth,
    check_csrf,
    csrf_cookie,
    csrf_token,
    new_secret,
)
from reallocator.wire.violations import InvalidRequest

HERE = Path(__file__).resolve().parent

# Scripts and styles from this site only (no inline script; plotly.js sets inline styles), and
# no framing, so the approve and reject buttons cannot be clickjacked from another site.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
DEAL_PAGE = 50
MOVES_SHOWN = 200  # moves a reviewer can decide one by one on the page (the rest: whole plan)


def plotly_js() -> Path:
    """plotly.min.js as the installed plotly package ships it (found without importing it)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the plotly package is missing: pip install 'reallocator[web]'")
    return Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"


@dataclass
class Settings:
    """How the dashboard runs (the `reallocator web` flags)."""

    security: SecurityConfig | None = None
    secret: bytes = field(default_factory=new_secret)  # signs CSRF tokens
    poll_seconds: float = 1.0  # how often /events looks for new plan events
    secure_cookies: bool = False  # set Secure on cookies (behind HTTPS)
    warm: bool = True  # assess the newest snapshots in the background, ahead of the first view
    default_policy: Policy = field(default_factory=Policy)  # under which a revision re-solves


class Dashboard:
    """The routes' shared state: the store, caches of immutable records, settings."""

    def __init__(self, store: SqlStore, settings: Settings) -> None:
        self.store = store
        self.lifecycle = PlanLifecycle(store, settings.default_policy)  # ReviewPlan's re-solve
        self.engine = store.engine
        self.settings = settings
        self.auth = WebAuth(settings.security)
        self.snapshots = views.Lru(256)  # content hash -> SnapshotFacts (immutable)
        self.summaries = views.Lru(4096)  # plan name -> PlanSummary (the payload never changes)
        self.deal_frames = views.Lru(16)  # plan name -> deal frame (a plan's deals never change)
        self.rows = views.Lru(4)  # plan name -> PlanRows (its tables: ~45 MB at 100k deals)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["q"] = lambda s: quote(str(s), safe="")
        self.templates.env.globals["when"] = views.when
        self.templates.env.globals["state_name"] = views.state_name

    # --- rendering ----------------------------------------------------------------------------

    def render(
        self, request: Request, template: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        cookie, new = csrf_cookie(request)
        context = {
            **context,
            "csrf": csrf_token(self.settings.secret, cookie),
            "csrf_field": CSRF_FIELD,
            "caller": request.state.caller,
            "auth": self.auth.enabled,
        }
        response = self.templates.TemplateResponse(request, template, context, status_code=status)
        if new:
            response.set_cookie(
                CSRF_COOKIE, cookie, httponly=True, samesite="strict",
                secure=self.settings.secure_cookies,
            )  # fmt: skip
        return response

    # --- data ---------------------------------------------------------------------------------

    def facts(self, row: queries.SnapshotRow, *, full: bool) -> views.SnapshotFacts:
        def make() -> views.SnapshotFacts:
            payload = queries.snapshot_payload(self.engine, row.content_hash)
            return views.snapshot_facts(payload, full=full)

        return self.snapshots.get((row.content_hash, full), make)

    def summary(self, plan: str) -> views.PlanSummary:
        return self.summaries.get(
            plan, lambda: views.plan_summary(*queries.plan_payload(self.engine, plan))
        )

    def warm(self, campaign: str) -> None:
        """Assesses the campaign's newest snapshot and tables its newest plan's deals ahead of
        the first view (the assessment is most of a cold page: ~0.2 s at 1,000 deals)."""
        rows = queries.campaign_snapshots(self.engine, campaign, limit=1)
        names = queries.plan_names(self.engine, campaign)
        if rows:
            self.facts(rows[-1], full=True)
        if names:
            self.summary(names[0])
            plan = self.store.get_plan(names[0], "none")
            self.deals_context(campaign, plan, "delta", "", 0)

    def warmer(self, stop: threading.Event, *, campaigns: int = 50) -> None:
        """Warms the newest campaigns at start, then each campaign that gets a new plan."""
        cursor = queries.last_event_id(self.engine)
        try:
            for row in queries.list_campaigns(self.engine)[:campaigns]:
                if stop.is_set():
                    return
                self.warm(row.campaign_id)
            while not stop.wait(self.settings.poll_seconds * 2):
                found = queries.events_after(self.engine, cursor)
                for e in found:
                    cursor = e.id
                fresh = {e.campaign_id for e in found if e.comment.startswith("created by")}
                for campaign in sorted(fresh)[:campaigns]:
                    self.warm(campaign)
        except Exception:  # a cache warmer must never take the dashboard down
            logging.getLogger(__name__).exception("warming the dashboard's caches failed")

    def campaign(self, campaign: str) -> dict[str, Any]:
        """Everything the campaign page shows (run in a worker thread)."""
        names = queries.plan_names(self.engine, campaign)
        if not names:
            raise HTTPException(404, f"no campaign {campaign!r} in the store")
        # Summaries with their life cycle; the rows come from the plan's tables (`plan_rows`).
        latest = self.store.get_plan(names[0], "none")
        pending_names = queries.plan_names(self.engine, campaign, state="PROPOSED")
        pending = (
            latest
            if pending_names and pending_names[0] == latest.name
            else (self.store.get_plan(pending_names[0], "none") if pending_names else None)
        )
        rows = queries.campaign_snapshots(self.engine, campaign)
        points = [self.facts(r, full=False) for r in rows]
        newest = self.facts(rows[-1], full=True) if rows else None
        shown = pending or latest
        assessment = newest.assessment if newest is not None else None
        context: dict[str, Any] = {
            "campaign": campaign,
            "latest": latest,
            "pending": pending,
            "shown": shown,
            "facts": newest,
            "points": len(points),
            "chart": views.spend_chart(points, newest, latest) if newest else None,
            "channels": views.group_lines(
                shown.channels, shown, assessment.channels if assessment else None
            ),
            "sellers": views.group_lines(
                shown.sellers, shown, assessment.sellers if assessment else None
            ),
            "pacing": views.factor(latest, "campaign pacing ratio"),
            "status": (
                str(assessment.campaign["status"].iloc[0]) if assessment is not None else ""
            ),
        }
        context["alerts"], context["alert_total"] = views.alert_lines(assessment, latest)
        context.update(self.review_context(shown))
        context.update(self.deals_context(campaign, shown, "delta", "", 0))
        return context

    def plan_rows(self, plan: plan_pb2.Plan) -> views.PlanRows:
        """The plan's deals and schedules (read once per plan: they never change)."""

        def make() -> views.PlanRows:
            tables = self.store.plan_tables(plan.name)
            whole = self.store.get_plan(plan.name) if tables is None else plan
            return views.plan_rows(whole, tables)

        return self.rows.get(plan.name, make)

    def review_context(self, plan: plan_pb2.Plan) -> dict[str, Any]:
        bt = views.budget_type(plan.budget_type)
        rows = self.plan_rows(plan)
        answers = queries.seller_answers(self.engine, plan.name) if plan.name else {}
        requests = []
        for r in plan.seller_requests:
            response = answers.get(r.request_id, ("PENDING", 0, ""))
            requests.append(
                {
                    "deal_id": r.deal_id,
                    "seller_id": r.seller_id,
                    "kind": plan_pb2.RequestKind.Name(r.kind).removeprefix("REQUEST_KIND_"),
                    "target": views.amount(r.target_total, bt, plan.currency_code),
                    "response": response[0],
                    "rationale": r.rationale,
                }
            )
        deals = rows.deals
        delta = deals["delta"].to_numpy(np.int64)
        moved = np.flatnonzero(delta != 0)
        shown = moved[:MOVES_SHOWN]  # formatted, and their words rendered, for these only
        ids = deals["deal_id"].to_numpy(object)[shown].tolist()
        channels = deals["channel_id"].to_numpy(object)[shown].tolist()
        old = views.amounts(deals["old"].to_numpy(np.int64)[shown], bt, plan.currency_code)
        new = views.amounts(deals["new"].to_numpy(np.int64)[shown], bt, plan.currency_code)
        up = (delta[shown] > 0).tolist()
        words = rows.words(shown)
        moves = [
            {
                "deal_id": ids[j],
                "channel_id": channels[j],
                "old": old[j],
                "new": new[j],
                "up": up[j],
                "rationale": words[j],
            }
            for j in range(shown.size)
        ]
        return {
            "plan": plan,
            "moves": moves,
            "move_total": int(moved.size),
            "plan_state": views.state_name(plan.state),
            "moves_chart": views.moves_chart(plan) if plan.channels else None,
            "requests": requests,
            "schedules": rows.schedules(20),
            "schedule_total": rows.schedule_total,
            "summary": plan.rationale.summary,
            "factors": list(plan.rationale.factors),
        }

    def deals_context(
        self, campaign: str, plan: plan_pb2.Plan, sort: str, query: str, page: int
    ) -> dict[str, Any]:
        rows = self.plan_rows(plan)

        def make() -> Any:
            snapshots = queries.campaign_snapshots(self.engine, campaign, limit=1)
            facts = self.facts(snapshots[-1], full=True) if snapshots else None
            return views.deal_frame(rows, facts.assessment if facts else None)

        frame = self.deal_frames.get(plan.name, make)
        lines, total = views.deal_page(
            plan, rows, frame, sort=sort, query=query, page=page, size=DEAL_PAGE
        )
        return {
            "deals": lines,
            "deal_total": total,
            "deal_count": len(frame),
            "deal_sort": sort,
            "deal_query": query,
            "deal_page": page,
            "deal_pages": max(1, -(-total // DEAL_PAGE)),
            "campaign": campaign,
        }


def _caller(request: Request) -> Caller:
    caller: Caller = request.state.caller
    return caller


def create_app(store: SqlStore, settings: Settings | None = None) -> Starlette:
    """The dashboard on `store` (opened by the caller, who also closes it)."""
    dash = Dashboard(store, settings or Settings())

    async def campaigns_page(request: Request) -> Response:
        return dash.render(request, "campaigns.html", await _list_context(request))

    async def campaigns_table(request: Request) -> Response:
        return dash.render(request, "_campaign_rows.html", await _list_context(request))

    async def _list_context(request: Request) -> dict[str, Any]:
        rows = await run_in_threadpool(queries.list_campaigns, dash.engine)
        q = request.query_params.get("q", "").strip().lower()
        state = request.query_params.get("state", "")
        sort = request.query_params.get("sort", "recent")
        if q:
            rows = [r for r in rows if q in r.campaign_id.lower()]
        if state:
            rows = [r for r in rows if r.latest_state == state]
        keys: dict[str, Callable[[queries.CampaignRow], Any]] = {
            "recent": lambda r: -r.latest_create_time,
            "campaign": lambda r: r.campaign_id,
            "pending": lambda r: (-r.pending, r.campaign_id),
            "state": lambda r: (r.latest_state, r.campaign_id),
        }
        summaries = await run_in_threadpool(
            lambda: {r.campaign_id: dash.summary(r.latest_plan) for r in rows}
        )
        keys["pacing"] = lambda r: (_nan_last(summaries[r.campaign_id].pacing), r.campaign_id)
        keys["alerts"] = lambda r: (-summaries[r.campaign_id].alerts, r.campaign_id)
        rows.sort(key=keys.get(sort, keys["recent"]))
        return {"rows": rows, "summaries": summaries, "q": q, "state": state, "sort": sort,
                "states": ["PROPOSED", "APPROVED", "REJECTED", "APPLIED", "ROLLED_BACK",
                           "SUPERSEDED"]}  # fmt: skip

    async def campaign_page(request: Request) -> Response:
        campaign = request.path_params["campaign"]
        started = time.perf_counter()
        context = await run_in_threadpool(dash.campaign, campaign)
        context["render_ms"] = (time.perf_counter() - started) * 1000
        return dash.render(request, "campaign.html", context)

    async def review_panel(request: Request) -> Response:
        campaign = request.path_params["campaign"]
        context = await run_in_threadpool(dash.campaign, campaign)
        return dash.render(request, "_review.html", context)

    async def deals_table(request: Request) -> Response:
        campaign = request.path_params["campaign"]
        params = request.query_params
        sort = params.get("sort", "delta")
        if sort not in views.DEAL_SORTS:
            raise HTTPException(400, f"sort: one of {', '.join(views.DEAL_SORTS)}")
        try:
            page = max(0, int(params.get("page", "0")))
        except ValueError:
            raise HTTPException(400, "page: a whole number") from None
        plan_name = params.get("plan", "")

        def build() -> dict[str, Any]:
            try:
                plan = dash.store.get_plan(plan_name, "none")
            except NotFound:
                raise HTTPException(404, f"no plan {plan_name!r}") from None
            return dash.deals_context(campaign, plan, sort, params.get("q", ""), page)

        context = await run_in_threadpool(build)
        return dash.render(request, "_deals.html", {**context, "shown": {"name": plan_name}})

    async def history_page(request: Request) -> Response:
        return dash.render(request, "history.html", await _history(request))

    async def history_rows(request: Request) -> Response:
        return dash.render(request, "_history_rows.html", await _history(request))

    async def _history(request: Request) -> dict[str, Any]:
        campaign = request.path_params["campaign"]
        events = await run_in_threadpool(queries.campaign_history, dash.engine, campaign)
        if not events:
            raise HTTPException(404, f"no campaign {campaign!r} in the store")
        return {"campaign": campaign, "events": _steps(events)}

    async def review(request: Request) -> Response:
        caller = _caller(request)
        dash.auth.require(caller, "review")
        form = await request.form()
        check_csrf(request, dash.settings.secret, str(form.get(CSRF_FIELD, "")))
        name = str(form.get("plan", ""))
        decision = str(form.get("decision", ""))
        etag = str(form.get("etag", ""))
        comment = str(form.get("comment", ""))[:2000]
        # Signed in: the token's name. Authentication off: the name typed, as ReviewPlan's
        # `reviewer` (else "web"), so the audit trail still says who decided.
        typed = " ".join(str(form.get("reviewer", "")).split())[:100]
        actor = caller.name if dash.auth.enabled else (typed or caller.name)
        if not name:
            raise HTTPException(400, "plan: required")
        if decision not in ("approve", "reject", "moves"):
            raise HTTPException(400, "decision: 'approve', 'reject' or 'moves'")
        rejected = sorted({str(v) for v in form.getlist("reject") if str(v)})
        if not etag:
            raise HTTPException(400, "etag: required (the plan's etag as read)")
        message, status = "", 200
        plan: plan_pb2.Plan | None = None
        try:
            if decision == "moves" and rejected:  # single moves rejected: ReviewPlan's re-solve
                revision = await run_in_threadpool(
                    partial(
                        dash.lifecycle.revise, name, etag, rejected, actor=actor, comment=comment
                    )
                )
                plan = revision
                state = views.state_name(revision.state).lower()
                message = (
                    f"{len(rejected)} move(s) rejected by {actor}: revised plan "
                    f"{revision.name.rsplit('/', 1)[-1]} is {state}"
                )
            else:
                reviewed = await run_in_threadpool(
                    dash.store.review, name, decision != "reject", etag=etag,
                    actor=actor, comment=comment,
                )  # fmt: skip
                plan = await run_in_threadpool(dash.store.get_plan, name, "none")
                message = f"{reviewed.state.lower()} by {actor}"
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except (StaleEtag, WrongState) as exc:
            message, status = f"not recorded: {exc}", 409
        except InvalidRequest as exc:
            message, status = f"not recorded: {exc}", 400
        except PlanRejected as exc:
            message, status = f"not recorded: with those moves rejected, {exc}", 409
        if plan is None:  # refused: the plan as it is now says which campaign to show
            plan = await run_in_threadpool(dash.store.get_plan, name, "none")
        campaign = plan.campaign_id
        if "hx-request" not in request.headers:
            if status != 200:
                return PlainTextResponse(message, status_code=status)
            return RedirectResponse(f"/campaigns/{quote(campaign, safe='')}", status_code=303)
        context = await run_in_threadpool(dash.campaign, campaign)
        context["message"] = message
        context["message_error"] = status != 200
        response = dash.render(request, "_review.html", context, status=200)
        return response

    async def events(request: Request) -> Response:
        campaign = request.query_params.get("campaign", "")
        start = request.headers.get("last-event-id") or request.query_params.get("after", "")
        after = int(start) if start.isdigit() else -1

        async def stream() -> AsyncIterator[dict[str, Any]]:
            cursor = after
            if cursor < 0:
                cursor = await run_in_threadpool(queries.last_event_id, dash.engine)
            # The id makes a reconnecting browser resume here (Last-Event-ID), missing nothing.
            yield {"id": str(cursor), "event": "hello", "data": json.dumps({"after": cursor})}
            while True:
                found = await run_in_threadpool(
                    queries.events_after, dash.engine, cursor, campaign=campaign
                )
                for e in found:
                    cursor = e.id
                    yield {"id": str(e.id), "event": "plan", "data": json.dumps({
                        "id": e.id, "plan": e.plan_name, "campaign": e.campaign_id,
                        "state": e.state, "actor": e.actor, "comment": e.comment,
                    })}  # fmt: skip
                await asyncio.sleep(dash.settings.poll_seconds)

        return EventSourceResponse(stream(), ping=15)

    async def login_page(request: Request) -> Response:
        return dash.render(request, "login.html", {"error": ""})

    async def login(request: Request) -> Response:
        form = await request.form()
        check_csrf(request, dash.settings.secret, str(form.get(CSRF_FIELD, "")))
        token = str(form.get("token", "")).strip()
        try:
            request.state.caller = dash.auth.caller(_with_header(request, f"Bearer {token}"))
        except Denied as exc:
            return dash.render(request, "login.html", {"error": str(exc)}, status=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            TOKEN_COOKIE, token, httponly=True, samesite="strict",
            secure=dash.settings.secure_cookies,
        )  # fmt: skip
        return response

    async def health(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def plotly(_: Request) -> Response:
        return FileResponse(plotly_js(), media_type="text/javascript",
                            headers={"cache-control": "public, max-age=86400"})  # fmt: skip

    routes = [
        Route("/", campaigns_page),
        Route("/campaigns", campaigns_table),
        Route("/campaigns/{campaign}", campaign_page),
        Route("/campaigns/{campaign}/review-panel", review_panel),
        Route("/campaigns/{campaign}/deals", deals_table),
        Route("/campaigns/{campaign}/history", history_page),
        Route("/campaigns/{campaign}/history/rows", history_rows),
        Route("/review", review, methods=["POST"]),
        Route("/events", events),
        Route("/login", login_page),
        Route("/login", login, methods=["POST"]),
        Route("/healthz", health),
        Route("/assets/plotly.min.js", plotly),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    open_paths = ("/static/", "/assets/", "/healthz", "/login")

    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Authentication (when on): who calls, and may they read; security headers."""
        if request.url.path.startswith(open_paths):
            request.state.caller = Caller("anonymous", frozenset(), "none")
            response = await call_next(request)
        else:
            try:
                request.state.caller = dash.auth.caller(request)
                dash.auth.require(request.state.caller, "read")
            except Denied as exc:
                response = await denied(request, exc)
            else:
                response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def denied(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Denied)
        if (
            not exc.authenticated
            and request.method == "GET"
            and "hx-request" not in request.headers
        ):
            return RedirectResponse("/login", status_code=303)
        return PlainTextResponse(str(exc), status_code=403 if exc.authenticated else 401)

    async def csrf_failed(_: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"CSRF check failed: {exc}", status_code=403)

    async def store_failed(_: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"audit store: {exc}", status_code=500)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        stop = threading.Event()
        thread = threading.Thread(target=dash.warmer, args=(stop,), daemon=True)
        if dash.settings.warm:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(RuntimeError):
                thread.join(5)

    app = Starlette(
        lifespan=lifespan,
        routes=routes,
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard)],
        exception_handlers={Denied: denied, CsrfError: csrf_failed, StoreError: store_failed},
    )
    app.state.dashboard = dash
    return app


def _nan_last(value: float) -> float:
    return value if value == value else float("inf")


def _with_header(request: Request, value: str) -> Request:
    scope = dict(request.scope)
    headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
    scope["headers"] = [*headers, (b"authorization", value.encode())]
    return Request(scope)


def _steps(events: list[queries.EventRow]) -> list[dict[str, Any]]:
    """The decision history as steps: snapshot -> plan -> review -> apply -> seller answers ->
    rollback (and supersession), oldest first."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for e in events:
        short = e.plan_name.rsplit("/", 1)[-1]
        first = e.plan_name not in seen
        seen.add(e.plan_name)
        # a revision or a rollback is made from a snapshot already shown (or none new)
        derived = "revises " in e.comment or e.comment.startswith("rolls back")
        if first and not derived:
            out.append({"time": views.when(e.plan_as_of), "step": "snapshot", "plan": short,
                        "name": e.plan_name, "state": "", "actor": "",
                        "comment": "delivery snapshot read"})  # fmt: skip
        step = {
            "": "seller answer",
            "APPROVED": "review",
            "REJECTED": "review",
            "APPLIED": "apply",
            "ROLLED_BACK": "rollback",
            "SUPERSEDED": "superseded",
        }.get(e.state, "plan")
        if e.state == "APPROVED" and "created by Replan" in e.comment:
            step = "plan"
        out.append({"time": views.when(e.event_time), "step": step, "plan": short,
                    "name": e.plan_name, "state": e.state, "actor": e.actor,
                    "comment": e.comment, "id": e.id})  # fmt: skip
    return out


__all__ = ["Settings", "create_app", "plotly_js"]
