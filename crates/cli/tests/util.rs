use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

/// True when the test may go on. A test that needs root fails without it, so that a run
/// as another user cannot report untested code as passing; `RUNSEAL_ALLOW_SKIP=1` turns
/// that into a printed skip, on purpose only.
pub fn require_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    allow_skip(test, "needs root")
}

/// Skips `test` with `why` if `RUNSEAL_ALLOW_SKIP=1`, else fails it.
pub fn allow_skip(test: &str, why: &str) -> bool {
    if std::env::var("RUNSEAL_ALLOW_SKIP").is_ok_and(|v| v == "1") {
        eprintln!("skipping {test}: {why} (RUNSEAL_ALLOW_SKIP=1)");
        return false;
    }
    panic!("{test} {why}; set RUNSEAL_ALLOW_SKIP=1 to skip it instead");
}

/// Starts a test that needs root: `let t = sealtest!();` gives a temp runtimes root.
macro_rules! sealtest {
    () => {{
        let name = {
            fn f() {}
            std::any::type_name_of_val(&f)
                .trim_end_matches("::f")
                .to_string()
        };
        if !$crate::util::require_root(&name) {
            return;
        }
        $crate::util::TestRoot::new()
    }};
}

/// A temporary runtimes root and a ready `runseal` command for it.
pub struct TestRoot {
    pub dir: tempfile::TempDir,
    /// Every `runseal` process this test ran, whose job cgroups are this test's.
    started: std::sync::Mutex<Vec<u32>>,
}

impl TestRoot {
    pub fn new() -> Self {
        // Not under /tmp: the sandbox owns /tmp, so runtimes may not mount there.
        let dir = tempfile::Builder::new()
            .prefix("runseal-test")
            .tempdir_in("/var/tmp")
            .unwrap();
        // As a runtimes root is: jobs run unprivileged, and a runtime built under it (a
        // pyenv prefix) is sealed with the modes of its dirs.
        set_mode(dir.path(), 0o755);
        TestRoot {
            dir,
            started: Default::default(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn runseal(&self) -> Command {
        Command::from_std(self.runseal_std())
    }

    /// The same command as a std `Command`, for spawning and killing.
    pub fn runseal_std(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("runseal"));
        cmd.arg("--root")
            .arg(self.path())
            .env_remove("RUNSEAL_ROOT")
            .env_remove("RUNSEAL_PROFILE_DIR")
            .env_remove("RUNSEAL_CONFIG")
            // Tests read stderr; a developer's RUST_LOG would add log lines to it.
            .env_remove("RUST_LOG");
        cmd
    }

    /// Runs `runseal ARGS` and returns its output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut command = self.runseal_std();
        command
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        self.spawn(command).wait_with_output().unwrap()
    }

    /// Starts `command` (a [`TestRoot::runseal_std`]), remembering it as this test's.
    pub fn spawn(&self, mut command: std::process::Command) -> std::process::Child {
        let child = command.spawn().unwrap();
        self.started.lock().unwrap().push(child.id());
        child
    }

    /// The runseal cgroups (`runseal/...` in any hierarchy) that processes of this test's
    /// jobs are in: those running under one of this test's `runseal` processes (other
    /// tests' jobs may run meanwhile). Empty once the jobs are over.
    pub fn job_cgroups(&self) -> Vec<PathBuf> {
        let started = self.started.lock().unwrap().clone();
        let parent_of = |pid: u32| -> Option<u32> {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .and_then(|p| p.trim().parse().ok())
        };
        let ours = |pid: u32| {
            let mut at = pid;
            for _ in 0..64 {
                match parent_of(at) {
                    Some(parent) if started.contains(&parent) => return true,
                    Some(parent) if parent > 1 => at = parent,
                    _ => return false,
                }
            }
            false
        };
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            if !ours(pid) {
                continue;
            }
            let cgroups = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
            for line in cgroups.lines() {
                // `ID:CONTROLLERS:PATH`; v1 hierarchies are mounted by their controllers' names.
                let mut fields = line.splitn(3, ':');
                let (_, controllers, path) = (fields.next(), fields.next(), fields.next());
                let (Some(controllers), Some(path)) = (controllers, path) else {
                    continue;
                };
                if !path.starts_with("/runseal/") {
                    continue;
                }
                let hierarchy = if controllers.is_empty() {
                    PathBuf::from("/sys/fs/cgroup")
                } else {
                    Path::new("/sys/fs/cgroup").join(controllers)
                };
                found.push(hierarchy.join(&path[1..]));
            }
        }
        found.sort();
        found.dedup();
        found
    }

    /// A runtime dir `name` holding `yaml` as runtime.yml.
    pub fn runtime(&self, name: &str, yaml: &str) -> PathBuf {
        let dir = self.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("runtime.yml"), yaml).unwrap();
        dir
    }

    /// A shipped runtime (`runtimes/<name>/setup.sh`), set up under this root.
    pub fn setup(&self, runtime: &str) -> PathBuf {
        let script = workspace().join("runtimes").join(runtime).join("setup.sh");
        let out = std::process::Command::new(script)
            .arg(self.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{runtime} setup.sh failed: {}",
            text(&out.stderr)
        );
        self.path().join(runtime)
    }

    /// The real OpenJDK 17 runtime, written by the shipped setup script.
    pub fn openjdk(&self) -> PathBuf {
        self.setup("openjdk-17")
    }
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stdout)))
}

pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not signalled")
}

