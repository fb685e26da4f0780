//! runseald end to end: a real daemon on a Unix socket, driven with curl, sealing and
//! running the real OpenJDK runtime and building one in the overlay builder.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// A daemon whose socket, state dir and root are in `scratch`, with `args`.
    fn start(scratch: &Path, args: &[&str]) -> Daemon {
        let socket = scratch.join("runseald.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_runseald"))
            .arg("--socket")
            .arg(&socket)
            .arg("--root")
            .arg(scratch.join("runtimes"))
            .arg("--state-dir")
            .arg(scratch.join("state"))
            .args(args)
            .env_remove("RUNSEAL_PROFILE_DIR")
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "runseald did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child, socket }
    }

    /// `curl --no-buffer` on `path`, its output piped.
    fn curl(&self, path: &str) -> Child {
        Command::new("curl")
            .args(["-s", "--no-buffer", "--unix-socket"])
            .arg(&self.socket)
            .arg(format!("http://runseald{path}"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The NDJSON lines of `path`.
    fn output(&self, path: &str) -> Vec<Value> {
        let out = self.curl(path).wait_with_output().unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// `curl` over the socket: (HTTP status, JSON body or Null).
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(Command::new("curl"), method, path, body)
    }

    /// [`Daemon::call`] as nobody (65534:65534), a client `--socket-group nogroup` lets in.
    fn call_as_nobody(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut setpriv = Command::new("setpriv");
        setpriv.args(["--reuid=65534", "--regid=65534", "--clear-groups", "curl"]);
        self.call_as(setpriv, method, path, body)
    }

    fn call_as(
        &self,
        mut cmd: Command,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        cmd.args(["-s", "-w", "\n%{http_code}", "-X", method, "--unix-socket"])
            .arg(&self.socket)
            .arg(format!("http://runseald{path}"));
        if let Some(body) = body {
            cmd.args([
                "-H",
                "content-type: application/json",
                "-d",
                &body.to_string(),
            ]);
        }
        let out = cmd.output().expect("curl is installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (json, status) = text.rsplit_once('\n').unwrap();
        (
            status.parse().unwrap(),
            serde_json::from_str(json).unwrap_or(Value::Null),
        )
    }
}

/// As the CLI's tests: without root, fail unless `RUNSEAL_ALLOW_SKIP=1` asks for a skip.
fn require_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("RUNSEAL_ALLOW_SKIP").is_ok_and(|v| v == "1"),
        "the daemon tests need root; set RUNSEAL_ALLOW_SKIP=1 to skip them instead"
    );
    eprintln!("skipping: the daemon tests need root (RUNSEAL_ALLOW_SKIP=1)");
    false
}

/// A scratch dir (under /var/tmp, which the builder hides) whose `runtimes/` holds the
/// shipped openjdk-17 runtime, not yet sealed.
fn scratch_with_openjdk() -> tempfile::TempDir {
    let scratch = tempfile::Builder::new()
        .prefix("runseald-test")
        .tempdir_in("/var/tmp")
        .unwrap();
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtimes/openjdk-17/setup.sh");
    let out = Command::new(setup)
        .arg(scratch.path().join("runtimes"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    scratch
}

/// A daemon with `args` on a scratch root whose openjdk-17 it has sealed.
fn sealed_openjdk(args: &[&str]) -> (tempfile::TempDir, Daemon) {
    let scratch = scratch_with_openjdk();
    let daemon = Daemon::start(scratch.path(), args);
    let (status, sealed) = daemon.call("POST", "/v1/runtimes/openjdk-17/seal", None);
    assert_eq!(status, 200, "{sealed}");
    (scratch, daemon)
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// The review's finding: whoever `--socket-group` let in could run jobs as any uid (root
/// included), bind any dir under a work dir root, read every job's output and build (which
/// reads the host as root). A client other than root now runs jobs only as itself, on dirs
/// it owns, sees and stops only its own, and may not seal, remove or build.
#[test]
fn a_client_other_than_root_runs_only_as_itself_and_sees_only_its_own_jobs() {
    if !require_root() {
        return;
    }
    let scratch = scratch_with_openjdk();
    set_mode(scratch.path(), 0o755);
    let work = scratch.path().join("work");
    for dir in ["mine", "roots"] {
        std::fs::create_dir_all(work.join(dir)).unwrap();
    }
    std::os::unix::fs::chown(work.join("mine"), Some(65534), Some(65534)).unwrap();
    let daemon = Daemon::start(
        scratch.path(),
        &[
            "--socket-group=nogroup",
            "--max-per-client=2",
            &format!("--workdir-root={}", work.display()),
            &format!("--script-dir={}", scratch.path().display()),
        ],
    );
    let (status, sealed) = daemon.call("POST", "/v1/runtimes/openjdk-17/seal", None);
    assert_eq!(status, 200, "{sealed}");
    let (status, root_job) = daemon.call(
        "POST",
        "/v1/jobs",
        Some(serde_json::json!({"runtime": "openjdk-17", "command": ["sleep", "30"]})),
    );
    assert_eq!(status, 201, "{root_job}");
    let root_job = root_job["id"].as_str().unwrap().to_string();

    let run = |body: Value| daemon.call_as_nobody("POST", "/v1/run", Some(body));
    let (status, ran) = run(serde_json::json!({"runtime": "openjdk-17",
        "command": ["sh", "-c", "id -u; id -g; touch /work/x"], "workdir": work.join("mine")}));
    assert_eq!(
        (status, ran["stdout"].as_str()),
        (200, Some("65534\n65534\n")),
        "{ran}"
    );
    assert_eq!(ran["exit_code"], 0, "{ran}");
    for (what, body) in [
        (
            "another user",
            serde_json::json!({"runtime": "openjdk-17", "command": ["id"], "user": "0"}),
        ),
        (
            "a dir it does not own",
            serde_json::json!({"runtime": "openjdk-17", "command": ["id"],
            "workdir": work.join("roots")}),
        ),
        (
            "a volume it does not own",
            serde_json::json!({"runtime": "openjdk-17", "command": ["id"],
            "volumes": [{"source": work.join("roots"), "target": "/data"}]}),
        ),
    ] {
        let (status, error) = run(body);
        assert_eq!(status, 403, "{what}: {error}");
        assert_eq!(error["error"]["code"], "forbidden", "{what}");
    }
    for (method, path, body) in [
        ("POST", "/v1/gc", None),
        ("POST", "/v1/runtimes/openjdk-17/seal", None),
        ("DELETE", "/v1/runtimes/openjdk-17", None),
        (
            "POST",
            "/v1/builds",
            Some(serde_json::json!({"script": scratch.path().join("x.sh")})),
        ),
    ] {
        let (status, error) = daemon.call_as_nobody(method, path, body);
        assert_eq!(status, 403, "{method} {path}: {error}");
    }
    // Root's job is not there for nobody: not listed, not readable, not stoppable.
    let (_, jobs) = daemon.call_as_nobody("GET", "/v1/jobs", None);
    assert_eq!(jobs, serde_json::json!([]));
    for (method, path) in [
        ("GET", format!("/v1/jobs/{root_job}")),
        ("GET", format!("/v1/jobs/{root_job}/output")),
        ("DELETE", format!("/v1/jobs/{root_job}")),
    ] {
        let (status, _) = daemon.call_as_nobody(method, &path, None);
        assert_eq!(status, 404, "{method} {path}");
    }
    let (_, job) = daemon.call("GET", &format!("/v1/jobs/{root_job}"), None);
    assert_eq!(job["state"], "running", "{job}");

    // --max-per-client: nobody gets two at once, root is not counted against it.
    let sleeper = serde_json::json!({"runtime": "openjdk-17", "command": ["sleep", "30"]});
    for _ in 0..2 {
        let (status, job) = daemon.call_as_nobody("POST", "/v1/jobs", Some(sleeper.clone()));
        assert_eq!(status, 201, "{job}");
    }
    let (status, error) = daemon.call_as_nobody("POST", "/v1/jobs", Some(sleeper.clone()));
    assert_eq!(status, 429, "{error}");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--max-per-client"));
    let (status, _) = daemon.call("POST", "/v1/jobs", Some(sleeper));
    assert_eq!(status, 201, "root is not held to --max-per-client");
    let (_, jobs) = daemon.call("GET", "/v1/jobs", None);
    for job in jobs.as_array().unwrap() {
        daemon.call(
            "DELETE",
            &format!("/v1/jobs/{}", job["id"].as_str().unwrap()),
            None,
        );
    }
}

/// The review's finding: ended jobs kept their output for --keep-finished whatever its
/// total, so any client could fill the disk under --state-dir (10 jobs, 641 MB, in 5 s).
#[test]
fn ended_jobs_keep_no_more_output_together_than_kept_output() {
    if !require_root() {
        return;
    }
    let (scratch, daemon) = sealed_openjdk(&["--kept-output=3M", "--output-cap=2M"]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let body = serde_json::json!({"runtime": "openjdk-17",
            "command": ["head", "-c", "1500000", "/dev/zero"]});
        let (status, job) = daemon.call("POST", "/v1/jobs", Some(body));
        assert_eq!(status, 201, "{job}");
        let id = job["id"].as_str().unwrap().to_string();
        let frames = daemon.output(&format!("/v1/jobs/{id}/output?follow=true"));
        assert_eq!(frames.last().unwrap()["end"]["exit_code"], 0);
        ids.push(id);
    }
    // 4.5 MB of ended output against 3 MB: the oldest job and its spool are gone.
    std::thread::sleep(Duration::from_millis(200));
    let (_, jobs) = daemon.call("GET", "/v1/jobs", None);
    let listed: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(listed, [ids[1].as_str(), ids[2].as_str()], "{jobs}");
    let spools = std::fs::read_dir(scratch.path().join("state/jobs"))
        .unwrap()
        .count();
    assert_eq!(spools, 2);
    // An ended job keeps its output and report, not its request or stdin.
    let kept = scratch.path().join("state/jobs").join(&ids[2]);
    assert!(kept.join("output").is_file());
    assert!(!kept.join("input.json").exists());

    // The second review's finding: eviction took the oldest ended jobs whoever owned them,
    // so one client's output pushed another's results out. The client whose ended jobs
    // weigh most loses its own first.
    let body = serde_json::json!({"runtime": "openjdk-17",
        "command": ["head", "-c", "1200000", "/dev/zero"], "user": "1000"});
    let (_, other) = daemon.call("POST", "/v1/jobs", Some(body));
    let other = other["id"].as_str().unwrap().to_string();
    daemon.output(&format!("/v1/jobs/{other}/output?follow=true"));
    std::thread::sleep(Duration::from_millis(200));
    let (status, _) = daemon.call("GET", &format!("/v1/jobs/{other}"), None);
    assert_eq!(status, 200, "the newest job is kept");
    let (_, jobs) = daemon.call("GET", "/v1/jobs", None);
    assert_eq!(jobs.as_array().unwrap().len(), 2, "{jobs}");
}

/// The second review's findings against clients other than root: each holds at most
/// --max-client-connections (root keeps slots of its own), is answered the same for a path
/// that is not there and one it does not own, may not raise the operator's limits or use
/// the host's network, and sends bounded commands and volumes.
#[test]
fn a_client_other_than_root_cannot_starve_probe_or_outgrow_the_daemon() {
    if !require_root() {
        return;
    }
    let scratch = scratch_with_openjdk();
    set_mode(scratch.path(), 0o755);
    let work = scratch.path().join("work");
    std::fs::create_dir_all(work.join("alice/secret")).unwrap();
    set_mode(&work.join("alice"), 0o700);
    let daemon = Daemon::start(
        scratch.path(),
        &[
            "--socket-group=nogroup",
            "--max-connections=16",
            "--max-client-connections=3",
            &format!("--workdir-root={}", work.display()),
        ],
    );
    let (status, sealed) = daemon.call("POST", "/v1/runtimes/openjdk-17/seal", None);
    assert_eq!(status, 200, "{sealed}");

    // nobody opens five connections and sends nothing: three are held, two are answered
    // 429 at once; root is served meanwhile.
    let holder = scratch.path().join("holder.py");
    std::fs::write(
        &holder,
        r#"import socket, sys, time
held = []
for _ in range(5):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    s.settimeout(2)
    try:
        print(s.recv(200).split(b"\r\n")[0].decode())
    except socket.timeout:
        print("held")
    held.append(s)
    sys.stdout.flush()
time.sleep(30)
"#,
    )
    .unwrap();
    // Debian's python3: a developer's PATH may put one nobody cannot read first.
    let mut holder = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
        ])
        .arg(&holder)
        .arg(&daemon.socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut answers =
        std::io::BufRead::lines(std::io::BufReader::new(holder.stdout.take().unwrap()));
    let answers: Vec<String> = (0..5).map(|_| answers.next().unwrap().unwrap()).collect();
    assert_eq!(
        answers.iter().filter(|a| *a == "held").count(),
        3,
        "{answers:?}"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.starts_with("HTTP/1.1 429"))
            .count(),
        2,
        "{answers:?}"
    );
    let (status, _) = daemon.call("GET", "/v1/runtimes", None);
    assert_eq!(
        status, 200,
        "root is served while nobody holds its connections"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();

    let run = |extra: Value| {
        let mut body = serde_json::json!({"runtime": "openjdk-17", "command": ["true"]});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        daemon.call_as_nobody("POST", "/v1/run", Some(body))
    };
    // Hidden dirs do not tell what they hold.
    let (missing, not_there) = run(serde_json::json!({"volumes": [
        {"source": work.join("alice/nothere"), "target": "/data"}]}));
    let (hidden, secret) = run(serde_json::json!({"volumes": [
        {"source": work.join("alice/secret"), "target": "/data"}]}));
    assert_eq!((missing, hidden), (403, 403), "{not_there} {secret}");
    let message = |e: &Value, path: &str| {
        e["error"]["message"]
            .as_str()
            .unwrap()
            .replace(path, "PATH")
    };
    assert_eq!(
        message(&not_there, "alice/nothere"),
        message(&secret, "alice/secret")
    );
    // The operator's limits are ceilings, and the host's network is root's.
    for (extra, code) in [
        (serde_json::json!({"memory": "100T"}), 403),
        (serde_json::json!({"tmp_size": "100T"}), 403),
        (serde_json::json!({"pids": 4000000}), 403),
        (serde_json::json!({"cpus": 64}), 403),
        (serde_json::json!({"network": "host"}), 403),
        (serde_json::json!({"memory": "64M", "cpus": 0.5}), 200),
    ] {
        let (status, answer) = run(extra.clone());
        assert_eq!(status, code, "{extra}: {answer}");
    }
    // Bounded requests: every string of a kept job costs the daemon memory.
    let long: Vec<String> = std::iter::once("true")
        .chain(std::iter::repeat_n("a", 5000))
        .map(String::from)
        .collect();
    let (status, _) = run(serde_json::json!({ "command": long }));
    assert_eq!(status, 422);
    let volumes: Vec<Value> = (0..65)
        .map(|i| serde_json::json!({"source": work.join("alice"), "target": format!("/v{i}")}))
        .collect();
    let (status, _) = daemon.call(
        "POST",
        "/v1/run",
        Some(serde_json::json!({"runtime": "openjdk-17", "command": ["true"], "volumes": volumes})),
    );
    assert_eq!(status, 422, "at most 64 volumes, for root too");
}

/// The second review's finding: a client that closed its connection between the job's
/// creation and the first await of its handler left an attached or synchronous job running
/// with nobody to stop it (5 of 100). Each now has its guard before any await.
#[test]
fn jobs_whose_clients_vanish_at_once_are_stopped() {
    if !require_root() {
        return;
    }
    let (_scratch, daemon) = sealed_openjdk(&["--max-jobs=64", "--stop-grace=2"]);
    let body = r#"{"runtime": "openjdk-17", "command": ["sleep", "1000"]}"#;
    for i in 0..60u64 {
        let path = if i % 2 == 0 {
            "/v1/jobs?attach=true"
        } else {
            "/v1/run"
        };
        let mut stream = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
        // Gone within 0 to 5 ms: some while the daemon still checks the request, some
        // while it starts the job.
        std::thread::sleep(Duration::from_micros(i * 83 % 5000));
        drop(stream);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, jobs) = daemon.call("GET", "/v1/jobs", None);
        let running: Vec<&Value> = jobs
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["state"] != "exited")
            .collect();
        if running.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "jobs outlived their clients: {running:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!job_running("sleep 1000"));
}

#[test]
fn the_api_lists_seals_validates_runs_builds_and_removes() {
    if !require_root() {
        return;
    }
    let scratch = scratch_with_openjdk();
    let root = scratch.path().join("runtimes");
    let scripts = scratch.path().join("scripts");
    let work = scratch.path().join("work");
    std::fs::create_dir_all(work.join("job")).unwrap();
    std::fs::create_dir(&scripts).unwrap();
    let daemon = Daemon::start(
        scratch.path(),
        &[
            // One job at a time and no queue, so that the test can see the next one
            // turned away.
            "--max-jobs=1",
            "--max-queue=0",
            "--output-cap=8M",
            "--stop-grace=2",
            &format!("--script-dir={}", scripts.display()),
            &format!("--workdir-root={}", work.display()),
        ],
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&daemon.socket).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the socket must be root's only");

    let (status, doc) = daemon.call("GET", "/v1/openapi.json", None);
    assert_eq!((status, doc["openapi"].as_str()), (200, Some("3.1.0")));
    assert!(doc["paths"]["/v1/runtimes/{spec}"]["delete"].is_object());

    let (status, list) = daemon.call("GET", "/v1/runtimes", None);
    assert_eq!(status, 200);
    assert_eq!(list[0]["name"], "openjdk-17");
    assert_eq!(list[0]["state"], "unsealed");

    let (status, _) = daemon.call(
        "POST",
        "/v1/run",
        Some(serde_json::json!({"runtime": "java:17", "command": ["java", "-version"]})),
    );
    assert_eq!(status, 422, "an unsealed runtime must be refused");

    let (status, sealed) = daemon.call("POST", "/v1/runtimes/java:17/seal", None);
    assert_eq!(status, 200, "{sealed}");
    assert_eq!(sealed["outcome"], "sealed");
    let (_, report) = daemon.call("POST", "/v1/runtimes/openjdk-17/validate", None);
    assert_eq!(report["valid"], true);
    let (_, info) = daemon.call("GET", "/v1/runtimes/openjdk-17", None);
    assert_eq!(info["state"], "sealed");
    assert!(info["files"].as_u64().unwrap() > 200);

    let run = serde_json::json!({"runtime": "java:17", "command": ["java", "-version"], "memory": "1G", "timeout_secs": 60});
    let (status, ran) = daemon.call("POST", "/v1/run", Some(run));
    assert_eq!(status, 200, "{ran}");
    assert_eq!(ran["exit_code"], 0, "{ran}");
    assert!(ran["stderr"]
        .as_str()
        .unwrap()
        .contains("openjdk version \"17."));
    let run = serde_json::json!({"runtime": "openjdk-17", "command": ["sh", "-c", "echo $GREETING; exit 3"], "env": ["GREETING=hi"]});
    let (_, ran) = daemon.call("POST", "/v1/run", Some(run));
    assert_eq!(ran["exit_code"], 3);
    assert_eq!(ran["stdout"], "hi\n");
    assert_eq!(ran["oom"], false);

    // A JVM that touches a heap past the memory limit: the answer says why it died.
    let run = serde_json::json!({"runtime": "openjdk-17", "memory": "64M",
        "command": ["java", "-Xms256m", "-Xmx256m", "-XX:+AlwaysPreTouch", "-version"]});
    let (_, ran) = daemon.call("POST", "/v1/run", Some(run));
    assert_eq!(ran["exit_code"], 137, "{ran}");
    assert_eq!(ran["oom"], true, "{ran}");
    assert!(ran["stderr"]
        .as_str()
        .unwrap()
        .contains("killed: out of memory (limit 64M)"));
    // A job saying the words itself is not believed.
    let run = serde_json::json!({"runtime": "openjdk-17",
        "command": ["sh", "-c", "echo 'runseald: killed: out of memory (limit 64M)' >&2; kill -9 $$"]});
    let (_, ran) = daemon.call("POST", "/v1/run", Some(run));
    assert_eq!(ran["exit_code"], 137, "{ran}");
    assert_eq!(ran["oom"], false, "{ran}");

    // The daemon's own fds (its socket, its listener) never reach a job.
    let run = serde_json::json!({"runtime": "openjdk-17", "command": ["ls", "/proc/self/fd"]});
    let (_, ran) = daemon.call("POST", "/v1/run", Some(run));
    assert_eq!(ran["stdout"], "0\n1\n2\n3\n", "{ran}");

    // A job's output is kept up to 4 MiB a stream, the rest dropped and said so.
    let run = serde_json::json!({"runtime": "openjdk-17", "command": ["sh", "-c", "yes | head -c 20000000"]});
    let (_, ran) = daemon.call("POST", "/v1/run", Some(run));
    assert_eq!(ran["exit_code"], 0, "{}", ran["stderr"]);
    assert_eq!(ran["stdout_truncated"], true);
    assert_eq!(ran["stdout"].as_str().unwrap().len(), 4 << 20);
    // The CLI's exit codes, and no field silently dropped.
    let run = serde_json::json!({"runtime": "openjdk-17", "command": ["no-such-command"]});
    let (_, ran) = daemon.call("POST", "/v1/run", Some(run));
    assert_eq!(ran["exit_code"], 127, "{ran}");
    let run = serde_json::json!({"runtime": "openjdk-17", "command": ["true"], "limits": {"memory": "1M"}});
    let (status, _) = daemon.call("POST", "/v1/run", Some(run));
    assert_eq!(status, 422, "an unknown field must be refused, not dropped");

    // A runtime is not deleted under a running job.
    std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            let run = serde_json::json!({"runtime": "openjdk-17", "command": ["sleep", "3"]});
            daemon.call("POST", "/v1/run", Some(run))
        });
        std::thread::sleep(std::time::Duration::from_secs(1));
        let (status, error) = daemon.call("DELETE", "/v1/runtimes/openjdk-17", None);
        assert_eq!(status, 409, "{error}");
        let run = serde_json::json!({"runtime": "openjdk-17", "command": ["true"]});
        let (status, error) = daemon.call("POST", "/v1/run", Some(run));
        assert_eq!(status, 429, "one job at a time: {error}");
        assert_eq!(running.join().unwrap().1["exit_code"], 0);
    });
    assert!(root.join("openjdk-17/isolated").is_dir());

    // A path is not a runtime name: the daemon never reaches outside its root.
    let outside = scratch.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("runtime.yml"), "name: outside\nmounts: []\n").unwrap();
    let encoded = outside.display().to_string().replace('/', "%2F");
    let (status, error) = daemon.call("DELETE", &format!("/v1/runtimes/{encoded}"), None);
    assert_eq!(status, 422, "{error}");
    assert!(outside.join("runtime.yml").exists());

    let (status, error) = daemon.call("GET", "/v1/runtimes/nope", None);
    assert_eq!(status, 404);
    assert_eq!(error["error"]["code"], "not_found");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no runtime matches `nope`"));
    // Every error is JSON with a code, axum's own rejections and unknown routes included.
    for (method, path, body, status, code) in [
        (
            "POST",
            "/v1/run",
            Some(serde_json::json!([1])),
            422,
            "unprocessable",
        ),
        ("POST", "/v1/run", None, 415, "unsupported_media_type"),
        ("GET", "/v2/everything", None, 404, "not_found"),
        ("PUT", "/v1/run", None, 405, "method_not_allowed"),
    ] {
        let (got, error) = daemon.call(method, path, body);
        assert_eq!(
            (got, error["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {error}"
        );
        assert!(!error["error"]["message"].as_str().unwrap().is_empty());
    }

    jobs_stream_binary_output_and_are_cancelled(&daemon, &work);
    stdin_streams_and_attached_jobs_go_with_their_client(&daemon);

    // Build scripts come only from --script-dir, and no refusal shows a file's contents.
    std::os::unix::fs::symlink("/etc/shadow", scripts.join("shadow.sh")).unwrap();
    for script in [
        "/etc/shadow".into(),
        scripts.join("shadow.sh"),
        scripts.join("../work"),
    ] {
        let (status, error) = daemon.call(
            "POST",
            "/v1/builds",
            Some(serde_json::json!({"script": script})),
        );
        assert_eq!(status, 422, "{error}");
        assert!(!error.to_string().contains("root:"), "{error}");
    }
    let script = scripts.join("setup.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nset -e\nmkdir -p /usr/local/lib/built && echo made-in-builder > /usr/local/lib/built/note\n\
         mkdir -p \"$1/built\"\nprintf 'name: built\\nmounts:\\n- {source: usr/local/lib/built, target: /usr/local/lib/built, readonly: true}\\n' > \"$1/built/runtime.yml\"\n\
         echo \"$1/built\"\n",
    )
    .unwrap();
    let (status, build) = daemon.call(
        "POST",
        "/v1/builds",
        Some(serde_json::json!({"script": script})),
    );
    assert_eq!(status, 201, "{build}");
    let log = daemon.output(&format!(
        "/v1/builds/{}/log?follow=true",
        build["id"].as_str().unwrap()
    ));
    let built = &log.last().unwrap()["end"];
    assert_eq!(built["exit_code"], 0, "{log:?}");
    assert_eq!(built["verify"]["ok"], true, "{built}");
    assert!(built["seal"]["files"].as_u64().unwrap() >= 1, "{built}");
    let (_, builds) = daemon.call("GET", "/v1/builds", None);
    assert_eq!(builds[0]["runtime"], built["runtime"]);
    assert!(
        !Path::new("/usr/local/lib/built").exists(),
        "the build reached the host"
    );
    assert!(root
        .join("built/isolated/usr/local/lib/built/note")
        .is_file());

    let (status, removed) = daemon.call("DELETE", "/v1/runtimes/built", None);
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["removed"], root.join("built").to_str().unwrap());
    assert!(!root.join("built").exists());
    let (_, list) = daemon.call("GET", "/v1/runtimes", None);
    assert_eq!(list.as_array().unwrap().len(), 1);

    // A client that goes away takes its job with it.
    let gone = Command::new("curl")
        .args(["-s", "--max-time", "1", "--unix-socket"])
        .arg(&daemon.socket)
        .args(["-H", "content-type: application/json", "-d"])
        .arg(r#"{"runtime": "openjdk-17", "command": ["sleep", "37"]}"#)
        .arg("http://runseald/v1/run")
        .status()
        .unwrap();
    assert_eq!(gone.code(), Some(28), "curl gave up on the job");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!job_running("sleep 37"), "the job outlived its client");

    // SIGTERM: the daemon ends within its grace period, killing a job that ignores the
    // signal, and takes its socket with it.
    let job = serde_json::json!({"runtime": "openjdk-17", "command": ["sh", "-c", "trap '' TERM; sleep 38"]});
    let (status, _) = daemon.call("POST", "/v1/jobs", Some(job));
    assert_eq!(status, 201);
    std::thread::sleep(Duration::from_millis(500));
    let mut daemon = daemon;
    let pid = rustix::process::Pid::from_child(&daemon.child);
    let stopping = Instant::now();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(daemon.child.wait().unwrap().success());
    assert!(
        stopping.elapsed() < Duration::from_secs(6),
        "{:?}",
        stopping.elapsed()
    );
    assert!(!daemon.socket.exists(), "the socket was left behind");
    assert!(!job_running("sleep 38"), "the job outlived the daemon");
}

