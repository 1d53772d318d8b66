"""Whether git tracks or ignores a secrets file, asked of git itself.

gitignore matching has many corners (negations, nested .gitignore files, core.excludesFile,
.git/info/exclude), so we never re-implement it: `git check-ignore` and `git ls-files` answer.
git's safe.directory check is kept: a repository owned by another user is reported, not entered,
because running git there as root could execute that user's configuration (core.fsmonitor).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

GIT_TIMEOUT_SECONDS = 10.0


def git_status(path: str | Path, timeout: float = GIT_TIMEOUT_SECONDS) -> dict[str, Any]:
    """{"tracked": bool, "ignored": bool, "repo": top-level dir or None, "error": str or None}."""
    file = Path(path)
    status: dict[str, Any] = {"tracked": False, "ignored": False, "repo": None, "error": None}
    if shutil.which("git") is None:
        status["error"] = "git is not installed"
        return status
    directory, name = file.parent, file.name
    if not directory.is_dir():
        status["error"] = f"directory {directory} does not exist"
        return status
    top = _git(directory, ["rev-parse", "--show-toplevel"], timeout)
    if top.returncode != 0:
        why = _first_line(top.stderr)
        if "not a git repository" not in why:
            status["error"] = why  # e.g. "detected dubious ownership in repository"
        return status
    status["repo"] = top.stdout.strip()
    tracked = _git(directory, ["ls-files", "--error-unmatch", "--", name], timeout)
    status["tracked"] = tracked.returncode == 0
    ignored = _git(directory, ["check-ignore", "-q", "--", name], timeout)
    if ignored.returncode not in (0, 1):  # 128: fatal error
        status["error"] = _first_line(ignored.stderr)
    status["ignored"] = ignored.returncode == 0
    return status


def _git(directory: Path, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    # A fixed, prompt-free environment: no pager, no credential prompts, English messages.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}
    try:
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True,
                              timeout=timeout, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(args, 128, "", f"git failed: {exc}")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0].removeprefix("fatal: ") if lines else "git failed"
