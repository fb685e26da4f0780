//! Seal speed against `cp -a` of the same bytes, in one run on the same disk.
//!
//! Needs root and Debian's openjdk-17-jdk-headless (runtimes/openjdk-17/setup.sh installs it).
//! Prints medians and the ratios the project tracks (issue 12):
//!   seal / cp -a                 (target <= 1.2)
//!   seal / (cp -a + sync)        (target <= 1.0: a seal makes its tree durable before the swap)
//!   re-seal (unchanged) / seal   (target <= 0.03)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use runseal_closure::EntryKind;
use runseal_seal::{seal, NoProgress, Outcome, SealOptions};

mod common;
use common::{median, ms};

const ROUNDS: usize = 7;

fn main() {
    let bench = common::openjdk("seal", "it seals the real OpenJDK runtime");
    let (scratch, dir) = (&bench.root, &bench.runtime);
    let host_yml = std::fs::read(dir.join("runtime.yml")).unwrap();

    let dry = SealOptions {
        dry_run: true,
        ..SealOptions::default()
    };
    let plan = seal(dir, &dry, &NoProgress).unwrap().plan.unwrap();
    let copied_paths: Vec<PathBuf> = plan
        .entries
        .values()
        .filter(|e| !matches!(e.kind, EntryKind::Dir) && !e.source.as_os_str().is_empty())
        .map(|e| e.source.clone())
        .collect();
    println!(
        "data: OpenJDK 17 closure, {} files, {:.1} MiB, {} paths copied by each side",
        plan.files,
        plan.bytes as f64 / 1048576.0,
        copied_paths.len()
    );

    let (mut seals, mut reseals, mut cps, mut cp_syncs) = (vec![], vec![], vec![], vec![]);
    for round in 0..=ROUNDS {
        reset(dir, &host_yml);
        let first = timed(|| {
            let report = seal(dir, &SealOptions::default(), &NoProgress).unwrap();
            assert_eq!(report.outcome, Outcome::Sealed);
        });
        let again = timed(|| {
            let report = seal(dir, &SealOptions::default(), &NoProgress).unwrap();
            assert_eq!(report.outcome, Outcome::Unchanged);
        });
        let target = scratch.join(format!("cp-{round}"));
        rustix::fs::sync();
        let cp = timed(|| cp_parents(&copied_paths, &target));
        std::fs::remove_dir_all(&target).unwrap();
        rustix::fs::sync();
        let cp_sync = timed(|| {
            cp_parents(&copied_paths, &target);
            rustix::fs::sync();
        });
        std::fs::remove_dir_all(&target).unwrap();
        rustix::fs::sync();
        if round > 0 {
            seals.push(first);
            reseals.push(again);
            cps.push(cp);
            cp_syncs.push(cp_sync);
        }
    }
    let (seal_t, reseal_t, cp_t, cp_sync_t) = (
        median(seals),
        median(reseals),
        median(cps),
        median(cp_syncs),
    );
    println!("median of {ROUNDS} rounds (warm page cache, disk synced before each, first round discarded):");
    println!("  seal from scratch          {:>8.1} ms", ms(seal_t));
    println!("  cp -a, same files          {:>8.1} ms", ms(cp_t));
    println!("  cp -a + sync               {:>8.1} ms", ms(cp_sync_t));
    println!("  re-seal, unchanged         {:>8.1} ms", ms(reseal_t));
    println!("ratios:");
    println!(
        "  seal / cp -a               {:>8.2}   (target <= 1.2)",
        ratio(seal_t, cp_t)
    );
    println!(
        "  seal / (cp -a + sync)      {:>8.2}   (target <= 1.0)",
        ratio(seal_t, cp_sync_t)
    );
    println!(
        "  re-seal / seal             {:>8.3}   (target <= 0.03)",
        ratio(reseal_t, seal_t)
    );
}

fn reset(dir: &Path, host_yml: &[u8]) {
    let _ = std::fs::remove_dir_all(dir.join("isolated"));
    let _ = std::fs::remove_file(dir.join("runtime.yml.original"));
    std::fs::write(dir.join("runtime.yml"), host_yml).unwrap();
    rustix::fs::sync();
}

fn cp_parents(paths: &[PathBuf], target: &Path) {
    std::fs::create_dir_all(target).unwrap();
    // Relative to `/`: cp --parents re-applies parent metadata through the relative names.
    let status = Command::new("cp")
        .current_dir("/")
        .args(["-a", "--parents"])
        .args(paths.iter().map(|p| p.strip_prefix("/").unwrap_or(p)))
        .arg(target)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a failed");
}

fn timed(f: impl FnOnce()) -> Duration {
    let started = Instant::now();
    f();
    started.elapsed()
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
