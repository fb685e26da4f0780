//! What programs nobody profiled expect of the place they run in: a user with a name, a
//! home, `localhost`, the host's resolver on the host's network, and a UTF-8 locale, on a
//! runtime whose runtime.yml says none of it.

use std::path::Path;

use crate::util::{code, host_yaml, text, TestRoot};

const TOOLS: [&str; 6] = [
    "/usr/bin/dash",
    "/usr/bin/whoami",
    "/usr/bin/id",
    "/usr/bin/getent",
    "/usr/bin/wc",
    "/usr/bin/cat",
];

/// Debian's own tools, sealed with no profile; the runtime sets LOGNAME itself. With
/// `etc`, the sealed tree has an /etc of its own (the sandbox's files are laid over it),
/// else the job's /etc is the sandbox's.
fn sealed_tools(t: &TestRoot, etc: bool) -> std::path::PathBuf {
    let mut sources: Vec<&Path> = TOOLS.iter().map(Path::new).collect();
    if etc {
        sources.push(Path::new("/etc/nsswitch.conf"));
    }
    let yaml = host_yaml(&sources).replace(
        "environment:\n",
        "environment:\n  LOGNAME: from-the-runtime\n",
    );
    let dir = t.runtime("tools", &yaml);
    let out = t.run(&["seal", dir.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    dir
}

fn job(t: &TestRoot, options: &[&str], command: &[&str]) -> String {
    let mut args = vec!["run", "--runtime", "tools"];
    args.extend_from_slice(options);
    args.push("--");
    args.extend_from_slice(command);
    let out = t.run(&args);
    assert_eq!(code(&out), 0, "{command:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn a_job_has_a_user_a_home_localhost_and_utf8_that_no_runtime_yml_set() {
    let t = sealtest!();
    let dir = sealed_tools(&t, true);

    assert_eq!(job(&t, &[], &["whoami"]), "nobody\n");
    assert_eq!(job(&t, &["--user", "1000"], &["id", "-u"]), "1000\n");
    assert_eq!(job(&t, &["--user", "1000:1001"], &["id", "-un"]), "job\n");
    assert_eq!(job(&t, &["--user", "1000:1001"], &["id", "-gn"]), "job\n");
    // The host's users are not the job's business: only root and the job's own are known.
    let users = job(&t, &["--user", "1000"], &["getent", "passwd"]);
    assert_eq!(
        users,
        "root:x:0:0:root:/root:/bin/sh\njob:x:1000:1000:job:/tmp:/bin/sh\n"
    );

    let env = ["dash", "-c", "echo $HOME $USER $LOGNAME"];
    assert_eq!(job(&t, &[], &env), "/tmp nobody from-the-runtime\n");
    let work = t.workdir("work");
    let in_work = job(&t, &["--workdir", work.to_str().unwrap()], &env);
    assert_eq!(in_work, "/work nobody from-the-runtime\n");
    let asked = job(&t, &["--env", "HOME=/elsewhere"], &env);
    assert_eq!(asked, "/elsewhere nobody from-the-runtime\n");

    let hosts = job(&t, &[], &["getent", "hosts", "localhost"]);
    assert!(hosts.contains("localhost"), "{hosts}");
    // `é` is one character in UTF-8 and two bytes without the locale's data.
    let utf8 = ["dash", "-c", "printf '\\303\\251' | wc -m"];
    assert_eq!(job(&t, &["--env", "LANG=C.UTF-8"], &utf8).trim(), "1");

    // None of it was written into the sealed tree, whose /etc the job saw too.
    assert_eq!(
        job(&t, &[], &["cat", "/etc/nsswitch.conf"]),
        std::fs::read_to_string("/etc/nsswitch.conf").unwrap()
    );
    for name in ["passwd", "group", "hosts", "resolv.conf"] {
        assert!(!dir.join("isolated/etc").join(name).exists(), "{name}");
    }
}

#[test]
fn only_a_job_on_the_host_network_gets_the_host_resolver() {
    let t = sealtest!();
    let dir = sealed_tools(&t, false);
    assert!(!dir.join("isolated/etc").exists());
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let cat = ["cat", "/etc/resolv.conf"];
    assert_eq!(job(&t, &["--network", "host"], &cat), host);
    let out = t.run(&["run", "--runtime", "tools", "--", "cat", "/etc/resolv.conf"]);
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("No such file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn volumes_are_bound_as_asked_and_a_read_only_one_refuses_writes() {
    let t = sealtest!();
    sealed_tools(&t, false);
    let data = t.workdir("data");
    std::fs::write(data.join("in"), "from the host\n").unwrap();
    let config = t.path().join("app.conf");
    std::fs::write(&config, "key=1\n").unwrap();
    let ro = format!("{}:/srv/data:ro", data.display());
    let file = format!("{}:/etc/app.conf:ro", config.display());
    assert_eq!(
        job(
            &t,
            &["-v", &ro, "--volume", &file],
            &["cat", "/srv/data/in", "/etc/app.conf"]
        ),
        "from the host\nkey=1\n"
    );
    let write = ["dash", "-c", "echo job > /srv/data/out"];
    let out = t.run(&[&["run", "--runtime", "tools", "-v", &ro, "--"][..], &write].concat());
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Read-only file system"),
        "{}",
        text(&out.stderr)
    );
    assert!(!data.join("out").exists());

    let rw = format!("{}:/srv/data", data.display());
    job(&t, &["-v", &rw], &write);
    assert_eq!(std::fs::read_to_string(data.join("out")).unwrap(), "job\n");

    // What a volume may not be: the host's root, or a place the sandbox owns.
    for (volume, reason) in [
        ("/:/host".to_string(), "host's root directory"),
        (format!("{}:/proc/x", data.display()), "the sandbox's own"),
        (format!("{}:/tmp", data.display()), "the sandbox's own"),
        (format!("{}:/a/../b", data.display()), "`..`"),
        ("data:/srv".to_string(), "expected SRC:DST"),
    ] {
        let out = t.run(&["run", "--runtime", "tools", "-v", &volume, "--", "id"]);
        assert_ne!(code(&out), 0, "{volume}");
        assert!(
            text(&out.stderr).contains(reason),
            "{volume}: {}",
            text(&out.stderr)
        );
    }
    // The review's finding: a target inside the work dir (or another volume) had its
    // parents made on the host, root-owned, by the job's setup.
    let work = t.workdir("work");
    let in_work = format!("{}:/work/inner/x", data.display());
    let in_volume = format!("{}:/srv/data/inner/x", data.display());
    for options in [
        vec!["--workdir", work.to_str().unwrap(), "-v", &in_work],
        vec!["-v", &rw, "-v", &in_volume],
    ] {
        let args = [&["run", "--runtime", "tools"][..], &options, &["--", "id"]].concat();
        let out = t.run(&args);
        assert_eq!(code(&out), 125, "{options:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("inside the work dir or another volume"),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
    assert!(!data.join("inner").exists());
}

#[test]
fn env_flags_pass_values_names_and_files_in_order() {
    let t = sealtest!();
    sealed_tools(&t, false);
    let file = t.path().join("job.env");
    std::fs::write(&file, "# settings\nA=from-file\n\nB=from-file\nINHERITED\n").unwrap();
    let out = t
        .runseal_std()
        .env("INHERITED", "from-the-caller")
        .env_remove("UNSET_HERE")
        .args(["run", "--runtime", "tools", "--env-file"])
        .arg(&file)
        .args(["-e", "B=from-flag", "-e", "UNSET_HERE", "--"])
        .args(["dash", "-c", "echo $A $B $INHERITED ${UNSET_HERE-unset}"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "from-file from-flag from-the-caller unset\n"
    );
}
