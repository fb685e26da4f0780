//! Bad input to `runseal seal`: a clear error naming what is wrong, exit 1, and nothing
//! written: runtime.yml untouched, no isolated/, no runtime.yml.original.

use std::path::Path;

use crate::util::{code, fixture_source, host_yaml, json, set_mode, snapshot, text, TestRoot};

/// Runs seal expecting a refusal that mentions `needle`, and checks nothing changed.
fn refused(t: &TestRoot, dir: &Path, needle: &str) {
    let before = snapshot(dir);
    let out = t.run(&["seal", dir.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 1, "stderr: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    assert!(!stderr.contains("panicked"));
    let after = snapshot(dir);
    let changed: Vec<_> = after
        .iter()
        .filter(|(p, v)| before.get(*p) != Some(v))
        .collect();
    assert!(changed.is_empty(), "seal wrote {changed:?}");
    assert!(!dir.join("isolated").exists() && !dir.join("runtime.yml.original").exists());
}

#[test]
fn dotdot_in_a_source_or_target_is_refused() {
    let t = sealtest!();
    let app = fixture_source(t.path());
    let dir = t.runtime(
        "dots",
        &format!(
            "mounts:\n- {{source: {}/../app, target: /app, readonly: true}}\n",
            app.display()
        ),
    );
    refused(&t, &dir, "mounts[0].source");
    let dir = t.runtime(
        "dots2",
        &format!(
            "mounts:\n- {{source: {}, target: /usr/../etc, readonly: true}}\n",
            app.display()
        ),
    );
    refused(
        &t,
        &dir,
        "mounts[0].target: `/usr/../etc` has a `..` component",
    );
}

#[test]
fn a_missing_source_is_named() {
    let t = sealtest!();
    let dir = t.runtime(
        "missing",
        &host_yaml(&[Path::new("/usr/lib/no-such-runtime")]),
    );
    refused(
        &t,
        &dir,
        "/usr/lib/no-such-runtime: does not exist (needed as mounts[0]",
    );
}

#[test]
fn a_symlink_loop_is_bounded_and_an_error() {
    let t = sealtest!();
    let app = fixture_source(t.path());
    std::os::unix::fs::symlink("b", app.join("a")).unwrap();
    std::os::unix::fs::symlink("a", app.join("b")).unwrap();
    let dir = t.runtime("loop", &host_yaml(&[&app]));
    refused(&t, &dir, "symlink loop (more than 40 links followed)");
}

#[test]
fn a_device_node_is_refused() {
    let t = sealtest!();
    let app = fixture_source(t.path());
    let status = std::process::Command::new("mknod")
        .arg(app.join("share/null"))
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(status.success());
    let dir = t.runtime("device", &host_yaml(&[&app]));
    refused(&t, &dir, "share/null: is a character device");
}

#[test]
fn malformed_yaml_is_refused_with_line_and_column() {
    let t = sealtest!();
    let dir = t.runtime(
        "yaml",
        "name: x\nmounts:\n  - source: /usr\n    target: [\n",
    );
    refused(&t, &dir, "runtime.yml: line 4 column");
}

#[test]
fn two_mounts_with_one_target_are_refused() {
    let t = sealtest!();
    let app = fixture_source(t.path());
    let dir = t.runtime(
        "twice",
        &format!(
            "mounts:\n- {{source: {a}, target: /app, readonly: true}}\n\
             - {{source: {a}/bin, target: /app, readonly: true}}\n",
            a = app.display()
        ),
    );
    refused(
        &t,
        &dir,
        "mounts[1].target: `/app` is already the target of mounts[0]",
    );
}

#[test]
fn setuid_and_setgid_bits_do_not_survive_sealing() {
    let t = sealtest!();
    let app = fixture_source(t.path());
    std::fs::write(app.join("bin/tool"), "#!/bin/sh\nid\n").unwrap();
    set_mode(&app.join("bin/tool"), 0o6777);
    // A file its author owns, in a tree root owns.
    std::os::unix::fs::chown(app.join("bin/tool"), Some(1234), Some(1234)).unwrap();
    let dir = t.runtime("setuid", &host_yaml(&[&app]));
    let out = t.run(&["seal", "setuid"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let sealed = dir
        .join("isolated")
        .join(app.strip_prefix("/").unwrap())
        .join("bin/tool");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sealed).unwrap().permissions());
    // Nor write permission for others, nor the author's ownership: a host user could change
    // what jobs run.
    assert_eq!(mode & 0o7777, 0o755, "sealed mode {mode:o}");
    let meta = std::fs::metadata(&sealed).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&meta),
            std::os::unix::fs::MetadataExt::gid(&meta)
        ),
        (0, 0)
    );
    let out = t.run(&["--json", "verify", "setuid"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    assert_eq!(json(&out)["ok"], true);
}

#[test]
fn a_symlink_planted_after_sealing_is_caught_by_verify() {
    let t = sealtest!();
    let app = fixture_source(t.path());
    let dir = t.runtime("planted", &host_yaml(&[&app]));
    assert_eq!(code(&t.run(&["seal", "planted"])), 0);
    assert_eq!(code(&t.run(&["verify", "planted"])), 0);
    let share = dir
        .join("isolated")
        .join(app.strip_prefix("/").unwrap())
        .join("share");
    let depth = share
        .strip_prefix(dir.join("isolated"))
        .unwrap()
        .components()
        .count();
    let escape = format!("{}etc/passwd", "../".repeat(depth + 2));
    std::os::unix::fs::symlink(&escape, share.join("passwd")).unwrap();
    let out = t.run(&["verify", "planted"]);
    assert_eq!(code(&out), 1);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("share/passwd: added"), "{stdout}");
    assert!(
        stdout.contains("share/passwd: symlink climbs out of the tree"),
        "{stdout}"
    );
}

#[test]
fn a_second_seal_waits_for_the_lock_or_fails_with_no_wait() {
    let t = sealtest!();
    let app = fixture_source(t.path());
    let dir = t.runtime("locked", &host_yaml(&[&app]));
    let held = std::fs::File::open(&dir).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let out = t.run(&["seal", "--no-wait", "locked"]);
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("being sealed by another process"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.join("isolated").exists());

    let mut waiting = t.runseal_std().args(["seal", "locked"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "seal did not wait for the lock"
    );
    assert!(!dir.join("isolated").exists());
    drop(held);
    assert!(waiting.wait().unwrap().success());
    assert!(dir.join("isolated").exists());
}
