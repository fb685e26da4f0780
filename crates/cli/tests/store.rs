//! Dedupe on one machine: real runtimes sealed under one root share their common files
//! through the root's store, still verify and run, and `gc` frees what nothing uses, also
//! while seals and jobs run.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::util::{code, host_yaml, json, text, TestRoot};

const RUNTIMES: [&str; 3] = ["openjdk-17", "python-3.11", "node-20"];

/// A command of each runtime that needs its shared libraries, and what it prints.
fn smoke(runtime: &str) -> (&'static [&'static str], &'static str) {
    match runtime {
        "openjdk-17" => (&["java", "-version"], "openjdk version \"17"),
        "python-3.11" => (&["python3", "-c", "import ssl; print('py ok')"], "py ok"),
        _ => (
            &["node", "-e", "require('crypto'); console.log('node ok')"],
            "node ok",
        ),
    }
}

fn ok(out: &std::process::Output, what: &str) {
    assert_eq!(
        code(out),
        0,
        "{what} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn seal(t: &TestRoot, runtime: &str) -> Value {
    let out = t.run(&["--json", "seal", runtime]);
    ok(&out, &format!("seal {runtime}"));
    json(&out)
}

fn runs(t: &TestRoot, runtime: &str) {
    let (command, expected) = smoke(runtime);
    let mut args = vec!["run", "--runtime", runtime, "--"];
    args.extend_from_slice(command);
    let out = t.run(&args);
    ok(&out, &format!("{runtime} job"));
    let printed = text(&out.stdout) + &text(&out.stderr);
    assert!(printed.contains(expected), "{runtime}: {printed}");
}

fn verifies(t: &TestRoot, runtime: &str) {
    ok(&t.run(&["verify", runtime]), &format!("verify {runtime}"));
}

fn du(t: &TestRoot) -> Value {
    let out = t.run(&["--json", "du"]);
    ok(&out, "du");
    json(&out)
}

fn gc(t: &TestRoot, args: &[&str]) -> Value {
    let mut all = vec!["--json", "gc"];
    all.extend_from_slice(args);
    let out = t.run(&all);
    ok(&out, "gc");
    json(&out)
}

fn of<'a>(usage: &'a Value, runtime: &str) -> &'a Value {
    usage["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dir"].as_str().unwrap().ends_with(runtime))
        .unwrap_or_else(|| panic!("no {runtime} in {usage}"))
}

fn u(value: &Value) -> u64 {
    value.as_u64().unwrap()
}

/// The sealed libc of `runtime`'s tree.
fn libc(dir: &Path) -> PathBuf {
    walkdir::WalkDir::new(dir.join("isolated"))
        .into_iter()
        .map(|e| e.unwrap())
        .find(|e| e.file_name() == "libc.so.6" && e.file_type().is_file())
        .unwrap_or_else(|| panic!("no libc.so.6 in {}", dir.display()))
        .into_path()
}

#[test]
fn three_runtimes_under_one_root_share_their_common_files() {
    let t = sealtest!();
    for runtime in RUNTIMES {
        t.setup(runtime);
        assert_eq!(seal(&t, runtime)["outcome"], "sealed");
    }
    let store = t.path().join(".runseal-store");
    let meta = std::fs::metadata(&store).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o700));

    let inodes: Vec<u64> = RUNTIMES
        .iter()
        .map(|r| std::fs::metadata(libc(&t.path().join(r))).unwrap().ino())
        .collect();
    assert!(inodes.iter().all(|i| *i == inodes[0]), "{inodes:?}");

    let usage = du(&t);
    let mut physical_each = 0;
    for runtime in RUNTIMES {
        let r = of(&usage, runtime);
        eprintln!(
            "{runtime}: {} files, logical {} B, physical {} B, exclusive {} B",
            r["files"], r["logical"], r["physical"], r["exclusive"]
        );
        assert!(u(&r["exclusive"]) < u(&r["physical"]), "{r}");
        physical_each += u(&r["physical"]);
    }
    let (logical, physical) = (u(&usage["logical"]), u(&usage["physical"]));
    eprintln!("total: logical {logical} B, physical {physical} B");
    // What the three share is on disk once: less than each runtime's physical size added up.
    assert!(physical < physical_each && physical < logical, "{usage}");
    assert_eq!(usage["store"]["unreferenced"], 0, "{usage}");
    // Every stored inode is linked by the store and at least one tree.
    assert!(u(&usage["store"]["entries"]) > 7000, "{usage}");

    for runtime in RUNTIMES {
        verifies(&t, runtime);
        runs(&t, runtime);
        // The others linking its inodes moved their ctimes; that alone is no change.
        assert_eq!(seal(&t, runtime)["outcome"], "unchanged", "{runtime}");
    }
}

