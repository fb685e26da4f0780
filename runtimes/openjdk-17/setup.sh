#!/bin/sh
# Installs Debian's OpenJDK 17 (if missing) and writes the runtime.yml a Joblet setup script
# writes: mounts of host paths. That runtime is NOT isolated; `runseal seal` makes it so.
# It asks for the busybox base userland, so that jobs can use `sh -c`, `find` and `ls`.
#
# usage: setup.sh [RUNTIMES_ROOT]   (default: $RUNSEAL_ROOT or /opt/runseal/runtimes)
set -eu
. "$(dirname "$0")/../lib.sh"

root=${1:-${RUNSEAL_ROOT:-/opt/runseal/runtimes}}
package=openjdk-17-jdk-headless

ensure_packages "$package" busybox-static

arch=$(dpkg --print-architecture)
jdk=/usr/lib/jvm/java-17-openjdk-$arch
if [ ! -x "$jdk/bin/java" ]; then
    echo "setup: $jdk/bin/java not found after installing $package" >&2
    exit 1
fi
version=$(sed -n 's/^JAVA_VERSION="\(.*\)"$/\1/p' "$jdk/release")
[ -n "$version" ] || { echo "setup: no JAVA_VERSION in $jdk/release" >&2; exit 1; }

{
    cat <<YAML
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
packages:
  - $package
base: busybox
YAML
    yaml_trailer runtimes/openjdk-17/setup.sh
} | install_runtime_yml "$root/openjdk-17"
