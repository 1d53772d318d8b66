"""The guard of tests/conftest.py: a test not marked integration cannot use or start a service."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _programs

ROOT = Path(__file__).parents[1]

UNMARKED = '''
import subprocess
import pytest

def test_asks_for_redis(redis_factory):
    pass

def test_starts_a_server():  # nothing real runs: the guard refuses before the program is looked up
    with pytest.raises(FileNotFoundError):
        subprocess.run(["/nonexistent/redis-server", "--port", "0"])

@pytest.mark.integration
def test_marked_may_spawn():  # the guard lets it through to the (missing) program
    with pytest.raises(FileNotFoundError):
        subprocess.run(["/nonexistent/redis-server", "--port", "0"])

def test_plain_programs_are_fine():
    subprocess.run(["true"], check=True)
'''


def test_programs_behind_a_wrapper_are_seen_and_user_names_are_not() -> None:
    runuser = ["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "start"]
    assert _programs(runuser) >= {"runuser", "pg_ctl"} and "postgres" not in _programs(runuser)
    assert _programs("redis-server /tmp/redis.conf") == {"redis-server"}
    assert _programs(["/usr/bin/psql", "-U", "postgres"]) == {"psql"}


# In one process (the integration run of `make test`) and in a pytest-xdist worker (`make unit`),
# where the hooks and the audit hook run in each worker, not in the controller (one worker is
# enough: each runs the same hooks on its own).
@pytest.mark.parametrize("workers", [(), ("-n", "1")], ids=["one-process", "xdist-worker"])
def test_unmarked_tests_that_need_a_service_fail_loudly(tmp_path: Path, workers: tuple[str, ...]) -> None:
    test_file = tmp_path / "test_unmarked.py"
    test_file.write_text(UNMARKED)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                             "tests.conftest", "--rootdir", str(tmp_path), "-c", "/dev/null", "-o",
                             "markers=integration: a service", *workers, str(test_file)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    out = result.stdout
    assert result.returncode == 1, out
    unmarked = "is not marked integration but needs a service"
    assert f"test_asks_for_redis {unmarked} (fixtures redis_factory)" in out
    assert f"test_starts_a_server {unmarked} (it starts redis-server)" in out
    assert "1 failed, 2 passed, 1 error" in out, out
    assert not workers or re.search(r"^\[gw0\] linux", out, re.M)  # reported from the worker