/// Everything observable about a tree: kind, mode, owner, size, mtime, inode, content.
pub fn snapshot(tree: &Path) -> BTreeMap<PathBuf, String> {
    let mut map = BTreeMap::new();
    if !tree.exists() {
        return map;
    }
    for item in walkdir::WalkDir::new(tree).sort_by_file_name() {
        let item = item.unwrap();
        let meta = item.metadata().unwrap();
        let content = if meta.is_file() {
            blake3::hash(&std::fs::read(item.path()).unwrap())
                .to_hex()
                .to_string()
        } else if meta.file_type().is_symlink() {
            std::fs::read_link(item.path())
                .unwrap()
                .display()
                .to_string()
        } else {
            String::new()
        };
        map.insert(
            item.path().strip_prefix(tree).unwrap().to_path_buf(),
            format!(
                "{:o} {}:{} {} {}.{} ino={} {content}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ino()
            ),
        );
    }
    map
}

/// A host directory tree for fixture runtimes: a script run by /bin/sh and a data file.
pub fn fixture_source(base: &Path) -> PathBuf {
    let app = base.join("sources/app");
    std::fs::create_dir_all(app.join("bin")).unwrap();
    std::fs::create_dir_all(app.join("share")).unwrap();
    std::fs::write(app.join("bin/hello"), "#!/bin/sh\necho hello\n").unwrap();
    set_mode(&app.join("bin/hello"), 0o755);
    std::fs::write(app.join("share/data.txt"), "data\n").unwrap();
    app
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A runtime.yml mounting `source` (a host dir) at the same path.
pub fn host_yaml(sources: &[&Path]) -> String {
    let mut yaml = String::from("name: fixture\nlanguage: none\nversion: \"1.0\"\nmounts:\n");
    for source in sources {
        let s = source.display();
        yaml.push_str(&format!(
            "  - source: {s}\n    target: {s}\n    readonly: true\n"
        ));
    }
    yaml.push_str("environment:\n  PATH: /usr/bin:/bin\n");
    yaml
}

/// The bwrap command an independent oracle uses: only the sealed mounts, read-only, plus
/// fresh /proc, /dev and /tmp.
pub fn bwrap(runtime: &Path, work: Option<&Path>) -> std::process::Command {
    let config: Value = serde_json::to_value(
        serde_saphyr::from_str::<serde_json::Value>(
            &std::fs::read_to_string(runtime.join("runtime.yml")).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let mut cmd = std::process::Command::new("bwrap");
    for mount in config["mounts"].as_array().unwrap() {
        let source = runtime.join(mount["source"].as_str().unwrap());
        cmd.arg("--ro-bind")
            .arg(source)
            .arg(mount["target"].as_str().unwrap());
    }
    cmd.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
    cmd.args(["--unshare-all", "--die-with-parent", "--clearenv"]);
    if let Some(work) = work {
        cmd.arg("--bind")
            .arg(work)
            .arg("/work")
            .args(["--chdir", "/work"]);
    }
    for (key, value) in config["environment"].as_object().unwrap() {
        cmd.args(["--setenv", key, value.as_str().unwrap()]);
    }
    cmd
}

/// The C probe (tests/data/probe.c), built static once per test process.
pub fn probe() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = std::env::temp_dir().join(format!("runseal-probe-{}", std::process::id()));
            let status = std::process::Command::new("cc")
                .args(["-static", "-O2", "-o"])
                .arg(&out)
                .arg(workspace().join("crates/cli/tests/data/probe.c"))
                .status()
                .expect("a C compiler (cc) builds the probe");
            assert!(status.success(), "building probe.c failed");
            out
        })
        .clone()
}

impl TestRoot {
    /// The real OpenJDK 17 runtime, sealed.
    pub fn sealed_openjdk(&self) -> PathBuf {
        let dir = self.openjdk();
        let out = self.run(&["seal", dir.to_str().unwrap()]);
        assert!(out.status.success(), "seal failed: {}", text(&out.stderr));
        dir
    }

    /// `runseal run --runtime openjdk-17 ARGS...` with the output captured.
    pub fn job(&self, options: &[&str], command: &[&str]) -> Output {
        let mut args = vec!["run", "--runtime", "openjdk-17"];
        args.extend_from_slice(options);
        args.push("--");
        args.extend_from_slice(command);
        self.run(&args)
    }

    /// A work dir holding the probe, for `--workdir`.
    pub fn workdir_with_probe(&self) -> PathBuf {
        let work = self.workdir("work");
        std::fs::copy(probe(), work.join("probe")).unwrap();
        work
    }

    /// The manifest of the sealed tree of the runtime dir `runtime`.
    pub fn manifest(&self, runtime: &str) -> Value {
        let path = self
            .path()
            .join(runtime)
            .join("isolated/.runseal-manifest.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// `runseal verify RUNTIME` passes, a passed smoke test of `profile` (`learned` for the
    /// learn commands) among its checks.
    pub fn verified_with(&self, runtime: &str, profile: &str) {
        let out = self.run(&["--json", "verify", runtime]);
        let report = json(&out);
        assert_eq!(code(&out), 0, "{report:#}");
        assert!(
            report["smoke_tests"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["profile"] == profile && s["passed"] == true),
            "no passed smoke test of {profile}: {report:#}"
        );
    }

    /// A work dir `name` under the test root, owned by the user jobs run as by default.
    pub fn workdir(&self, name: &str) -> PathBuf {
        let work = self.path().join(name);
        std::fs::create_dir_all(&work).unwrap();
        job_owns(&work);
        work
    }
}

/// Hands `dir` to the user jobs run as by default (nobody), as an operator would.
pub fn job_owns(dir: &Path) {
    std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
}

impl TestRoot {}

/// Sends `signal` to `child` (a runseal this test started).
pub fn signal(child: &std::process::Child, signal: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_child(child), signal).unwrap();
}
