//! A runtime's author is not trusted, and `runseal seal` runs as root: what the author writes
//! must not bring host secrets into the sealed tree (every job could read them).

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

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
