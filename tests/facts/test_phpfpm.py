"""facts/phpfpm.py: PHP-FPM pools from the image default and the pool files a service mounts."""

from __future__ import annotations

from pathlib import Path

from stackaudit.facts.phpfpm import parse_pool_file, php_fpm_clients, service_pools


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
                                      "source": "php image default www.conf",
                                      "memory_limit_bytes": 128 * 2**20,
                                      "memory_limit_source": "PHP default memory_limit"}
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
                                      "source": f"{pool_dir / 'zz-tuned.conf'}:5 (zz-tuned.conf)",
                                      "memory_limit_bytes": 128 * 2**20,
                                      "memory_limit_source": "PHP default memory_limit"}
    assert client["max_children_total"] == 80


def test_a_service_without_fpm_is_not_a_client() -> None:
    assert php_fpm_clients(compose([], tag="8.3-apache")) == []


def test_memory_limit_from_image_env_ini_files_and_the_pool_in_that_order(tmp_path: Path) -> None:
    nextcloud = {"name": "app", "image_repository": "nextcloud", "image_tag": "29-fpm", "volumes": []}
    assert service_pools(nextcloud)["www"]["memory_limit_bytes"] == 512 * 2**20  # the image's default
    tuned = {**nextcloud, "environment": {"PHP_MEMORY_LIMIT": "1G"}}
    assert service_pools(tuned)["www"]["memory_limit_source"] == "environment PHP_MEMORY_LIMIT"
    assert service_pools(tuned)["www"]["memory_limit_bytes"] == 2**30

    (tmp_path / "php.ini").write_text("[PHP]\nmemory_limit = 256M ; the site's\n")
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "a-uploads.ini").write_text("upload_max_filesize = 64M\n")
    (conf_d / "z-memory.ini").write_text("memory_limit=384M\n")
    pools = tmp_path / "www.conf"
    pools.write_text("[www]\npm.max_children = 8\n[api]\npm.max_children = 2\n"
                     "php_admin_value[memory_limit] = 1024M\n")
    mounts = [{"type": "bind", "source": str(conf_d), "target": "/usr/local/etc/php/conf.d"},
              {"type": "bind", "source": str(tmp_path / "php.ini"), "target": "/usr/local/etc/php/php.ini"},
              {"type": "bind", "source": str(pools), "target": "/usr/local/etc/php-fpm.d/www.conf"}]
    php = {"name": "php", "image_repository": "php", "image_tag": "8.3-fpm", "volumes": mounts}
    found = service_pools(php)
    assert found["www"]["memory_limit_bytes"] == 384 * 2**20  # conf.d is read after php.ini
    assert found["www"]["memory_limit_source"] == f"{conf_d / 'z-memory.ini'}:1"
    api = found["api"]
    assert (api["memory_limit_bytes"], api["memory_limit_source"]) == (2**30, f"{pools}:5 (www.conf)")


def test_an_unlimited_or_unreadable_memory_limit_is_unknown(tmp_path: Path) -> None:
    ini = tmp_path / "php.ini"
    ini.write_text("memory_limit = -1\n")
    mounts = [{"type": "bind", "source": str(ini), "target": "/usr/local/etc/php/php.ini"}]
    found = service_pools({"name": "php", "image_repository": "php", "image_tag": "fpm", "volumes": mounts})
    assert found["www"]["memory_limit_bytes"] is None
    ini.write_text("memory_limit = lots\n")
    unreadable = service_pools({"name": "php", "image_tag": "fpm", "volumes": mounts})
    assert unreadable["www"]["memory_limit_bytes"] is None
