//! A runtime's author is not trusted, and `runseal seal` runs as root: what the author writes
//! must neither bring host secrets into the sealed tree (every job could read them), nor
//! redirect a root write, nor leave a sealed tree that differs from its manifest.

use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::util::{code, fixture_source, host_yaml, json, set_mode, snapshot, text, TestRoot};

/// Runs `seal DIR EXTRA...` expecting exit 1 with every one of `needles` in stderr, and
/// checks the runtime dir is exactly as before.
fn refused(t: &TestRoot, dir: &Path, extra: &[&str], needles: &[&str]) {
    let before = snapshot(dir);
    let mut args = vec!["seal", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = t.run(&args);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 1, "stderr: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        snapshot(dir),
        before,
        "a refused seal wrote into the runtime dir"
    );
}

fn sealed(t: &TestRoot, dir: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json", "seal", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = t.run(&args);
    assert_eq!(code(&out), 0, "seal: {}", text(&out.stderr));
    json(&out)
}

fn verified(t: &TestRoot, dir: &Path) {
    let out = t.run(&["--json", "verify", dir.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "verify: {}", text(&out.stdout));
}

/// A root-only file outside every runtime.
fn secret(t: &TestRoot, name: &str) -> PathBuf {
    let dir = t.path().join("private");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, "root's secret\n").unwrap();
    set_mode(&path, 0o600);
    path
}

fn run_ok(cmd: &mut std::process::Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
}

// --- item 2: host secrets -------------------------------------------------------------------

#[test]
fn a_link_to_a_file_not_everyone_may_read_is_refused_with_the_chain_to_it() {
    let t = sealtest!();
    let app = fixture_source(t.path());
    symlink("/etc/shadow", app.join("share/passwords")).unwrap();
    let dir = t.runtime("shadow", &host_yaml(&[&app]));
    let chain = format!(
        "reached as target of symlink {app}/share/passwords <- mounts[0] ({app})",
        app = app.display()
    );
    refused(
        &t,
        &dir,
        &[],
        &["/etc/shadow: is not world-readable (mode 640)", &chain],
    );

    // A link to a link to a secret of the fixture's own, then let through by the operator.
    let private = secret(&t, "token");
    symlink(&private, app.join("share/hop")).unwrap();
    std::fs::remove_file(app.join("share/passwords")).unwrap();
    symlink("hop", app.join("share/passwords")).unwrap();
    let dir = t.runtime("token", &host_yaml(&[&app]));
    refused(
        &t,
        &dir,
        &[],
        &[&format!(
            "{}: is not world-readable (mode 600)",
            private.display()
        )],
    );
    sealed(&t, &dir, &["--allow-path", private.to_str().unwrap()]);
    assert!(dir
        .join("isolated")
        .join(private.strip_prefix("/").unwrap())
        .is_file());
}

#[test]
fn an_elf_interpreter_or_a_shebang_naming_a_root_only_file_is_refused() {
    let t = sealtest!();
    let app = fixture_source(t.path());
    let loader = secret(&t, "ld.so");
    std::fs::copy("/lib64/ld-linux-x86-64.so.2", &loader).unwrap();
    set_mode(&loader, 0o700);
    let c = t.path().join("main.c");
    std::fs::write(&c, "int main(void) { return 0; }\n").unwrap();
    run_ok(
        std::process::Command::new("cc")
            .arg(format!("-Wl,--dynamic-linker={}", loader.display()))
            .arg("-o")
            .arg(app.join("bin/x"))
            .arg(&c),
    );
    let dir = t.runtime("interp", &host_yaml(&[&app]));
    refused(
        &t,
        &dir,
        &[],
        &[
            &format!("{}: is not world-readable (mode 700)", loader.display()),
            &format!(
                "reached as ELF interpreter of {}/bin/x <- mounts[0]",
                app.display()
            ),
        ],
    );

    std::fs::remove_file(app.join("bin/x")).unwrap();
    let interpreter = secret(&t, "interpreter");
    std::fs::write(
        app.join("bin/tool"),
        format!("#!{}\n", interpreter.display()),
    )
    .unwrap();
    set_mode(&app.join("bin/tool"), 0o755);
    let dir = t.runtime("shebang", &host_yaml(&[&app]));
    refused(
        &t,
        &dir,
        &[],
        &[
            &format!("{}: is not world-readable", interpreter.display()),
            &format!(
                "reached as script interpreter of {}/bin/tool",
                app.display()
            ),
        ],
    );
}

