//! What both benchmarks start from: root, and the shipped OpenJDK 17 runtime set up (not
//! sealed) in a scratch runtimes root on the real disk.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct Bench {
    /// Holds `root`; removed, with everything in it, when the benchmark ends.
    _scratch: tempfile::TempDir,
    pub root: PathBuf,
    /// The runtime dir of openjdk-17 under `root`.
    pub runtime: PathBuf,
}

/// Exits with a message unless root; sets up the runtime.
pub fn openjdk(bench: &str, why_root: &str) -> Bench {
    if !rustix::process::geteuid().is_root() {
        eprintln!("bench {bench}: needs root ({why_root})");
        std::process::exit(2);
    }
    let scratch = tempfile::Builder::new()
        .prefix("runseal-bench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let root = scratch.path().join("runtimes");
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtimes/openjdk-17/setup.sh");
    let status = Command::new(setup)
        .arg(&root)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "runtimes/openjdk-17/setup.sh failed");
    let runtime = root.join("openjdk-17");
    Bench {
        _scratch: scratch,
        root,
        runtime,
    }
}

pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
