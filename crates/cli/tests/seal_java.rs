//! The real Debian OpenJDK 17: set up, sealed, validated, verified, and run both by
//! `runseal run` and by an independent sandbox (bwrap) that sees nothing but the sealed mounts.

use std::path::Path;

use crate::util::{bwrap, code, json, snapshot, text, workspace};

#[test]
fn openjdk_sealed_end_to_end_runs_java_and_tls_in_an_independent_sandbox() {
    let t = sealtest!();
    let dir = t.openjdk();
    let host_yml = std::fs::read_to_string(dir.join("runtime.yml")).unwrap();
    assert_eq!(
        code(&t.run(&["validate", "java:17"])),
        1,
        "host mounts must be invalid"
    );

    let out = t.run(&["--json", "seal", "java:17"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let report = json(&out);
    assert_eq!(report["outcome"], "sealed");
    assert_eq!(report["profile"], "java+busybox+base");

    assert_eq!(
        std::fs::read_to_string(dir.join("runtime.yml.original")).unwrap(),
        host_yml
    );
    let sealed = std::fs::read_to_string(dir.join("runtime.yml")).unwrap();
    for line in sealed.lines().filter(|l| l.contains("source:")) {
        assert!(line.contains("source: isolated/"), "{line}");
    }
    for kept in [
        "name: openjdk-17",
        "language: java",
        "JAVA_HOME:",
        "packages:",
        "build_info:",
    ] {
        assert!(sealed.contains(kept), "{kept} lost in {sealed}");
    }

    let out = t.run(&["validate", "java:17"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    let out = t.run(&["--json", "verify", "java:17"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    let verified = json(&out);
    assert_eq!(verified["isolation_problems"].as_array().unwrap().len(), 0);
    let smoke = verified["smoke_tests"].as_array().unwrap();
    assert_eq!(smoke.len(), 3, "{verified}");
    assert!(smoke.iter().all(|s| s["passed"] == true), "{verified}");

    let isolated = dir.join("isolated");
    assert!(isolated
        .join("usr/lib/jvm/java-17-openjdk-amd64/lib/libjli.so")
        .is_file());
    assert!(isolated.join("etc/ssl/certs/java/cacerts").is_file());
    assert_eq!(
        std::fs::read_link(
            isolated.join("usr/lib/jvm/java-17-openjdk-amd64/conf/security/java.security")
        )
        .unwrap(),
        Path::new("/etc/java-17-openjdk/security/java.security")
    );

    let out = t.run(&["run", "--runtime", "java:17", "--", "java", "-version"]);
    assert_eq!(
        code(&out),
        0,
        "runseal run java -version: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("openjdk version \"17."),
        "{}",
        text(&out.stderr)
    );

    let out = bwrap(&dir, None)
        .args(["java", "-version"])
        .output()
        .unwrap();
    assert!(out.status.success(), "java -version: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("openjdk version \"17."),
        "{}",
        text(&out.stderr)
    );

    let work = tempfile::tempdir().unwrap();
    crate::util::job_owns(work.path());
    std::fs::copy(
        workspace().join("crates/cli/tests/data/TlsCheck.java"),
        work.path().join("TlsCheck.java"),
    )
    .unwrap();
    let out = bwrap(&dir, Some(work.path()))
        .args(["java", "TlsCheck.java"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "TlsCheck: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with("tls-ok"),
        "{}",
        text(&out.stdout)
    );

    let workdir = work.path().to_str().unwrap();
    let out = t.run(&[
        "run",
        "--runtime",
        "java:17",
        "--workdir",
        workdir,
        "--",
        "java",
        "TlsCheck.java",
    ]);
    assert_eq!(code(&out), 0, "runseal run TlsCheck: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("tls-ok"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn sealing_twice_changes_nothing_and_copies_nothing() {
    let t = sealtest!();
    let dir = t.openjdk();
    assert_eq!(code(&t.run(&["seal", "openjdk-17"])), 0);
    let before = snapshot(&dir);
    let out = t.run(&["--json", "seal", "openjdk-17"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let report = json(&out);
    assert_eq!(report["outcome"], "unchanged");
    assert_eq!(report["copied_files"], 0);
    assert_eq!(report["copied_bytes"], 0);
    assert_eq!(snapshot(&dir), before, "second seal touched the runtime");
}

#[test]
fn verify_catches_a_tampered_file_and_a_deleted_library_and_seal_repairs_them() {
    let t = sealtest!();
    let dir = t.openjdk();
    assert_eq!(code(&t.run(&["seal", "openjdk-17"])), 0);
    let jdk = dir.join("isolated/usr/lib/jvm/java-17-openjdk-amd64");
    std::fs::remove_file(jdk.join("lib/libjli.so")).unwrap();
    let security = dir.join("isolated/etc/java-17-openjdk/security/java.security");
    let mut content = std::fs::read(&security).unwrap();
    content[0] ^= 1;
    std::fs::write(&security, content).unwrap();

    let out = t.run(&["verify", "openjdk-17"]);
    assert_eq!(code(&out), 1);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("lib/libjli.so: removed"), "{stdout}");
    assert!(
        stdout.contains("bin/java: needs libjli.so, which the loader would not find"),
        "{stdout}"
    );
    assert!(
        stdout.contains("java.security: content changed (BLAKE3 differs)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("smoke java `java -version`: FAILED"),
        "{stdout}"
    );

    let out = t.run(&["--json", "seal", "openjdk-17"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let report = json(&out);
    assert_eq!(report["copied_files"], 2, "{report}");
    assert_eq!(code(&t.run(&["verify", "openjdk-17"])), 0);
}

#[test]
fn dry_run_explains_every_inclusion_and_writes_nothing() {
    let t = sealtest!();
    let dir = t.openjdk();
    let before = snapshot(&dir);
    let out = t.run(&["seal", "--dry-run", "java:17"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for why in [
        "mounts[0] (/usr/lib/jvm/java-17-openjdk-amd64)",
        "/lib64/ld-linux-x86-64.so.2",
        "ELF interpreter of /usr/lib/jvm/java-17-openjdk-amd64/bin/",
        "libz.so.1, needed by",
        "target of symlink /usr/lib/jvm/java-17-openjdk-amd64/conf/",
        "profile java: the PEM CA bundle",
    ] {
        assert!(stdout.contains(why), "{why:?} not in plan:\n{stdout}");
    }
    let changed: Vec<_> = snapshot(&dir)
        .into_iter()
        .filter(|(p, v)| before.get(p) != Some(v))
        .collect();
    assert!(changed.is_empty(), "dry run wrote {changed:?}");

    let out = t.run(&["--json", "seal", "--dry-run", "java:17"]);
    let report = json(&out);
    assert_eq!(report["outcome"], "planned");
    let inclusions = report["plan"]["inclusions"].as_array().unwrap();
    assert!(inclusions.iter().any(|i| i["reason"]["kind"] == "library"));
}

#[test]
fn resealing_copies_only_what_changed() {
    let t = sealtest!();
    let app = crate::util::fixture_source(t.path());
    for i in 0..20 {
        std::fs::write(app.join(format!("share/f{i}")), vec![i as u8; 4096]).unwrap();
    }
    let dir = t.runtime("app", &crate::util::host_yaml(&[&app]));
    assert_eq!(code(&t.run(&["seal", "app"])), 0);
    std::fs::write(app.join("share/f3"), b"changed").unwrap();
    let out = t.run(&["--json", "seal", "app"]);
    let report = json(&out);
    assert_eq!(report["outcome"], "sealed");
    assert_eq!(report["copied_files"], 1, "{report}");
    assert!(
        !dir.join("isolated/usr/bin/busybox").exists(),
        "a runtime that does not ask for `base: busybox` got it"
    );
    let sealed = dir.join("isolated").join(app.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(sealed.join("share/f3")).unwrap(), b"changed");
    assert_eq!(code(&t.run(&["verify", "app"])), 0);
}
