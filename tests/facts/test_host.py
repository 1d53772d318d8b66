"""Host facts: the parsers on recorded /proc and /sys trees, and the collector on this machine."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from stackaudit.config import Settings
from stackaudit.facts import CollectContext, Facts
from stackaudit.facts import host as host_facts

FIXTURES = Path(__file__).parent / "proc_fixtures"


def _collect(root: Path, **settings: object) -> tuple[dict, Facts]:  # type: ignore[type-arg]
    ctx = CollectContext(settings=Settings(proc_root=root / "proc", sys_root=root / "sys", **settings),
                         facts=Facts())
    return host_facts.collect(ctx), ctx.facts


def test_meminfo_is_parsed_in_bytes() -> None:
    values = host_facts.parse_meminfo((FIXTURES / "v2/proc/meminfo").read_text())
    assert values["MemTotal"] == 24117248 * 1024
    assert values["MemAvailable"] == 1024000 * 1024
    assert values["SwapTotal"] == 0


def test_cgroup_v2_limit_is_the_tightest_of_the_ancestors() -> None:
    data, _ = _collect(FIXTURES / "v2")
    assert data["cgroup"] == {"version": 2, "memory_limit_bytes": 4 * 1024**3, "cpu_quota_cores": 1.5}
    assert data["memory_limit_bytes"] == 4 * 1024**3
    assert data["cpu_limit_cores"] == 1.5


def test_cgroup_v1_container_limits_and_unlimited_sentinel() -> None:
    data, _ = _collect(FIXTURES / "v1")
    assert data["cgroup"]["version"] == 1
    assert data["cgroup"]["memory_limit_bytes"] == 512 * 1024**2  # not the 2**63 "no limit" of the root
    assert data["cgroup"]["cpu_quota_cores"] == 2.0


def test_psi_and_load_are_read() -> None:
    data, _ = _collect(FIXTURES / "v2")
    assert data["psi"]["memory"]["some_avg300"] == 15.25
    assert data["load_average"] == [0.34, 0.61, 5.86]


def test_missing_psi_is_none_not_an_error() -> None:
    data, facts = _collect(FIXTURES / "v1")
    assert data["psi"] is None
    assert not [e for e in facts.errors if "pressure" in e.where]


def test_mounts_skip_pseudo_filesystems_and_unescape_spaces() -> None:
    mounts = host_facts.parse_mounts((FIXTURES / "v2/proc/self/mounts").read_text())
    points = [m["mountpoint"] for m in mounts]
    assert "/mnt/with space" in points
    data, facts = _collect(FIXTURES / "v2")
    collected = [m["mountpoint"] for m in data["mounts"]]
    assert "/proc" not in collected and "/run" not in collected
    # the recorded mount does not exist here: reported, not raised
    assert any(e.where == "/mnt/with space" for e in facts.errors)


def test_mount_for_picks_the_longest_prefix() -> None:
    points = ["/", "/var", "/var/lib/docker"]
    assert host_facts.mount_for("/var/lib/docker/volumes/x", points) == "/var/lib/docker"
    assert host_facts.mount_for("/var/lib/postgresql", points) == "/var"
    assert host_facts.mount_for("/variable", points) == "/"


def test_live_collector_reports_this_machine(tmp_path: Path) -> None:
    data, _ = _collect(Path("/"), disk_paths=(tmp_path,))
    assert data["cpu_count"] == os.cpu_count()
    assert data["memory_total_bytes"] > 0
    root = next(m for m in data["mounts"] if m["mountpoint"] == "/")
    assert "root" in root["holds"]
    st = os.statvfs("/")
    assert root["total_bytes"] == st.f_blocks * st.f_frsize
    assert 0 <= root["used_percent"] <= 100
    assert any("extra" in m["holds"] for m in data["mounts"])


def test_extra_tmpfs_path_is_watched(tmp_path: Path) -> None:
    """A tmpfs is skipped unless it holds something we watch, such as a configured disk path."""
    target = tmp_path / "small"
    target.mkdir()
    os.system(f"mount -t tmpfs -o size=1m tmpfs {target}")
    try:
        data, _ = _collect(Path("/"), disk_paths=(target,))
        mount = next(m for m in data["mounts"] if m["mountpoint"] == str(target))
        assert mount["fstype"] == "tmpfs" and mount["holds"] == ["extra"]
        assert mount["total_bytes"] == 1024 * 1024
    finally:
        os.system(f"umount {target}")


def test_random_read_probe_measures_a_large_file(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(4 * 1024 * 1024))
    probe = host_facts.random_read_probe(str(big))
    assert probe is not None
    assert probe["reads"] == host_facts.PROBE_READS
    assert 0 < probe["latency_p50_ms"] <= probe["latency_p95_ms"]
    assert probe["iops"] > 0


def test_random_read_probe_declines_small_or_missing_targets(tmp_path: Path) -> None:
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 4096)
    assert host_facts.random_read_probe(str(small)) is None
    assert host_facts.random_read_probe(str(tmp_path / "missing")) is None
    assert host_facts.random_read_probe(None) is None


def test_probe_target_finds_a_large_file_on_the_same_filesystem() -> None:
    target = host_facts.probe_target("/", ["root"])
    assert target is not None
    assert os.stat(target).st_dev == os.stat("/").st_dev


SMALLEST, ENOUGH = 8192, 6 * 4096  # the walk's thresholds, scaled down to files a test can write


def _walked(tops: list[str], dev: int, limit: int) -> str | None:
    """The reference: os.walk's order and notion of a file, the bytes on disk, the first big enough."""
    best, best_size, seen = None, SMALLEST, 0
    for top in tops:
        for root, _, files in os.walk(top):
            for name in files:
                seen += 1
                if seen > limit:
                    return best
                st = os.lstat(os.path.join(root, name))
                on_disk = min(st.st_size, st.st_blocks * 512)
                if st.st_dev == dev and on_disk > best_size and stat.S_ISREG(st.st_mode):
                    best, best_size = os.path.join(root, name), on_disk
                    if on_disk >= ENOUGH:
                        return best
    return best


