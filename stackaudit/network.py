"""Addresses as compose and Docker write them: which mean "every interface", and where to connect."""

from __future__ import annotations

# A published port's HOST_IP that binds every interface: compose leaves it out, Docker shows 0.0.0.0
# or :: (and [::] in some outputs).
ALL_INTERFACES = frozenset({"", "0.0.0.0", "::", "[::]"})


def on_all_interfaces(host: str | None) -> bool:
    return (host or "") in ALL_INTERFACES


def local_address(host: str | None) -> str:
    """Where this host reaches a port published on `host`: loopback for every-interface bindings."""
    return "127.0.0.1" if on_all_interfaces(host) else str(host)