#[test]
fn proc_root_and_other_host_state_are_refused_as_sources_and_as_link_targets() {
    let t = sealtest!();
    let dir = t.runtime(
        "environ",
        "mounts:\n- {source: proc/self/environ, target: /opt/environ, readonly: true}\n",
    );
    refused(
        &t,
        &dir,
        &[],
        &[
            "/environ: is under /proc",
            "reached as mounts[0] (/proc/self/environ)",
        ],
    );

    let app = fixture_source(t.path());
    symlink("/proc/self/environ", app.join("share/env")).unwrap();
    let dir = t.runtime("env-link", &host_yaml(&[&app]));
    refused(
        &t,
        &dir,
        &[],
        &["/proc: is under /proc", "target of symlink"],
    );

    std::fs::remove_file(app.join("share/env")).unwrap();
    symlink("/root", app.join("share/home")).unwrap();
    let dir = t.runtime("root-link", &host_yaml(&[&app]));
    refused(&t, &dir, &[], &["/root: is under /root"]);
}

#[test]
fn a_directory_not_everyone_may_enter_is_refused_with_its_mode() {
    let t = sealtest!();
    let app = fixture_source(t.path());
    std::fs::create_dir(app.join("keys")).unwrap();
    std::fs::write(app.join("keys/readable"), "but behind a closed door\n").unwrap();
    set_mode(&app.join("keys"), 0o700);
    let dir = t.runtime("closed", &host_yaml(&[&app]));
    refused(
        &t,
        &dir,
        &[],
        &[&format!(
            "{}/keys: is a directory that not everyone may list and enter (mode 700)",
            app.display()
        )],
    );
    // Enterable but not listable: its listing would still be copied whole.
    set_mode(&app.join("keys"), 0o711);
    refused(&t, &dir, &[], &["(mode 711)"]);
}

// --- item 3: writes the author can redirect -------------------------------------------------

