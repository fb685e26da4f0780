//! Attacks a hostile job made on the host (issue 7), each in its original form and a
//! variant: kernel interfaces past the seccomp filter, setuid files left for the host,
//! resources taken when no limit was asked for, and cgroups left behind.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::util::{code, signal, text, TestRoot};

/// Runs `./probe ARGS` in a job on the sealed OpenJDK runtime with a work dir holding the
/// probe; returns the probe's report line and the job's exit code.
fn probe(t: &TestRoot, work: &Path, args: &[&str]) -> (String, i32) {
    let mut command = vec!["./probe"];
    command.extend_from_slice(args);
    let out = t.job(&["--workdir", work.to_str().unwrap()], &command);
    (
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
        code(&out),
    )
}

fn assert_refused(report: &(String, i32), errno: &str, what: &str) {
    assert_eq!(report.1, 0, "{what} was not refused: {}", report.0);
    assert!(
        report.0.contains(&format!("errno={errno} ")),
        "{what}: expected errno {errno}: {}",
        report.0
    );
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn io_uring_is_refused_in_jobs() {
    let t = sealtest!();
    t.sealed_openjdk();
    let work = t.workdir_with_probe();
    assert_refused(&probe(&t, &work, &["io_uring"]), "1", "io_uring_setup");
    assert_refused(
        &probe(&t, &work, &["io_uring-register"]),
        "1",
        "io_uring_register",
    );
}

#[test]
fn a_job_cannot_make_a_setuid_or_setgid_file() {
    let t = sealtest!();
    t.sealed_openjdk();
    let work = t.workdir_with_probe();
    let plain = work.join("plain");
    std::fs::write(&plain, "x").unwrap();
    crate::util::set_mode(&plain, 0o755);
    // The job's own file: only the filter, not the file's owner, may stop the job.
    crate::util::job_owns(&plain);
    for (check, target) in [
        ("chmod-suid", "plain"),
        ("fchmodat2-suid", "plain"),
        ("open-suid", "created"),
        ("mknod-suid", "made-by-mknod"),
        ("mkdir-sgid", "sgid-dir"),
    ] {
        assert_refused(&probe(&t, &work, &[check, target]), "1", check);
    }
    assert_eq!(mode_of(&plain), 0o755);
    for absent in ["created", "made-by-mknod", "sgid-dir"] {
        assert!(!work.join(absent).exists(), "{absent} was created");
    }

    // The same through the userland, in /work and in /tmp.
    let out = t.job(
        &["--workdir", work.to_str().unwrap()],
        &[
            "sh",
            "-c",
            "chmod u+s plain || chmod g+s plain || echo refused",
        ],
    );
    assert_eq!(text(&out.stdout), "refused\n", "{}", text(&out.stderr));
    assert_eq!(mode_of(&plain), 0o755);
    let out = t.job(
        &[],
        &[
            "sh",
            "-c",
            "touch /tmp/f && chmod 4755 /tmp/f; ls -l /tmp/f",
        ],
    );
    assert!(
        text(&out.stdout).starts_with("-rw"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // Plain modes still work.
    let out = t.job(
        &["--workdir", work.to_str().unwrap()],
        &["sh", "-c", "chmod 700 plain && mkdir -m 755 d && echo ok"],
    );
    assert_eq!(text(&out.stdout), "ok\n", "{}", text(&out.stderr));
    assert_eq!(mode_of(&plain), 0o700);
}

/// A config file holding `toml`, for `--config`.
/// The sandbox's init is root's and outside the job's cgroups: its `/proc` entry would show
/// the job runseal's command line and the host's cgroup paths. The job's proc shows it only
/// its own user's processes.
#[test]
fn a_job_sees_neither_the_sandboxs_init_nor_its_cgroups_and_command_line() {
    let t = sealtest!();
    t.sealed_openjdk();
    let out = t.job(
        &["--env", "MARK=an-operator-flag"],
        &[
            "sh",
            "-c",
            "cat /proc/1/cgroup /proc/1/cmdline 2>&1; echo pids $(ls -d /proc/[0-9]*)",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let seen = text(&out.stdout);
    assert!(!seen.contains("/.."), "host cgroup paths: {seen}");
    assert!(
        !seen.contains("--runtime"),
        "runseal's command line: {seen}"
    );
    assert!(seen.contains("No such file"), "{seen}");
    // The shell (pid 2) and what it runs, never pid 1.
    let pids = seen.lines().find_map(|l| l.strip_prefix("pids ")).unwrap();
    assert!(!pids.split(' ').any(|p| p == "/proc/1"), "{seen}");
}

fn config(t: &TestRoot, toml: &str) -> String {
    let path = t.path().join("config.toml");
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}

/// Whether a process whose command line starts with `needle` is in one of `cgroups`: the
/// job of that runseal, not a stray process of another test run.
fn runs_in(cgroups: &[std::path::PathBuf], needle: &str) -> bool {
    cgroups.iter().any(|dir| {
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .any(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .starts_with(needle)
                })
            })
    })
}

fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `runseal run` on the sealed OpenJDK runtime, started in the background.
fn start_job(t: &TestRoot, options: &[&str], shell: &str) -> std::process::Child {
    let mut command = t.runseal_std();
    command
        .args(["run", "--runtime", "openjdk-17"])
        .args(options)
        .args(["--", "sh", "-c", shell])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    t.spawn(command)
}

#[test]
fn with_no_flags_a_fork_bomb_stops_at_the_configured_pid_limit() {
    let t = sealtest!();
    let _serial = crate::limits::serial();
    t.sealed_openjdk();
    let file = config(&t, "[limits]\npids = 20\ntimeout = 3\n");
    let out = t.job(
        &["--config", &file],
        &["sh", "-c", "(i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null; set -- /proc/[0-9]*; echo $#"],
    );
    let running: usize = text(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}{}", text(&out.stdout), text(&out.stderr)));
    assert!(running <= 20, "{running} processes under pids = 20");

    // The classic bomb, with the file named by RUNSEAL_CONFIG: its timeout ends it. (The
    // bomb runs in a subshell: the shell that meets the limit exits.)
    let started = Instant::now();
    let out = t
        .runseal()
        .env("RUNSEAL_CONFIG", &file)
        .args(["run", "--runtime", "openjdk-17", "--", "sh", "-c"])
        .arg("(bomb() { bomb | bomb & }; bomb) 2>/dev/null; exec sleep 1000")
        .output()
        .unwrap();
    assert_eq!(code(&out), 124, "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(20));

    // A flag overrides the file.
    let out = t.job(
        &["--config", &file, "--pids", "200", "--timeout", "30"],
        &["sh", "-c", "(i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null; set -- /proc/[0-9]*; echo $#"],
    );
    assert!(
        text(&out.stdout).trim().parse::<usize>().unwrap() > 60,
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn with_no_flags_and_no_config_file_the_built_in_defaults_hold() {
    let t = sealtest!();
    let _serial = crate::limits::serial();
    t.sealed_openjdk();
    // What the default file says, or the built-in defaults where it is absent (as in CI).
    let expected = runseal_sandbox::Config::load(None).unwrap().limits;
    // A job with tighter limits first: its cgroups are likely the next job's too (slots
    // are reused), which must then get its own limits, the memory limit raised.
    let out = t.job(
        &["--memory", "64M", "--pids", "16", "--cpus", "0.5"],
        &["true"],
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let mut child = start_job(
        &t,
        &[],
        "grep ' /tmp ' /proc/self/mountinfo; exec sleep 1006",
    );
    wait_until("the job runs", || runs_in(&t.job_cgroups(), "sleep 1006"));
    let cgroups = t.job_cgroups();
    let read = |files: &[&str]| -> Vec<String> {
        cgroups
            .iter()
            .flat_map(|dir| files.iter().map(move |f| dir.join(f)))
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .map(|v| v.trim().to_string())
            .collect()
    };
    assert_eq!(
        read(&["pids.max"]),
        [expected.pids.unwrap().to_string()],
        "runseal {} has cgroups {cgroups:?}; all: {:?}",
        child.id(),
        std::fs::read_dir("/sys/fs/cgroup/pids/runseal")
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    assert_eq!(
        read(&["memory.limit_in_bytes", "memory.max"]),
        [expected.memory_bytes.unwrap().to_string()]
    );
    signal(&child, Signal::TERM);
    child.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let size = format!("size={}k", expected.tmp_size.unwrap() / 1024);
    assert!(stdout.contains(&size), "/tmp is not {size}: {stdout}");
}

#[test]
fn tmp_has_a_size_and_writing_past_it_fails_with_enospc() {
    let t = sealtest!();
    t.sealed_openjdk();
    let work = t.workdir_with_probe();
    let workdir = work.to_str().unwrap();
    let out = t.job(
        &["--workdir", workdir, "--tmp-size", "8M"],
        &["./probe", "fill", "/tmp/big", "64"],
    );
    assert_refused(
        &(text(&out.stdout), code(&out)),
        "28",
        "64 MiB into an 8 MiB /tmp",
    );

    let file = config(&t, "[limits]\ntmp_size = \"4M\"\n");
    let out = t.job(
        &["--workdir", workdir, "--config", &file],
        &["./probe", "fill", "/tmp/big", "16"],
    );
    assert_refused(
        &(text(&out.stdout), code(&out)),
        "28",
        "16 MiB into a 4 MiB /tmp",
    );
    let out = t.job(
        &["--workdir", workdir, "--config", &file, "--tmp-size", "32M"],
        &["./probe", "fill", "/tmp/big", "16"],
    );
    assert_eq!(text(&out.stdout), "wrote 16 MiB\n", "{}", text(&out.stderr));
}

#[test]
fn the_default_memory_limit_holds_and_an_oom_kill_says_so() {
    let t = sealtest!();
    let _serial = crate::limits::serial();
    t.sealed_openjdk();
    let work = t.workdir_with_probe();
    let workdir = work.to_str().unwrap();
    let file = config(&t, "[limits]\nmemory = \"64M\"\n");
    let out = t.job(
        &["--workdir", workdir, "--config", &file],
        &["./probe", "alloc", "256"],
    );
    assert_eq!(code(&out), 137, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("runseal: killed: out of memory (limit 64M)"),
        "{}",
        text(&out.stderr)
    );

    // In a child of the job's shell, under a flag that overrides the file.
    let out = t.job(
        &["--workdir", workdir, "--config", &file, "--memory", "96M"],
        &["sh", "-c", "./probe alloc 512; exit $?"],
    );
    assert_eq!(code(&out), 137, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("runseal: killed: out of memory (limit 96M)"),
        "{}",
        text(&out.stderr)
    );

    // A job killed otherwise is not called out of memory.
    let out = t.job(&["--config", &file], &["sh", "-c", "kill -9 $$"]);
    assert_eq!(code(&out), 137);
    assert!(
        !text(&out.stderr).contains("out of memory"),
        "{}",
        text(&out.stderr)
    );
}

/// Job cgroups are slots that job after job reuses. A runseal killed with SIGKILL cannot
/// let go of its slot: its job dies with it (init's death signal), the slot's lock with the
/// process, and the slot is free again once nothing is left in it. A running job's slot
/// stays its own, and a job that gets a slot gets its own limits, not the last job's.
#[test]
fn the_cgroups_of_a_runseal_killed_with_sigkill_are_freed_with_its_job() {
    let t = sealtest!();
    let _serial = crate::limits::serial();
    t.sealed_openjdk();
    let mut alive = start_job(&t, &[], "exec sleep 1007");
    wait_until("the first job runs", || {
        runs_in(&t.job_cgroups(), "sleep 1007")
    });
    let alive_cgroups = t.job_cgroups();
    let mut killed = start_job(&t, &["--pids", "16", "--memory", "64M"], "exec sleep 1008");
    wait_until("both jobs run", || runs_in(&t.job_cgroups(), "sleep 1008"));
    let stale: Vec<_> = t
        .job_cgroups()
        .into_iter()
        .filter(|d| !alive_cgroups.contains(d))
        .collect();
    assert!(stale.len() >= 2, "memory and pids cgroups: {stale:?}");
    signal(&killed, Signal::KILL);
    killed.wait().unwrap();
    wait_until("the killed runseal's job ends", || {
        stale.iter().all(|d| {
            std::fs::read_to_string(d.join("cgroup.procs")).map_or(true, |p| p.trim().is_empty())
        })
    });

    // The next job runs, with the built-in limits whichever slot it gets.
    let mut next = start_job(&t, &[], "exec sleep 1016");
    wait_until("the next job runs", || {
        runs_in(&t.job_cgroups(), "sleep 1016")
    });
    let pids: Vec<String> = t
        .job_cgroups()
        .iter()
        .filter(|d| !alive_cgroups.contains(d))
        .filter_map(|d| std::fs::read_to_string(d.join("pids.max")).ok())
        .map(|v| v.trim().to_string())
        .collect();
    let expected = runseal_sandbox::Config::load(None).unwrap().limits;
    assert_eq!(pids, [expected.pids.unwrap().to_string()]);
    assert!(
        runs_in(&alive_cgroups, "sleep 1007"),
        "the running job lost its cgroups"
    );

    for child in [&mut alive, &mut next] {
        signal(child, Signal::TERM);
        child.wait().unwrap();
    }
    assert!(t.job_cgroups().is_empty(), "{:?}", t.job_cgroups());
}
