//! `runseal --host unix://...`: the CLI as a client of a real runseald on the same root.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{code, json, signal, text, TestRoot};

/// runseald (target/HOST/release/runseald, built by `cargo build --release --workspace`) serving
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
        Daemon::start_with(t, &[])
    }

    /// A daemon serving `t`'s root with `args`.
    fn start_with(t: &TestRoot, args: &[&str]) -> Daemon {
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
            .args(args)
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

    /// `runseal --host ... run --runtime openjdk-17 -- sh -c SCRIPT`, its stdin `stdin`, its
    /// stdout and stderr piped.
    fn job_command(&self, t: &TestRoot, script: &str, stdin: Stdio) -> Command {
        let mut command = t.runseal_std();
        command
            .args(["--host", &self.host, "run", "--runtime", "openjdk-17"])
            .args(["--", "sh", "-c", script])
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// [`Daemon::job_command`] with no stdin, once it has printed
    /// its first line, `first`; its stdout is piped.
    fn start_job(
        &self,
        t: &TestRoot,
        script: &str,
        first: &str,
    ) -> (Child, BufReader<ChildStdout>) {
        let mut child = t.spawn(self.job_command(t, script, Stdio::null()));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        if line != first {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{line:?}, not {first:?}: {}", text(&out.stderr));
        }
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
        &["du"],
        &["--json", "du"],
        &["gc", "--dry-run"],
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

    // Its network namespace (made beside the helper's reading of the runtime) holds a
    // loopback, up, and nothing else.
    let out = daemon.runseal(&t, &[&job[..], &["ip", "-o", "link"]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let links: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(links.len(), 1, "{links:?}");
    assert!(links[0].contains(": lo: <LOOPBACK,UP,"), "{links:?}");

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
    signal(&child, rustix::process::Signal::INT);
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

/// Stdin streams to a job on the daemon as it does to a local one, past the daemon's
/// request body limit; a job that stops reading does not take its client down; and a client
/// killed with SIGKILL, which can cancel nothing, still takes its job with it.
#[test]
fn stdin_streams_to_a_job_and_a_killed_client_takes_its_job_with_it() {
    let t = sealtest!();
    t.sealed_openjdk();
    let daemon = Daemon::start(&t);
    let piped = |script: &str, bytes: usize| {
        let mut child = t.spawn(daemon.job_command(&t, script, Stdio::piped()));
        let mut stdin = child.stdin.take().unwrap();
        // Errors once the job stops reading are expected.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&vec![b'x'; bytes]);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    };
    // Three times runseald's default --max-body: stdin is a stream, not a request body.
    let out = piped("wc -c; echo end", 3 << 20);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}\nend\n", 3 << 20));
    let out = piped("head -c 5; echo; exit 4", 8 << 20);
    assert_eq!(code(&out), 4, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "xxxxx\n");
    let out = daemon.runseal(&t, &["run", "--runtime", "openjdk-17", "--", "wc", "-c"]);
    assert_eq!(text(&out.stdout), "0\n", "no stdin reads as empty");

    let (mut child, _stdout) = daemon.start_job(&t, "echo started; sleep 100", "started\n");
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    let job = loop {
        let jobs = daemon.jobs();
        if jobs[0]["state"] == "exited" {
            break jobs[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the job outlived its client: {jobs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(job["cancelled"], true, "{job}");
    assert_eq!(job["exit_code"], 128 + 15, "{job}");
}

/// `runseal --host ... jobs`: list, show, logs and cancel, as root sees the daemon's jobs.
#[test]
fn jobs_lists_shows_prints_and_cancels_the_daemons_jobs() {
    let t = sealtest!();
    t.sealed_openjdk();
    let daemon = Daemon::start(&t);
    let (child, _stdout) =
        daemon.start_job(&t, "echo started; echo warned >&2; sleep 100", "started\n");
    let listed = json(&daemon.runseal(&t, &["--json", "jobs"]));
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(listed[0]["state"], "running", "{listed}");

    let out = daemon.runseal(&t, &["jobs"]);
    let row = text(&out.stdout).lines().nth(1).unwrap().to_owned();
    assert!(row.starts_with(&id), "{row}");
    assert!(
        row.contains("running") && row.contains("openjdk-17"),
        "{row}"
    );
    assert!(
        row.ends_with(r#"sh -c "echo started; echo warned >&2; sleep 100""#),
        "{row}"
    );
    let out = daemon.runseal(&t, &["jobs", "show", &id]);
    assert!(
        text(&out.stdout).contains("\nstate: running\n"),
        "{}",
        text(&out.stdout)
    );
    let out = daemon.runseal(&t, &["jobs", "logs", &id]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        ("started\n".into(), "warned\n".into())
    );

    let out = daemon.runseal(&t, &["jobs", "cancel", &id]);
    assert_eq!(text(&out.stdout), format!("{id} is being stopped\n"));
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 128 + 15, "the client exits as its job did");

    let out = daemon.runseal(&t, &["jobs", "show", "0000"]);
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("no job `0000`"),
        "{}",
        text(&out.stderr)
    );
    let out = t.run(&["jobs"]);
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("needs --host"),
        "{}",
        text(&out.stderr)
    );
}

/// `runseal --host ... build`: the daemon builds a script from its --script-dir in the
/// overlay builder, the script's output streams to the client's stderr, and the client
/// exits 0 with the verified runtime; `remove` names the dir it removed.
#[test]
fn build_on_the_daemon_streams_the_script_and_reports_the_verified_runtime() {
    let t = sealtest!();
    let scripts = tempfile::tempdir_in("/var/tmp").unwrap();
    let daemon = Daemon::start_with(&t, &["--script-dir", scripts.path().to_str().unwrap()]);
    let script = scripts.path().join("setup.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nset -e\necho building\nmkdir -p /usr/local/lib/client-built && echo note > /usr/local/lib/client-built/note\n\
         mkdir -p \"$1/client-built\"\nprintf 'name: client-built\\nmounts:\\n- {source: usr/local/lib/client-built, target: /usr/local/lib/client-built, readonly: true}\\n' > \"$1/client-built/runtime.yml\"\n\
         echo \"$1/client-built\"\n",
    )
    .unwrap();
    let out = daemon.runseal(&t, &["build", script.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("building\n"),
        "{}",
        text(&out.stderr)
    );
    let dir = t.path().join("client-built");
    let said = text(&out.stdout);
    assert!(
        said.starts_with(&format!("built {}: ", dir.display())),
        "{said}"
    );
    assert!(said.ends_with(" files sealed; verify passed\n"), "{said}");
    assert!(dir
        .join("isolated/usr/local/lib/client-built/note")
        .is_file());
    assert!(
        !Path::new("/usr/local/lib/client-built").exists(),
        "the build reached the host"
    );

    let elsewhere = t.path().join("setup.sh");
    std::fs::copy(&script, &elsewhere).unwrap();
    let out = daemon.runseal(&t, &["build", elsewhere.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("--script-dir"),
        "{}",
        text(&out.stderr)
    );

    let out = daemon.runseal(&t, &["remove", "client-built"]);
    assert_eq!(text(&out.stdout), format!("removed {}\n", dir.display()));
    assert!(!dir.exists());
}
