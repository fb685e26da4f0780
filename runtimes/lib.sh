# Shared by the runtimes' setup scripts (sourced, not run).

# Installs each Debian package that is not installed yet. Its loop variable is local: the
# scripts that source this file keep their own $package (dash, bash and busybox sh all
# have `local`).
ensure_packages() {
    local package
    for package in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            echo "setup: installing $package" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" >&2
        fi
    done
}

# The requirements and build_info sections every runtime.yml ends with; $1 is the script.
yaml_trailer() {
    cat <<YAML
requirements:
  architectures: [$(dpkg --print-architecture)]
build_info:
  built_at: "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  built_with: $1
  platform: $(. /etc/os-release && echo "$ID-$VERSION_ID")
YAML
}

# Writes standard input as $1/runtime.yml, atomically, and prints the runtime dir.
install_runtime_yml() {
    mkdir -p "$1"
    cat > "$1/runtime.yml.setup"
    mv "$1/runtime.yml.setup" "$1/runtime.yml"
    echo "$1"
}