/// Plants a link to `victim` at `name` in `dir`, as fast as it can, until stopped: what an
/// author who can write the runtime dir can do while root seals it.
struct Planter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Planter {
    fn start(dir: &Path, name: &str, victim: &Path) -> Planter {
        let stop = Arc::new(AtomicBool::new(false));
        let (name, victim, flag) = (dir.join(name), victim.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut planted = 0;
            while !flag.load(Ordering::Relaxed) {
                planted += u64::from(symlink(&victim, &name).is_ok());
            }
            planted
        });
        Planter {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn links_planted_at_the_temporary_names_during_a_seal_never_redirect_a_write() {
    let t = sealtest!();
    let app = fixture_source(t.path());
    let host_yml = host_yaml(&[&app]);
    let dir = t.runtime("planted", &host_yml);
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let victim = secret(&t, "victim");

    let names = [
        "runtime.yml.original.tmp",
        "runtime.yml.tmp",
        "isolated.tmp/.runseal-manifest.json.tmp",
    ];
    for name in names {
        for leftover in ["isolated", "isolated.prev", "runtime.yml.original"] {
            let _ = std::fs::remove_dir_all(dir.join(leftover));
            let _ = std::fs::remove_file(dir.join(leftover));
        }
        std::fs::write(dir.join("runtime.yml"), &host_yml).unwrap();
        let planter = Planter::start(&dir, name, &victim);
        let out = t.run(&["seal", dir.to_str().unwrap(), "--allow-untrusted-dir"]);
        let planted = planter.stop();
        let stderr = text(&out.stderr);
        assert!(planted > 0, "the planter never got a link in at {name}");
        assert!(
            code(&out) == 0 || stderr.contains(&format!("{name}: appeared while runseal")),
            "{stderr}"
        );
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "root's secret\n",
            "a seal wrote through a link planted at {name}"
        );
    }
}

#[test]
fn a_runtime_dir_or_parent_others_can_write_is_refused_unless_allowed() {
    let t = sealtest!();
    let app = fixture_source(t.path());
    let dir = t.runtime("author", &host_yaml(&[&app]));
    std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
    refused(
        &t,
        &dir,
        &[],
        &[
            &format!("{}: refusing to seal: it {}", dir.display(), dir.display()),
            "is owned by uid 65534, not root",
            "--allow-untrusted-dir",
        ],
    );
    std::os::unix::fs::chown(&dir, Some(0), None).unwrap();

    set_mode(&dir, 0o777);
    refused(
        &t,
        &dir,
        &[],
        &["is writable by its group or others (mode 777)"],
    );
    set_mode(&dir, 0o755);

    set_mode(t.path(), 0o775);
    refused(
        &t,
        &dir,
        &[],
        &[&format!(
            "its parent {} is writable by its group or others (mode 775)",
            t.path().display()
        )],
    );
    sealed(&t, &dir, &["--allow-untrusted-dir"]);
    set_mode(t.path(), 0o755);
    verified(&t, &dir);
}

#[test]
fn links_left_at_the_temporary_names_by_a_downloaded_runtime_are_removed_not_followed() {
    let t = sealtest!();
    let app = fixture_source(t.path());
    let dir = t.runtime("downloaded", &host_yaml(&[&app]));
    let victim = secret(&t, "victim");
    let victim_dir = t.path().join("private");
    for name in ["runtime.yml.tmp", "runtime.yml.original.tmp"] {
        symlink(&victim, dir.join(name)).unwrap();
    }
    symlink(&victim_dir, dir.join("isolated.tmp")).unwrap();
    symlink(&victim_dir, dir.join("isolated.prev")).unwrap();
    sealed(&t, &dir, &[]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's secret\n");
    assert_eq!(std::fs::read_dir(&victim_dir).unwrap().count(), 1);
    assert!(!dir.join("isolated.tmp").exists() && !dir.join("isolated.prev").exists());
    verified(&t, &dir);

    // A sealed runtime whose kept original is a link: read through it, it would make root
    // seal what a file the author cannot read says.
    std::fs::remove_file(dir.join("runtime.yml.original")).unwrap();
    symlink(&victim, dir.join("runtime.yml.original")).unwrap();
    refused(&t, &dir, &[], &["runtime.yml.original: is a symlink"]);
}

// --- item 10: failed seals, torn copies, tampered copies ------------------------------------

/// A tmpfs of `size` at `path`, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        run_ok(std::process::Command::new("mount").args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755"),
            "tmpfs",
            path.to_str().unwrap(),
        ]));
        SmallDisk(path.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_seal_that_runs_out_of_space_removes_its_staging_tree() {
    let t = sealtest!();
    let app = fixture_source(t.path());
    // Room for the fixture's closure (libc is 2 MB), not for 16 MB more.
    let disk = SmallDisk::mount(&t.path().join("small"), "8m");
    let dir = disk.0.join("app");
    std::fs::create_dir(&dir).unwrap();
    let host_yml = host_yaml(&[&app]);
    std::fs::write(dir.join("runtime.yml"), &host_yml).unwrap();
    sealed(&t, &dir, &[]);

    // A re-seal that needs more than the disk holds fails and leaves the old tree as it was.
    std::fs::write(app.join("share/big"), vec![7u8; 16 << 20]).unwrap();
    let before = snapshot(&dir.join("isolated"));
    let out = t.run(&["seal", dir.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 2, "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(
        !dir.join("isolated.tmp").exists(),
        "the failed seal left isolated.tmp"
    );
    assert_eq!(snapshot(&dir.join("isolated")), before);
    verified(&t, &dir);

    // The same for a first seal: nothing but the kept original is left.
    std::fs::remove_dir_all(dir.join("isolated")).unwrap();
    std::fs::remove_file(dir.join("runtime.yml.original")).unwrap();
    std::fs::write(dir.join("runtime.yml"), &host_yml).unwrap();
    let out = t.run(&["seal", dir.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(!dir.join("isolated.tmp").exists() && !dir.join("isolated").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("runtime.yml")).unwrap(),
        host_yml
    );
}

/// Rewrites `path` in place with `bytes` (same length) and puts its mtime back, as someone
/// hiding a change from a size-and-mtime check would.
fn tamper_keeping_size_and_mtime(path: &Path, bytes: &[u8]) {
    let meta = std::fs::metadata(path).unwrap();
    assert_eq!(meta.len(), bytes.len() as u64);
    set_mode(path, 0o644);
    std::fs::write(path, bytes).unwrap();
    set_mode(path, meta.mode() & 0o7777);
    let mtime = rustix::fs::Timespec {
        tv_sec: meta.mtime(),
        tv_nsec: meta.mtime_nsec(),
    };
    let times = rustix::fs::Timestamps {
        last_access: mtime,
        last_modification: mtime,
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::empty()).unwrap();
    let now = std::fs::metadata(path).unwrap();
    assert_eq!(
        (now.len(), now.mtime(), now.mtime_nsec()),
        (meta.len(), meta.mtime(), meta.mtime_nsec())
    );
}

#[test]
fn a_sealed_file_rewritten_in_place_keeping_size_and_mtime_is_copied_again() {
    let t = sealtest!();
    let app = fixture_source(t.path());
    let dir = t.runtime("tampered", &host_yaml(&[&app]));
    sealed(&t, &dir, &[]);
    let copy = |name: &str| {
        dir.join("isolated")
            .join(app.strip_prefix("/").unwrap())
            .join(name)
    };

    // Nothing else changed: the seal must not call the tree up to date.
    tamper_keeping_size_and_mtime(&copy("share/data.txt"), b"DATA\n");
    let report = sealed(&t, &dir, &[]);
    assert_eq!(report["outcome"], "sealed");
    assert_eq!(std::fs::read(copy("share/data.txt")).unwrap(), b"data\n");
    verified(&t, &dir);

    // Another source changed too: the rebuilt tree must not reuse the tampered copy.
    tamper_keeping_size_and_mtime(&copy("share/data.txt"), b"DATA\n");
    std::fs::write(app.join("bin/hello"), "#!/bin/sh\necho hello again\n").unwrap();
    let report = sealed(&t, &dir, &[]);
    assert_eq!(report["outcome"], "sealed");
    assert_eq!(report["copied_files"], 2, "{report:#}");
    assert_eq!(std::fs::read(copy("share/data.txt")).unwrap(), b"data\n");
    verified(&t, &dir);
}

#[test]
fn a_manifest_of_format_1_without_copy_stamps_still_loads_and_is_resealed() {
    let t = sealtest!();
    let app = fixture_source(t.path());
    let dir = t.runtime("old-manifest", &host_yaml(&[&app]));
    sealed(&t, &dir, &[]);
    let path = dir.join("isolated/.runseal-manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["format"] = 1.into();
    for entry in manifest["entries"].as_object_mut().unwrap().values_mut() {
        entry.as_object_mut().unwrap().remove("copy");
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    verified(&t, &dir);
    let report = sealed(&t, &dir, &[]);
    assert_eq!(report["outcome"], "sealed");
    assert_eq!(report["reused_files"], 0);
    verified(&t, &dir);
}
