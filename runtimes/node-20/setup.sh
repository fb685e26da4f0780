#!/bin/sh
# The machine's Node.js 20 (package nodejs, with npm) plus a global npm package with a
# `#!/usr/bin/env node` executable (typescript's tsc), and the runtime.yml a Joblet setup
# script writes for it: mounts of host paths. `runseal seal` then makes it self-contained.
#
# usage: setup.sh [RUNTIMES_ROOT]   (default: $RUNSEAL_ROOT or /opt/runseal/runtimes)
# Global packages live in $RUNSEAL_ENVS/node-20 (default /opt/runseal/envs) and are reused.
set -eu
. "$(dirname "$0")/../lib.sh"

root=${1:-${RUNSEAL_ROOT:-/opt/runseal/runtimes}}
envs=${RUNSEAL_ENVS:-/opt/runseal/envs}
prefix=$envs/node-20

ensure_packages nodejs
node=$(command -v node)
case "$(node --version)" in
    v20.*) ;;
    *) echo "setup: $node is $(node --version), not Node.js 20" >&2; exit 1 ;;
esac

if [ ! -f "$prefix/.runseal-packages" ]; then
    echo "setup: installing typescript into $prefix from the npm registry" >&2
    rm -rf "$prefix"
    mkdir -p "$prefix"
    npm install --global --prefix "$prefix" --no-audit --no-fund --loglevel=error "typescript@5.6.3" >&2
    touch "$prefix/.runseal-packages"
fi

version=$(node --version | sed 's/^v//')
{
    cat <<YAML
name: node-20
language: node
version: "$version"
description: Node.js $version with npm and typescript
mounts:
  - source: ${node#/}
    target: $node
    readonly: true
  - source: usr/bin/npm
    target: /usr/bin/npm
    readonly: true
  - source: ${prefix#/}
    target: $prefix
    readonly: true
environment:
  PATH: $prefix/bin:/usr/bin:/bin
  NODE_PATH: $prefix/lib/node_modules
packages:
  - nodejs
  - typescript@5.6.3
YAML
    yaml_trailer runtimes/node-20/setup.sh
} | install_runtime_yml "$root/node-20"
