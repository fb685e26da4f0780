//! Attacks a hostile job made on the host (issue 7), each in its original form and a
//! variant: kernel interfaces past the seccomp filter, setuid files left for the host.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::util::{code, text, TestRoot};

/// Runs `./probe ARGS` in a job on the sealed OpenJDK runtime with a work dir holding the
/// probe; returns the probe's report line and the job's exit code.
fn probe(t: &TestRoot, work: &Path, args: &[&str]) -> (String, i32) {
    let mut command = vec!["./probe"];
    command.extend_from_slice(args);
    let out = t.job(&["--workdir", work.to_str().unwrap()], &command);
    (
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
        code(&out),
    )
}

fn assert_refused(report: &(String, i32), errno: &str, what: &str) {
    assert_eq!(report.1, 0, "{what} was not refused: {}", report.0);
    assert!(
        report.0.contains(&format!("errno={errno} ")),
        "{what}: expected errno {errno}: {}",
        report.0
    );
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn io_uring_is_refused_in_jobs() {
    let t = sealtest!();
    t.sealed_openjdk();
    let work = t.workdir_with_probe();
    assert_refused(&probe(&t, &work, &["io_uring"]), "1", "io_uring_setup");
    assert_refused(
        &probe(&t, &work, &["io_uring-register"]),
        "1",
        "io_uring_register",
    );
}

#[test]
fn a_job_cannot_make_a_setuid_or_setgid_file() {
    let t = sealtest!();
    t.sealed_openjdk();
    let work = t.workdir_with_probe();
    let plain = work.join("plain");
    std::fs::write(&plain, "x").unwrap();
    crate::util::set_mode(&plain, 0o755);
    for (check, target) in [
        ("chmod-suid", "plain"),
        ("fchmodat2-suid", "plain"),
        ("open-suid", "created"),
        ("mknod-suid", "made-by-mknod"),
        ("mkdir-sgid", "sgid-dir"),
    ] {
        assert_refused(&probe(&t, &work, &[check, target]), "1", check);
    }
    assert_eq!(mode_of(&plain), 0o755);
    for absent in ["created", "made-by-mknod", "sgid-dir"] {
        assert!(!work.join(absent).exists(), "{absent} was created");
    }

    // The same through the userland, in /work and in /tmp.
    let out = t.job(
        &["--workdir", work.to_str().unwrap()],
        &[
            "sh",
            "-c",
            "chmod u+s plain || chmod g+s plain || echo refused",
        ],
    );
    assert_eq!(text(&out.stdout), "refused\n", "{}", text(&out.stderr));
    assert_eq!(mode_of(&plain), 0o755);
    let out = t.job(
        &[],
        &[
            "sh",
            "-c",
            "touch /tmp/f && chmod 4755 /tmp/f; ls -l /tmp/f",
        ],
    );
    assert!(
        text(&out.stdout).starts_with("-rw"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // Plain modes still work.
    let out = t.job(
        &["--workdir", work.to_str().unwrap()],
        &["sh", "-c", "chmod 700 plain && mkdir -m 755 d && echo ok"],
    );
    assert_eq!(text(&out.stdout), "ok\n", "{}", text(&out.stderr));
    assert_eq!(mode_of(&plain), 0o700);
}
