"""Private keys lying in a project: found by name, confirmed by their first bytes, never kept.

A `*.key`, a `*.pem` holding a PRIVATE KEY block (a certificate chain is public), `id_rsa` /
`id_ed25519` and the other OpenSSH default names, and PKCS#12 bundles (`*.p12`, `*.pfx`). Only the
kind of key is recorded ("RSA", "OpenSSH", "encrypted PKCS#8", ...), never a byte of its content.

The walk is bounded (depth, entries) and skips what holds no deploy secrets of the project: VCS
metadata, dependency trees, caches and PostgreSQL data directories (whose own server.key, if any,
sits at their top level and is still seen).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

MAX_DEPTH = 4
MAX_ENTRIES = 20_000
_HEAD_BYTES = 64 * 1024  # a combined PEM (haproxy, some proxies) puts the key after the chain
SSH_KEY_NAMES = frozenset({"id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_ecdsa_sk", "id_ed25519_sk"})
_SUFFIXES = (".key", ".pem", ".p12", ".pfx")
_SKIP_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", "vendor", ".venv", "venv", "__pycache__",
                        ".cache", ".tox", ".mypy_cache", ".ruff_cache", "site-packages"})
_PEM_PRIVATE = re.compile(rb"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----")
_KINDS = {b"RSA ": "RSA", b"EC ": "EC", b"DSA ": "DSA", b"OPENSSH ": "OpenSSH",
          b"ENCRYPTED ": "encrypted PKCS#8", b"": "PKCS#8"}


def is_candidate(name: str) -> bool:
    return name in SSH_KEY_NAMES or name.lower().endswith(_SUFFIXES)


def key_kind(path: Path) -> str | None:
    """The kind of private key the file holds, or None (a certificate, a public key, unreadable)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError:
        return None
    name = path.name.lower()
    if name.endswith((".p12", ".pfx")):
        return "PKCS#12 bundle"
    match = _PEM_PRIVATE.search(head)
    if match:
        kind = _KINDS.get(match.group(1), match.group(1).decode("ascii", "replace").strip() or "PKCS#8")
        return f"encrypted {kind}" if b"Proc-Type: 4,ENCRYPTED" in head and "encrypted" not in kind else kind
    if b"-----BEGIN" in head or name.endswith(".pem"):
        return None  # a certificate, a public key, parameters: public material
    # a *.key or id_* file that is not PEM: DER, or a raw key such as Rails' config/master.key
    return "key file (not PEM)" if head.strip() else None


def find_key_files(roots: Iterable[Path], files: Iterable[Path] = ()) -> tuple[list[Path], bool]:
    """Private key candidates under the roots (bounded walk) plus the given files; True if cut short."""
    found: dict[Path, None] = {}
    budget = [MAX_ENTRIES]
    for root in roots:
        for path in _walk(root, budget):
            found.setdefault(path, None)
    for path in files:
        if is_candidate(path.name) and path.is_file():
            found.setdefault(path, None)
    return list(found), budget[0] <= 0


def _walk(root: Path, budget: list[int]) -> Iterator[Path]:
    base_depth = len(root.parts)
    for directory, dirnames, filenames in os.walk(root, onerror=None):
        depth = len(Path(directory).parts) - base_depth
        budget[0] -= len(dirnames) + len(filenames)
        if budget[0] <= 0:
            return
        if "PG_VERSION" in filenames or depth >= MAX_DEPTH:
            dirnames[:] = []
        else:
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if is_candidate(name):
                path = Path(directory) / name
                if not path.is_symlink() and path.is_file():
                    yield path
