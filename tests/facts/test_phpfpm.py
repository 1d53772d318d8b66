"""facts/phpfpm.py: PHP-FPM pools from the image default and the pool files a service mounts."""

from __future__ import annotations

from pathlib import Path

from stackaudit.facts.phpfpm import parse_pool_file, php_fpm_clients


def test_parse_pool_file_reads_pm_keys_per_pool_and_skips_global_and_comments() -> None:
    text = "[global]\npm.max_children = 99\n[www]\n; pm.max_children = 1\npm = static\npm.max_children = 40\n"
    assert parse_pool_file(text) == {"www": {"pm": ("static", 5), "pm.max_children": ("40", 6)}}


def compose(volumes: list[dict[str, object]], tag: str = "8.3-fpm", replicas: int = 1) -> dict[str, object]:
    service = {"name": "php", "image_repository": "php", "image_tag": tag, "volumes": volumes,
               "replicas": replicas}
    db = {"name": "db", "image_repository": "mariadb"}
    return {"projects": [{"name": "blog", "services": {"php": service, "db": db}}]}


def test_image_default_is_five_children() -> None:
    [client] = php_fpm_clients(compose([], replicas=3))
    assert client["pools"]["www"] == {"pm": "dynamic", "max_children": 5,
                                      "source": "php image default www.conf"}
    assert client["max_children_total"] == 15


def test_mounted_pool_files_override_in_include_order(tmp_path: Path) -> None:
    pool_dir = tmp_path / "php-fpm.d"
    pool_dir.mkdir()
    (pool_dir / "www.conf").write_text("[www]\npm = dynamic\npm.max_children = 30\n")
    (pool_dir / "zz-tuned.conf").write_text("[www]\npm.max_children = 60\n[api]\npm = ondemand\n"
                                            "pm.max_children = 20\n")
    volumes = [{"type": "bind", "source": str(pool_dir), "target": "/usr/local/etc/php-fpm.d"}]
    [client] = php_fpm_clients(compose(volumes, tag="latest"))  # the mount alone says FPM
    assert client["pools"]["www"]["max_children"] == 60
    assert client["pools"]["www"]["source"].endswith("zz-tuned.conf:2 (zz-tuned.conf)")
    assert client["pools"]["api"] == {"pm": "ondemand", "max_children": 20,
                                      "source": f"{pool_dir / 'zz-tuned.conf'}:5 (zz-tuned.conf)"}
    assert client["max_children_total"] == 80


def test_a_service_without_fpm_is_not_a_client() -> None:
    assert php_fpm_clients(compose([], tag="8.3-apache")) == []
