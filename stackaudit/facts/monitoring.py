"""What watches the stack (source "monitoring"): monitoring components, and what Prometheus says.

Components (Prometheus, Grafana, Loki, Promtail, Alertmanager, cAdvisor, exporters) are recognised
in the docker containers, the compose services and the host's processes. When a Prometheus answers
(`--prometheus-url`, or found in the stack through its published port or its listen address), its
HTTP API tells which targets are up and which alert rules are loaded (API documented at
https://prometheus.io/docs/prometheus/latest/querying/api/). An Alertmanager that answers tells its
receivers (GET /api/v2/status, https://github.com/prometheus/alertmanager/blob/main/api/v2/openapi.yaml).
"""

from __future__ import annotations

import base64
import configparser
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from stackaudit.facts import CollectContext, Facts, not_a_regular_file
from stackaudit.images import monitoring_kind, service_product
from stackaudit.network import local_address
from stackaudit.redact import redact_dsn, url_without_password

MAX_TIMEOUT_SECONDS = 5.0
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
_IN_CONTAINER = re.compile(r"docker|containerd|libpod|kubepods|lxc")
# The webhook of the upstream example alertmanager.yml (prom/alertmanager's default config):
# alerts sent there go nowhere.
PLACEHOLDER_WEBHOOKS = ("http://127.0.0.1:5001/",)


class ApiError(Exception):
    """An HTTP API did not answer usefully; the message says why (no credentials)."""


def collect(ctx: CollectContext) -> dict[str, Any]:
    components = list(stack_components(ctx.facts)) + host_processes(ctx.settings.proc_root)
    timeout = min(ctx.settings.timeout_seconds, MAX_TIMEOUT_SECONDS)
    urls = prometheus_urls(ctx.settings.prometheus_url, components)
    # A Prometheus that must answer: given, or seen running (not only declared in a compose file).
    expected = set(prometheus_urls(ctx.settings.prometheus_url,
                                   [c for c in components if c.get("state") == "running"]))
    prometheus, failed = ask_first_prometheus(urls, timeout, ctx)
    for failure in failed:
        failure["expected"] = failure.pop("asked") in expected
    hidden = [c["name"] for c in components if c["kind"] == "prometheus" and c["where"] != "process"]
    if not urls and hidden:
        ctx.error(f"prometheus {hidden[0]}", "found in the stack without a published port: give "
                  "--prometheus-url (e.g. through an SSH tunnel) to check its targets and alert rules")
    alertmanager = ask_first_alertmanager(alertmanager_urls(components, prometheus), timeout)
    data: dict[str, Any] = {
        "components": components,
        "datastores": list(stack_datastores(ctx.facts)),
        "prometheus": prometheus,
        "prometheus_unreachable": failed,
        "alertmanager": alertmanager,
        "grafana_ini": grafana_ini_files(ctx),
    }
    data["summary"] = summarise(data)
    return data


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    prometheus = data.get("prometheus") or {}
    targets = prometheus.get("targets") or []
    rules = prometheus.get("rules") or []
    return {
        "components": len(data["components"]),
        "kinds": sorted({c["kind"] for c in data["components"]}),
        "prometheus_reachable": bool(prometheus.get("reachable")),
        "targets_up": sum(1 for t in targets if t["health"] == "up"),
        "targets_down": sum(1 for t in targets if t["health"] == "down"),
        "alert_rules": sum(1 for r in rules if r["type"] == "alerting"),
    }


# --- components ----------------------------------------------------------------------------------

def stack_components(facts: Facts) -> Iterator[dict[str, Any]]:
    """Monitoring containers (docker facts), then compose services that have no container."""
    seen: set[tuple[str | None, str | None]] = set()
    containers = facts.get("docker").get("containers", [])
    running_projects = {c.get("compose_project") for c in containers if c.get("state") == "running"}
    for container in containers:
        kind = monitoring_kind(container.get("image"), _container_name(container))
        if kind is None:
            continue
        seen.add((container.get("compose_project"), container.get("compose_service")))
        yield {"kind": kind, "where": "container", "name": container.get("name"),
               "project": container.get("compose_project"), "service": container.get("compose_service"),
               "image": container.get("image"), "state": container.get("state"),
               "ports": _container_ports(container.get("ports") or [])}
    for project in facts.get("compose").get("projects", []):
        for service in project.get("services", {}).values():
            kind = monitoring_kind(service.get("image"), service.get("name"))
            if kind is None or (project.get("name"), service.get("name")) in seen:
                continue
            # Without a container: "not running" only when the stack is up and the service is not
            # behind a profile (profiles are off unless asked for).
            stack_up = facts.has("docker") and project.get("name") in running_projects
            state = "not running" if stack_up and not service.get("profiles") else None
            yield {"kind": kind, "where": "compose", "name": service.get("name"),
                   "project": project.get("name"), "service": service.get("name"),
                   "image": service.get("image"), "state": state,
                   "ports": [{"host_ip": p.get("host_ip"), "host_port": _int(p.get("published")),
                              "container_port": p.get("target")} for p in service.get("ports") or []]}


