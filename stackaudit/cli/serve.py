"""`serve`: the local dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stackaudit.cli.app import app
from stackaudit.cli.common import (
    ComposeFileOpt,
    ConfigOpt,
    PgOpt,
    ProjectDirOpt,
    RedisOpt,
    SourcesOpt,
    StateDirOpt,
    build_settings,
    console,
    fail,
)

DEFAULT_LISTEN = "127.0.0.1:8714"


def parse_listen(text: str) -> tuple[str, int]:
    """`127.0.0.1:8714`, `[::1]:8714`, `:8714` (loopback) -> (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


@app.command()
def serve(
    listen: Annotated[str, typer.Option("--listen", help="Address to bind, HOST:PORT.")] = DEFAULT_LISTEN,
    token: Annotated[
        str | None, typer.Option("--token", help="Access token (else STACKAUDIT_TOKEN); needed off loopback.")
    ] = None,
    facts_file: Annotated[
        Path | None, typer.Option("--facts", help="Audit this saved facts snapshot instead of collecting.")
    ] = None,
    verify_file: Annotated[
        Path | None, typer.Option("--verify", help="Results of `stackaudit verify` (JSON) to chart.")
    ] = None,
    no_audit: Annotated[bool, typer.Option("--no-audit", help="Do not start an audit at start.")] = False,
    project_dir: ProjectDirOpt = None,
    compose_file: ComposeFileOpt = None,
    pg: PgOpt = None,
    redis: RedisOpt = None,
    sources: SourcesOpt = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Serve the dashboard: the latest audit, history, explain pages, plan and journal, and re-runs.

    It binds to loopback by default; any other address needs a token, sent as
    `Authorization: Bearer TOKEN` or entered once in the page.

    Example: stackaudit serve --project-dir /srv/app --listen 127.0.0.1:8714
    """
    import uvicorn  # lazy: start-up

    from stackaudit.report.html import load_verify  # lazy: start-up
    from stackaudit.web import auth  # lazy: start-up
    from stackaudit.web.app import create_app  # lazy: start-up

    try:
        host, port = parse_listen(listen)
        verify = load_verify(verify_file) if verify_file is not None else None
    except ValueError as exc:
        fail(str(exc))
    if facts_file is not None and not facts_file.is_file():
        fail(f"--facts {facts_file} does not exist")
    settings = build_settings(config, project_dir, compose_file, pg, redis, sources, state_dir=state_dir)
    access = auth.token_from_env(token)
    if access is None and not auth.is_loopback(host):
        fail(f"refusing to listen on {host} without a token: pass --token or set {auth.TOKEN_ENV} "
             "(or listen on 127.0.0.1)")
    application = create_app(settings, access, host, facts_file, verify, audit_at_start=not no_audit)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"stackaudit dashboard on http://{shown}:{port}/" + (" (token required)" if access else ""),
                  highlight=False)
    try:
        uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False,
                    server_header=False)
    except OSError as exc:
        fail(f"cannot listen on {listen}: {exc.strerror or exc}")
