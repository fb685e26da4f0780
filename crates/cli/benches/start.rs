//! Job start latency of `runseal run` against bubblewrap given the same read-only binds,
//! `--unshare-all --proc /proc --dev /dev --tmpfs /tmp`, in one run on the same runtime.
//! The job is the runtime's own `/usr/bin/true` (busybox). Prints medians, the ratios
//! (targets: wall time <= 0.9 x bwrap's, CPU time <= bwrap's) and the throughput of 50
//! concurrent starts of each. CPU time is `perf stat -e task-clock` (it follows every
//! child, waited for or not), when perf is installed.
//!
//! Needs root, Debian's openjdk-17-jdk-headless, busybox-static and bubblewrap.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{median, ms};

const STARTS: usize = 200;
const CONCURRENT: usize = 50;
const CPU_STARTS: usize = 40;

fn main() {
    let bench = common::openjdk("start", "it runs sandboxes");
    let (root, dir) = (&bench.root, &bench.runtime);
    let runseal = Path::new(env!("CARGO_BIN_EXE_runseal"));
    let sealed = Command::new(runseal)
        .arg("--root")
        .arg(root)
        .args(["seal", "openjdk-17"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(sealed.success(), "seal failed");

    let runseal_cmd = || {
        let mut cmd = Command::new(runseal);
        cmd.arg("--root")
            .arg(root)
            .args(["run", "--runtime", "openjdk-17", "--", "/usr/bin/true"]);
        cmd
    };
    let bwrap_cmd = || {
        let mut cmd = Command::new("bwrap");
        for top in std::fs::read_dir(dir.join("isolated")).unwrap().flatten() {
            let name = top.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            cmd.arg("--ro-bind")
                .arg(top.path())
                .arg(Path::new("/").join(&name));
        }
        cmd.args([
            "--unshare-all",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "/usr/bin/true",
        ]);
        cmd
    };

    for _ in 0..10 {
        run_once(&mut runseal_cmd());
        run_once(&mut bwrap_cmd());
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..STARTS {
        ours.push(run_once(&mut runseal_cmd()));
        theirs.push(run_once(&mut bwrap_cmd()));
    }
    let (ours, theirs) = (median(ours), median(theirs));
    let (mut ours_cpu, mut theirs_cpu) = (Vec::new(), Vec::new());
    for _ in 0..CPU_STARTS {
        match (task_clock(&runseal_cmd()), task_clock(&bwrap_cmd())) {
            (Some(a), Some(b)) => {
                ours_cpu.push(a);
                theirs_cpu.push(b);
            }
            _ => break,
        }
    }
    let ours_burst = burst(runseal_cmd);
    let theirs_burst = burst(bwrap_cmd);
    println!("job start, {STARTS} sequential starts each, interleaved (median):");
    println!("  runseal run           {:>7.2} ms", ms(ours));
    println!("  bwrap, same binds     {:>7.2} ms", ms(theirs));
    println!(
        "  runseal / bwrap       {:>7.2}   (target <= 0.9)",
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
    if ours_cpu.is_empty() {
        println!("CPU time: perf not found (perf stat -e task-clock)");
    } else {
        let (ours_cpu, theirs_cpu) = (median(ours_cpu), median(theirs_cpu));
        println!("CPU time of all processes, {CPU_STARTS} starts each, interleaved (median):");
        println!("  runseal run           {:>7.2} ms", ms(ours_cpu));
        println!("  bwrap, same binds     {:>7.2} ms", ms(theirs_cpu));
        println!(
            "  runseal / bwrap       {:>7.2}   (target <= 1.0)",
            ours_cpu.as_secs_f64() / theirs_cpu.as_secs_f64()
        );
    }
    println!("{CONCURRENT} concurrent starts:");
    println!(
        "  runseal run           {:>7.1} jobs/s",
        CONCURRENT as f64 / ours_burst.as_secs_f64()
    );
    println!(
        "  bwrap                 {:>7.1} jobs/s",
        CONCURRENT as f64 / theirs_burst.as_secs_f64()
    );
}

fn run_once(cmd: &mut Command) -> Duration {
    let started = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(status.success(), "{cmd:?} failed");
    elapsed
}

/// The task-clock of `cmd` and every process it made, from `perf stat`; `None` without perf.
fn task_clock(cmd: &Command) -> Option<Duration> {
    let out = Command::new("perf")
        .args(["stat", "-x,", "-e", "task-clock", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdout(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.contains("task-clock"))?;
    let msec: f64 = line.split(',').next()?.parse().ok()?;
    Some(Duration::from_secs_f64(msec / 1000.0))
}

fn burst(make: impl Fn() -> Command) -> Duration {
    let started = Instant::now();
    let children: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            make()
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    started.elapsed()
}
