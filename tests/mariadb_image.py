"""A MariaDB 10.11 container image built without a registry: `docker import` of a root filesystem
made from the host's Debian mariadb-server and mariadb-client binaries (as tests/pg_image.py does
for PostgreSQL, with its tar helpers).

The root filesystem holds /usr/sbin/mariadbd, /usr/bin/mariadb and /usr/bin/mariadb-dump, every
shared library `ldd` names for them plus the dynamic loader, /usr/share/mysql (error messages and
character sets, the server's compiled-in defaults), a `mysql` user with the host's uid/gid (so a
datadir made on the host by mariadb-install-db can be bind-mounted) and /run/mysqld, where this
build's server and clients both put the socket by default. No shell: `docker exec CONTAINER
mariadb-dump ...` runs the tool directly, as the backups do.
"""

from __future__ import annotations

import pwd
import tarfile
from pathlib import Path

from tests.pg_image import _RootFs, import_image, shared_libraries

IMAGE = "sa-test/mariadb:10.11"
BINARIES = ("/usr/sbin/mariadbd", "/usr/bin/mariadb", "/usr/bin/mariadb-dump")
SHARE = Path("/usr/share/mysql")
DATADIR = "/var/lib/mysql"
CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["mariadbd"]',
)


def write_rootfs(target: Path) -> Path:
    """The root filesystem tarball at `target` (built once; about 60 MB)."""
    mysql = pwd.getpwnam("mysql")
    uid, gid = mysql.pw_uid, mysql.pw_gid
    partial = target.with_suffix(".partial")
    with tarfile.open(partial, "w") as tar:
        fs = _RootFs(tar)
        for binary in BINARIES:
            fs.host_path(binary)
        for library in sorted(shared_libraries([Path(b) for b in BINARIES])):
            fs.host_path(library)
        fs.tree(SHARE, str(SHARE))
        fs.file("etc/passwd", f"root:x:0:0:root:/root:/bin/false\nmysql:x:{uid}:{gid}::/nonexistent:"
                              "/bin/false\n".encode())
        fs.file("etc/group", f"root:x:0:\nmysql:x:{gid}:\n".encode())
        fs.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files\n")
        fs.file("etc/hosts", b"127.0.0.1 localhost\n")
        fs.directory("tmp", 0o1777)
        fs.directory("run/mysqld", 0o755, uid=uid)
        fs.directory(DATADIR, 0o700, uid=uid)
    partial.rename(target)
    return target


def build_image(docker_host: str, cache_dir: Path, tag: str = IMAGE) -> str:
    """The image in that engine, from the tarball cached in `cache_dir` (written on first use)."""
    rootfs = cache_dir / "sa-test-mariadb-10.11-rootfs.tar"
    if not rootfs.exists():
        write_rootfs(rootfs)
    return import_image(docker_host, rootfs, tag, CHANGES)