/// Jobs as resources: output streamed while the job runs, binary stdin and output round
/// trips, the output cap, work dirs confined to --workdir-root, cancellation.
fn jobs_stream_binary_output_and_are_cancelled(daemon: &Daemon, work: &Path) {
    let job = |body: Value| {
        let (status, job) = daemon.call("POST", "/v1/jobs", Some(body));
        assert_eq!(status, 201, "{job}");
        job["id"].as_str().unwrap().to_string()
    };
    // The first frame comes while the job still sleeps.
    let id = job(serde_json::json!({"runtime": "openjdk-17",
        "command": ["sh", "-c", "echo first; sleep 2; echo second >&2"]}));
    let mut follower = daemon.curl(&format!("/v1/jobs/{id}/output?follow=true"));
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(follower.stdout.take().unwrap()));
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"stream": "stdout", "offset": 0, "data": "first\n"})
    );
    let (_, status) = daemon.call("GET", &format!("/v1/jobs/{id}"), None);
    assert_eq!(status["state"], "running", "{status}");
    let rest: Vec<Value> = lines
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(rest[0]["stream"], "stderr");
    assert_eq!(rest[0]["data"], "second\n");
    assert_eq!(rest[1]["end"]["exit_code"], 0, "{rest:?}");
    assert!(rest[1]["end"]["ended"].as_str().unwrap().ends_with('Z'));
    follower.wait().unwrap();

    // Every byte value survives, as base64 frames; stdin given as base64 too.
    let bytes: Vec<u8> = (0..=255).collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let id = job(
        serde_json::json!({"runtime": "openjdk-17", "command": ["cat"],
        "stdin_b64": b64.encode(&bytes)}),
    );
    let frames = daemon.output(&format!("/v1/jobs/{id}/output?follow=true"));
    let mut out = Vec::new();
    for frame in frames.iter().filter(|f| f["stream"] == "stdout") {
        let data = frame["data_b64"].as_str().expect("binary output as base64");
        out.extend(b64.decode(data).unwrap());
    }
    assert_eq!(out, bytes);
    let id =
        job(serde_json::json!({"runtime": "openjdk-17", "command": ["cat"], "stdin": "text in"}));
    let frames = daemon.output(&format!("/v1/jobs/{id}/output?follow=true"));
    assert_eq!(frames[0]["data"], "text in");

    // Output past --output-cap (8M) is dropped and said so.
    let id = job(
        serde_json::json!({"runtime": "openjdk-17", "command": ["head", "-c", "10000000", "/dev/zero"]}),
    );
    let frames = daemon.output(&format!("/v1/jobs/{id}/output?follow=true"));
    let end = &frames.last().unwrap()["end"];
    assert_eq!(
        (end["exit_code"].as_i64(), end["truncated"].as_bool()),
        (Some(0), Some(true))
    );
    let (status, _) = daemon.call("DELETE", &format!("/v1/jobs/{id}"), None);
    assert_eq!(status, 204, "an ended job is forgotten");
    let (status, _) = daemon.call("GET", &format!("/v1/jobs/{id}"), None);
    assert_eq!(status, 404);

    // Work dirs only beneath --workdir-root, reached through no symlink.
    std::os::unix::fs::symlink("/", work.join("host")).unwrap();
    set_mode(&work.join("job"), 0o777);
    for workdir in [
        "/".into(),
        "/srv".into(),
        work.join("host"),
        work.join("job/../host"),
    ] {
        let run =
            serde_json::json!({"runtime": "openjdk-17", "command": ["true"], "workdir": workdir});
        let (status, error) = daemon.call("POST", "/v1/jobs", Some(run));
        assert_eq!(status, 422, "{workdir:?}: {error}");
    }
    let run = serde_json::json!({"runtime": "openjdk-17", "command": ["sh", "-c", "echo hi > /work/note"], "workdir": work.join("job")});
    let (_, ran) = daemon.call("POST", "/v1/run", Some(run));
    assert_eq!(ran["exit_code"], 0, "{ran}");
    assert!(work.join("job/note").is_file());

    // Volumes and the user, as `runseal run` takes them; a volume's source is confined
    // like a work dir.
    let volume =
        serde_json::json!({"source": work.join("job"), "target": "/data", "readonly": true});
    let run = serde_json::json!({"runtime": "openjdk-17", "user": "1000:1000",
        "volumes": [volume], "command": ["sh", "-c", "id -u; cat /data/note; touch /data/x"]});
    let (_, ran) = daemon.call("POST", "/v1/run", Some(run));
    assert_eq!(
        (ran["exit_code"].as_i64(), ran["stdout"].as_str()),
        (Some(1), Some("1000\nhi\n")),
        "{ran}"
    );
    assert!(!work.join("job/x").exists());
    for (field, value) in [
        (
            "volumes",
            serde_json::json!([{"source": "/etc", "target": "/data"}]),
        ),
        (
            "volumes",
            serde_json::json!([{"source": work.join("host"), "target": "/data"}]),
        ),
        (
            "volumes",
            serde_json::json!([{"source": work.join("job"), "target": "/data", "mode": "rw"}]),
        ),
        ("user", serde_json::json!("nobody")),
    ] {
        let mut run = serde_json::json!({"runtime": "openjdk-17", "command": ["true"]});
        run[field] = value.clone();
        let (status, error) = daemon.call("POST", "/v1/run", Some(run));
        assert_eq!(status, 422, "{field} {value}: {error}");
    }

    // DELETE of a running job: SIGTERM, and it ends as signalled.
    let id = job(serde_json::json!({"runtime": "openjdk-17", "command": ["sleep", "39"]}));
    std::thread::sleep(Duration::from_millis(500));
    let (status, cancelled) = daemon.call("DELETE", &format!("/v1/jobs/{id}"), None);
    assert_eq!(status, 202, "{cancelled}");
    let frames = daemon.output(&format!("/v1/jobs/{id}/output?follow=true"));
    let end = &frames.last().unwrap()["end"];
    assert_eq!(
        (end["exit_code"].as_i64(), end["cancelled"].as_bool()),
        (Some(143), Some(true)),
        "{end}"
    );
    let (_, jobs) = daemon.call("GET", "/v1/jobs", None);
    assert!(jobs
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["id"] == id.as_str()));
}

