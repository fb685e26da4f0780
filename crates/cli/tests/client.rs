//! `runseal --host unix://...`: the CLI as a client of a real runseald on the same root.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{code, text, TestRoot};

/// runseald (target/release/runseald, built by `cargo build --release --workspace`) serving
/// the test's root, its socket and state in a dir of their own.
struct Daemon {
    child: Child,
    host: String,
    _scratch: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(t: &TestRoot) -> Daemon {
        let scratch = tempfile::tempdir_in("/var/tmp").unwrap();
        let socket = scratch.path().join("runseald.sock");
        let binary = assert_cmd::cargo::cargo_bin("runseald");
        assert!(binary.exists(), "{} is not built", binary.display());
        let child = Command::new(binary)
            .arg("--socket")
            .arg(&socket)
            .arg("--root")
            .arg(t.path())
            .arg("--state-dir")
            .arg(scratch.path().join("state"))
            .env_remove("RUNSEAL_PROFILE_DIR")
            .env_remove("RUNSEAL_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "runseald did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon {
            child,
            host: format!("unix://{}", socket.display()),
            _scratch: scratch,
        }
    }

    /// `runseal --host ... ARGS`, with the output captured.
    fn runseal(&self, t: &TestRoot, args: &[&str]) -> std::process::Output {
        let mut all = vec!["--host", &self.host];
        all.extend_from_slice(args);
        t.run(&all)
    }

    /// `runseal --host ... run --runtime openjdk-17 -- sh -c SCRIPT`, once it has printed
    /// its first line, `first`; its stdout is piped.
    fn start_job(
        &self,
        t: &TestRoot,
        script: &str,
        first: &str,
    ) -> (Child, BufReader<ChildStdout>) {
        let mut command = t.runseal_std();
        command
            .args(["--host", &self.host, "run", "--runtime", "openjdk-17"])
            .args(["--", "sh", "-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = t.spawn(command);
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, first);
        (child, stdout)
    }

    /// The jobs the daemon knows, as `GET /v1/jobs` answers.
    fn jobs(&self) -> serde_json::Value {
        let socket = PathBuf::from(self.host.trim_start_matches("unix://"));
        let out = Command::new("curl")
            .args(["-s", "--unix-socket"])
            .arg(socket)
            .arg("http://runseald/v1/jobs")
            .output()
            .expect("curl is installed");
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[test]
fn the_daemon_answers_as_the_local_cli_does() {
    let t = sealtest!();
    t.sealed_openjdk();
    let daemon = Daemon::start(&t);
    for args in [
        &["list"][..],
        &["--json", "list"],
        &["info", "openjdk-17"],
        &["--json", "info", "openjdk-17"],
        &["validate", "java:17"],
    ] {
        let local = t.run(args);
        let remote = daemon.runseal(&t, args);
        assert_eq!(code(&remote), 0, "{args:?}: {}", text(&remote.stderr));
        assert_eq!(text(&remote.stdout), text(&local.stdout), "{args:?}");
    }
    let out = daemon.runseal(&t, &["seal", "openjdk-17"]);
    assert!(text(&out.stdout).contains("already sealed and up to date"));

    let out = daemon.runseal(&t, &["info", "nothing-17"]);
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).starts_with("runseal: error: no runtime matches `nothing-17`"));
    let out = daemon.runseal(&t, &["seal", "--no-wait", "openjdk-17"]);
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("--no-wait"),
        "{}",
        text(&out.stderr)
    );
    let out = daemon.runseal(&t, &["run", "--runtime", "nothing-17", "--", "true"]);
    assert_eq!(code(&out), 125);
}

#[test]
fn a_job_on_the_daemon_streams_its_output_and_exits_with_its_code() {
    let t = sealtest!();
    t.sealed_openjdk();
    let daemon = Daemon::start(&t);

    let (mut child, _stdout) = daemon.start_job(&t, "echo a; sleep 1; echo b >&2; exit 3", "a\n");
    assert!(
        child.try_wait().unwrap().is_none(),
        "`a` came only at the end"
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 3);
    assert_eq!(text(&out.stderr), "b\n");

    let job = ["run", "--runtime", "openjdk-17", "--"];
    let out = daemon.runseal(&t, &[&job[..], &["printf", r"\377\000\001\n"]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"\xff\x00\x01\n");

    let timed = [
        "run",
        "--runtime",
        "openjdk-17",
        "--timeout",
        "1",
        "--",
        "sleep",
        "30",
    ];
    assert_eq!(code(&daemon.runseal(&t, &timed)), 124);
    assert_eq!(
        daemon.jobs(),
        serde_json::json!([]),
        "ended jobs are forgotten"
    );
}

#[test]
fn ctrl_c_on_the_client_cancels_the_job_on_the_daemon() {
    let t = sealtest!();
    t.sealed_openjdk();
    let daemon = Daemon::start(&t);
    let (mut child, _stdout) = daemon.start_job(&t, "echo started; sleep 100", "started\n");
    assert_eq!(daemon.jobs().as_array().unwrap().len(), 1);
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the job was not cancelled"
    );
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "the job ends by the daemon's SIGTERM"
    );
    assert_eq!(daemon.jobs(), serde_json::json!([]));
}
