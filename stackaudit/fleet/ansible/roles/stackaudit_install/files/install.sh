#!/bin/sh
# install.sh VENV BUILD TARBALL PYTHON WANTED: stackaudit BUILD into VENV from the wheels in TARBALL,
# with PYTHON, whose version must be WANTED (the controller's, e.g. 3.11: its wheels are built for it).
# Several inventory aliases of one machine may run this at once: flock makes them take turns, and
# the one that comes second finds the build there and does nothing. The build marker is written
# last, so an install killed half-way is redone by the next run.
set -eu
venv=$1 build=$2 tarball=$3 python=$4 wanted=$5
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [ "$(cat "$venv/.stackaudit-build" 2>/dev/null || true)" = "$build" ]; then
  rm -f "$tarball"
  echo "unchanged"
  exit 0
fi
found=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || {
  echo "$python cannot run on this host: set stackaudit_python to a Python $wanted" >&2; exit 1; }
if [ "$found" != "$wanted" ]; then
  echo "$python is Python $found; the wheelhouse is for Python $wanted (the controller's): set stackaudit_python" >&2
  exit 1
fi
wheels=$(mktemp -d "$venv.wheels.XXXXXX")
trap 'rm -rf "$wheels"' EXIT
tar -xf "$tarball" -C "$wheels"
rm -rf "$venv"
"$python" -m venv "$venv"
# Exactly the controller's set of wheels, without resolving again: a host whose Python is another
# patch release would ask for backports (markers) the controller never needed.
"$venv/bin/python" -m pip install --quiet --no-index --no-cache-dir --disable-pip-version-check \
  --no-deps "$wheels"/*.whl
"$venv/bin/stackaudit" --version >/dev/null
printf '%s\n' "$build" > "$venv/.stackaudit-build.tmp"
mv "$venv/.stackaudit-build.tmp" "$venv/.stackaudit-build"
rm -f "$tarball"
echo "installed"
