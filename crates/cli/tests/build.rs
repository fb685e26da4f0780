//! `runseal build`: a setup script runs against an overlay, installs a real Debian package,
//! tries to reach past the overlay, and leaves the host exactly as it was; Joblet's setup
//! scripts (bash, writing to `/opt/joblet/runtimes`) build under the runtimes root.

use std::path::{Path, PathBuf};

use crate::joblet_forms::{
    original_kept, python_3_11_runs, REGISTRY_PYTHON_COPY, REGISTRY_PYTHON_YML,
};
use crate::util::{code, snapshot, text, TestRoot};

fn digest(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| blake3::hash(&bytes).to_hex().to_string())
        .unwrap_or_else(|_| "absent".into())
}

#[test]
fn a_setup_script_installs_into_the_overlay_and_the_host_stays_untouched() {
    let t = sealtest!();
    assert!(
        !Path::new("/usr/bin/hello").exists(),
        "this test needs a host without Debian's `hello`"
    );
    let script = t.path().join("setup.sh");
    std::fs::write(
        &script,
        r#"#!/bin/sh
set -u
root=$1
dir=$root/hello
mkdir -p "$dir"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q hello >&2 || exit 3
echo host-change > /etc/runseal-build-marker
{
  mknod /tmp/null-copy c 1 3 2>/dev/null; echo "mknod=$?"
  mount -t tmpfs none /mnt 2>/dev/null; echo "mount=$?"
  ls /dev/vda /dev/sda 2>/dev/null | wc -l | sed 's/^/disks=/'
}
cat > "$dir/runtime.yml" <<YAML
name: hello
version: "2"
mounts:
  - {source: usr/bin/hello, target: /usr/bin/hello, readonly: true}
environment:
  PATH: /usr/bin
YAML
echo "$dir"
"#,
    )
    .unwrap();
    let watched = [
        "/var/lib/dpkg/status",
        "/etc/runseal-build-marker",
        "/usr/bin/hello",
    ];
    let before: Vec<String> = watched.iter().map(|p| digest(Path::new(p))).collect();

    let out = t.run(&["build", script.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "build: {}", text(&out.stderr));

    let after: Vec<String> = watched.iter().map(|p| digest(Path::new(p))).collect();
    assert_eq!(before, after, "the build changed the host ({watched:?})");
    // The script's output comes out on runseal's stderr.
    let probe = text(&out.stderr);
    assert!(probe.contains("mknod=1"), "{probe}");
    assert!(
        probe.contains("mount=") && !probe.contains("mount=0"),
        "{probe}"
    );
    assert!(probe.contains("disks=0"), "{probe}");

    let out = t.run(&["run", "--runtime", "hello", "--", "hello"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Hello, world!\n");
}

#[test]
fn a_failing_setup_script_fails_the_build_and_seals_nothing() {
    let t = sealtest!();
    let script = t.path().join("setup.sh");
    std::fs::write(&script, "#!/bin/sh\nmkdir -p \"$1/broken\"\necho 'name: broken' > \"$1/broken/runtime.yml\"\nexit 4\n").unwrap();
    let out = t.run(&["build", script.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("exited with 4"),
        "{}",
        text(&out.stderr)
    );
    assert!(!t.path().join("broken/isolated").exists());
}

/// Writes `body` as the script `name` in the test's root and builds it with `args`.
fn build(t: &TestRoot, name: &str, body: &str, args: &[&str]) -> std::process::Output {
    let script = t.path().join(name);
    std::fs::write(&script, body).unwrap();
    t.run(&[&["build", script.to_str().unwrap()], args].concat())
}

/// The shape of `ehsaniara/joblet-runtimes`' `runtimes/python-3.11/setup-ubuntu-amd64.sh`:
/// bash, the hard-coded `/opt/joblet/runtimes/python-3.11` it `cd`s into, the system
/// copied into `isolated/`, runtime.yml from a heredoc, a usage text printed last; with this
/// machine's own Python instead of its downloads.
fn joblet_python_script() -> String {
    format!(
        "#!/usr/bin/env bash\nset -e\nset -u\nset -o pipefail\n\
         RUNTIME_BASE_DIR=/opt/joblet/runtimes/python-3.11\n\
         echo \"Installation path: $RUNTIME_BASE_DIR\"\n\
         mkdir -p \"$RUNTIME_BASE_DIR\"\ncd \"$RUNTIME_BASE_DIR\"\n\
         {REGISTRY_PYTHON_COPY}\n\
         [ \"$1/python-3.11\" -ef \"$RUNTIME_BASE_DIR\" ] && echo one-dir=yes\n\
         cat > \"$RUNTIME_BASE_DIR/runtime.yml\" << EOF\n{REGISTRY_PYTHON_YML}EOF\n\
         echo \"Runtime installed at: $RUNTIME_BASE_DIR\"\necho\necho 'Usage examples:'\n\
         echo '  rnx job run --runtime=python-3.11 python --version'\n"
    )
}

#[test]
fn a_joblet_setup_script_runs_under_bash_and_its_runtime_lands_under_the_root() {
    let t = sealtest!();
    let joblet_before = snapshot(Path::new("/opt/joblet"));
    let out = build(&t, "setup-ubuntu-amd64.sh", &joblet_python_script(), &[]);
    let log = text(&out.stderr);
    assert_eq!(code(&out), 0, "build: {log}");
    // The script's `/opt/joblet/runtimes/python-3.11` was `$1/python-3.11`.
    assert!(log.contains("one-dir=yes"), "{log}");
    let dir = t.path().join("python-3.11");
    original_kept(&dir, REGISTRY_PYTHON_YML);
    assert!(dir.join("isolated/usr/bin/python3.11").is_file());
    assert_eq!(snapshot(Path::new("/opt/joblet")), joblet_before);
    python_3_11_runs(&t);
}

/// A Joblet-shaped bash script that makes `RUNTIME_NAME` (default `tiny`) with a shell.
const JOBLET_TINY: &str = r#"#!/bin/bash
set -euo pipefail
RUNTIME_NAME="${RUNTIME_NAME:-tiny}"
RUNTIME_BASE_DIR="/opt/joblet/runtimes/$RUNTIME_NAME"
mkdir -p "$RUNTIME_BASE_DIR/isolated/usr/bin"
cp /usr/bin/dash "$RUNTIME_BASE_DIR/isolated/usr/bin/sh"
cat > "$RUNTIME_BASE_DIR/runtime.yml" << EOF
name: $RUNTIME_NAME
mounts:
  - source: "isolated/usr/bin"
    target: "/usr/bin"
    readonly: true
EOF
echo "🎉 $RUNTIME_NAME installed"
"#;

#[test]
fn a_script_runs_by_its_interpreter_line_and_is_given_the_name_it_builds() {
    let t = sealtest!();
    // --name reaches the script as Joblet's RUNTIME_NAME.
    let out = build(&t, "tiny.sh", JOBLET_TINY, &["--name", "named"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(!t.path().join("tiny").exists());
    let out = t.run(&["run", "--runtime", "named", "--", "sh", "-c", "echo ok"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok\n");

    // A bash-only line fails under sh: with its #! line, this script ran under bash.
    let bash_only = "#!/bin/bash\ndirs=(a b); echo \"${dirs[1]}\"\n";
    let out = build(
        &t,
        "array.sh",
        &JOBLET_TINY.replace("#!/bin/bash\n", bash_only),
        &[],
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(t.path().join("tiny/isolated/usr/bin/sh").is_file());
    // Without a #! line, sh runs it, as before.
    let out = build(
        &t,
        "plain.sh",
        &JOBLET_TINY.replace("#!/bin/bash\nset -euo pipefail\n", "set -eu\n"),
        &["--name", "plain"],
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));

    // An interpreter this host lacks is named before anything is built.
    let out = build(&t, "zsh.sh", "#!/bin/no-such-shell\necho hi\n", &[]);
    assert_eq!(code(&out), 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("interpreter `/bin/no-such-shell`, which is not a file on this host"),
        "{err}"
    );
}

/// A Joblet runtime dir a test plants on the host at `/opt/joblet/runtimes`, removed (with
/// the dirs made for it) when the test ends.
struct HostJobletRuntime {
    dir: PathBuf,
    made: Vec<PathBuf>,
}

impl HostJobletRuntime {
    fn plant(name: &str) -> Self {
        let made = ["/opt/joblet", "/opt/joblet/runtimes"]
            .into_iter()
            .map(PathBuf::from)
            .filter(|dir| !dir.exists())
            .collect();
        let dir = Path::new("/opt/joblet/runtimes").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("runtime.yml"), "name: victim\nmounts: []\n").unwrap();
        HostJobletRuntime { dir, made }
    }
}

impl Drop for HostJobletRuntime {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[test]
fn a_script_reaches_nothing_on_the_host_through_joblets_root() {
    let t = sealtest!();
    // A host with Joblet installed: its runtimes are another tenant's.
    let victim = format!("victim-{}", std::process::id());
    let _planted = HostJobletRuntime::plant(&victim);
    let joblet_before = snapshot(Path::new("/opt/joblet"));
    let marker = Path::new("/etc/runseal-joblet-marker");
    assert!(!marker.exists());
    let script = r#"#!/bin/bash
J=/opt/joblet/runtimes
echo "sees=$(ls -A "$J" | tr '\n' ' ')"
echo pwned > "$J/../../../etc/runseal-joblet-marker"; echo "dotdot=$?"
echo pwned > "$J/VICTIM/runtime.yml"
rmdir "$J" 2>/dev/null; echo "rmdir=$?"
mv "$J" /opt/joblet/moved 2>/dev/null; echo "mv=$?"
ln -s /etc "$J/evil"
echo "$J/evil"
"#
    .replace("VICTIM", &victim);
    let out = build(&t, "evil.sh", &script, &[]);
    let log = text(&out.stderr);
    assert_ne!(code(&out), 0, "{log}");
    // The script saw none of the host's Joblet runtimes, wrote through `..` only into its
    // overlay, could not move Joblet's root away, and its link was not followed.
    let sees = log.lines().find(|l| l.starts_with("sees=")).unwrap();
    assert!(!sees.contains(&victim), "{log}");
    assert!(
        log.contains(&format!("{victim}/runtime.yml: No such file")),
        "{log}"
    );
    assert!(log.contains("dotdot=0"), "{log}");
    assert!(!log.contains("rmdir=0") && !log.contains("mv=0"), "{log}");
    assert!(log.contains("evil/runtime.yml"), "{log}");
    assert!(!marker.exists());
    assert!(!t.path().join("evil").exists());
    assert_eq!(snapshot(Path::new("/opt/joblet")), joblet_before);
}
