//! `kill -9` at many moments of a seal: afterwards the runtime is the old one or the new
//! one (validate and verify agree), and the next seal completes it.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::{code, fixture_source, host_yaml, json, text, TestRoot};

const KILLS: u32 = 12;

/// Starts `runseal seal` on `dir` and SIGKILLs it after `delay` if still running; returns
/// whether the kill landed (the seal had not finished).
fn seal_killed_after(t: &TestRoot, dir: &Path, delay: Duration) -> bool {
    let mut child = t
        .runseal_std()
        .args(["seal", dir.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let status = child.wait().unwrap();
    running && std::os::unix::process::ExitStatusExt::signal(&status) == Some(9)
}

/// The i-th of KILLS moments, spread from 0 to 2.5 times a full seal: a seal right after a
/// reset can take longer than the timed one (the deleted tree is flushed too), and the last
/// moments must fall after the end.
fn kill_point(full: Duration, i: u32) -> Duration {
    full * 5 * i / (2 * (KILLS - 1))
}

fn timed_seal(t: &TestRoot, dir: &Path) -> Duration {
    let started = Instant::now();
    let out = t.run(&["seal", dir.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    started.elapsed()
}

fn reset_to_unsealed(dir: &Path, host_yml: &str) {
    for leftover in ["isolated", "isolated.tmp"] {
        let _ = std::fs::remove_dir_all(dir.join(leftover));
    }
    let _ = std::fs::remove_file(dir.join("runtime.yml.original"));
    std::fs::write(dir.join("runtime.yml"), host_yml).unwrap();
}

#[test]
fn sigkill_during_a_first_seal_leaves_the_old_or_the_new_runtime() {
    let t = crate::util::TestRoot::new();
    if !crate::util::require_root("crash::first_seal") {
        return;
    }
    let dir = t.openjdk();
    let host_yml = std::fs::read_to_string(dir.join("runtime.yml")).unwrap();
    let full = timed_seal(&t, &dir);
    let sealed_yml = std::fs::read_to_string(dir.join("runtime.yml")).unwrap();

    let (mut landed, mut saw_old, mut saw_new) = (0, 0, 0);
    for i in 0..KILLS {
        reset_to_unsealed(&dir, &host_yml);
        landed += u32::from(seal_killed_after(&t, &dir, kill_point(full, i)));
        let yml = std::fs::read_to_string(dir.join("runtime.yml")).unwrap();
        let validate = code(&t.run(&["validate", "openjdk-17"]));
        if yml == host_yml {
            saw_old += 1;
            assert_eq!(validate, 1, "kill {i}: old runtime.yml must stay invalid");
        } else {
            saw_new += 1;
            assert_eq!(
                yml, sealed_yml,
                "kill {i}: runtime.yml is neither old nor new"
            );
            assert_eq!(validate, 0, "kill {i}: new runtime.yml must validate");
            let out = t.run(&["verify", "openjdk-17"]);
            assert_eq!(
                code(&out),
                0,
                "kill {i}: new runtime incomplete:\n{}",
                text(&out.stdout)
            );
        }
        let out = t.run(&["seal", "openjdk-17"]);
        assert_eq!(
            code(&out),
            0,
            "kill {i}: next seal failed: {}",
            text(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("runtime.yml")).unwrap(),
            sealed_yml
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("runtime.yml.original")).unwrap(),
            host_yml
        );
        assert!(!dir.join("isolated.tmp").exists());
        assert_eq!(code(&t.run(&["verify", "openjdk-17"])), 0);
    }
    // Which side of the swap the kills fall on depends on the machine's load (on a busy
    // one every kill can land before it); what must hold is that some landed mid-seal, and
    // each left the old runtime or the new one.
    assert!(
        landed > 0,
        "no kill landed mid-seal (old runtime {saw_old} times, new {saw_new})"
    );
}

#[test]
fn sigkill_during_a_reseal_leaves_the_old_or_the_new_tree() {
    let t = crate::util::TestRoot::new();
    if !crate::util::require_root("crash::reseal") {
        return;
    }
    let app = fixture_source(t.path());
    for i in 0..1500 {
        std::fs::write(app.join(format!("share/f{i}")), format!("{i}\n")).unwrap();
    }
    let dir = t.runtime("app", &host_yaml(&[&app]));
    timed_seal(&t, &dir);
    let changing = app.join("share/data.txt");
    let sealed_copy = dir
        .join("isolated")
        .join(changing.strip_prefix("/").unwrap());

    std::fs::write(&changing, "version 1\n").unwrap();
    let full = timed_seal(&t, &dir);
    let (mut landed, mut saw_old, mut saw_new) = (0, 0, 0);
    for i in 0..KILLS {
        let old = std::fs::read_to_string(&changing).unwrap();
        let new = format!("version {}\n", i + 2);
        std::fs::write(&changing, &new).unwrap();
        landed += u32::from(seal_killed_after(&t, &dir, kill_point(full, i)));
        let out = t.run(&["--json", "verify", "app"]);
        assert_eq!(code(&out), 0, "kill {i}: tree is a mix:\n{}", json(&out));
        let now = std::fs::read_to_string(&sealed_copy).unwrap();
        assert!(
            now == old || now == new,
            "kill {i}: sealed copy holds {now:?}"
        );
        saw_old += u32::from(now == old);
        saw_new += u32::from(now == new);
        assert_eq!(
            code(&t.run(&["seal", "app"])),
            0,
            "kill {i}: next seal failed"
        );
        assert_eq!(std::fs::read_to_string(&sealed_copy).unwrap(), new);
        assert!(!dir.join("isolated.tmp").exists());
    }
    // How many kills fall before or after the swap depends on the machine's speed; what
    // must hold is that some did land while a seal ran.
    assert!(
        landed > 0,
        "no kill landed mid-seal (old tree {saw_old} times, new {saw_new})"
    );
}
