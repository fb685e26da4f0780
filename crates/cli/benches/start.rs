//! Job start latency of `runseal run` against bubblewrap given the same read-only binds,
//! `--unshare-all --proc /proc --dev /dev --tmpfs /tmp`, in one run on the same runtime.
//! The job is the runtime's own `/usr/bin/true` (busybox). Prints medians, the ratios
//! (targets: wall time <= 0.9 x bwrap's, CPU time <= bwrap's) and the throughput of 50
//! concurrent starts of each. CPU time is the whole machine's busy time (/proc/stat) over
//! batches of starts, less that of as many starts of `/bin/true`: it counts what a start
//! leaves to the kernel's workers or to a process nobody waits for (a namespace's
//! teardown), which a per-process count would miss.
//!
//! Needs root, Debian's openjdk-17-jdk-headless, busybox-static and bubblewrap.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{median, ms};

const STARTS: usize = 200;
const CONCURRENT: usize = 50;
/// Batches of CPU_BATCH starts of each command, interleaved.
const CPU_ROUNDS: usize = 10;
const CPU_BATCH: usize = 40;

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
    let (mut spawn_cpu, mut ours_cpu, mut theirs_cpu) = (0.0, 0.0, 0.0);
    for _ in 0..CPU_ROUNDS {
        spawn_cpu += busy_during(|| Command::new("/bin/true"));
        ours_cpu += busy_during(runseal_cmd);
        theirs_cpu += busy_during(bwrap_cmd);
    }
    let per_start = |busy: f64| {
        Duration::from_secs_f64((busy - spawn_cpu).max(0.0) / (CPU_ROUNDS * CPU_BATCH) as f64)
    };
    let (ours_cpu, theirs_cpu) = (per_start(ours_cpu), per_start(theirs_cpu));
    let ours_burst = burst(runseal_cmd);
    let theirs_burst = burst(bwrap_cmd);
    println!("job start, {STARTS} sequential starts each, interleaved (median):");
    println!("  runseal run           {:>7.2} ms", ms(ours));
    println!("  bwrap, same binds     {:>7.2} ms", ms(theirs));
    println!(
        "  runseal / bwrap       {:>7.2}   (target <= 0.9)",
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
    println!(
        "CPU time, the machine's busy time per start over {} starts each, interleaved:",
        CPU_ROUNDS * CPU_BATCH
    );
    println!("  runseal run           {:>7.2} ms", ms(ours_cpu));
    println!("  bwrap, same binds     {:>7.2} ms", ms(theirs_cpu));
    println!(
        "  runseal / bwrap       {:>7.2}   (target <= 1.0)",
        ours_cpu.as_secs_f64() / theirs_cpu.as_secs_f64()
    );
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

/// The machine's busy CPU time, in seconds, while `make`'s command runs CPU_BATCH times
/// one after another, and for a moment after, so that work the kernel defers is done.
fn busy_during(make: impl Fn() -> Command) -> f64 {
    let before = busy_seconds();
    for _ in 0..CPU_BATCH {
        run_once(&mut make());
    }
    std::thread::sleep(Duration::from_millis(50));
    busy_seconds() - before
}

/// user + nice + system + irq + softirq + steal of every CPU, from /proc/stat.
fn busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap())
        .collect();
    let per_second = rustix::param::clock_ticks_per_second() as f64;
    [0, 1, 2, 5, 6, 7].iter().map(|&i| ticks[i]).sum::<f64>() / per_second
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