# The grafana.ini keys SEC010 judges (Grafana docs, "Configure Grafana": [auth], [auth.anonymous],
# [auth.proxy], [auth.<provider>]); nothing else is kept, so no secret of the file is ever read out.
GRAFANA_AUTH_KEYS = re.compile(r"auth\.(disable_login_form|oauth_auto_login|anonymous\.(enabled|org_role)|"
                               r"(proxy|generic_oauth|github|gitlab|google|azuread|okta|ldap|jwt)\.enabled)")
GRAFANA_DEFAULT_INI = "/etc/grafana/grafana.ini"


def grafana_ini_files(ctx: CollectContext) -> list[dict[str, Any]]:
    """The auth settings of each compose Grafana's bind-mounted grafana.ini (GF_PATHS_CONFIG honoured)."""
    found = []
    for project in ctx.facts.get("compose").get("projects", []):
        for service in project.get("services", {}).values():
            if monitoring_kind(service.get("image"), service.get("name")) != "grafana":
                continue
            inside = (service.get("environment") or {}).get("GF_PATHS_CONFIG") or GRAFANA_DEFAULT_INI
            path = _host_path(service.get("volumes") or [], str(inside))
            if path is None:
                continue
            settings = read_grafana_ini(path, ctx)
            if settings is not None:
                found.append({"project": project.get("name"), "service": service.get("name"),
                              "path": str(path), "settings": settings})
    return found


def _host_path(volumes: list[dict[str, Any]], inside: str) -> Path | None:
    """The host file a bind mount puts at `inside` (the file itself, or a mounted parent directory)."""
    for volume in volumes:
        target, source = str(volume.get("target") or "").rstrip("/"), volume.get("source")
        if volume.get("type") != "bind" or not source:
            continue
        if target == inside:
            return Path(source)
        if target and inside.startswith(target + "/"):
            return Path(source) / inside[len(target) + 1:]
    return None


def read_grafana_ini(path: Path, ctx: CollectContext) -> dict[str, str] | None:
    """{"auth.anonymous.enabled": "true", ...}: only the auth keys, lower-cased section.key names."""
    odd = not_a_regular_file(path)
    if odd is not None:
        ctx.error(str(path), odd)
        return None
    parser = configparser.ConfigParser(interpolation=None, strict=False, comment_prefixes=("#", ";"))
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        ctx.error(str(path), f"cannot read grafana.ini: {exc.__class__.__name__}")
        return None
    settings = {}
    for section in parser.sections():
        for key, value in parser.items(section):
            name = f"{section.strip().lower()}.{key.strip().lower()}"
            if GRAFANA_AUTH_KEYS.fullmatch(name):
                settings[name] = value.strip()
    return settings


def _container_name(container: dict[str, Any]) -> str | None:
    name: str | None = container.get("compose_service") or container.get("name")
    return name


def _container_ports(ports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"host_ip": p.get("host_ip"), "host_port": _int(p.get("host_port")),
             "container_port": _int(p.get("container_port"))} for p in ports]


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def host_processes(proc_root: Path) -> list[dict[str, Any]]:
    """Monitoring programs running on the host itself (not inside a container)."""
    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline"]):
        info = process.info
        kind = monitoring_kind(None, info.get("name"))
        if kind is None or _in_container(proc_root, info["pid"]):
            continue
        found.append({"kind": kind, "where": "process", "name": info.get("name"), "pid": info["pid"],
                      "project": None, "service": None, "image": None, "state": "running",
                      "listen": listen_address(kind, info.get("cmdline") or [])})
    return found


def _in_container(proc_root: Path, pid: int) -> bool:
    try:
        return bool(_IN_CONTAINER.search((proc_root / str(pid) / "cgroup").read_text()))
    except OSError:
        return False