/// Stdin streamed with `PUT /v1/jobs/{id}/stdin` (past --max-body, which bounds JSON
/// bodies only), one writer a job; `?attach=true` answers with the output, and a client that
/// goes away before the end takes its job with it.
fn stdin_streams_and_attached_jobs_go_with_their_client(daemon: &Daemon) {
    let streamed = |command: Value| {
        let body =
            serde_json::json!({"runtime": "openjdk-17", "stdin_stream": true, "command": command});
        let (status, job) = daemon.call("POST", "/v1/jobs", Some(body));
        assert_eq!(status, 201, "{job}");
        job["id"].as_str().unwrap().to_owned()
    };
    let id = &streamed(serde_json::json!(["sh", "-c", "wc -c; echo end"]));
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), vec![b'z'; 3 << 20]).unwrap();
    let put = |id: &str| {
        let mut curl = Command::new("curl");
        curl.args([
            "-H",
            "content-type: application/octet-stream",
            "--data-binary",
        ])
        .arg(format!("@{}", input.path().display()));
        daemon.call_as(curl, "PUT", &format!("/v1/jobs/{id}/stdin"), None)
    };
    let (status, written) = put(id);
    assert_eq!(
        (status, written),
        (
            200,
            serde_json::json!({"written": 3 << 20, "closed": false})
        )
    );
    let frames = daemon.output(&format!("/v1/jobs/{id}/output?follow=true"));
    let stdout: String = frames.iter().filter_map(|f| f["data"].as_str()).collect();
    assert_eq!(stdout, format!("{}\nend\n", 3 << 20), "{frames:?}");
    let (status, error) = put(id);
    assert_eq!(status, 409, "one writer, and the job has ended: {error}");

    // A job that stops reading: the writer learns it, and the rest is not written.
    let id = &streamed(serde_json::json!(["head", "-c", "3"]));
    let (status, written) = put(id);
    assert_eq!(
        (status, &written["closed"]),
        (200, &Value::Bool(true)),
        "{written}"
    );
    assert!(written["written"].as_u64().unwrap() < 3 << 20, "{written}");
    let (status, _) = put(id);
    assert_eq!(status, 409);

    for (what, body) in [
        (
            "two stdins",
            serde_json::json!({"stdin": "x", "stdin_stream": true}),
        ),
        (
            "a synchronous run",
            serde_json::json!({"stdin_stream": true}),
        ),
    ] {
        let mut body = body;
        body["runtime"] = "openjdk-17".into();
        body["command"] = serde_json::json!(["cat"]);
        let path = if what == "two stdins" {
            "/v1/jobs"
        } else {
            "/v1/run"
        };
        let (status, error) = daemon.call("POST", path, Some(body));
        assert_eq!(status, 422, "{what}: {error}");
    }

    // Attached: the output is the answer, a start line first; a client that goes away
    // stops its job.
    let attached = Command::new("curl")
        .args(["-s", "--no-buffer", "--max-time", "2", "--unix-socket"])
        .arg(&daemon.socket)
        .args(["-H", "content-type: application/json", "-d"])
        .arg(r#"{"runtime": "openjdk-17", "command": ["sh", "-c", "echo up; sleep 41"]}"#)
        .arg("http://runseald/v1/jobs?attach=true")
        .output()
        .unwrap();
    assert_eq!(attached.status.code(), Some(28), "curl gave up on the job");
    let lines: Vec<Value> = String::from_utf8(attached.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines[0]["start"]["command"][0], "sh", "{lines:?}");
    assert_eq!(lines[1]["data"], "up\n", "{lines:?}");
    let id = lines[0]["start"]["id"].as_str().unwrap();
    let frames = daemon.output(&format!("/v1/jobs/{id}/output?follow=true"));
    let end = &frames.last().unwrap()["end"];
    assert_eq!(
        (end["exit_code"].as_i64(), end["cancelled"].as_bool()),
        (Some(143), Some(true)),
        "{end}"
    );
    assert!(
        !job_running("sleep 41"),
        "the job outlived its attached client"
    );
}

