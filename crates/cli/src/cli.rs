//! Command-line interface definition.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub const DEFAULT_ROOT: &str = "/opt/runseal/runtimes";
pub const DEFAULT_PROFILE_DIR: &str = "/etc/runseal/profiles";

/// Seal language runtimes so that jobs using them see nothing of the host.
///
/// A runtime is a directory holding runtime.yml (as Joblet's runtime setup scripts write it).
/// `seal` copies everything the runtime needs into its `isolated/` dir and rewrites
/// runtime.yml to mount only that; `validate` refuses any runtime.yml whose mounts could
/// reach outside the runtime dir.
///
/// RUNTIME is a runtime dir path (anything with a `/`) or a spec resolved under --root:
/// `name`, `name@version`, `lang:version` (java:17 matches version 17 and 17.x) or
/// `lang-version`. The highest matching version wins.
///
/// Exit codes: 0 success, 1 the runtime is invalid or cannot be sealed, 2 usage or I/O error
/// (`run` passes the job's own exit code through; see `runseal run --help`).
#[derive(Debug, Parser)]
#[command(name = "runseal", version, term_width = 100)]
pub struct Args {
    /// Directory holding the runtimes.
    #[arg(long, global = true, env = "RUNSEAL_ROOT", default_value = DEFAULT_ROOT)]
    pub root: PathBuf,

    /// Directory of extra runtime profiles (`*.yml`), joining or replacing the built-in ones.
    #[arg(long, global = true, env = "RUNSEAL_PROFILE_DIR", default_value = DEFAULT_PROFILE_DIR)]
    pub profile_dir: PathBuf,

