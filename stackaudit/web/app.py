"""The dashboard's Starlette application. Handlers read the runner's latest Report and format it.

Every page goes through `stackaudit.redact.scrub` before it leaves, and carries a strict
Content-Security-Policy: the only script is inline with a per-response nonce, and it may only talk
back to this server.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from jinja2 import Environment, PackageLoader
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from stackaudit.config import Settings
from stackaudit.facts import Facts
from stackaudit.model import to_jsonable
from stackaudit.monitor.history import History, database_path, disk_history
from stackaudit.redact import remember, scrub, scrub_data
from stackaudit.report import Report, chart_data, html
from stackaudit.rules import load_all
from stackaudit.web import auth
from stackaudit.web.jobs import AuditRunner

JOURNAL_LIMIT = 20
OPEN_PATHS = ("/login", "/healthz")
REQUEST_HEADER = "x-stackaudit-request"  # a custom header: a cross-site form or image cannot send it


@dataclass
class Dashboard:
    settings: Settings
    runner: AuditRunner
    token: str | None = None
    verify: dict[str, Any] | None = None

    @cached_property
    def env(self) -> Environment:
        return html.make_environment(PackageLoader("stackaudit.web", "templates"),
                                     PackageLoader("stackaudit.report", "templates"))

    def page(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        nonce = secrets.token_urlsafe(16)
        values.setdefault("report", self.runner.report)
        values.setdefault("job", self.runner.job)
        body = self.env.get_template(template).render(request_path=request.url.path, nonce=nonce, **values)
        return secure(HTMLResponse(scrub(body), status_code=status), nonce)


def secure(response: Response, nonce: str | None = None) -> Response:
    script = f"'nonce-{nonce}'" if nonce else "'unsafe-inline'"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src {script}; img-src data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def json_response(data: Any, status: int = 200) -> Response:
    return secure(JSONResponse(scrub_data(to_jsonable(data)), status_code=status))


def create_app(settings: Settings, token: str | None = None, listen_host: str = "127.0.0.1",
               facts_path: Path | None = None, verify: dict[str, Any] | None = None,
               audit_at_start: bool = True) -> Starlette:
    """The dashboard. Refuses (ValueError) to serve a non-loopback address without a token."""
    if token is None and not auth.is_loopback(listen_host):
        raise ValueError(f"listening on {listen_host} needs a token (--token or {auth.TOKEN_ENV})")
    if token:
        remember(token)
    dashboard = Dashboard(settings, AuditRunner(settings, facts_path), token, verify)
    dashboard.runner.load_saved()
    if audit_at_start:
        dashboard.runner.start()

    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        refusal = check_access(dashboard, request)
        return refusal if refusal is not None else await call_next(request)

    app = Starlette(routes=routes(dashboard), middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard)])
    app.state.dashboard = dashboard
    return app


def check_access(dashboard: Dashboard, request: Request) -> Response | None:
    """None when the request may go on, else the refusal."""
    if dashboard.token is None:
        if not auth.is_loopback(auth.host_of(request.headers.get("host", ""))):
            return secure(PlainTextResponse("unexpected Host header", status_code=400))
    elif request.url.path not in OPEN_PATHS and not authorised(dashboard.token, request):
        if request.url.path.startswith("/api/"):
            return json_response({"error": "a token is needed: Authorization: Bearer <token>"}, 401)
        return login_page(dashboard, request, request.url.path, None)
    is_api_post = request.method == "POST" and request.url.path.startswith("/api/")
    if is_api_post and not request.headers.get(REQUEST_HEADER):
        return json_response({"error": f"missing the {REQUEST_HEADER} header"}, 403)
    return None


def login_page(dashboard: Dashboard, request: Request, next_path: str, error: str | None,
               status: int = 401) -> Response:
    """The token form; it shows nothing of the audit (not even the host name)."""
    return dashboard.page(request, "login.html.j2", status, next_path=safe_next(next_path), error=error,
                          report=None, job=None, login=True)


def authorised(token: str, request: Request) -> bool:
    if auth.token_matches(token, auth.bearer(request.headers.get("authorization"))):
        return True
    cookie = request.cookies.get(auth.COOKIE)
    return cookie is not None and auth.token_matches(auth.session_value(token), cookie)


def routes(dashboard: Dashboard) -> list[Route]:
    async def overview(request: Request) -> Response:
        report = dashboard.runner.report
        context = html.context(report, None, dashboard.verify) if report else {}
        return dashboard.page(request, "index.html.j2", **context)

    async def finding(request: Request) -> Response:
        report = dashboard.runner.report
        index = int(request.path_params["index"])
        if report is None or not 0 <= index < len(report.findings):
            return dashboard.page(request, "missing.html.j2", 404, what=f"finding {index}")
        found = report.findings[index]
        return dashboard.page(request, "finding.html.j2", index=index, finding=found,
                              rule=rule_doc(found.code))

    async def explain(request: Request) -> Response:
        code = str(request.path_params["code"]).upper()
        doc = rule_doc(code)
        if doc is None:
            return dashboard.page(request, "missing.html.j2", 404, what=f"rule {code}")
        return dashboard.page(request, "explain.html.j2", rule=doc)

    async def history(request: Request) -> Response:
        series, checks = read_watch(dashboard.settings.state_dir)
        facts = dashboard.runner.report.facts if dashboard.runner.report else Facts()
        charts = [html.draw(c) for c in chart_data.disk_history(facts, series)]
        return dashboard.page(request, "history.html.j2", charts=charts, checks=checks,
                              has_history=bool(series or checks))

    async def plan(request: Request) -> Response:
        report = dashboard.runner.report
        context = html.context(report, None, None) if report else {}
        return dashboard.page(request, "plan.html.j2", journals=read_journals(dashboard.settings.state_dir),
                              **context)

    async def full_report(request: Request) -> Response:
        report = dashboard.runner.report
        if report is None:
            return dashboard.page(request, "missing.html.j2", 404, what="an audit (one is running)")
        page = html.render(report, disk_history(dashboard.settings.state_dir), dashboard.verify)
        return secure(HTMLResponse(page))

    async def status(request: Request) -> Response:
        report = dashboard.runner.report
        job = dashboard.runner.job
        return json_response({"job": job.to_json() if job else None,
                              "report": report_summary(report) if report else None})

    async def start_audit(request: Request) -> Response:
        job = dashboard.runner.start()
        return json_response({"job": job.to_json()}, 202)

    async def job_status(request: Request) -> Response:
        job = dashboard.runner.jobs.get(str(request.path_params["job_id"]))
        if job is None:
            return json_response({"error": "no such job"}, 404)
        return json_response({"job": job.to_json()})

    async def login_form(request: Request) -> Response:
        return login_page(dashboard, request, safe_next(request.query_params.get("next")), None, 200)

    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        offered = (form.get("token") or [""])[0]
        target = safe_next((form.get("next") or ["/"])[0])
        if dashboard.token is None:
            return secure(RedirectResponse(target, status_code=303))
        if not auth.token_matches(dashboard.token, offered):
            return login_page(dashboard, request, target, "That token is not right.")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(auth.COOKIE, auth.session_value(dashboard.token), httponly=True,
                            samesite="strict", secure=request.url.scheme == "https", path="/")
        return secure(response)

    async def healthz(request: Request) -> Response:
        return secure(PlainTextResponse("ok"))

    return [
        Route("/", overview),
        Route("/findings/{index:int}", finding),
        Route("/rules/{code:str}", explain),
        Route("/history", history),
        Route("/plan", plan),
        Route("/report", full_report),
        Route("/api/status", status),
        Route("/api/audit", start_audit, methods=["POST"]),
        Route("/api/jobs/{job_id:str}", job_status),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/healthz", healthz),
    ]


def safe_next(target: str | None) -> str:
    """Only a path on this server (no "//host" or scheme): the login form never redirects away."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return quote(target, safe="/?=&-_.~%")