/// Whether a process of this exact command line runs on the host.
fn job_running(command: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .any(|line| {
            line.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
                .join(&b' ')
                == command.as_bytes()
        })
}

/// docs/openapi.json is what the code generates. After an API change, regenerate it:
/// `cargo run --release -p runseal-daemon -- --openapi > docs/openapi.json`.
#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    let out = Command::new(env!("CARGO_BIN_EXE_runseald"))
        .arg("--openapi")
        .output()
        .unwrap();
    assert!(out.status.success());
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json"),
    )
    .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "docs/openapi.json differs from the code's; regenerate it with \
         `cargo run --release -p runseal-daemon -- --openapi > docs/openapi.json`"
    );
}

/// Hundreds of idle, half-sent requests beyond --max-connections do not starve a normal
/// one: each has --header-timeout to send its head. And a restart removes what an earlier
/// daemon left in its state dir.
#[test]
fn idle_connections_do_not_starve_a_request_and_orphans_are_reaped() {
    let scratch = tempfile::tempdir().unwrap();
    let orphan = scratch.path().join("state/jobs/0123/output");
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, "left by a killed daemon").unwrap();
    let daemon = Daemon::start(
        scratch.path(),
        &["--max-connections=16", "--header-timeout=1"],
    );
    assert!(!orphan.exists(), "the orphaned spool was kept");
    let idle: Vec<_> = (0..300)
        .map(|_| {
            let mut stream = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
            std::io::Write::write_all(&mut stream, b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            stream
        })
        .collect();
    let asked = Instant::now();
    let (status, jobs) = daemon.call("GET", "/v1/jobs", None);
    assert_eq!((status, jobs), (200, serde_json::json!([])));
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "{:?}",
        asked.elapsed()
    );
    drop(idle);
}

/// A daemon killed with SIGKILL leaves its jobs' cgroups behind (its helpers die with it);
/// the next one removes them at start instead of waiting for a job with the same limit.
#[test]
fn a_restart_reaps_the_cgroups_an_earlier_daemons_jobs_left() {
    if !require_root() {
        return;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let memory = mountinfo
        .lines()
        .find_map(|line| {
            let (fields, rest) = line.split_once(" - ")?;
            let point = fields.split(' ').nth(4)?;
            let mut rest = rest.split(' ');
            match (rest.next()?, rest.nth(1)?) {
                ("cgroup", options) if options.split(',').any(|o| o == "memory") => {
                    Some(PathBuf::from(point))
                }
                _ => None,
            }
        })
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"));
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let stale = memory.join(format!("runseal/job-{pid}-1"));
    std::fs::create_dir_all(&stale).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start(scratch.path(), &[]);
    assert!(!stale.exists(), "{} was kept", stale.display());
}
