//! Attacks on the job root, the job's user, its fds, its work dir and the builder (issue 7,
//! items 1, 4, 5, 6 and 7), each in its reported form and a variant.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::util::{code, text, TestRoot};

/// A runtime that looks sealed (manifest, `isolated/` tree) but whose runtime.yml the
/// author wrote by hand: `/s` from the tree, and a second mount whose target runs through
/// the planted symlink `isolated/s/evil -> host_dir`.
fn hostile_runtime(t: &TestRoot, host_dir: &Path, inner_target: &str) -> PathBuf {
    let dir = t.path().join("hostile");
    std::fs::create_dir_all(dir.join("isolated/s")).unwrap();
    std::fs::create_dir_all(dir.join("isolated/payload")).unwrap();
    std::fs::write(dir.join("isolated/payload/null"), "attacker's bytes\n").unwrap();
    std::fs::write(dir.join("isolated/.runseal-manifest.json"), "{}").unwrap();
    std::os::unix::fs::symlink(host_dir, dir.join("isolated/s/evil")).unwrap();
    std::fs::write(
        dir.join("runtime.yml"),
        format!(
            "name: hostile\nversion: \"1\"\nmounts:\n\
             - {{source: isolated/s, target: /s, readonly: true}}\n\
             - {{source: isolated/payload, target: /s/evil/{inner_target}, readonly: true}}\n"
        ),
    )
    .unwrap();
    dir
}

fn snapshot_dir(dir: &Path) -> Vec<(PathBuf, u64, u64)> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let meta = e.as_ref().unwrap().metadata().unwrap();
            (e.unwrap().path(), meta.ino(), meta.mtime() as u64)
        })
        .collect();
    entries.sort();
    entries
}

