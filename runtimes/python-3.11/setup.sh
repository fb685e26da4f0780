#!/bin/sh
# Debian's Python 3.11 with a venv holding real PyPI packages that load native code and use
# TLS (numpy, requests, certifi), and the runtime.yml a Joblet setup script writes for it:
# mounts of host paths. `runseal seal` then makes it self-contained.
#
# usage: setup.sh [RUNTIMES_ROOT]   (default: $RUNSEAL_ROOT or /opt/runseal/runtimes)
# The venv lives in $RUNSEAL_ENVS/python-3.11 (default /opt/runseal/envs) and is reused.
set -eu
. "$(dirname "$0")/../lib.sh"

root=${1:-${RUNSEAL_ROOT:-/opt/runseal/runtimes}}
envs=${RUNSEAL_ENVS:-/opt/runseal/envs}
venv=$envs/python-3.11
python=/usr/bin/python3.11

ensure_packages python3.11 python3.11-venv ca-certificates

if [ ! -f "$venv/.runseal-packages" ]; then
    echo "setup: creating $venv with numpy, requests, certifi from PyPI" >&2
    rm -rf "$venv"
    mkdir -p "$envs"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check \
        "numpy==2.2.6" "requests==2.32.3" "certifi" >&2
    touch "$venv/.runseal-packages"
fi

version=$("$python" -c 'import platform; print(platform.python_version())')
{
    cat <<YAML
name: python-3.11
language: python
version: "$version"
description: Debian's Python $version with a venv (numpy, requests, certifi)
mounts:
  - source: ${venv#/}
    target: $venv
    readonly: true
  - source: ${python#/}
    target: $python
    readonly: true
environment:
  PATH: $venv/bin:/usr/bin:/bin
  VIRTUAL_ENV: $venv
  PYTHONDONTWRITEBYTECODE: "1"
packages:
  - python3.11
  - numpy==2.2.6
  - requests==2.32.3
  - certifi
YAML
    yaml_trailer runtimes/python-3.11/setup.sh
} | install_runtime_yml "$root/python-3.11"