#[test]
fn gc_frees_a_removed_runtimes_files_and_nothing_in_use() {
    let t = sealtest!();
    for runtime in ["python-3.11", "node-20"] {
        t.setup(runtime);
        seal(&t, runtime);
    }
    let python = t.path().join("python-3.11");
    let python_libc = std::fs::metadata(libc(&python)).unwrap().ino();
    assert_eq!(gc(&t, &[])["entries"], 0);
    let before = du(&t);

    // What a `remove` killed midway leaves: the runtime renamed, its deletion begun.
    let trash = t.path().join(".node-20.removing");
    std::fs::rename(t.path().join("node-20"), &trash).unwrap();
    std::fs::remove_file(trash.join("runtime.yml")).unwrap();
    // What a seal killed midway leaves.
    std::fs::create_dir_all(python.join("isolated.tmp/usr")).unwrap();
    let listed = serde_json::json!([python.join("isolated.tmp"), trash]);
    // A dry run counts the entries whose other links are all in what it would remove.
    let dry = gc(&t, &["--dry-run"]);
    assert!(u(&dry["entries"]) > 1000, "{dry}");
    assert_eq!(dry["removed"], listed, "{dry}");
    assert!(python.join("isolated.tmp").exists() && trash.exists());
    assert_eq!(du(&t)["store"]["entries"], before["store"]["entries"]);

    let report = gc(&t, &[]);
    assert_eq!(report["entries"], dry["entries"], "{report}");
    assert_eq!(report["bytes"], dry["bytes"], "{report}");
    assert_eq!(report["removed"], listed, "{report}");
    assert!(!trash.exists());
    let after = du(&t);
    let removed = u(&before["store"]["entries"]) - u(&after["store"]["entries"]);
    assert_eq!(removed, u(&report["entries"]));
    assert_eq!(after["store"]["unreferenced"], 0);
    // What python shared with node is still stored, and still python's.
    assert_eq!(
        std::fs::metadata(libc(&python)).unwrap().nlink(),
        2,
        "libc: python's tree and the store"
    );
    assert_eq!(std::fs::metadata(libc(&python)).unwrap().ino(), python_libc);
    assert_eq!(gc(&t, &[])["entries"], 0);
    verifies(&t, "python-3.11");
    runs(&t, "python-3.11");
}

/// `remove`s `runtime`, which is refused for the moment gc holds the runtime's lock.
fn removed_despite_gc(t: &TestRoot, runtime: &str) {
    for _ in 0..100 {
        let out = t.run(&["remove", runtime]);
        if code(&out) == 0 {
            return;
        }
        assert!(
            text(&out.stderr).contains("cleaned by `runseal gc`"),
            "{}",
            text(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("gc kept {runtime} locked for 2 s");
}

#[test]
fn gc_raced_against_seals_and_runs_removes_nothing_in_use() {
    let t = sealtest!();
    for runtime in ["python-3.11", "node-20"] {
        t.setup(runtime);
        seal(&t, runtime);
    }
    let stop = AtomicBool::new(false);
    let (gcs, freed) = std::thread::scope(|scope| {
        let collector = scope.spawn(|| {
            let (mut count, mut freed) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                freed += u(&gc(&t, &[])["entries"]);
                count += 1;
            }
            (count, freed)
        });
        let jobs = scope.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                runs(&t, "python-3.11");
                n += 1;
            }
            n
        });
        // Each round turns node's own files into garbage and seals them back while gc
        // removes garbage: the seal links entries gc is about to remove.
        for _ in 0..3 {
            removed_despite_gc(&t, "node-20");
            t.setup("node-20");
            seal(&t, "node-20");
            runs(&t, "node-20");
        }
        stop.store(true, Ordering::Relaxed);
        let done = collector.join().unwrap();
        assert!(jobs.join().unwrap() > 0);
        done
    });
    eprintln!("{gcs} gc runs removed {freed} entries meanwhile");
    assert!(
        gcs >= 3 && freed > 0,
        "gc did not run alongside: {gcs} runs, {freed}"
    );
    for runtime in ["python-3.11", "node-20"] {
        verifies(&t, runtime);
        runs(&t, runtime);
    }
    gc(&t, &[]);
    assert_eq!(du(&t)["store"]["unreferenced"], 0);
    for runtime in ["python-3.11", "node-20"] {
        verifies(&t, runtime);
        assert_eq!(seal(&t, runtime)["outcome"], "unchanged", "{runtime}");
    }
}

/// The store is root's alone (0700); `du` as another user still gives each runtime's
/// figures and says that the store's need root.
#[test]
fn du_as_another_user_gives_the_runtimes_and_says_the_store_needs_root() {
    use std::os::unix::process::CommandExt;
    let t = sealtest!();
    t.runtime("plain", &host_yaml(&[Path::new("/usr/bin/busybox")]));
    seal(&t, "plain");
    let as_nobody = |args: &[&str]| {
        let mut command = t.runseal_std();
        command.args(args).uid(65534).gid(65534);
        let out = command.output().unwrap();
        ok(&out, "du as nobody");
        out
    };
    let root = du(&t);
    let nobody = json(&as_nobody(&["--json", "du"]));
    assert_eq!(nobody["store"], Value::Null, "{nobody}");
    assert_eq!(
        nobody["unreadable"],
        serde_json::json!([t.path().join(".runseal-store")])
    );
    assert_eq!(nobody["runtimes"], root["runtimes"]);
    assert_eq!(nobody["logical"], root["logical"]);
    assert!(u(&of(&nobody, "plain")["logical"]) > 500_000, "{nobody}");
    assert_eq!(root["unreadable"], serde_json::json!([]));
    let printed = text(&as_nobody(&["du"]).stdout);
    assert!(printed.contains("need root"), "{printed}");
}