def listen_address(kind: str, cmdline: list[str]) -> str | None:
    """host:port from --web.listen-address (Prometheus, Alertmanager, exporters)."""
    for i, arg in enumerate(cmdline):
        if arg.startswith("--web.listen-address="):
            return arg.split("=", 1)[1]
        if arg == "--web.listen-address" and i + 1 < len(cmdline):
            return cmdline[i + 1]
    defaults = {"prometheus": f":{PROMETHEUS_PORT}", "alertmanager": f":{ALERTMANAGER_PORT}"}
    return defaults.get(kind)


def stack_datastores(facts: Facts) -> Iterator[dict[str, Any]]:
    seen: set[tuple[str | None, str | None]] = set()
    for project in facts.get("compose").get("projects", []):
        for service in project.get("services", {}).values():
            kind = service_product(service)
            if kind:
                seen.add((project.get("name"), service.get("name")))
                yield {"kind": kind, "project": project.get("name"), "service": service.get("name"),
                       "image": service.get("image")}
    for container in facts.get("docker").get("containers", []):
        key = (container.get("compose_project"), container.get("compose_service"))
        kind = service_product({"image": container.get("image"), "name": _container_name(container)})
        if kind and key not in seen:
            seen.add(key)
            yield {"kind": kind, "project": key[0], "service": key[1] or container.get("name"),
                   "image": container.get("image")}


# --- finding the APIs ----------------------------------------------------------------------------

def _published_urls(component: dict[str, Any], default_port: int) -> Iterator[str]:
    if component["where"] == "process":
        if component.get("listen"):
            host, _, port = str(component["listen"]).rpartition(":")
            host = host.strip("[]")
            yield f"http://{local_address(host)}:{port}"
        return
    ports = sorted(component.get("ports") or [], key=lambda p: p.get("container_port") != default_port)
    for port in ports:
        if port.get("host_port"):
            host = local_address(port.get("host_ip"))
            yield f"http://{'[' + host + ']' if ':' in host else host}:{port['host_port']}"


def prometheus_urls(given: str | None, components: list[dict[str, Any]]) -> list[str]:
    urls = [given] if given else []
    for component in components:
        if component["kind"] == "prometheus" and component.get("state") in ("running", None):
            urls.extend(_published_urls(component, PROMETHEUS_PORT))
    return list(dict.fromkeys(urls))


def alertmanager_urls(components: list[dict[str, Any]], prometheus: dict[str, Any] | None) -> list[str]:
    urls = []
    for am in (prometheus or {}).get("alertmanagers", {}).get("active", []):
        urls.append(am.split("/api/", 1)[0])  # ".../api/v2/alerts" -> the base URL
    for component in components:
        if component["kind"] == "alertmanager" and component.get("state") in ("running", None):
            urls.extend(_published_urls(component, ALERTMANAGER_PORT))
    return list(dict.fromkeys(urls))


def get_json(url: str, timeout: float) -> Any:
    """GET a JSON document; credentials in the URL go in a Basic header, never in a message."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    if parts.scheme not in ("http", "https"):
        raise ApiError(f"{url_without_password(url)}: only http and https URLs are asked")
    plain = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    request = urllib.request.Request(plain, headers={"Accept": "application/json"})
    if parts.username is not None:
        token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    shown = url_without_password(url)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ApiError(f"{shown}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise ApiError(f"{shown}: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise ApiError(f"{shown}: {exc.__class__.__name__}: {exc}") from None
    except ValueError:
        raise ApiError(f"{shown}: the answer is not JSON") from None


def _api_data(base: str, path: str, timeout: float) -> Any:
    payload = get_json(base.rstrip("/") + path, timeout)
    if not isinstance(payload, dict) or payload.get("status") != "success":
        why = payload.get("error") if isinstance(payload, dict) else None
        raise ApiError(f"{url_without_password(base)}{path}: {why or 'not a Prometheus API answer'}")
    return payload.get("data")


# --- Prometheus ----------------------------------------------------------------------------------

def ask_first_prometheus(urls: list[str], timeout: float, ctx: CollectContext
                         ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The first Prometheus that answers, and those that did not (also collection errors)."""
    failed: list[dict[str, Any]] = []
    for url in urls:
        answer = ask_prometheus(url, timeout)
        if answer["reachable"]:
            return answer, failed
        failed.append({"url": answer["url"], "error": answer["error"], "asked": url})
        ctx.error(f"prometheus {answer['url']}", answer["error"])
    return None, failed


