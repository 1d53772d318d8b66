"""An OpenSSH server for the fleet tests, on loopback addresses only, in a folder of its own.

One sshd (Debian's openssh-server) listens on one port of several 127.0.0.x addresses, so each
address is a "host" of the test inventory. It has its own config (`-f`), a generated host key,
key-only authentication with a generated client key (AuthorizedKeysFile in the folder), and the
client side gets an ssh_config and a known_hosts file in the folder too: the machine's own
/etc/ssh/sshd_config, ~/.ssh and host keys are never read or written. Host keys are checked as
always (StrictHostKeyChecking yes): a host whose known_hosts line holds another key is refused.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stackaudit.localpg import free_port
from tests.services import stop_process

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # compiled into Debian's sshd; the package makes it at start


@dataclass
class SshServer:
    directory: Path
    port: int
    addresses: tuple[str, ...]
    user: str
    process: subprocess.Popen[bytes]

    @property
    def ssh_config(self) -> Path:
        return self.directory / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    def host_vars(self, address: str) -> dict[str, str | int]:
        """The inventory variables that reach `address` through this server."""
        return {"ansible_host": address, "ansible_port": self.port, "ansible_user": self.user,
                "ansible_ssh_common_args": f"-F {self.ssh_config}"}

    def trust_wrong_key(self, address: str) -> None:
        """known_hosts says `address` has another host key: ssh must refuse to connect there."""
        other = self.directory / "other_host_key"
        if not other.exists():
            keygen(other)
        lines = [line for line in self.known_hosts.read_text().splitlines()
                 if not line.startswith(f"[{address}]:{self.port} ")]
        lines.append(f"[{address}]:{self.port} {public_key(other)}")
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def stop(self) -> None:
        stop_process(self.process, self.directory)


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "stackaudit-test", "-f", str(path)],
                   check=True, capture_output=True)


def public_key(path: Path) -> str:
    kind, key = Path(f"{path}.pub").read_text().split()[:2]
    return f"{kind} {key}"


def start_sshd(addresses: Sequence[str]) -> SshServer:
    """sshd on `addresses` (127.0.0.x) at one free port, logging in the current user by key."""
    directory = Path(tempfile.mkdtemp(prefix="sa-sshd-"))
    user = pwd.getpwuid(os.geteuid()).pw_name
    port = free_port()
    keygen(directory / "host_key")
    keygen(directory / "client_key")
    shutil.copy(f"{directory / 'client_key'}.pub", directory / "authorized_keys")
    listen = "".join(f"ListenAddress {a}:{port}\n" for a in addresses)
    (directory / "sshd_config").write_text(
        f"{listen}HostKey {directory / 'host_key'}\nPidFile {directory / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\nAuthenticationMethods publickey\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nMaxStartups 100:30:200\nMaxSessions 100\n"
        "LogLevel ERROR\nSubsystem sftp internal-sftp\n")
    (directory / "known_hosts").write_text(
        "".join(f"[{a}]:{port} {public_key(directory / 'host_key')}\n" for a in addresses))
    (directory / "ssh_config").write_text(
        f"Host *\n  IdentityFile {directory / 'client_key'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {directory / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 10\n")
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    log = (directory / "sshd.log").open("wb")
    process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(directory / "sshd_config")],
                               stdout=log, stderr=log)
    server = SshServer(directory, port, tuple(addresses), user, process)
    _wait_listening(server)
    return server


def _wait_listening(server: SshServer) -> None:
    deadline = time.monotonic() + 20
    for address in server.addresses:
        while True:
            try:
                with socket.create_connection((address, server.port), timeout=1):
                    break
            except OSError:
                if server.process.poll() is not None or time.monotonic() > deadline:
                    tail = (server.directory / "sshd.log").read_text(errors="replace")[-2000:]
                    server.stop()
                    raise RuntimeError(f"sshd did not start on {address}:{server.port}:\n{tail}") from None
                time.sleep(0.05)
