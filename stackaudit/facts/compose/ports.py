"""`ports:` entries, short and long syntax, as Compose reads them: an entry it would refuse is
reported with the reason and skipped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stackaudit.facts.compose.raw import yaml_type


def ports_of(value: Any, problems: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Every port a service publishes; an entry Compose would refuse is named in `problems` and
    skipped, so the rest of the service is still audited."""
    if value is None:
        return []
    if isinstance(value, str | int) and not isinstance(value, bool):
        problems.append(("ports", f"`ports` must be a list, not the {yaml_type(value)} {value!r}: "
                                  f"read as [{value!r}]"))
        value = [value]
    elif not isinstance(value, list):
        problems.append(("ports", f"`ports` must be a list, not a {yaml_type(value)}: ignored"))
        return []
    shapes: list[dict[str, Any]] = []
    for index, entry in enumerate(value):
        try:
            shapes.extend(port_shapes(entry))
        except ValueError as exc:
            problems.append((f"ports.{index}", f"port {entry!r}: {exc} (ignored)"))
    return shapes


def port_shapes(entry: Any) -> list[dict[str, Any]]:
    """One `ports:` entry (short or long syntax) as shapes; ValueError says what is wrong with it."""
    if isinstance(entry, Mapping):
        published = entry.get("published")
        target = _port_number(str(entry.get("target", "")), "target")
        return [{
            "host_ip": str(entry["host_ip"]) if entry.get("host_ip") else None,
            "published": str(published) if published not in (None, "") else None,
            "target": target,
            "protocol": str(entry.get("protocol") or "tcp"),
        }]
    if isinstance(entry, bool) or not isinstance(entry, str | int | float):
        raise ValueError(f"a port is a string like \"127.0.0.1:5432:5432\" or a mapping, "
                         f"not a {yaml_type(entry)}")
    return _short_port(str(entry))


def _short_port(text: str) -> list[dict[str, Any]]:
    """`[ip:][published:]target[/protocol]` (ip may be `[v6]`), ranges expanded like Compose does."""
    spec, _, protocol = text.strip().partition("/")
    if protocol and protocol not in ("tcp", "udp", "sctp"):
        raise ValueError(f"unknown protocol {protocol!r} (tcp, udp or sctp)")
    host_ip = None
    if spec.startswith("["):
        host_ip, closed, spec = spec[1:].partition("]")
        if not closed:
            raise ValueError("an IPv6 address opened with [ is not closed with ]")
        spec = spec[1:] if spec.startswith(":") else spec
    parts = spec.rsplit(":", 2) if host_ip is None else spec.split(":")
    if len(parts) == 3 and host_ip is None:
        host_ip, published, target = parts[0] or None, parts[1], parts[2]
    elif len(parts) == 2:
        published, target = parts
    elif len(parts) == 1:
        published, target = "", parts[0]
    else:
        raise ValueError("too many colons (write an IPv6 host address as [::1])")
    targets = _port_range(target, "container port")
    publishes = _port_range(published, "published port") if published else []
    if len(publishes) > 1 and len(targets) > 1 and len(publishes) != len(targets):
        raise ValueError(f"the published range has {len(publishes)} ports, "
                         f"the container range {len(targets)}")
    shapes = []
    for i, port in enumerate(targets):
        pub: str | None = str(publishes[i]) if len(publishes) == len(targets) else (published or None)
        shapes.append({"host_ip": host_ip, "published": pub, "target": port, "protocol": protocol or "tcp"})
    return shapes


def _port_range(text: str, what: str) -> list[int]:
    start, _, end = text.partition("-")
    first = _port_number(start, what)
    last = _port_number(end, what) if end else first
    if last < first:
        raise ValueError(f"{what} range {text!r} ends before it starts")
    return list(range(first, last + 1))


def _port_number(text: str, what: str) -> int:
    value = text.strip()
    if not value.isdigit() or not 0 < int(value) < 65536:
        shown = repr(value) if value else "empty"
        raise ValueError(f"{what} {shown} is not a port number (1-65535)")
    return int(value)
