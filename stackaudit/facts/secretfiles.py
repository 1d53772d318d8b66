"""The files a compose project's top-level `secrets:` name (`file: ./secrets/db_password.txt`):
their values are remembered, so `scrub` hides them should they appear anywhere and the fleet's
fingerprints (facts/fingerprints.py) can tell one password used on several hosts. Nothing of them
is stored in the facts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stackaudit.facts import not_a_regular_file
from stackaudit.redact import remember

MAX_SECRET_FILE_BYTES = 64 * 1024  # a password or a key; anything bigger is not one value


def remember_secret_files(model: Mapping[str, Any], project_dir: Path,
                          error: Callable[[str, str], None]) -> None:
    secrets = model.get("secrets")
    if not isinstance(secrets, Mapping):
        return
    for name, spec in sorted(secrets.items()):
        file = spec.get("file") if isinstance(spec, Mapping) else None
        if isinstance(file, str) and file:
            path = Path(file) if Path(file).is_absolute() else project_dir / file
            value = _read(path, error)
            if value:
                remember(value, f"compose:{path}:{name}")


def _read(path: Path, error: Callable[[str, str], None]) -> str | None:
    odd = not_a_regular_file(path)
    if odd is not None:
        error(str(path), odd)
        return None
    try:
        if path.stat().st_size > MAX_SECRET_FILE_BYTES:
            return None
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None  # Compose reports a missing secrets file itself
    except (OSError, UnicodeDecodeError) as exc:
        error(str(path), f"cannot read the secrets file: {exc.__class__.__name__}")
        return None
