"""Keyed fingerprints of the secrets a collection met, so a fleet report can tell that two hosts
share a password without either value leaving its host.

The controller of `stackaudit fleet collect` keeps a random key and hands it to `stackaudit collect`
on every host in STACKAUDIT_FLEET_KEY. Each secret value the collectors remembered (env files, the
compose environment, DSN passwords given on the command line) becomes `HMAC-SHA256(key, value)`, cut
to 16 hex characters, next to where it was met (names only). Never a plain hash: without the key a
fingerprint cannot be checked against a guess, and a fleet that uses another key shares nothing.
Without the variable the snapshot has no `secret_fingerprints` at all.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

FLEET_KEY_VARIABLE = "STACKAUDIT_FLEET_KEY"
FINGERPRINT_HEX = 16  # 64 bits: collisions between a fleet's few hundred secrets are out of reach
MIN_KEY_BYTES = 16


def fleet_key(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The key from STACKAUDIT_FLEET_KEY (hex); None when unset; ValueError (no key in it) when bad."""
    text = (os.environ if environ is None else environ).get(FLEET_KEY_VARIABLE, "").strip()
    if not text:
        return None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{FLEET_KEY_VARIABLE} is not hexadecimal: no secret fingerprints") from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"{FLEET_KEY_VARIABLE} is shorter than {MIN_KEY_BYTES} bytes: "
                         "no secret fingerprints")
    return key


def fingerprint(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:FINGERPRINT_HEX]


def fingerprints(key: bytes, places: Mapping[str, str]) -> list[dict[str, str]]:
    """One `{"where", "fingerprint"}` per place a secret was met, in the order of the places."""
    return [{"where": where, "fingerprint": fingerprint(key, value)} for where, value in places.items()]