    /// Job defaults (limits) for `run`, the same file runseald reads [default:
    /// /etc/runseal/config.toml; without it, the built-in defaults].
    #[arg(long, global = true, env = "RUNSEAL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Send list, info, validate, seal, remove, build, du, gc and run to the runseald
    /// listening on this socket (`unix:///run/runseal/runseald.sock`), whose --root, --profile-dir and job
    /// defaults then apply; `run` streams the job's output (and this process's stdin to the
    /// job) and exits with its code; `jobs` lists and follows the daemon's jobs.
    #[arg(long, global = true, env = "RUNSEAL_HOST", value_name = "unix:///PATH", value_parser = crate::client::Host::parse)]
    pub host: Option<crate::client::Host>,

    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// The jobs the daemon keeps, oldest first (the default).
    List,
    /// One job: its state, exit code, signal, times and limits.
    Show { id: String },
    /// A job's output so far, its stdout to stdout and its stderr to stderr.
    Logs {
        id: String,
        /// Keep printing as the job writes, until it ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Stop a job: SIGTERM, then SIGKILL after the daemon's grace period.
    Cancel { id: String },
}

/// Each subcommand's arguments are built only when it is the one run (or its help, a
/// completion script or a man page is asked for): building all of them cost every job
/// start a tenth of a millisecond.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Check a runtime.yml against the sealed-runtime rules; print each violation.
    ///
    /// Every mount source must be a normalized `isolated/...` path that resolves inside the
    /// runtime dir (checked with openat2 RESOLVE_BENEATH, so a planted symlink is caught);
    /// every target absolute, normalized, unique and not /, /proc, /dev or /sys; every
    /// mount read-only; environment names valid and PATH-like values absolute.
    /// Each violation is printed as `<file>: <field>: <reason>`.
    Validate {
        /// Runtime dir or spec.
        runtime: String,
        /// Accept `readonly: false` mounts.
        #[arg(long)]
        allow_writable: bool,
    },
    /// Copy a runtime's whole closure into isolated/ and rewrite runtime.yml to use only it.
    ///
    /// The closure: the mount trees (symlinks, modes and mtimes kept), every symlink chain's
    /// targets, ELF interpreters and libraries read from ELF headers, script interpreters,
    /// and the profile's files (for Java: the CA trust store and /etc config). The first
    /// seal keeps runtime.yml.original. Sealing again copies only what changed; sealing an
    /// unchanged runtime writes nothing. setuid/setgid bits are stripped; devices, fifos
    /// and sockets are refused. A crash at any point leaves the old or the new runtime; a
    /// seal that fails removes what it staged.
    ///
    /// A sealed file is readable by every job, so the closure may hold only what any user of
    /// the host may read: files readable by others, dirs others may enter, nothing under
    /// /proc, /sys, /dev, /run, /root or /home. A source that changes while it is copied is
    /// copied again, then refused. The runtime dir and its parents must be root's and not
    /// group- or world-writable; nothing in it is written through a symlink.
    ///
    /// Learning: `--learn -- CMD...` runs CMD against the unsealed runtime (its host files)
    /// and adds every file it opened, executed or mapped that the rules above missed, with
    /// the reason `learned from CMD`, under the same refusals (a learned /etc/shadow is
    /// dropped with a note). CMD runs as the jobs' unprivileged user in new namespaces (no
    /// network), every mount read-only but a scratch work dir, with the runtime's
    /// environment and --learn-timeout. Commands in runtime.yml's or the profile's `learn`
    /// field run too, once: the manifest records what each learned, so sealing again
    /// re-runs nothing (`--learn` alone runs them all again). A job's own command works the
    /// same way (`--learn -- python3 /srv/app/main.py`): what it opens outside the scratch
    /// dir, its own files included, joins the runtime. `verify` runs every learn command in
    /// the sealed runtime.
    Seal {
        /// Runtime dir or spec.
        runtime: String,
        /// Print what would be copied and why; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Seal with this profile instead of the one runtime.yml's `language` picks or the
        /// interpreter found in the mounts suggests (repeatable: `--profile generic
        /// --profile certs --profile nss`). Built in: java, python, node, generic, certs,
        /// nss, busybox; more from --profile-dir.
        #[arg(long)]
        profile: Vec<String>,
        /// Accept `readonly: false` mounts in the input.
        #[arg(long)]
        allow_writable: bool,
        /// Fail instead of waiting when another seal of this runtime is running.
        #[arg(long)]
        no_wait: bool,
        /// Let the closure hold PATH and everything under it although it is refused by
        /// default (not world-readable, or under /proc, /sys, /dev, /run, /root, /home);
        /// repeatable.
        #[arg(long, value_name = "PATH")]
        allow_path: Vec<PathBuf>,
        /// Seal although someone other than root can write the runtime dir or a parent of
        /// it (writes still never follow a symlink, but its author can change the sealed
        /// tree afterwards), or a dir the closure reads through (copies still never cross a
        /// symlink swapped in since the plan).
        #[arg(long)]
        allow_untrusted_dir: bool,
        /// Run the command after `--` (and every learn command known) against the unsealed
        /// runtime and add what it opens to the closure.
        #[arg(long)]
        learn: bool,
        /// How long one learn command may run; then its whole process tree is killed and
        /// what it opened so far is learned.
        #[arg(long, value_name = "SECONDS", default_value_t = 120.0)]
        learn_timeout: f64,
        /// The learn command (after `--`; needs --learn).
        #[arg(last = true, value_name = "CMD", requires = "learn")]
        command: Vec<String>,
    },
    /// Build a runtime: run its setup script in a builder that cannot modify the host, then
    /// seal it and verify it.
    ///
    /// The script runs as `sh SCRIPT ROOT` (as runtimes/*/setup.sh do) against an overlay of
    /// the host's root whose writable layer is a tmpfs that vanishes afterwards: packages it
    /// installs and files it writes never reach the host. ROOT is an empty tmpfs there; the
    /// script writes ROOT/NAME/runtime.yml and prints ROOT/NAME last (or is given --name).
    /// It keeps root but only the capabilities a package manager needs (no mount, chroot,
    /// mknod, raw I/O, modules, ptrace, network configuration), under a seccomp filter, with
    /// the job's read-only /proc, a minimal /dev, empty /root, /home and /var/tmp, host
    /// secrets reading as /dev/null, and the host's network. runseal then makes ROOT/NAME on
    /// the host (it must not exist), copies that runtime.yml, seals the closure out of the
    /// overlay and verifies it. Exit 0 only when the runtime is built, sealed and verified.
    /// With --host, runseald builds under its own --root (SCRIPT must lie under one of its
    /// --script-dirs) and the script's output streams here.
    Build {
        /// The setup script.
        script: PathBuf,
        /// The runtime dir the script writes, under --root (default: the last line it prints).
        #[arg(long)]
        name: Option<String>,
        /// Seal with this profile instead of the one runtime.yml's language picks (repeatable).
        #[arg(long)]
        profile: Vec<String>,
    },
    /// List the runtimes under --root: name, version, language, whether sealed, dir.
    List,
    /// Show what a runtime holds: its size, file count, mounts and, for each path that
    /// brought something into the sealed tree, why.
    Info {
        /// Runtime dir or spec.
        runtime: String,
    },
    /// Delete a runtime dir: its runtime.yml, its sealed tree and everything else in it.
    ///
    /// Refused while a seal of it runs.
    Remove {
        /// Runtime dir or spec.
        runtime: String,
    },
    /// The jobs of a runseald (needs --host): list them, show one, print or follow its
    /// output, cancel it.
    ///
    /// A job that `runseal --host ... run` started is stopped when that runseal goes away,
    /// even if it is killed; jobs made through the API (`POST /v1/jobs`) run until they end.
    /// Ended jobs are kept for the daemon's --keep-finished. A client other than root sees
    /// only its own.
    Jobs {
        #[command(subcommand)]
        command: Option<JobsCommand>,
    },
    /// Run a command in a sandbox whose whole filesystem is the sealed runtime.
    ///
    /// The job sees only the runtime's sealed mounts (read-only, nosuid, nodev), a fresh
    /// /proc, a minimal /dev (null, zero, full, random, urandom, tty), a private /tmp and the
    /// work dir at /work; it runs in new mount, PID, IPC, UTS, cgroup and network namespaces,
    /// with no capabilities, no_new_privs, its own session and a seccomp filter. A runtime
    /// that fails `validate` is refused before anything is mounted.
    ///
    /// The exit code is the job's (128+N when killed by signal N, 124 on --timeout); 125 when
    /// runseal itself fails, 126 when the command cannot run, 127 when it is not found.
    /// SIGINT, SIGTERM and SIGHUP sent to runseal pass to the job, which gets 10 seconds to
    /// exit before every process of it is killed. A job killed for memory says so on stderr
    /// (`runseal: killed: out of memory (limit 2G)`).
    ///
    /// Limits not given as flags come from /etc/runseal/config.toml (or --config), else the
    /// built-in defaults: --memory 2G, --cpus 2, --pids 1024, --tmp-size 1G, no timeout.
    ///
    /// Example: runseal run --runtime java:17 --memory 1G --timeout 60 -- java -version
    Run {
        /// Runtime dir or spec.
        #[arg(long, value_name = "SPEC")]
        runtime: String,
        /// Host directory bound read-write at /work, the job's working directory.
        #[arg(long, value_name = "DIR")]
        workdir: Option<PathBuf>,
        /// Set an environment variable (repeatable); overrides the runtime's environment
        /// and --env-file. A bare NAME passes this shell's value of NAME (if it has one).
        #[arg(short = 'e', long = "env", value_name = "K=V|NAME")]
        env: Vec<String>,
        /// Read variables from FILE: one K=V (or a bare NAME) per line; blank lines and
        /// lines starting with # are skipped.
        #[arg(long, value_name = "FILE")]
        env_file: Vec<PathBuf>,
        /// Bind a host file or directory into the job (repeatable), nosuid and nodev,
        /// read-write unless :ro. DST may not be /, /tmp, /work nor under /proc, /dev, /sys.
        #[arg(short = 'v', long, value_name = "SRC:DST[:ro|rw]", value_parser = runseal_sandbox::Volume::parse)]
        volume: Vec<runseal_sandbox::Volume>,
        /// Memory limit, e.g. 512M or 2G (swap is not allowed beyond it).
        #[arg(long, value_name = "BYTES", value_parser = parse_memory)]
        memory: Option<u64>,
        /// Size of the job's /tmp, e.g. 256M (writes past it fail with ENOSPC).
        #[arg(long, value_name = "BYTES", value_parser = parse_memory)]
        tmp_size: Option<u64>,
        /// CPU limit in CPUs, fractional allowed (0.5 = half a core).
        #[arg(long, value_name = "N", value_parser = parse_positive)]
        cpus: Option<f64>,
        /// Maximum number of processes and threads.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        pids: Option<u64>,
        /// Kill the whole job after this many seconds and exit 124.
        #[arg(long, value_name = "SECS", value_parser = parse_positive)]
        timeout: Option<f64>,
        /// Network: `none` (only loopback) or `host`.
        #[arg(long, value_enum, default_value_t = NetworkArg::None)]
        network: NetworkArg,
        /// Run as this host user: UID or UID:GID (default 65534:65534, nobody/nogroup).
        /// Whatever the job writes in /work is owned by it; the work dir must let it in.
        #[arg(long, value_name = "UID[:GID]", value_parser = runseal_sandbox::User::parse)]
        user: Option<runseal_sandbox::User>,
        /// Print the job's mount table (as the kernel reports it inside the job) and run
        /// nothing; `verify` uses it as its isolation probe.
        #[arg(long, hide = true)]
        mount_table: bool,
        /// The command and its arguments, after `--`.
        #[arg(
            required_unless_present = "mount_table",
            last = true,
            value_name = "CMD"
        )]
        command: Vec<String>,
    },
    /// Prove a sealed runtime complete, unchanged and contained.
    ///
    /// Static checks: `validate`; every symlink, ELF interpreter, needed library and script
    /// interpreter in isolated/ resolves inside it as the loader would resolve it in the job
    /// (no ld.so.cache, nothing of the host); every file matches the manifest written at
    /// seal time (BLAKE3), each changed, added or removed path reported. Then in the sandbox:
    /// the isolation probe (the kernel's mount table inside a job holds only sealed mounts,
    /// read-only, and the sandbox's own) and the profile's smoke tests (Java: java -version
    /// and a TLS context with the default trust store). Exit 0 only when everything passes.
    Verify {
        /// Runtime dir or spec.
        runtime: String,
        /// Smoke-test with this profile instead of those the runtime was sealed with
        /// (repeatable).
        #[arg(long)]
        profile: Vec<String>,
    },
    /// Write a sealed runtime as an OCI image: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]` or
    /// `docker://HOST[:PORT]/REPO:TAG` (a push), as skopeo names them.
    ///
    /// The image is reproducible: the same sealed runtime gives the same digests (entries in
    /// path order, root-owned, the sealed modes and mtimes, gzip without a timestamp). Each
    /// shared library of 64 KiB or more from the host's library dirs (lib/, lib64/,
    /// usr/lib/ARCH-linux-gnu/) is a layer of its own (libc, libm, ld-linux, libstdc++...),
    /// the same in every runtime sealed on one host, so a registry stores and receives it
    /// once; the smaller ones share a layer; the last layer holds the rest, the manifest
    /// and the SBOM. The config carries the runtime's environment, WorkingDir /work, and
    /// labels with runtime.yml's fields (org.opencontainers.image.title, version,
    /// description, created), runtime.yml itself (io.runseal.runtime.yml) and where the
    /// SBOM is with its hash (io.runseal.sbom). Every file is checked against the manifest
    /// as it is written: a tree changed since its seal is not exported.
    Export {
        /// Runtime dir or spec (sealed).
        runtime: String,
        /// Where to write the image.
        destination: String,
        /// For a push: a repository of the same registry (`runtimes/openjdk`) that may hold
        /// some of the layers already; the registry is asked to mount each layer it has from
        /// there instead of receiving it again (repeatable, tried in order).
        #[arg(long, value_name = "REPO")]
        mount_from: Vec<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Print the SBOM recorded when the runtime was sealed: SPDX 2.3 JSON.
    ///
    /// It names the packages that own sealed files: Debian's (from dpkg's database, by each
    /// file's source on the host), pip's (`*.dist-info`) and npm's (`node_modules/*/package.json`),
    /// each with its version and purl, and lists every sealed file with its SHA1, SHA256 and
    /// BLAKE3. It lives in the sealed tree beside the manifest, which records its hash, so
    /// `verify` checks it and exported images carry it (`/.runseal-sbom.spdx.json`). A runtime
    /// sealed by an older runseal has none until it is sealed again.
    Sbom {
        /// Runtime dir or spec (sealed).
        runtime: String,
    },
    /// Turn an OCI image that `export` wrote back into a sealed runtime under --root.
    ///
    /// SRC takes the transports `export` takes (`docker://HOST/REPO@sha256:...` pins a
    /// digest). Every blob is checked against its digest; the layers are unpacked into a
    /// hidden dir under --root that is renamed to NAME only once complete and runnable, so a
    /// failed import leaves nothing. The image's author is not trusted: absolute or `..`
    /// paths, writes through symlinks, hard links, device nodes and fifos are refused,
    /// setuid/setgid bits dropped, sizes bounded (--max-size). The manifest is written
    /// afresh from what was unpacked, so `runseal verify` checks the result.
    Import {
        /// The image.
        source: String,
        #[command(flatten)]
        options: ImportArgs,
    },
    /// Install a runtime from a registry: `import` where a bare HOST/REPO:TAG means
    /// docker://HOST/REPO:TAG.
    Install {
        /// The image, e.g. registry.example:5000/runtimes/openjdk:17 or ...@sha256:DIGEST.
        source: String,
        #[command(flatten)]
        options: ImportArgs,
    },
    /// Show how much the runtimes under --root hold and how much the disk keeps.
    ///
    /// Seals and imports under one root keep identical files once: each sealed file is
    /// offered to the root's store (ROOT/.runseal-store/, root's alone), and one equal in
    /// bytes, mode and mtime to a stored one becomes a hard link to it. Jobs still see only
    /// their own runtime. For each runtime: its files, LOGICAL (every file counted, as if
    /// nothing were shared), PHYSICAL (each inode once) and EXCLUSIVE (what no other runtime
    /// shares: what `remove` and then `gc` free). The total's PHYSICAL counts each inode
    /// under the root once, the store included. Sizes are file bytes, not disk blocks.
    /// A user other than root gets every runtime's figures (what runtimes share is seen by
    /// their inodes) but not the store's, which is root's alone: its entries no runtime
    /// links are then missing from the total's PHYSICAL, and the output says so.
    Du,
    /// Remove what nothing under --root uses, safe while seals, imports and jobs run.
    ///
    /// Removes store entries that no runtime links any more (after `remove`, or a re-seal
    /// that dropped a file), what seals, imports and removals killed midway left (staging
    /// trees, temp files, ROOT/.NAME.removing), and trees a re-seal replaced once no job runs
    /// on them. A runtime being sealed or removed, a tree a job runs on and the store's temp
    /// files while a seal or import has the store open are left and listed as busy; run gc
    /// again later.
    Gc {
        /// List what would be removed; remove nothing. Store entries count when their only
        /// other links are in what is listed: the entries a real run would free.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a shell's completion script, or write the man pages, both generated from this
    /// interface.
    ///
    /// `runseal generate completions bash > /usr/share/bash-completion/completions/runseal`
    /// (also zsh, fish, elvish, powershell); `runseal generate man /usr/local/share/man/man1`
    /// writes runseal.1 and a runseal-COMMAND.1 for each command. scripts/setup installs both.
    Generate {
        #[command(subcommand)]
        what: Generated,
    },
}

// How to reach a registry, as skopeo takes it. (A plain comment: a doc comment would be
// the about text of each command it is flattened into.)
#[derive(Debug, clap::Args)]
pub struct RegistryArgs {
    /// Require HTTPS with a certificate the system trusts; `--tls-verify=false` accepts
    /// any certificate, and plain HTTP from a registry that does not speak TLS (as skopeo's).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub tls_verify: bool,
    /// Registry credentials (default: the containers auth.json entry for the registry:
    /// $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
    /// ~/.config/containers/auth.json, ~/.docker/config.json).
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,
    /// Read credentials from this auth file instead.
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Name of the runtime dir under --root (default: the name runtime.yml declares).
    #[arg(long)]
    pub name: Option<String>,
    /// Refuse an image whose files add up to more than this, e.g. 8G.
    #[arg(long, value_name = "BYTES", value_parser = parse_memory, default_value = "64G")]
    pub max_size: u64,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Subcommand)]
pub enum Generated {
    /// Print the completion script for SHELL on stdout.
    Completions { shell: clap_complete::Shell },
    /// Write runseal.1 and runseal-COMMAND.1 for each command into DIR (made if missing).
    Man { dir: PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    None,
    Host,
}

fn parse_memory(text: &str) -> Result<u64, String> {
    runseal_sandbox::parse_size(text)
}

/// A finite number above zero (CPUs, seconds).
fn parse_positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 && value < 1e9 => Ok(value),
        _ => Err(format!("`{text}` is not a number above zero")),
    }
}
