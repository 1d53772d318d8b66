"""Finding PostgreSQL clusters and Redis on this host: the parsers on built /proc and /etc trees,
the peer helpers on this machine (run as root in CI), the Redis probe on a real listening socket."""

from __future__ import annotations

import os
import pwd
import socket
from pathlib import Path

import pytest

from stackaudit.facts import local_servers as ls
from stackaudit.peer import OsUser, PeerError, run_as, socket_owner, socket_path


def fake_process(proc: Path, pid: int, comm: str, args: list[str], cwd: Path | None = None) -> None:
    entry = proc / str(pid)
    entry.mkdir(parents=True)
    (entry / "comm").write_text(comm + "\n")
    (entry / "cmdline").write_bytes(b"\0".join(a.encode() for a in args) + b"\0")
    if cwd is not None:
        (entry / "cwd").symlink_to(cwd)


def data_dir(root: Path, name: str, pid: int | None, port: int, socket_dir: str = "/run/pg") -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "PG_VERSION").write_text("15\n")
    if pid is not None:
        (path / "postmaster.pid").write_text(f"{pid}\n{path}\n1700000000\n{port}\n{socket_dir}\n127.0.0.1\n")
    return path


def debian_conf(etc: Path, version: str, name: str, data: Path, port: int) -> Path:
    conf_dir = etc / version / name
    conf_dir.mkdir(parents=True)
    (conf_dir / "postgresql.conf").write_text(f"data_directory = '{data}'\t\t# where\nport = {port}\n")
    return conf_dir


def test_running_postmasters_and_debian_clusters_are_found_with_port_socket_and_name(tmp_path: Path) -> None:
    proc, etc = tmp_path / "proc", tmp_path / "etc"
    by_flag = data_dir(tmp_path, "flag", 101, 5544)
    by_cwd = data_dir(tmp_path, "cwd", 202, 5432, "/var/run/postgresql")
    debian_down = data_dir(tmp_path, "debian-down", None, 5433)
    fake_process(proc, 101, "postgres", ["/usr/lib/postgresql/15/bin/postgres", "-D", str(by_flag)])
    fake_process(proc, 102, "postgres", ["postgres: checkpointer"], cwd=by_flag)  # a child: same dir
    fake_process(proc, 202, "postgres", ["/usr/lib/postgresql/15/bin/postgres"], cwd=by_cwd)
    fake_process(proc, 303, "python3", ["python3", "-D", str(by_flag)])  # not a postgres process
    debian_conf(etc, "15", "main", by_cwd, 5432)
    debian_conf(etc, "15", "old", debian_down, 5433)

    clusters = ls.find_postgres_clusters(proc, etc)

    assert [(c.data_dir, c.running) for c in clusters] == [
        (str(by_cwd), True), (str(by_flag), True), (str(debian_down), False)
    ]
    main = clusters[0]
    assert (main.debian, main.port, main.socket_dir, main.pid, main.version) == (
        "15/main", 5432, "/var/run/postgresql", 202, "15"
    )
    assert main.config_dir == str(etc / "15" / "main")
    me = pwd.getpwuid(os.getuid()).pw_name
    assert main.conninfo() == f"host=/var/run/postgresql port=5432 user={me} dbname=postgres"
    assert clusters[2].port == 5433  # down: the port from its postgresql.conf


def test_a_stale_postmaster_pid_is_not_running(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    stale = data_dir(tmp_path, "stale", 4242, 5440)
    fake_process(proc, 4242, "bash", ["bash"])  # the pid was reused by something else
    fake_process(proc, 9, "postgres", ["postgres", "-D", str(stale)])
    [cluster] = ls.find_postgres_clusters(proc, tmp_path / "no-etc")
    assert cluster.running is False and cluster.pid is None


def test_choose_prefers_debian_then_the_default_port_and_names_the_others(tmp_path: Path) -> None:
    a = ls.FoundCluster("/a", True, 5999)
    b = ls.FoundCluster("/b", True, 5432, debian="15/b")
    down = ls.FoundCluster("/c", False, 5433, debian="15/c", version="15")
    ordered = sorted([a, b, down], key=lambda c: (not c.running, c.debian is None, c.port != 5432))
    chosen, others = ls.choose_cluster(ordered)
    assert chosen == b and others == [a]
    assert ls.choose_cluster([down]) == (None, [])
    reason = ls.not_running_reason([down])
    assert "15/c" in reason and "start it with pg_ctlcluster 15 c start" in reason
    hint = b.pg_hint()
    assert "--pg 'host=/var/run/postgresql port=5432 user=postgres dbname=postgres'" in hint
    assert "postgresql://USER@127.0.0.1:5432/postgres" in hint


def test_local_redis_answers_only_when_something_listens(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert ls.local_redis(("127.0.0.1", port)) == f"redis://127.0.0.1:{port}/0"
    assert ls.local_redis(("127.0.0.1", port)) is None


def test_socket_path_of_a_conninfo() -> None:
    assert socket_path("host=/run/pg port=5433") == Path("/run/pg/.s.PGSQL.5433")
    assert socket_path("postgresql://u@127.0.0.1:5432/db") is None
    assert socket_path("not a conninfo ===") is None


def test_socket_owner_and_run_as_switch_to_the_owner(tmp_path: Path) -> None:
    """Needs root, as the whole suite in CI (switching users)."""
    nobody = pwd.getpwnam("nobody")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / ".s.PGSQL.6543"))
        os.chown(tmp_path / ".s.PGSQL.6543", nobody.pw_uid, nobody.pw_gid)
        owner = socket_owner(f"host={tmp_path} port=6543")
    assert owner == OsUser("nobody", nobody.pw_uid, nobody.pw_gid)
    assert run_as(owner, lambda: {"uid": os.getuid(), "euid": os.geteuid()}) == {
        "uid": nobody.pw_uid, "euid": nobody.pw_uid
    }
    with pytest.raises(PeerError) as failed:
        run_as(owner, lambda: Path("/root/.no-such-file").read_text())
    assert failed.value.kind in ("PermissionError", "FileNotFoundError")
    assert os.geteuid() == 0  # the parent never changed


def test_a_child_that_never_answers_is_killed_and_said_so() -> None:
    import signal as signals

    me = OsUser(pwd.getpwuid(os.getuid()).pw_name, os.getuid(), os.getgid())
    with pytest.raises(PeerError, match=r"did not answer in 0\.5s"):
        run_as(me, lambda: signals.pause(), timeout_seconds=0.5)
