//! The closure is computed as root from trees a runtime's author may own: nothing the author
//! puts there, or swaps in while the seal runs, may bring a file into the sealed tree that
//! no unprivileged host user could read, nor stall the seal.

use std::os::unix::fs::{chown, lchown, symlink};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{code, fixture_source, host_yaml, set_mode, text, TestRoot};

/// The runtime author: an unprivileged host user.
const AUTHOR: u32 = 1000;

/// `runseal seal DIR EXTRA...`, failing the test if it has not finished within a minute
/// (it is killed then, so a regression fails instead of hanging the suite).
fn seal_within_a_minute(t: &TestRoot, dir: &Path, extra: &[&str]) -> Output {
    let mut command = t.runseal_std();
    command
        .arg("seal")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = t.spawn(command);
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the seal of {} hung for a minute", dir.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A dir of the author's under the test root.
fn author_dir(t: &TestRoot, name: &str) -> PathBuf {
    let dir = t.path().join("author").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for d in [t.path().join("author"), dir.clone()] {
        chown(&d, Some(AUTHOR), Some(AUTHOR)).unwrap();
    }
    dir
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .args(["-m", "0755"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
    chown(path, Some(AUTHOR), Some(AUTHOR)).unwrap();
}

/// A runtime.yml mounting `app` at its own path, with `environment` lines added.
fn app_yaml(app: &Path, environment: &str) -> String {
    format!(
        "name: fixture\nlanguage: none\nversion: \"1.0\"\nmounts:\n  - source: {app}\n    \
         target: {app}\n    readonly: true\nenvironment:\n  PATH: /usr/bin:/bin\n{environment}",
        app = app.display()
    )
}

// --- a FIFO where the closure reads -----------------------------------------------------------

/// The loader's search opens each candidate library to read its ELF header. A FIFO the
/// author names as one (in `LD_LIBRARY_PATH`, or in an ELF's `DT_RUNPATH`) once made root's
/// seal wait forever; now it is skipped and the search goes on to the host's library.
#[test]
fn a_fifo_among_the_library_candidates_does_not_hang_the_seal() {
    let t = sealtest!();
    let app = t.path().join("sources/app");
    std::fs::create_dir_all(app.join("bin")).unwrap();
    std::fs::copy("/bin/true", app.join("bin/true")).unwrap();
    let lib = author_dir(&t, "lib");
    mkfifo(&lib.join("libc.so.6"));
    let environment = format!("  LD_LIBRARY_PATH: {}\n", lib.display());
    let dir = t.runtime("fifo-env", &app_yaml(&app, &environment));
    let out = seal_within_a_minute(&t, &dir, &[]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(dir
        .join("isolated/usr/lib/x86_64-linux-gnu/libc.so.6")
        .is_file());

    let c = t.path().join("main.c");
    std::fs::write(&c, "int main(void) { return 0; }\n").unwrap();
    let status = std::process::Command::new("cc")
        .arg(format!("-Wl,--enable-new-dtags,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(app.join("bin/main"))
        .arg(&c)
        .status()
        .unwrap();
    assert!(status.success());
    let dir = t.runtime("fifo-runpath", &app_yaml(&app, ""));
    let out = seal_within_a_minute(&t, &dir, &[]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
}

// --- a remapped mount over a dir no job may enter ---------------------------------------------

/// Root's `x/hidden` (0700) holds a world-readable key; the author's tree, mounted on
/// `x/hidden`, holds a link to that key. In the job the link leads into the author's tree;
/// the seal once copied the host's key there instead, and every job could read it.
#[test]
fn a_mount_remapped_over_a_closed_dir_never_brings_in_what_it_hides() {
    let t = sealtest!();
    let hidden = t.path().join("x/hidden");
    std::fs::create_dir_all(hidden.join("pub")).unwrap();
    std::fs::write(hidden.join("key"), "host key\n").unwrap();
    std::fs::write(hidden.join("pub/file"), "behind a closed door\n").unwrap();
    set_mode(&hidden, 0o700);
    let src = author_dir(&t, "src");
    symlink(hidden.join("key"), src.join("lnk")).unwrap();
    lchown(src.join("lnk"), Some(AUTHOR), Some(AUTHOR)).unwrap();
    let yaml = |source: &Path, target: &Path| {
        format!(
            "name: remap\nlanguage: none\nversion: \"1.0\"\nmounts:\n  - source: {}\n    \
             target: {}\n    readonly: true\n",
            source.display(),
            target.display()
        )
    };
    let dir = t.runtime("remap", &yaml(&src, &hidden));
    // The author owning `src` is refused on its own unless allowed (see below).
    let out = seal_within_a_minute(&t, &dir, &["--allow-untrusted-dir"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let sealed = dir.join("isolated").join(hidden.strip_prefix("/").unwrap());
    assert!(sealed.join("lnk").is_symlink());
    assert!(
        !sealed.join("key").exists(),
        "the host's key was sealed under the author's mount"
    );
    let out = t.run(&["verify", dir.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));

    // Mounted elsewhere, a tree behind the closed dir is refused: its own parents are
    // nowhere in the sealed tree, yet no unprivileged host user could read it.
    let dir = t.runtime("behind", &yaml(&hidden.join("pub"), Path::new("/opt/pub")));
    refused(
        &t,
        &dir,
        &[&format!(
            "{}: is a directory that not everyone may pass through (mode 700)",
            hidden.display()
        )],
    );
}

// --- dirs someone but root can change -------------------------------------------------------

/// The race: the author swaps `src2/sub` (a dir) with `stash/sub` (a symlink to a secret
/// dir, `/root/...` even) in a loop of renameat2(RENAME_EXCHANGE) while root seals `src2`;
/// walkdir opens subdirectories by path and descended through the symlink, so the checks
/// saw the author's paths and the copy the secret. Only a dir someone but root can change
/// can be swapped: such a dir in the closure, or on the way to it, is refused.
#[test]
fn a_dir_in_the_closure_someone_but_root_can_change_is_refused_unless_allowed() {
    let t = sealtest!();
    let src2 = author_dir(&t, "src2");
    std::fs::create_dir(src2.join("sub")).unwrap();
    std::fs::write(src2.join("sub/file"), "the author's\n").unwrap();
    let dir = t.runtime("author-tree", &app_yaml(&src2, ""));
    refused(
        &t,
        &dir,
        &[
            &format!(
                "{}: is owned by uid {AUTHOR}, not root",
                src2.parent().unwrap().display()
            ),
            "so its owner could swap what the seal reads through it for a symlink",
            &format!("reached as mounts[0] ({})", src2.display()),
            "`--allow-untrusted-dir` seals it anyway",
        ],
    );
    let out = seal_within_a_minute(&t, &dir, &["--allow-untrusted-dir"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));

    // Root's tree with a dir its group may write.
    let app = fixture_source(t.path());
    set_mode(&app.join("share"), 0o775);
    let dir = t.runtime("group-writable", &host_yaml(&[&app]));
    refused(
        &t,
        &dir,
        &[&format!(
            "{}/share: is writable by its group or others (mode 775)",
            app.display()
        )],
    );
    set_mode(&app.join("share"), 0o755);

    // A dir on the way to a source: anyone could rename `sources` itself away.
    set_mode(&t.path().join("sources"), 0o777);
    refused(
        &t,
        &dir,
        &[&format!(
            "{}/sources: is writable by its group or others (mode 777)",
            t.path().display()
        )],
    );
    set_mode(&t.path().join("sources"), 0o755);
    let out = seal_within_a_minute(&t, &dir, &[]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
}

/// `seal DIR` fails (exit 1) naming each of `needles`, and writes no sealed tree.
fn refused(t: &TestRoot, dir: &Path, needles: &[&str]) {
    let out = seal_within_a_minute(t, dir, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 1, "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    }
    assert!(!dir.join("isolated").exists());
}