def _write(path: Path, size: int, sparse: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        if sparse:
            file.truncate(size)  # a size with no disk behind it
        else:
            file.write(os.urandom(size))
        file.flush()
        os.fsync(file.fileno())  # so st_blocks counts the bytes (delayed allocation otherwise)


def test_large_file_walks_like_os_walk_up_to_its_limit(tmp_path: Path) -> None:
    sizes = {"a/one": 3, "a/deep/two": 4, "b/three": 5, "b/small": 1, "c/four": 6, "top": 7}
    for rel, blocks in sizes.items():
        _write(tmp_path / rel, blocks * 4096)
    _write(tmp_path / "a" / "deep" / "sparse", 64 * 4096, sparse=True)  # large, but no disk: never wins
    (tmp_path / "a" / "to-c").symlink_to(tmp_path / "c")  # a link to a directory is not walked
    (tmp_path / "b" / "to-top").symlink_to(tmp_path / "top")  # a link to a file counts, never wins
    (tmp_path / "c" / "empty").mkdir()
    tops = [str(tmp_path / top) for top in ("a", "b", "c", "")] + ["/nonexistent"]
    dev = os.stat(tmp_path).st_dev
    found = [host_facts._large_file(tops, dev, limit, SMALLEST, ENOUGH) for limit in range(0, 18)]
    assert found == [_walked(tops, dev, limit) for limit in range(0, 18)]
    assert None in found and str(tmp_path / "a" / "deep" / "sparse") not in found
    # c/four is big enough: the walk ends there, before the larger `top` it would reach later
    assert found[-1] == str(tmp_path / "c" / "four")
    assert host_facts._large_file(tops, dev, 100, SMALLEST, enough=8 * 4096) == str(tmp_path / "top")


def test_dockers_data_root_comes_from_its_config_file_not_from_the_docker_source(tmp_path: Path) -> None:
    """Read from daemon.json, the host's facts are the same whichever source finishes first."""
    configured_docker_root = host_facts.configured_docker_root
    daemon = tmp_path / "daemon.json"
    assert configured_docker_root(daemon) is None  # no file: the default paths
    daemon.write_text('{"data-root": "/srv/docker", "log-driver": "local"}')
    assert configured_docker_root(daemon) == "/srv/docker"
    daemon.write_text('{"graph": "/data/docker"}')  # before Docker 17.05
    assert configured_docker_root(daemon) == "/data/docker"
    for bad in ("{not json", '["/srv"]', '{"data-root": "relative"}', '{"data-root": 7}'):
        daemon.write_text(bad)
        assert configured_docker_root(daemon) is None
