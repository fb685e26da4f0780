#!/bin/sh
# The machine's Node.js 20 (package nodejs, with npm) plus a global npm package with a
# `#!/usr/bin/env node` executable (typescript's tsc), and the runtime.yml a Joblet setup
# script writes for it: mounts of host paths. `runseal seal` then makes it self-contained.
#
# usage: setup.sh [RUNTIMES_ROOT]   (default: $RUNSEAL_ROOT or /opt/runseal/runtimes)
# Global packages live in $RUNSEAL_ENVS/node-20 (default /opt/runseal/envs) and are reused.
set -eu

root=${1:-${RUNSEAL_ROOT:-/opt/runseal/runtimes}}
envs=${RUNSEAL_ENVS:-/opt/runseal/envs}
prefix=$envs/node-20

if ! dpkg-query -W -f='${Status}' nodejs 2>/dev/null | grep -q "install ok installed"; then
    echo "setup: installing nodejs" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs >&2
fi
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
dir=$root/node-20
mkdir -p "$dir"
tmp=$dir/runtime.yml.setup
cat > "$tmp" <<YAML
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
  HOME: /tmp
requirements:
  architectures: [$(dpkg --print-architecture)]
packages:
  - nodejs
  - typescript@5.6.3
build_info:
  built_at: "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  built_with: runtimes/node-20/setup.sh
  platform: $(. /etc/os-release && echo "$ID-$VERSION_ID")
YAML
mv "$tmp" "$dir/runtime.yml"
echo "$dir"
