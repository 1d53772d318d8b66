#!/usr/bin/env bash
# Debian packages the demo and the tests need. Installs only what is missing, so a machine that has
# them needs no network. Run as root (CI and these machines are root); elsewhere it prints the command.
set -euo pipefail

demo_packages=(python3-venv)
test_packages=(postgresql-15 postgresql-contrib redis-server docker.io containerd runc prometheus
               chromium busybox-static openssl git util-linux e2fsprogs
               pgbouncer time mariadb-server mariadb-client)  # time: /usr/bin/time -v, for make bench-*
test_packages+=(openssh-client)  # ssh-keygen: real OpenSSH private keys for the SEC001/SEC002 tests
test_packages+=(openssh-server)  # sshd on loopback for the fleet collect tests (tests/sshd.py)
test_packages+=(prometheus-alertmanager)  # fleet prometheus: amtool check-config, routes, a live Alertmanager

want=("${demo_packages[@]}")
[ "${1:-}" = "--test" ] && want+=("${test_packages[@]}")
[ "${1:-}" = "--mariadb" ] && want+=(mariadb-server)  # make demo-mariadb

missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}" >&2
  echo "run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The Debian server package starts a cluster of its own on 5432; the tests start their own clusters.
if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q online; then
  pg_ctlcluster 15 main stop || true
fi
# Debian's mariadb-server starts (and enables) its own server on 3306; the tests start their own.
if command -v mariadb-admin >/dev/null && [ -S /run/mysqld/mysqld.sock ]; then
  invoke-rc.d mariadb stop || service mariadb stop || true
fi
if command -v update-rc.d >/dev/null && [ -e /etc/init.d/mariadb ]; then
  update-rc.d mariadb disable >/dev/null 2>&1 || true
fi
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl disable --now mariadb >/dev/null 2>&1 || true
fi
# Debian's openssh-server enables sshd on port 22; the fleet tests start their own on loopback.
if [[ " ${missing[*]} " == *" openssh-server "* ]] && [ -d /run/systemd/system ]; then
  systemctl disable --now ssh >/dev/null 2>&1 || true
fi
# Debian's prometheus-alertmanager enables a service of its own on 9093; the tests start their own.
if [[ " ${missing[*]} " == *" prometheus-alertmanager "* ]] && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus-alertmanager >/dev/null 2>&1 || true
fi
# Debian's pgbouncer package enables a service of its own on 6432; the tests start their own.
if [[ " ${missing[*]} " == *" pgbouncer "* ]] && [ -d /run/systemd/system ]; then
  systemctl disable --now pgbouncer >/dev/null 2>&1 || true
fi
