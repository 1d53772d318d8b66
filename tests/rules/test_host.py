"""SYS rules on facts snapshots."""

from __future__ import annotations

from typing import Any

from stackaudit.config import Settings
from stackaudit.facts import Facts
from stackaudit.model import Finding, Severity
from stackaudit.rules import evaluate

GIB = 1024**3


def host(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "hostname": "vps", "cpu_count": 4, "cpu_limit_cores": None, "architecture": "aarch64",
        "memory_total_bytes": 23 * GIB, "memory_available_bytes": 15 * GIB, "memory_limit_bytes": None,
        "swap_total_bytes": 0, "swap_free_bytes": 0, "load_average": [0.34, 0.5, 0.86], "psi": None,
        "mounts": [mount("/", 49 * GIB, 42 * GIB, ["root", "docker"])],  # 85.7% used
    }
    return {**base, **overrides}


def mount(point: str, total: int, used: int, holds: list[str], **extra: Any) -> dict[str, Any]:
    return {"mountpoint": point, "device": "/dev/vda1", "fstype": "ext4", "total_bytes": total,
            "used_bytes": used, "free_bytes": total - used, "used_percent": round(100 * used / total, 1),
            "inodes_total": 1000, "inodes_used": 10, "inodes_used_percent": 1.0, "holds": holds, **extra}


def run(data: dict[str, Any], codes: str, settings: Settings | None = None) -> list[Finding]:
    settings = settings or Settings()
    findings, _ = evaluate(Facts(data=data), Settings(select=(codes,), thresholds=settings.thresholds))
    return findings


def test_sys001_fires_critical_at_85_percent_like_the_reference_host() -> None:
    findings = run({"host": host()}, "SYS001")
    assert len(findings) == 1
    assert findings[0].severity == Severity.CRITICAL
    assert findings[0].message.startswith("/ (docker, root) is 86% full: 7.0 GiB free of 49.0 GiB")


def test_sys001_fires_high_at_75_percent_and_names_the_free_space() -> None:
    data = {"host": host(mounts=[mount("/", 100 * GIB, 76 * GIB, ["root"])])}
    [finding] = run(data, "SYS001")
    assert finding.severity == Severity.HIGH
    assert "24.0 GiB free" in finding.message


def test_sys001_silent_below_threshold_and_for_unwatched_mounts() -> None:
    data = {"host": host(mounts=[mount("/", 100 * GIB, 50 * GIB, ["root"]),
                                 mount("/scratch", 10 * GIB, 10 * GIB - 1, [])])}
    assert run(data, "SYS001") == []


def test_sys001_fires_on_the_docker_data_root_mount_found_by_docker_facts() -> None:
    data = {"host": host(mounts=[mount("/", 100 * GIB, 10 * GIB, ["root"]),
                                 mount("/data", 100 * GIB, 90 * GIB, [])]),
            "docker": {"engine": {"data_root": "/data/docker"}}}
    [finding] = run(data, "SYS001")
    assert finding.subject == "/data" and "docker" in finding.message


def test_sys001_threshold_is_configurable_per_mount() -> None:
    data = {"host": host(mounts=[mount("/", 100 * GIB, 80 * GIB, ["root"])])}
    lenient = Settings(thresholds={"SYS001": {"/": {"high_percent": 90, "critical_percent": 95}}})
    assert run(data, "SYS001", lenient) == []


def test_sys001_fires_on_inodes_while_bytes_are_free() -> None:
    m = mount("/", 100 * GIB, 10 * GIB, ["root"], inodes_used=950, inodes_used_percent=95.0)
    [finding] = run({"host": host(mounts=[m])}, "SYS001")
    assert "inodes" in finding.message and finding.severity == Severity.CRITICAL


def test_sys001_fires_early_on_a_forecast_under_14_days() -> None:
    m = mount("/", 100 * GIB, 50 * GIB, ["root"], forecast_days_to_full=6.5)
    [finding] = run({"host": host(mounts=[m])}, "SYS001")
    assert "6.5 days" in finding.message


def test_sys002_fires_when_available_memory_is_low() -> None:
    [finding] = run({"host": host(memory_available_bytes=1 * GIB)}, "SYS002")
    assert "1.0 GiB of 23.0 GiB" in finding.message


def test_sys002_fires_on_sustained_psi_pressure() -> None:
    psi = {"memory": {"some_avg300": 25.0}}
    [finding] = run({"host": host(psi=psi)}, "SYS002")
    assert "stalled" in finding.message


def test_sys002_silent_with_plenty_of_memory_and_no_pressure() -> None:
    assert run({"host": host(psi={"memory": {"some_avg300": 0.5}})}, "SYS002") == []


def test_sys002_uses_the_cgroup_limit_when_tighter() -> None:
    data = {"host": host(memory_available_bytes=3 * GIB, memory_limit_bytes=4 * GIB)}
    assert run(data, "SYS002") == []  # 3 of 4 GiB available: fine
    data = {"host": host(memory_available_bytes=int(0.2 * GIB), memory_limit_bytes=4 * GIB)}
    assert len(run(data, "SYS002")) == 1


def container(name: str, limit: int | None, state: str = "running") -> dict[str, Any]:
    return {"name": name, "state": state, "memory_limit_bytes": limit}


def test_sys003_fires_without_swap_and_with_unlimited_containers() -> None:
    data = {"host": host(), "docker": {"containers": [container("web", None), container("db", 4 * GIB)]}}
    [finding] = run(data, "SYS003")
    assert "web" in finding.message and "No swap" in finding.message


def test_sys003_silent_with_swap_or_with_every_container_limited() -> None:
    limited = {"containers": [container("web", 2 * GIB), container("db", 4 * GIB),
                              container("old", None, state="exited")]}
    assert run({"host": host(), "docker": limited}, "SYS003") == []
    unlimited = {"containers": [container("web", None)]}
    assert run({"host": host(swap_total_bytes=2 * GIB), "docker": unlimited}, "SYS003") == []


def test_sys003_is_skipped_without_docker_facts() -> None:
    _, skipped = evaluate(Facts(data={"host": host()}), Settings(select=("SYS003",)))
    assert [s.code for s in skipped] == ["SYS003"]


def test_sys004_fires_when_load_exceeds_cores() -> None:
    [finding] = run({"host": host(load_average=[6.0, 5.5, 5.2])}, "SYS004")
    assert "5.20" in finding.message


def test_sys004_silent_on_the_reference_hosts_load() -> None:
    assert run({"host": host()}, "SYS004") == []


def test_sys004_counts_the_cgroup_cpu_quota() -> None:
    assert len(run({"host": host(cpu_limit_cores=1.0, load_average=[2, 2, 1.5])}, "SYS004")) == 1