#[test]
fn a_mount_through_a_planted_symlink_never_reaches_the_host() {
    let t = sealtest!();
    // The reported form aims at the host's /dev; a scratch dir stands in for it so that a
    // regression cannot damage the machine, and the real /dev/null (what the attack
    // replaced) is checked as well. The rest of /dev is the busy host's, not this test's.
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::create_dir(host.path().join("dev")).unwrap();
    std::fs::write(host.path().join("dev/null"), "").unwrap();
    let null = || {
        std::fs::metadata("/dev/null")
            .map(|m| (m.ino(), m.rdev()))
            .unwrap()
    };
    let before = (snapshot_dir(host.path()), null());
    let dir = hostile_runtime(&t, host.path(), "dev");
    let dir_arg = dir.to_str().unwrap();

    let out = t.run(&["validate", dir_arg]);
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    let report = text(&out.stdout) + &text(&out.stderr);
    assert!(
        report.contains("mounts[1].target") && report.contains("isolated/s/evil"),
        "{report}"
    );

    let out = t.run(&["run", "--runtime", dir_arg, "--", "cat", "/s/evil/dev/null"]);
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("nothing was run"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!((snapshot_dir(host.path()), null()), before);
    assert_eq!(std::fs::read(host.path().join("dev/null")).unwrap(), b"");
}

#[test]
fn a_planted_symlink_cannot_make_root_create_host_paths_or_cover_proc() {
    let t = sealtest!();
    // Variant: the target aims at a path that does not exist yet (root used to create it
    // while a job started) and, through `proc/self/fd`, at the trick that turned later bind
    // sources into the host's root.
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    for inner in ["made/by/root", "proc/self/fd"] {
        let dir = hostile_runtime(&t, host.path(), inner);
        let out = t.run(&["run", "--runtime", dir.to_str().unwrap(), "--", "true"]);
        assert_eq!(code(&out), 125, "{inner}: {}", text(&out.stderr));
        assert_eq!(
            std::fs::read_dir(host.path()).unwrap().count(),
            0,
            "{inner}: something was created on the host"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_hand_written_runtime_yml_over_a_sealed_tree_is_refused() {
    let t = sealtest!();
    let dir = t.sealed_openjdk();
    let yml = dir.join("runtime.yml");
    let sealed = std::fs::read_to_string(&yml).unwrap();
    // Valid by every lexical rule, but not what `seal` writes: a sealed dir mounted
    // elsewhere, and then no manifest at all.
    std::fs::write(&yml, sealed.replacen("target: /etc", "target: /opt/etc", 1)).unwrap();
    let out = t.job(&[], &["true"]);
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not as `runseal seal` writes mounts"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(&yml, &sealed).unwrap();
    assert_eq!(code(&t.job(&[], &["true"])), 0);
    std::fs::remove_file(dir.join("isolated/.runseal-manifest.json")).unwrap();
    let out = t.job(&[], &["true"]);
    assert_eq!(code(&out), 125);
    assert!(
        text(&out.stderr).contains("not sealed by runseal"),
        "{}",
        text(&out.stderr)
    );
}

/// `runseal run` started by a shell that opened the host's /etc as `fd` (no close-on-exec,
/// as `exec 7</etc` does).
fn run_with_inherited_fd(t: &TestRoot, fd: i32, command: &str) -> std::process::Output {
    let runseal = t.runseal_std();
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c")
        .arg(format!("exec {fd}</etc; exec \"$0\" \"$@\""))
        .arg(runseal.get_program())
        .args(runseal.get_args())
        .args(["run", "--runtime", "openjdk-17", "--", "sh", "-c", command]);
    cmd.output().unwrap()
}

#[test]
fn fds_of_the_caller_do_not_reach_the_job() {
    let t = sealtest!();
    t.sealed_openjdk();
    // The reported form: `exec 7</srv; runseal run ... -- cat /proc/self/fd/7/../etc/shadow`;
    // the variant: a high fd, as a daemon's sockets and files are.
    for fd in [7, 251] {
        let probe = format!("ls /proc/self/fd/{fd}/ >/dev/null 2>&1 && echo LEAKED || echo closed");
        let out = run_with_inherited_fd(&t, fd, &probe);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "closed\n", "fd {fd} reached the job");
    }
    let out = run_with_inherited_fd(&t, 7, "ls /proc/self/fd");
    let fds: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    // 0, 1, 2 and the one ls opened to list the dir.
    assert_eq!(fds.len(), 4, "{fds:?}");
}

fn owned_by_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
}

#[test]
fn jobs_run_as_an_unprivileged_user_and_what_they_write_is_theirs() {
    let t = sealtest!();
    t.sealed_openjdk();
    let work = t.path().join("work");
    std::fs::create_dir(&work).unwrap();
    owned_by_nobody(&work);
    let workdir = work.to_str().unwrap();
    let out = t.job(
        &["--workdir", workdir],
        &["sh", "-c", "id -u; id -g; echo x > made; chmod 755 made"],
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "65534\n65534\n");
    let made = std::fs::metadata(work.join("made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (65534, 65534));

    // Variant: --user picks another unprivileged user, which then owns what it writes, and
    // a root-only file in the work dir stays out of its reach.
    std::fs::write(work.join("secret"), "root only\n").unwrap();
    crate::util::set_mode(&work.join("secret"), 0o600);
    std::os::unix::fs::chown(&work, Some(4321), Some(4321)).unwrap();
    let out = t.job(
        &["--workdir", workdir, "--user", "4321:4321"],
        &[
            "sh",
            "-c",
            "id -u; echo y > mine; cat secret || echo denied",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "4321\ndenied\n");
    let mine = std::fs::metadata(work.join("mine")).unwrap();
    assert_eq!((mine.uid(), mine.gid()), (4321, 4321));
}

#[test]
fn a_work_dir_the_job_user_cannot_enter_is_refused_clearly() {
    let t = sealtest!();
    t.sealed_openjdk();
    let work = t.path().join("private");
    std::fs::create_dir(&work).unwrap();
    crate::util::set_mode(&work, 0o700);
    let out = t.job(&["--workdir", work.to_str().unwrap()], &["true"]);
    assert_eq!(code(&out), 125);
    assert!(
        text(&out.stderr).contains("cannot enter it (owner 0:0, mode 700)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_work_dir_reached_through_a_symlink_is_refused() {
    let t = sealtest!();
    t.sealed_openjdk();
    // The reported form: an earlier job planted `link -> /` in its work dir, and a later
    // job's work dir was named through it. The variant: the link is a parent of the path.
    let first = t.path().join("first");
    std::fs::create_dir(&first).unwrap();
    std::os::unix::fs::symlink("/", first.join("link")).unwrap();
    for path in [first.join("link"), first.join("link/var/tmp")] {
        let out = t.job(&["--workdir", path.to_str().unwrap()], &["ls", "/work"]);
        assert_eq!(code(&out), 125, "{}: {}", path.display(), text(&out.stdout));
        assert!(
            text(&out.stderr).contains("crosses a symlink"),
            "{}",
            text(&out.stderr)
        );
    }
    let out = t.job(&["--workdir", "/"], &["ls", "/work"]);
    assert_eq!(code(&out), 125);
    assert!(text(&out.stderr).contains("the host's root directory"));
}

/// Builds with `body` as the setup script (its output comes back on stderr); the script
/// ends by writing a runtime.yml for ROOT/NAME and printing that dir.
fn build(t: &TestRoot, name: &str, body: &str) -> std::process::Output {
    let script = t.path().join(format!("{name}.sh"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{body}\nmkdir -p \"$1/{name}\"\n\
             printf 'name: {name}\\nversion: \"1\"\\nmounts:\\n  - {{source: bin/sh, target: /bin/sh, readonly: true}}\\n' > \"$1/{name}/runtime.yml\"\n\
             echo \"$1/{name}\"\n"
        ),
    )
    .unwrap();
    t.run(&["build", script.to_str().unwrap(), "--profile", "generic"])
}

#[test]
fn a_build_script_keeps_only_what_a_package_manager_needs() {
    let t = sealtest!();
    let before = std::fs::read("/proc/sys/kernel/core_pattern").unwrap();
    // Each attempt is harmless if it succeeds (it writes back what is there), so a
    // regression shows up as a failed assertion, not as a changed host.
    let out = build(
        &t,
        "caps",
        r#"grep -E '^Cap(Eff|Bnd)' /proc/self/status
cat /proc/sys/kernel/core_pattern > /proc/sys/kernel/core_pattern 2>/dev/null; echo "core_pattern=$?"
ip link set dev lo mtu 65536 2>/dev/null; echo "lo=$?""#,
    );
    let probe = text(&out.stderr);
    assert_eq!(code(&out), 0, "{probe}");
    // CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID: bits 0, 1, 3 to 7.
    assert!(probe.contains("CapBnd:\t00000000000000fb"), "{probe}");
    assert!(probe.contains("CapEff:\t00000000000000fb"), "{probe}");
    assert!(
        probe.contains("core_pattern=") && !probe.contains("core_pattern=0"),
        "{probe}"
    );
    // 2: refused by the kernel (RTNETLINK: Operation not permitted), not a missing `ip`.
    assert!(probe.contains("lo=2"), "{probe}");
    assert_eq!(
        std::fs::read("/proc/sys/kernel/core_pattern").unwrap(),
        before
    );
}

#[test]
fn a_build_script_leaves_nothing_on_the_host_but_the_sealed_runtime() {
    let t = sealtest!();
    // Another tenant's runtime beside it, which the script must not see or change.
    let (victim, _) = sealed_fixture(&t);
    let victim_before = crate::util::snapshot(&victim);
    let secret = t.path().join("secret");
    std::fs::write(&secret, "root only\n").unwrap();
    crate::util::set_mode(&secret, 0o600);
    // The reported form: a setuid-root copy of a shell and a world-writable root-owned file
    // left in the runtimes root, and the victim tampered with.
    let out = build(
        &t,
        "evil",
        &format!(
            r#"cp /bin/dash "$1/suid-sh"; chmod 4755 "$1/suid-sh"
mkdir -p "$1/evil"; cp /bin/dash "$1/evil/suid-sh"; chmod 4755 "$1/evil/suid-sh"
echo x > "$1/evil/ww"; chmod 666 "$1/evil/ww"
echo tampered > "$1/gen/isolated/usr/bin/busybox" 2>/dev/null; echo "victim=$?"
ls "$1" | tr '\n' ' ' | sed 's/^/sees=/'; echo
cat {secret} /etc/shadow 2>/dev/null | wc -c | sed 's/^/secret-bytes=/'"#,
            secret = secret.display()
        ),
    );
    let log = text(&out.stderr);
    assert_eq!(code(&out), 0, "{log}");
    assert!(!log.contains("victim=0"), "{log}");
    assert!(
        log.contains("sees=evil "),
        "the script saw other runtimes: {log}"
    );
    assert!(log.contains("secret-bytes=0"), "{log}");
    assert!(
        t.path().join("evil/isolated/bin").exists(),
        "the build sealed nothing"
    );
    assert!(!t.path().join("suid-sh").exists());
    assert!(
        !t.path().join("evil/suid-sh").exists(),
        "only the closure is sealed"
    );
    assert_eq!(crate::util::snapshot(&victim), victim_before);
    for entry in walkdir::WalkDir::new(t.path().join("evil")) {
        let meta = entry.unwrap().metadata().unwrap();
        if !meta.file_type().is_symlink() {
            let mode = meta.mode() & 0o6022;
            assert_eq!(mode, 0, "a setuid or writable-by-others file is left");
        }
    }

    // Variant: a script naming another tenant's runtime, or a path outside the root, as the
    // one it built is refused, and the victim is not resealed from the overlay.
    let script = t.path().join("names-another.sh");
    for named in ["$1/gen", "$1/../elsewhere", "/etc"] {
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho trojan > /usr/bin/busybox\nmkdir -p \"$1/gen\"\n\
                 cp /dev/null \"$1/gen/runtime.yml\"\necho {named}\n"
            ),
        )
        .unwrap();
        let out = t.run(&["build", script.to_str().unwrap()]);
        assert_ne!(code(&out), 0, "{named}: {}", text(&out.stderr));
        assert_eq!(crate::util::snapshot(&victim), victim_before, "{named}");
    }
    let out = build(&t, "gen", "true");
    assert_ne!(code(&out), 0);
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(crate::util::snapshot(&victim), victim_before);
}

/// A runtime of the fixture app with the busybox userland, sealed; and its source dir.
fn sealed_fixture(t: &TestRoot) -> (PathBuf, PathBuf) {
    let source = crate::util::fixture_source(t.path());
    let yaml = crate::util::host_yaml(&[&source]) + "base: busybox\n";
    let dir = t.runtime("gen", &yaml);
    let out = t.run(&["seal", dir.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    (dir, source)
}

/// Starts a job on `gen` that says `started`, waits `secs`, then runs `then`; returns once
/// it has started (and so holds its tree).
fn start_job(t: &TestRoot, secs: u32, then: &str) -> (std::process::Child, impl std::io::BufRead) {
    use std::io::BufRead;
    let mut child = t
        .runseal_std()
        .args(["run", "--runtime", "gen", "--", "sh", "-c"])
        .arg(format!("echo started; sleep {secs}; {then}"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    (child, stdout)
}

fn retired(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("isolated.retired-"))
        .collect()
}

#[test]
fn a_running_job_keeps_its_tree_through_any_number_of_reseals() {
    let t = sealtest!();
    let (dir, source) = sealed_fixture(&t);
    let data = source.join("share/data.txt");
    let (mut job, mut stdout) = start_job(&t, 2, &format!("cat {}", data.display()));
    // The reported form was two back-to-back re-seals; a third is the variant.
    for round in 0..3 {
        std::fs::write(&data, format!("changed {round}\n")).unwrap();
        let out = t.run(&["seal", dir.to_str().unwrap()]);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    }
    assert!(!retired(&dir).is_empty(), "the job's tree was not kept");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(job.wait().unwrap().success());
    assert_eq!(rest, "data\n", "the job lost or changed its tree");
    // Once the job has ended, the next seal that replaces the tree prunes its old trees.
    std::fs::write(&data, "changed again\n").unwrap();
    assert_eq!(code(&t.run(&["seal", dir.to_str().unwrap()])), 0);
    assert_eq!(retired(&dir), Vec::<String>::new());
    let out = t.run(&[
        "run",
        "--runtime",
        "gen",
        "--",
        "cat",
        data.to_str().unwrap(),
    ]);
    assert_eq!(text(&out.stdout), "changed again\n");
}

#[test]
fn a_runtime_is_not_removed_while_a_job_runs_on_it() {
    let t = sealtest!();
    let (dir, _) = sealed_fixture(&t);
    let (mut job, _stdout) = start_job(&t, 2, "ls /usr/bin/busybox");
    let out = t.run(&["remove", "gen"]);
    assert_ne!(code(&out), 0);
    assert!(
        text(&out.stderr).contains("jobs are running on it"),
        "{}",
        text(&out.stderr)
    );
    assert!(dir.join("isolated/usr/bin/busybox").exists());
    assert!(job.wait().unwrap().success());
    // Variant: a job on a tree a re-seal already replaced still holds the runtime.
    let (mut job, _stdout) = start_job(&t, 2, "true");
    std::fs::write(t.path().join("sources/app/share/data.txt"), "new\n").unwrap();
    assert_eq!(code(&t.run(&["seal", "gen"])), 0);
    assert_ne!(code(&t.run(&["remove", "gen"])), 0);
    assert!(job.wait().unwrap().success());
    let out = t.run(&["remove", "gen"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(!dir.exists());
    assert!(!t.path().join(".gen.removing").exists());
}

/// Found in review: a job start waiting for its tree's lock while a removal held it (the
/// dir already renamed to `.NAME.removing`) then started on the tree being deleted. It now
/// sees the dir gone from its name and does not start.
#[test]
fn a_job_waiting_for_a_tree_a_removal_holds_does_not_start_on_it() {
    let t = sealtest!();
    let (dir, _) = sealed_fixture(&t);
    // What `remove` does first: the tree's lock, then the rename.
    let tree = std::fs::File::open(dir.join("isolated")).unwrap();
    rustix::fs::flock(&tree, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let mut job = t.runseal_std();
    job.args(["run", "--runtime"])
        .arg(&dir)
        .args(["--", "true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let job = t.spawn(job);
    // Once the job has the tree open, it is waiting for the lock.
    let fds = std::path::PathBuf::from(format!("/proc/{}/fd", job.id()));
    let tree_path = dir.join("isolated");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !std::fs::read_dir(&fds)
        .into_iter()
        .flatten()
        .flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|to| to == tree_path))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the job never opened its tree"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::fs::rename(&dir, t.path().join(".gen.removing")).unwrap();
    drop(tree);
    let out = job.wait_with_output().unwrap();
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("was removed while the job waited for it"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_build_cannot_answer_to_another_name_or_read_through_a_link_it_planted() {
    let t = sealtest!();
    let (victim, _) = sealed_fixture(&t);
    let victim_before = crate::util::snapshot(&victim);
    // The runtime it makes declares the victim's name: a name squatter.
    let out = build(&t, "squat", "true");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let script = t.path().join("squat2.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nmkdir -p \"$1/squat2\"\n\
         printf 'name: gen\\nversion: \"9\"\\nmounts: []\\n' > \"$1/squat2/runtime.yml\"\n\
         echo \"$1/squat2\"\n",
    )
    .unwrap();
    let out = t.run(&["build", script.to_str().unwrap()]);
    assert_ne!(code(&out), 0);
    assert!(
        text(&out.stderr).contains("names the runtime `gen`, but the build makes `squat2`"),
        "{}",
        text(&out.stderr)
    );
    assert!(!t.path().join("squat2").exists());

    // Its ROOT/NAME is a link to a host dir holding a runtime.yml it cannot read.
    let hidden = t.path().join("hidden");
    std::fs::create_dir(&hidden).unwrap();
    crate::util::set_mode(&hidden, 0o700);
    std::fs::write(
        hidden.join("runtime.yml"),
        "name: leak\nmounts: []\n# DB_PASSWORD=s3cr3t\n",
    )
    .unwrap();
    let script = t.path().join("leak.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nln -s {} \"$1/leak\"\necho \"$1/leak\"\n",
            hidden.display()
        ),
    )
    .unwrap();
    let out = t.run(&["build", script.to_str().unwrap()]);
    assert_ne!(code(&out), 0);
    assert!(!text(&out.stderr).contains("s3cr3t"));
    assert!(!t.path().join("leak").exists());
    assert_eq!(crate::util::snapshot(&victim), victim_before);
}

#[test]
fn a_runtime_dir_its_author_controls_is_never_run() {
    let t = sealtest!();
    // A "sealed-looking" runtime its author made by hand: their own files, an empty
    // manifest, mounts in the sealed form.
    let dir = t.path().join("bob");
    std::fs::create_dir_all(dir.join("isolated/bin")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("isolated/bin/sh")).unwrap();
    std::fs::write(dir.join("isolated/.runseal-manifest.json"), "{}").unwrap();
    std::fs::write(
        dir.join("runtime.yml"),
        "name: bob\nmounts:\n- {source: isolated/bin, target: /bin, readonly: true}\n",
    )
    .unwrap();
    for path in ["", "isolated", "isolated/bin", "isolated/bin/sh"] {
        std::os::unix::fs::chown(dir.join(path), Some(1001), Some(1001)).unwrap();
    }
    let out = t.run(&["run", "--runtime", "bob", "--", "/bin/sh", "-c", "id"]);
    assert_eq!(code(&out), 125, "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("is owned by uid 1001, not root"),
        "{}",
        text(&out.stderr)
    );
    // Variant: the runtime dir is root's, but its tree is not.
    std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
    let out = t.run(&["run", "--runtime", "bob", "--", "/bin/sh", "-c", "id"]);
    assert_eq!(code(&out), 125);
    assert!(
        text(&out.stderr).contains("isolated is owned by uid 1001"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_runtime_yml_that_is_a_link_or_a_fifo_is_not_read() {
    let t = sealtest!();
    let secret = t.path().join("secret.yml");
    std::fs::write(&secret, "name: db-pass-hunter2\nversion: api-key-XYZ\n").unwrap();
    crate::util::set_mode(&secret, 0o600);
    std::fs::create_dir(t.path().join("peek")).unwrap();
    std::os::unix::fs::symlink(&secret, t.path().join("peek/runtime.yml")).unwrap();
    std::fs::create_dir(t.path().join("stall")).unwrap();
    let fifo = t.path().join("stall/runtime.yml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let started = std::time::Instant::now();
    for args in [&["list"][..], &["info", "peek"], &["validate", "peek"]] {
        let out = t.run(args);
        let all = text(&out.stdout) + &text(&out.stderr);
        assert!(
            !all.contains("hunter2") && !all.contains("api-key"),
            "{args:?}: {all}"
        );
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "a FIFO stalled"
    );
}

#[test]
fn a_tree_someone_else_holds_locked_fails_a_job_start_instead_of_hanging_it() {
    let t = sealtest!();
    let (dir, _) = sealed_fixture(&t);
    // Any local user may open the dir and hold its lock, as `flock` does here.
    let mut holder = std::process::Command::new("flock")
        .args(["--no-fork", "-x"])
        .arg(dir.join("isolated"))
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let out = t.run(&["run", "--runtime", "gen", "--", "true"]);
    let waited = started.elapsed();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("stayed locked by another process"),
        "{}",
        text(&out.stderr)
    );
    assert!(waited < std::time::Duration::from_secs(15), "{waited:?}");
    assert_eq!(code(&t.run(&["run", "--runtime", "gen", "--", "true"])), 0);
}
