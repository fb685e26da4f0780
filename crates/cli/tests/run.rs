//! `runseal run`: the job's whole world is the sealed runtime.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::util::{code, text};

fn manifest_paths(dir: &Path) -> BTreeSet<PathBuf> {
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("isolated/.runseal-manifest.json")).unwrap(),
    )
    .unwrap();
    manifest["entries"]
        .as_object()
        .unwrap()
        .keys()
        .map(PathBuf::from)
        .collect()
}

#[test]
fn the_original_designs_three_checks_hold() {
    let t = sealtest!();
    let dir = t.sealed_openjdk();

    let out = t.job(&[], &["find", "/usr", "-name", "*.so"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let sealed = manifest_paths(&dir);
    let listed: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert!(
        listed.iter().any(|p| p.ends_with("/libjli.so")),
        "{listed:?}"
    );
    for path in &listed {
        assert!(
            sealed.contains(Path::new(path)),
            "{path} is visible but not sealed"
        );
    }

    let out = t.job(&[], &["ls", "-a", "/usr/../../../"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let names: BTreeSet<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let expected: BTreeSet<&str> = [
        ".", "..", "bin", "dev", "etc", "lib", "lib64", "proc", "tmp", "usr",
    ]
    .into();
    assert_eq!(names, expected, "the job root is not exactly the runtime's");

    let out = t.job(&[], &["java", "-version"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("openjdk version \"17."));
}

#[test]
fn find_xdev_lists_only_runtime_and_sandbox_files() {
    let t = sealtest!();
    let dir = t.sealed_openjdk();
    let out = t.job(&[], &["find", "/", "-xdev"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let root_entries: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    let expected: Vec<&str> = vec![
        "/", "/tmp", "/dev", "/proc", "/usr", "/lib64", "/lib", "/etc", "/bin",
    ];
    let mut got = root_entries.clone();
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "the root tmpfs holds something else");
    let out = t.job(&[], &["sh", "-c", "find /usr /etc -xdev"]);
    let sealed = manifest_paths(&dir);
    // The sandbox's own files for the job's user and host name, laid over the sealed /etc.
    let sandbox_files = ["/etc/passwd", "/etc/group", "/etc/hosts"];
    let listed = text(&out.stdout);
    for path in listed.lines() {
        assert!(
            sealed.contains(Path::new(path)) || sandbox_files.contains(&path),
            "{path} is in the job but not in the manifest"
        );
    }
    for file in sandbox_files {
        assert!(listed.lines().any(|l| l == file), "{file}: {listed}");
    }
}

#[test]
fn no_host_file_is_reachable_by_any_path() {
    let t = sealtest!();
    let dir = t.sealed_openjdk();
    let secret_dir = tempfile::Builder::new()
        .prefix("runseal-host-only")
        .tempdir_in("/var/tmp")
        .unwrap();
    let secret = secret_dir.path().join("secret");
    std::fs::write(&secret, "host-secret-5f2c").unwrap();
    let host = secret.display().to_string();
    let rel = host.trim_start_matches('/');
    std::os::unix::fs::symlink(&host, dir.join("isolated/usr/share/planted-absolute")).unwrap();
    let climb = format!("{}{rel}", "../".repeat(12));
    std::os::unix::fs::symlink(&climb, dir.join("isolated/usr/share/planted-climbing")).unwrap();
    let work = t.workdir_with_probe();

    let attempts = [
        format!("/proc/1/root/{rel}"),
        format!("/proc/self/root/{rel}"),
        format!("/proc/self/cwd/../../../../{rel}"),
        format!("../../../../../../{rel}"),
        format!("/usr/../../../{rel}"),
        "/usr/share/planted-absolute".to_string(),
        "/usr/share/planted-climbing".to_string(),
        host.clone(),
    ];
    for attempt in &attempts {
        let workdir = work.to_str().unwrap();
        let out = t.job(&["--workdir", workdir], &["cat", attempt]);
        assert_ne!(code(&out), 0, "reading {attempt} worked");
        assert!(
            !text(&out.stdout).contains("host-secret"),
            "{attempt} leaked the host file"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "host-secret-5f2c"
    );
}

#[test]
fn mounts_namespaces_ptrace_and_terminal_injection_are_refused() {
    let t = sealtest!();
    t.sealed_openjdk();
    let work = t.workdir_with_probe();
    let workdir = work.to_str().unwrap();
    for check in [
        vec!["./probe", "mount"],
        vec!["./probe", "unshare"],
        vec!["./probe", "tiocsti"],
        vec!["./probe", "ptrace", "1"],
    ] {
        let out = t.job(&["--workdir", workdir], &check);
        assert_eq!(
            code(&out),
            0,
            "{check:?} was not refused: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("errno=1 "),
            "{check:?}: expected EPERM: {}",
            text(&out.stdout)
        );
    }
    // Each refused by the kernel, not failing for a reason of its own (a missing tool).
    for (shell, refusal) in [
        ("umount /usr", "Operation not permitted"),
        ("mount -o remount,rw /usr", "permission denied"),
        ("unshare -m true", "Operation not permitted"),
        // init is root's and invisible to the job (hidepid); its own namespaces it may open
        // but not enter.
        ("nsenter -t 1 -m true", "No such file or directory"),
        ("nsenter -t $$ -m true", "Operation not permitted"),
    ] {
        let out = t.job(&[], &["sh", "-c", shell]);
        assert_eq!(code(&out), 1, "`{shell}` worked: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(refusal),
            "`{shell}`: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn only_tmp_and_work_are_writable() {
    let t = sealtest!();
    t.sealed_openjdk();
    let work = t.workdir_with_probe();
    let workdir = work.to_str().unwrap();
    for place in [
        "/x",
        "/usr/x",
        "/etc/x",
        "/bin/x",
        "/lib/x",
        "/dev/x",
        "/proc/sys/kernel/hostname",
    ] {
        let out = t.job(&[], &["sh", "-c", &format!("echo x > {place}")]);
        assert_ne!(code(&out), 0, "writing {place} worked");
        assert!(
            text(&out.stderr).contains("Read-only file system"),
            "{place}: {}",
            text(&out.stderr)
        );
    }
    let out = t.job(
        &["--workdir", workdir],
        &[
            "sh",
            "-c",
            "echo a > /tmp/a && echo b > /work/b && cat /tmp/a",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(work.join("b")).unwrap(), "b\n");
}

#[test]
fn a_setuid_binary_in_the_runtime_gains_nothing() {
    let t = sealtest!();
    let dir = t.sealed_openjdk();
    let planted = dir.join("isolated/usr/bin/suid-probe");
    std::fs::copy(crate::util::probe(), &planted).unwrap();
    crate::util::set_mode(&planted, 0o4755);
    let out = t.job(&[], &["/usr/bin/suid-probe", "caps"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let status = text(&out.stdout);
    for line in [
        "CapInh:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        assert!(status.contains(line), "{line:?} not in {status}");
    }
}

#[test]
fn network_none_shows_only_loopback() {
    let t = sealtest!();
    t.sealed_openjdk();
    let out = t.job(&[], &["cat", "/proc/net/dev"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let interfaces: Vec<String> = text(&out.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|s| s.trim().to_string())
        .collect();
    assert_eq!(interfaces, ["lo"]);
    let out = t.job(&["--network", "host"], &["cat", "/proc/net/dev"]);
    assert!(
        text(&out.stdout).lines().count() > 3,
        "host network should show the host's interfaces"
    );
}

/// Without the host's network a job has a loopback of its own, up: what it serves on
/// 127.0.0.1 it reaches, and what the host serves there it does not. With the host's, it
/// reaches the host's. (The namespace is made beside runseal while it reads the runtime.)
#[test]
fn a_job_has_a_loopback_of_its_own_up_unless_it_has_the_hosts_network() {
    use std::io::{Read, Write};
    let t = sealtest!();
    t.sealed_openjdk();
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut connection in host.incoming().flatten() {
            // The request read whole first: closing with it unread resets the connection,
            // which wget reports after the body.
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n")
                && connection.read(&mut byte).is_ok_and(|n| n == 1)
            {
                request.push(byte[0]);
            }
            let _ = connection.write_all(b"HTTP/1.0 200 OK\r\n\r\nhost\n");
        }
    });
    // (No -T: busybox 1.35's wget crashes with it.)
    let ask_host = format!("busybox wget -q -O - http://127.0.0.1:{port}/ || echo unreached");
    let script = format!(
        "ip -o link show lo; echo job > /tmp/f; busybox httpd -p 127.0.0.1:8080 -h /tmp && \
         busybox wget -q -O - http://127.0.0.1:8080/f; {ask_host}"
    );
    let out = t.job(&[], &["sh", "-c", &script]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert!(lines[0].contains("<LOOPBACK,UP,"), "{lines:?}");
    assert_eq!(lines[1..], ["job", "unreached"], "{lines:?}");
    let out = t.job(&["--network", "host"], &["sh", "-c", &ask_host]);
    assert_eq!(text(&out.stdout), "host\n", "{}", text(&out.stderr));
}

/// runseal keeps the sandbox's init off its own CPU while it works beside it; the job may
/// still run on every CPU runseal may, and on no other.
#[test]
fn a_job_may_run_on_the_cpus_runseal_may() {
    use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};
    let t = sealtest!();
    t.sealed_openjdk();
    let allowed = |status: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|cpus| cpus.trim().to_string())
            .unwrap()
    };
    let job_cpus = || {
        let out = t.job(&[], &["cat", "/proc/self/status"]);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        allowed(&text(&out.stdout))
    };
    let ours = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    assert_eq!(job_cpus(), allowed(&ours));
    // runseal started from this thread, allowed its last CPU only.
    let all = sched_getaffinity(None).unwrap();
    let last = (0..CpuSet::MAX_CPU)
        .rev()
        .find(|&cpu| all.is_set(cpu))
        .unwrap();
    let mut one = CpuSet::new();
    one.set(last);
    sched_setaffinity(None, &one).unwrap();
    let cpus = job_cpus();
    sched_setaffinity(None, &all).unwrap();
    assert_eq!(cpus, last.to_string());
}

#[test]
fn exit_codes_signals_and_streams_pass_through() {
    let t = sealtest!();
    t.sealed_openjdk();
    let out = t.job(&[], &["sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(code(&out), 7);
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    assert_eq!(code(&t.job(&[], &["sh", "-c", "kill -TERM $$"])), 128 + 15);
    let out = t
        .runseal()
        .args(["run", "--runtime", "openjdk-17", "--", "cat"])
        .write_stdin("piped in")
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "piped in");
    let out = t.job(
        &["--env", "GREETING=hi", "--env", "JAVA_HOME=/x"],
        &["sh", "-c", "echo $GREETING $JAVA_HOME $PATH"],
    );
    assert_eq!(
        text(&out.stdout),
        "hi /x /usr/lib/jvm/java-17-openjdk-amd64/bin:/usr/bin:/bin\n"
    );
    let out = t.job(&[], &["no-such-command"]);
    assert_eq!(code(&out), 127, "{}", text(&out.stderr));
}

#[test]
fn an_unsealed_runtime_is_refused_before_anything_runs() {
    let t = sealtest!();
    t.openjdk();
    let out = t.job(&[], &["java", "-version"]);
    assert_eq!(code(&out), 125);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("mounts[0].source: `usr/lib/jvm/java-17-openjdk-amd64` names a host path"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: run `runseal seal"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_mount_whose_target_differs_from_its_source_is_sealed_at_the_target() {
    let t = sealtest!();
    let app = crate::util::fixture_source(t.path());
    let yaml = format!(
        "name: moved\nmounts:\n- {{source: {}, target: /opt/app, readonly: true}}\n\
         environment:\n  PATH: /opt/app/bin:/usr/bin:/bin\n",
        app.display()
    );
    let dir = t.runtime("moved", &yaml);
    let out = t.run(&["seal", "moved"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(dir.join("isolated/opt/app/bin/hello").is_file());
    assert!(!dir
        .join("isolated")
        .join(app.strip_prefix("/").unwrap())
        .exists());
    assert_eq!(code(&t.run(&["verify", "moved"])), 0);
    let out = t.run(&["run", "--runtime", "moved", "--", "hello"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
}

#[test]
fn verify_says_plainly_that_an_unsealed_runtime_is_not_sealed() {
    let t = sealtest!();
    t.openjdk();
    let out = t.run(&["verify", "openjdk-17"]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("the runtime is not sealed"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_job_running_during_a_reseal_keeps_its_files() {
    let t = sealtest!();
    let dir = t.sealed_openjdk();
    let touched = dir.join("isolated/etc/nsswitch.conf");
    let content = std::fs::read(&touched).unwrap();
    std::fs::write(&touched, content).unwrap();
    let job = t
        .runseal_std()
        .args(["run", "--runtime", "openjdk-17", "--", "sh", "-c"])
        .arg("sleep 1; cat /etc/java-17-openjdk/net.properties >/dev/null && ls /usr/lib/jvm/java-17-openjdk-amd64/lib/libjli.so")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = t.run(&["--json", "seal", "openjdk-17"]);
    assert_eq!(
        crate::util::json(&out)["outcome"],
        "sealed",
        "the re-seal must swap a new tree in"
    );
    let out = job.wait_with_output().unwrap();
    assert_eq!(
        code(&out),
        0,
        "the running job lost its files: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).ends_with("libjli.so\n"));
    assert!(dir.join("isolated.prev").is_dir());
    assert_eq!(code(&t.run(&["verify", "openjdk-17"])), 0);
}

#[test]
fn proc_files_showing_host_state_read_as_empty_and_proc_sys_is_read_only() {
    let t = sealtest!();
    t.sealed_openjdk();
    // The host's own /proc/keys and /proc/timer_list hold something; in a job they are
    // /dev/null.
    for name in ["keys", "timer_list"] {
        let host = Path::new("/proc").join(name);
        if !host.exists() {
            continue;
        }
        let out = t.job(&[], &["sh", "-c", &format!("wc -c < {}", host.display())]);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "0", "{name} shows host state");
        let out = t.job(&[], &["sh", "-c", "grep ' /proc/' /proc/self/mountinfo"]);
        assert!(
            text(&out.stdout).contains(&format!("/null {} ", host.display())),
            "{}",
            text(&out.stdout)
        );
    }
    let out = t.job(
        &[],
        &["sh", "-c", "echo 1 > /proc/sys/kernel/printk 2>&1; echo $?"],
    );
    assert_ne!(text(&out.stdout).trim(), "0");
}
