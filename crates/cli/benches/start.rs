//! Job start latency of `runseal run` against bubblewrap given the same read-only binds,
//! `--unshare-all --proc /proc --dev /dev --tmpfs /tmp`, in one run on the same runtime.
//! The job is the runtime's own `/usr/bin/true` (busybox). Prints medians, the ratio
//! (target: runseal <= bwrap) and the throughput of 50 concurrent starts of each.
//!
//! Needs root, Debian's openjdk-17-jdk-headless, busybox-static and bubblewrap.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{median, ms};

const STARTS: usize = 200;
const CONCURRENT: usize = 50;

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
    let ours_burst = burst(runseal_cmd);
    let theirs_burst = burst(bwrap_cmd);
    println!("job start, {STARTS} sequential starts each, interleaved (median):");
    println!("  runseal run           {:>7.2} ms", ms(ours));
    println!("  bwrap, same binds     {:>7.2} ms", ms(theirs));
    println!(
        "  runseal / bwrap       {:>7.2}   (target <= 1.0)",
        ours.as_secs_f64() / theirs.as_secs_f64()
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
