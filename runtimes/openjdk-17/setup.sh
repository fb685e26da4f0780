#!/bin/sh
# Installs Debian's OpenJDK 17 (if missing) and writes the runtime.yml a Joblet setup script
# writes: mounts of host paths. That runtime is NOT isolated; `runseal seal` makes it so.
# It asks for the busybox base userland, so that jobs can use `sh -c`, `find` and `ls`.
#
# usage: setup.sh [RUNTIMES_ROOT]   (default: $RUNSEAL_ROOT or /opt/runseal/runtimes)
set -eu

root=${1:-${RUNSEAL_ROOT:-/opt/runseal/runtimes}}
package=openjdk-17-jdk-headless

for needed in "$package" busybox-static; do
    if ! dpkg-query -W -f='${Status}' "$needed" 2>/dev/null | grep -q "install ok installed"; then
        echo "setup: installing $needed" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$needed" >&2
    fi
done

arch=$(dpkg --print-architecture)
jdk=/usr/lib/jvm/java-17-openjdk-$arch
if [ ! -x "$jdk/bin/java" ]; then
    echo "setup: $jdk/bin/java not found after installing $package" >&2
    exit 1
fi
version=$(sed -n 's/^JAVA_VERSION="\(.*\)"$/\1/p' "$jdk/release")
[ -n "$version" ] || { echo "setup: no JAVA_VERSION in $jdk/release" >&2; exit 1; }

dir=$root/openjdk-17
mkdir -p "$dir"
tmp=$dir/runtime.yml.setup
cat > "$tmp" <<YAML
name: openjdk-17
language: java
version: "$version"
description: OpenJDK $version from Debian's $package
mounts:
  - source: ${jdk#/}
    target: $jdk
    readonly: true
  - source: usr/bin/java
    target: /usr/bin/java
    readonly: true
  - source: usr/bin/javac
    target: /usr/bin/javac
    readonly: true
  - source: etc/ssl/certs/java
    target: /etc/ssl/certs/java
    readonly: true
environment:
  JAVA_HOME: $jdk
  PATH: $jdk/bin:/usr/bin:/bin
requirements:
  architectures: [$arch]
packages:
  - $package
base: busybox
build_info:
  built_at: "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  built_with: runtimes/openjdk-17/setup.sh
  platform: $(. /etc/os-release && echo "$ID-$VERSION_ID")
YAML
mv "$tmp" "$dir/runtime.yml"
echo "$dir"