def report_summary(report: Report) -> dict[str, Any]:
    return {"generated_at": report.generated_at, "counts": report.counts(), "findings": len(report.findings)}


def rule_doc(code: str) -> Any:
    """The registered rule (its docstring is the explain page), or None."""
    return load_all().get(code)


def read_watch(state_dir: Path) -> tuple[dict[str, list[tuple[float, float]]], list[dict[str, Any]]]:
    """Disk history and recent checks from the watch database; empty when there is none."""
    series = disk_history(state_dir)
    try:
        if not database_path(state_dir).is_file():
            return series, []
        with History.open(state_dir) as db:
            return series, db.checks(limit=50)
    except Exception:  # noqa: BLE001 - the watch database is optional
        return series, []


def read_journals(state_dir: Path) -> list[dict[str, Any]]:
    """The newest journals in `<state_dir>/journal`, newest first; unreadable ones are named, not fatal."""
    directory = state_dir / "journal"
    if not directory.is_dir():
        return []
    journals = []
    for path in sorted(directory.glob("*.json"), reverse=True)[:JOURNAL_LIMIT]:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            document = {"id": path.stem, "status": f"unreadable: {exc}", "steps": []}
        steps = [s for s in document.get("steps") or [] if isinstance(s, dict)]
        columns = list(dict.fromkeys(k for s in steps for k in s))
        journals.append({**document, "steps": steps, "columns": columns})
    return journals