def ask_prometheus(url: str, timeout: float) -> dict[str, Any]:
    result: dict[str, Any] = {"url": url_without_password(url), "reachable": False, "error": None,
                              "targets": [], "dropped_targets": 0, "rules": [], "api_errors": [],
                              "alertmanagers": {"active": [], "dropped": 0}, "config": None}
    try:
        targets = _api_data(url, "/api/v1/targets?state=active", timeout)
    except ApiError as exc:
        result["error"] = str(exc)
        return result
    result["reachable"] = True
    result["targets"] = [target_shape(t) for t in (targets or {}).get("activeTargets", [])]
    for path, key, shape in (("/api/v1/rules", "rules", rules_shape),
                             ("/api/v1/alertmanagers", "alertmanagers", alertmanagers_shape),
                             ("/api/v1/status/config", "config", config_shape)):
        try:
            result[key] = shape(_api_data(url, path, timeout))
        except ApiError as exc:  # e.g. status/config blocked by a proxy: the rest is still useful
            result["api_errors"].append(str(exc))
    return result


def target_shape(target: dict[str, Any]) -> dict[str, Any]:
    labels = target.get("labels") or {}
    return {"job": labels.get("job") or target.get("scrapePool"), "instance": labels.get("instance"),
            "health": target.get("health") or "unknown",
            "last_error": redact_dsn(target.get("lastError") or "") or None,
            "last_scrape": target.get("lastScrape"),
            "scrape_url": url_without_password(target.get("scrapeUrl") or "")}


def rules_shape(data: Any) -> list[dict[str, Any]]:
    rules = []
    for group in (data or {}).get("groups", []):
        for item in group.get("rules", []):
            rules.append({"group": group.get("name"), "file": group.get("file"), "name": item.get("name"),
                          "type": item.get("type"), "expr": item.get("query"), "health": item.get("health"),
                          "state": item.get("state")})
    return rules


def alertmanagers_shape(data: Any) -> dict[str, Any]:
    data = data or {}
    return {"active": [url_without_password(a.get("url", "")) for a in data.get("activeAlertmanagers", [])],
            "dropped": len(data.get("droppedAlertmanagers", []))}


def config_shape(data: Any) -> dict[str, Any]:
    """Only what rules need from the loaded configuration (it may hold credentials: keep little)."""
    config = _yaml((data or {}).get("yaml", "")) or {}
    alerting = config.get("alerting") or {}
    return {"rule_files": [str(f) for f in config.get("rule_files") or []],
            "scrape_jobs": [str(j.get("job_name")) for j in config.get("scrape_configs") or []],
            "alertmanagers_configured": bool(alerting.get("alertmanagers"))}


def _yaml(text: str) -> dict[str, Any] | None:
    try:
        value = YAML(typ="safe").load(text)
    except YAMLError:
        return None
    return value if isinstance(value, dict) else None


# --- Alertmanager --------------------------------------------------------------------------------

def ask_first_alertmanager(urls: list[str], timeout: float) -> dict[str, Any] | None:
    errors = []
    for url in urls:
        try:
            status = get_json(url.rstrip("/") + "/api/v2/status", timeout)
        except ApiError as exc:
            errors.append(str(exc))
            continue
        original = ((status or {}).get("config") or {}).get("original", "")
        return {"url": url_without_password(url), "reachable": True, "errors": errors,
                **receivers_shape(original)}
    # Prometheus often talks to it by a container name this host cannot resolve: not an error.
    return {"url": None, "reachable": False, "errors": errors} if urls else None


def receivers_shape(config_text: str) -> dict[str, Any]:
    config = _yaml(config_text) or {}
    receivers = []
    for receiver in config.get("receivers") or []:
        integrations = sorted(k.removesuffix("_configs") for k, v in receiver.items()
                              if k.endswith("_configs") and v)
        webhooks = [str(w.get("url", "")) for w in receiver.get("webhook_configs") or []]
        placeholder = bool(webhooks) and integrations == ["webhook"] and all(
            w in PLACEHOLDER_WEBHOOKS for w in webhooks)
        receivers.append({"name": receiver.get("name"), "integrations": integrations,
                          "placeholder": placeholder})
    return {"route_receiver": (config.get("route") or {}).get("receiver"), "receivers": receivers}
