//! Resource limits that really hold, whichever cgroup version serves them, and nothing
//! left behind: no cgroup, mount or process outlives its job.

use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::util::{code, signal, text};

/// Tests that time jobs, count processes or load the machine run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn processes_matching(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for process in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(process.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) && !cmdline.contains("cargo") {
                found.push(cmdline);
            }
        }
    }
    found
}

/// What `read` makes of the cgroup dirs of a job `sleep MARKER` started with `options`,
/// once it runs; the job is stopped before this returns.
fn cgroups_of_a_sleeping_job<T>(
    t: &crate::util::TestRoot,
    options: &[&str],
    marker: &str,
    read: impl Fn(&[std::path::PathBuf]) -> T,
) -> T {
    let mut runseal = start_sleeping_job(t, options, marker);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut cgroups = t.job_cgroups();
    while cgroups.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        cgroups = t.job_cgroups();
    }
    let read = read(&cgroups);
    stop(&mut runseal);
    assert!(!cgroups.is_empty(), "the job never ran");
    read
}

/// Asserts that no process whose command line holds one of `needles` (what a job started)
/// is left running.
fn assert_outlived_by_none(needles: &[&str]) {
    for needle in needles {
        assert!(
            processes_matching(needle).is_empty(),
            "{needle} outlived its job"
        );
    }
}

/// `runseal run OPTIONS -- sleep MARKER`, started.
fn start_sleeping_job(
    t: &crate::util::TestRoot,
    options: &[&str],
    marker: &str,
) -> std::process::Child {
    let mut command = t.runseal_std();
    command
        .args(["run", "--runtime", "openjdk-17"])
        .args(options)
        .args(["--", "sleep", marker])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    t.spawn(command)
}

/// Stops a `runseal run` with SIGTERM (its job gets it too) and waits for it.
fn stop(runseal: &mut std::process::Child) {
    signal(runseal, Signal::TERM);
    runseal.wait().unwrap();
}

/// Sends SIGTERM to `runseal` once a process whose command line holds `needle` (the job's,
/// never runseal's own) is running.
fn terminate_once_running(runseal: &std::process::Child, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_matching(needle).is_empty() {
        assert!(Instant::now() < deadline, "the job never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(runseal, Signal::TERM);
}

fn job_mounts_left() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains("/run/runseal/root"))
        .count()
}

#[test]
fn memory_past_the_limit_is_killed() {
    let t = sealtest!();
    let _serial = serial();
    t.sealed_openjdk();
    let work = t.workdir_with_probe();
    let workdir = work.to_str().unwrap();
    let out = t.job(
        &["--workdir", workdir, "--memory", "64M"],
        &["./probe", "alloc", "256"],
    );
    assert_eq!(
        code(&out),
        128 + 9,
        "256 MiB under a 64 MiB limit: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = t.job(
        &["--workdir", workdir, "--memory", "64M"],
        &["./probe", "alloc", "16"],
    );
    assert_eq!(
        code(&out),
        0,
        "16 MiB under a 64 MiB limit: {}",
        text(&out.stderr)
    );
    assert!(t.job_cgroups().is_empty(), "{:?}", t.job_cgroups());
}

#[test]
fn a_fork_bomb_stops_at_the_pid_limit_and_the_timeout_clears_it() {
    let t = sealtest!();
    let _serial = serial();
    t.sealed_openjdk();
    let out = t.job(
        &["--pids", "20"],
        &["sh", "-c", "(i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null; set -- /proc/[0-9]*; echo $#"],
    );
    let running: usize = text(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}{}", text(&out.stdout), text(&out.stderr)));
    assert!(running <= 20, "{running} processes under --pids 20");

    let started = Instant::now();
    let out = t.job(
        &["--pids", "40", "--timeout", "2"],
        // The sleep is forked before the bomb takes every pid, the bomb goes off in a
        // subshell (a shell that cannot fork gives up with 2), and the sleep is waited for
        // without a fork: only the timeout ends the job.
        &[
            "sh",
            "-c",
            "sleep 1000 & (bomb() { bomb | bomb & }; bomb) & wait",
        ],
    );
    assert_eq!(code(&out), 124, "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(processes_matching("sleep 1000").is_empty());
    assert!(t.job_cgroups().is_empty(), "{:?}", t.job_cgroups());
}

#[test]
fn timeout_exits_124_and_leaves_no_process() {
    let t = sealtest!();
    let _serial = serial();
    t.sealed_openjdk();
    let started = Instant::now();
    let out = t.job(
        &["--timeout", "1"],
        &["sh", "-c", "sleep 1001 & sleep 1002"],
    );
    assert_eq!(code(&out), 124);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_outlived_by_none(&["sleep 1001", "sleep 1002"]);
}

/// runseal returns once the job has exited and whatever it left running is gone, not
/// after the sandbox's namespaces are torn down: at that moment nothing the job started
/// runs (in the background, in a session of its own, deaf to SIGTERM and SIGHUP) and no
/// process is left in the job's cgroups.
#[test]
fn when_runseal_returns_nothing_the_job_left_runs_and_its_cgroups_are_gone() {
    let t = sealtest!();
    let _serial = serial();
    t.sealed_openjdk();
    let script = "sleep 1013 & setsid sleep 1014 & \
                  (trap '' TERM HUP; exec sleep 1015) & exit 3";
    for _ in 0..5 {
        let out = t.job(&[], &["sh", "-c", script]);
        assert_eq!(code(&out), 3, "{}", text(&out.stderr));
        assert_outlived_by_none(&["sleep 1013", "sleep 1014", "sleep 1015"]);
        assert!(t.job_cgroups().is_empty(), "{:?}", t.job_cgroups());
    }
}

/// The sandbox lets go of the runtime's tree (its shared lock) before runseal returns, so
/// a removal right after a job finds no job on it.
#[test]
fn a_runtime_is_removable_the_moment_a_job_on_it_returns() {
    let t = sealtest!();
    let _serial = serial();
    let dir = t.sealed_openjdk();
    let out = t.job(&[], &["true"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let removed = t.run(&["remove", dir.to_str().unwrap()]);
    assert_eq!(code(&removed), 0, "{}", text(&removed.stderr));
    assert!(!dir.exists());
}

/// A reused cgroup slot must not hand the next job memory the last one left charged that
/// the kernel cannot reclaim: files it wrote to its `/tmp` (charged until the sandbox is
/// torn down, after runseal returns) or to a tmpfs volume (charged until deleted). The
/// next job, with that on top of its own, would be OOM-killed inside its limit.
#[test]
fn a_job_starts_with_nothing_an_earlier_job_left_charged_to_its_memory_cgroup() {
    let t = sealtest!();
    let _serial = serial();
    t.sealed_openjdk();
    let shm = tempfile::Builder::new()
        .prefix("runseal-test")
        .tempdir_in("/dev/shm")
        .unwrap();
    crate::util::job_owns(shm.path());
    let volume = format!("{}:/data", shm.path().display());
    let shmem_of_next_job = |marker: &str| -> u64 {
        cgroups_of_a_sleeping_job(&t, &[], marker, |cgroups| {
            let stat = cgroups
                .iter()
                .find_map(|dir| std::fs::read_to_string(dir.join("memory.stat")).ok())
                .unwrap_or_default();
            stat.lines()
                .find_map(|l| l.strip_prefix("shmem "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        })
    };
    for (options, script, marker) in [
        (vec![], "head -c 200000000 /dev/zero > /tmp/fill", "1019"),
        (
            vec!["-v", volume.as_str()],
            "head -c 100000000 /dev/zero > /data/fill",
            "1020",
        ),
    ] {
        let mut args = options.clone();
        args.extend(["--memory", "512M"]);
        let out = t.job(&args, &["sh", "-c", script]);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        let left = shmem_of_next_job(marker);
        assert!(
            left < 1 << 20,
            "the next job started with {left} bytes of tmpfs charged"
        );
    }
}

/// Job cgroups are slots kept for the next job, up to 64 of them: slots made because more
/// jobs ran at once are removed as their jobs end, so idle cgroups do not pile up.
#[test]
fn slots_past_the_kept_ones_are_removed_when_their_jobs_end() {
    let t = sealtest!();
    let _serial = serial();
    t.sealed_openjdk();
    let mut jobs: Vec<_> = (0..70)
        .map(|_| start_sleeping_job(&t, &[], "1018"))
        .collect();
    // The jobs themselves, not the runseals and inits whose command lines name them too.
    let sleeping = || {
        processes_matching("sleep 1018")
            .iter()
            .filter(|cmdline| cmdline.starts_with("sleep 1018"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while sleeping() < 70 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Only this test's slots: other jobs on the host may hold any others.
    let running = sleeping();
    let high: Vec<_> = t
        .job_cgroups()
        .into_iter()
        .filter(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy();
            name.strip_prefix("slot-")
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n >= 64)
        })
        .collect();
    // Ended before anything is asserted, so that a failure leaves no job behind.
    for job in &mut jobs {
        stop(job);
    }
    assert_eq!(running, 70);
    let numbers: std::collections::BTreeSet<_> = high.iter().map(|d| d.file_name()).collect();
    assert!(
        numbers.len() >= 6,
        "70 jobs at once, slots past 64: {high:?}"
    );
    // Gone, unless another job has taken the number since (then a process is in it).
    let left: Vec<_> = high
        .iter()
        .filter(|dir| {
            std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty())
        })
        .collect();
    assert!(left.is_empty(), "slots past 64 left: {left:?}");
    assert!(t.job_cgroups().is_empty(), "{:?}", t.job_cgroups());
}

/// A CPU limit of at least every CPU online cannot slow a job down, so the job gets no cpu
/// cgroup, only its memory and pids ones; a lower limit gets one, with its quota.
#[test]
fn only_a_cpu_limit_below_the_machines_cpus_gets_a_cpu_cgroup() {
    let t = sealtest!();
    let _serial = serial();
    t.sealed_openjdk();
    let quotas_of = |cpus: &str| -> Vec<String> {
        cgroups_of_a_sleeping_job(&t, &["--cpus", cpus], "1017", |cgroups| {
            // v1 `cpu.cfs_quota_us`, or v2 `cpu.max` without its period.
            cgroups
                .iter()
                .filter_map(|dir| {
                    std::fs::read_to_string(dir.join("cpu.cfs_quota_us"))
                        .or_else(|_| std::fs::read_to_string(dir.join("cpu.max")))
                        .ok()
                })
                .map(|quota| quota.trim().trim_end_matches(" 100000").to_string())
                .collect()
        })
    };
    let unthrottled = quotas_of("4096");
    assert!(unthrottled.iter().all(|q| q == "max"), "{unthrottled:?}");
    assert_eq!(quotas_of("0.5"), ["50000"]);
}

#[test]
fn cpu_limit_is_applied() {
    let t = sealtest!();
    let _serial = serial();
    t.sealed_openjdk();
    let out = t.job(&["--cpus", "0.5"], &["sh", "-c", "cat /proc/self/cgroup"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    // The job's own cgroup namespace: it sees its cgroups as the root, nothing of the host's.
    let view = text(&out.stdout);
    assert!(
        !view.is_empty() && view.lines().all(|l| l.ends_with(":/")),
        "{view}"
    );
    // A busy loop under 0.2 CPUs takes at least several times longer than the CPU time it
    // used (the shell reports its own, in clock ticks): a measure that other load on the
    // machine can only make longer, never shorter.
    let busy = "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; \
                read -r s < /proc/self/stat; set -- $s; echo $(( ${14} + ${15} ))";
    let started = Instant::now();
    let out = t.job(&["--cpus", "0.2", "--timeout", "60"], &["sh", "-c", busy]);
    let wall = started.elapsed();
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let ticks: u64 = text(&out.stdout).trim().parse().unwrap();
    let cpu = Duration::from_millis(ticks * 10);
    assert!(
        cpu >= Duration::from_millis(50),
        "the loop used only {cpu:?}"
    );
    assert!(wall > cpu * 3, "0.2 CPUs: {cpu:?} of CPU in {wall:?}");
}

#[test]
fn fifty_concurrent_jobs_all_succeed_and_leave_nothing() {
    let t = sealtest!();
    let _serial = serial();
    t.sealed_openjdk();
    let children: Vec<_> = (0..50)
        .map(|i| {
            let mut command = t.runseal_std();
            command
                .args([
                    "run",
                    "--runtime",
                    "openjdk-17",
                    "--pids",
                    "32",
                    "--memory",
                    "128M",
                    "--",
                ])
                .args(["sh", "-c", &format!("echo job-{i}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            t.spawn(command)
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "job {i}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("job-{i}\n"));
    }
    assert!(t.job_cgroups().is_empty(), "{:?}", t.job_cgroups());
    assert_eq!(job_mounts_left(), 0);
    assert!(processes_matching(&t.path().display().to_string()).is_empty());
}

#[test]
fn sigterm_to_runseal_ends_the_job_and_cleans_up() {
    let t = sealtest!();
    let _serial = serial();
    t.sealed_openjdk();
    let mut command = t.runseal_std();
    command.args([
        "run",
        "--runtime",
        "openjdk-17",
        "--pids",
        "16",
        "--",
        "sh",
        "-c",
        "n=1003; sleep $n",
    ]);
    let mut child = t.spawn(command);
    terminate_once_running(&child, "sleep 1003");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    std::thread::sleep(Duration::from_millis(100));
    assert!(processes_matching("sleep 1003").is_empty());
    assert!(t.job_cgroups().is_empty(), "{:?}", t.job_cgroups());
}

#[test]
fn sigterm_reaches_the_job_which_may_exit_on_its_own_terms() {
    let t = sealtest!();
    let _serial = serial();
    t.sealed_openjdk();
    let child = t
        .runseal_std()
        .args(["run", "--runtime", "openjdk-17", "--", "sh", "-c"])
        .arg("trap 'echo got-term; exit 7' TERM; while true; do sleep 0.05; done")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The sleep's own command line ends in a space; runseal's shows `sleep 0.05;`.
    terminate_once_running(&child, "sleep 0.05 ");
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stdout));
    assert_eq!(text(&out.stdout), "got-term\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the job was not told"
    );
}

/// SIGTERM or SIGINT at any moment of a start ends runseal at once, with 128+N (or by the
/// signal itself, before runseal catches it). Before, a stop that came while init built the
/// root (runseal working beside it) reached no job: the job then ran to its end and runseal
/// exited 0 (attack review).
#[test]
fn a_stop_signal_at_any_moment_of_a_start_ends_it() {
    use std::os::unix::process::ExitStatusExt;
    let t = sealtest!();
    let _serial = serial();
    t.sealed_openjdk();
    for step in 0..60u32 {
        let (stop, number) = match step % 2 {
            0 => (Signal::TERM, 15),
            _ => (Signal::INT, 2),
        };
        let mut command = t.runseal_std();
        command
            .args(["run", "--runtime", "openjdk-17", "--", "sleep", "2"])
            .stderr(std::process::Stdio::null());
        let started = Instant::now();
        let mut child = t.spawn(command);
        let delay = Duration::from_micros(100 * u64::from(step));
        std::thread::sleep(delay);
        signal(&child, stop);
        let status = child.wait().unwrap();
        assert!(
            status.code() == Some(128 + number) || status.signal() == Some(number),
            "stopped with {stop:?} after {delay:?}: {status:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "stopped with {stop:?} after {delay:?}, ended after {:?}",
            started.elapsed()
        );
    }
}
