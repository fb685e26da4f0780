//! Learning a runtime's closure by running it (`seal --learn`), on Debian's Ruby: sealed with
//! no profile (`--profile generic`, so that the ruby profile is not detected) it cannot load
//! `rbconfig` (in the arch dir no mount names); learned, it seals,
//! verifies (the learn command re-run inside the sandbox) and runs, and keeps what it
//! learned through a re-seal that runs nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::util::{code, json, text, TestRoot};

const RUBY_YML: &str = "name: ruby\nversion: \"3.1\"\nmounts:\n\
  - {source: /usr/bin/ruby, target: /usr/bin/ruby, readonly: true}\n\
  - {source: /usr/lib/ruby, target: /usr/lib/ruby, readonly: true}\n";

const CHECK: [&str; 6] = ["ruby", "-ropenssl", "-rjson", "-rzlib", "-e", "puts 1"];

const RBCONFIG: &str = "/usr/lib/x86_64-linux-gnu/ruby/3.1.0/rbconfig.rb";

fn learned_reason(manifest: &serde_json::Value, path: &str) -> Option<String> {
    manifest["inclusions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == path && i["reason"]["kind"] == "learned")
        .map(|i| i["reason"]["command"].to_string())
}

fn run_check(t: &TestRoot, runtime: &str) -> std::process::Output {
    let mut args = vec!["run", "--runtime", runtime, "--"];
    args.extend(CHECK);
    t.run(&args)
}

#[test]
fn ruby_sealed_statically_fails_and_learned_seals_verifies_runs_and_stays_learned() {
    let t = sealtest!();
    t.runtime("ruby", RUBY_YML);
    let out = t.run(&["seal", "ruby", "--profile", "generic"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let out = run_check(&t, "ruby");
    assert_ne!(code(&out), 0);
    assert!(
        text(&out.stderr).contains("rbconfig"),
        "{}",
        text(&out.stderr)
    );

    // A file the job's user may read but not everyone: learned, then refused with a note.
    let secret = t.path().join("secret");
    std::fs::write(&secret, "x").unwrap();
    let user = runseal_sandbox::DEFAULT_USER;
    std::os::unix::fs::chown(&secret, Some(user.uid), Some(user.gid)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let program = format!(
        "File.read('/etc/shadow') rescue nil; File.read('{}') rescue nil; puts 1",
        secret.display()
    );
    let mut args = vec!["seal", "ruby", "--profile", "generic", "--learn", "--"];
    args.extend(&CHECK[..5]);
    args.push(&program);
    let out = t.run(&args);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 0, "{stderr}");
    assert!(stderr.contains("learn `ruby -ropenssl"), "{stderr}");
    let note = format!("{}: not learned from `ruby", secret.display());
    assert!(
        stderr.contains(&note) && stderr.contains("is not world-readable (mode 600)"),
        "{stderr}"
    );

    let sealed = t.manifest("ruby");
    let entries = sealed["entries"].as_object().unwrap();
    assert!(
        learned_reason(&sealed, RBCONFIG).is_some(),
        "{RBCONFIG} not learned"
    );
    for refused in ["/etc/shadow", secret.to_str().unwrap()] {
        assert!(!entries.contains_key(refused), "{refused} sealed");
    }
    assert!(!t.path().join("ruby/isolated/etc/shadow").exists());

    t.verified_with("ruby", "learned");
    let out = run_check(&t, "ruby");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "1");

    // Sealing again runs nothing and keeps what was learned.
    let out = t.run(&["seal", "ruby", "--profile", "generic"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("learn `"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("up to date"),
        "{}",
        text(&out.stdout)
    );
    assert!(learned_reason(&t.manifest("ruby"), RBCONFIG).is_some());
}

#[test]
fn a_learn_field_in_runtime_yml_is_learned_once_at_the_first_seal() {
    let t = sealtest!();
    let yml = format!("{RUBY_YML}learn:\n  - [ruby, -rjson, -e, \"puts JSON.generate([1])\"]\n");
    let dir = t.runtime("ruby", &yml);
    let out = t.run(&["seal", "ruby"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("learn `ruby -rjson -e"),
        "{}",
        text(&out.stderr)
    );
    let out = t.run(&[
        "run",
        "--runtime",
        "ruby",
        "--",
        "ruby",
        "-rjson",
        "-e",
        "puts JSON.generate([1])",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "[1]");
    // The sealed runtime.yml keeps the field; a re-seal finds it recorded and runs nothing.
    assert!(std::fs::read_to_string(dir.join("runtime.yml"))
        .unwrap()
        .contains("learn:"));
    let out = t.run(&["seal", "ruby"]);
    assert!(
        !text(&out.stderr).contains("learn `"),
        "{}",
        text(&out.stderr)
    );
    assert!(Path::new(&dir).join("isolated").is_dir());
}

/// The same Ruby with its profile (detected from `/usr/bin/ruby3.1`): rbconfig and the C
/// extensions come from the arch dir the profile names, and `verify` runs its smoke test.
#[test]
fn ruby_with_its_profile_seals_verifies_and_runs_without_learning() {
    let t = sealtest!();
    t.runtime("ruby", RUBY_YML);
    let out = t.run(&["--json", "seal", "ruby"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(json(&out)["profile"], "ruby+generic+base");
    t.verified_with("ruby", "ruby");
    let out = run_check(&t, "ruby");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(learned_reason(&t.manifest("ruby"), RBCONFIG).is_none());
    assert!(t.manifest("ruby")["entries"]
        .as_object()
        .unwrap()
        .contains_key(RBCONFIG));
}

/// An operator's profile with a learn command, detected from `/usr/bin/ruby3.1` (no
/// `--profile`, no `language`): its command runs at the first seal like a named one's.
#[test]
fn a_detected_profiles_learn_commands_run_without_naming_it() {
    let t = sealtest!();
    t.runtime("ruby", RUBY_YML);
    let profiles = t.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    std::fs::write(
        profiles.join("ruby.yml"),
        "name: ruby\nanchors: [\"ruby{version}\"]\nlearn:\n  - [ruby, -ropenssl, -rjson, -rzlib, -e, \"puts 1\"]\n",
    )
    .unwrap();
    let dir = profiles.to_str().unwrap();
    let out = t.run(&["--json", "seal", "ruby", "--profile-dir", dir]);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 0, "{stderr}");
    assert_eq!(json(&out)["profile"], "ruby+generic+base");
    assert!(
        stderr.contains("learn `ruby -ropenssl -rjson -rzlib -e 'puts 1'`"),
        "{stderr}"
    );
    assert!(learned_reason(&t.manifest("ruby"), RBCONFIG).is_some());
    let out = run_check(&t, "ruby");
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
}

const PYTHON_YML: &str = "name: python\nversion: \"3.11\"\nmounts:\n\
  - {source: /usr/bin/python3.11, target: /usr/bin/python3.11, readonly: true}\n\
  - {source: /usr/lib/python3.11, target: /usr/lib/python3.11, readonly: true}\n";

const CA_CHECK: &str =
    "import ssl; n = ssl.create_default_context().cert_store_stats()['x509_ca']; print(n); assert n > 0";

/// Debian's CPython with no profile: OpenSSL opens its CA bundle by the name
/// `/usr/lib/ssl/cert.pem`, a link to `/etc/ssl/certs/ca-certificates.crt` that only the
/// names the process asked for reveal (fanotify reports the bundle alone). Learned, the
/// link and the bundle are sealed and the job finds the CAs.
#[test]
fn cpython_learned_without_a_profile_reads_its_cas_through_the_link_it_named() {
    let t = sealtest!();
    t.runtime("python", PYTHON_YML);
    let out = t.run(&[
        "seal",
        "python",
        "--profile",
        "generic",
        "--learn",
        "--",
        "python3.11",
        "-c",
        CA_CHECK,
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let sealed = t.manifest("python");
    for path in [
        "/usr/lib/ssl/cert.pem",
        "/etc/ssl/certs/ca-certificates.crt",
    ] {
        assert!(
            sealed["entries"].as_object().unwrap().contains_key(path),
            "{path} not sealed"
        );
    }
    assert!(learned_reason(&sealed, "/usr/lib/ssl/cert.pem").is_some());
    let out = t.run(&[
        "run",
        "--runtime",
        "python",
        "--",
        "python3.11",
        "-c",
        CA_CHECK,
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(text(&out.stdout).trim().parse::<u32>().unwrap() > 0);
}

const DASH_YML: &str =
    "name: sh\nmounts:\n  - {source: /usr/bin/dash, target: /usr/bin/dash, readonly: true}\n";

/// Each recorded call waits for the sealing process's answer: a tree that asks without end
/// is still killed at its timeout, and what it named is learned.
#[test]
fn a_tree_that_never_stops_asking_still_meets_its_timeout() {
    let t = sealtest!();
    t.runtime("sh", DASH_YML);
    let started = std::time::Instant::now();
    let out = t.run(&[
        "seal",
        "sh",
        "--learn",
        "--learn-timeout",
        "2",
        "--",
        "dash",
        "-c",
        "while :; do test -e /usr/share/zoneinfo/UTC; done",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 0, "{stderr}");
    assert!(stderr.contains("timed out after 2s"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    assert!(learned_reason(&t.manifest("sh"), "/usr/share/zoneinfo/UTC").is_some());
}

/// A learn command may be a runtime author's (a `learn:` field): it runs under the jobs'
/// seccomp filter, so what jobs may not do (a user namespace here, which any user of the
/// host may otherwise make) it may not do either.
#[test]
fn a_learn_command_runs_under_the_jobs_seccomp_filter() {
    let t = sealtest!();
    t.runtime("sh", DASH_YML);
    let out = t.run(&[
        "seal",
        "sh",
        "--learn",
        "--",
        "dash",
        "-c",
        "unshare --user true; echo unshare=$?",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 0, "{stderr}");
    assert!(stderr.contains("unshare=1"), "{stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
}

/// A name only `stat`ed or tested for access (a shell's `test`) is learned, through its link
/// (`zoneinfo/UTC -> Etc/UTC`); names under /root and /etc/shadow, asked for the same way,
/// are refused by the closure; names that find nothing are dropped.
#[test]
fn a_name_only_stated_is_learned_and_refused_ones_are_not_sealed() {
    let t = sealtest!();
    t.runtime("sh", DASH_YML);
    let under_root = tempfile::Builder::new()
        .prefix("runseal-learn")
        .tempfile_in("/root")
        .unwrap();
    std::fs::set_permissions(under_root.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let script = format!(
        "test -e /usr/share/zoneinfo/UTC && test -r /etc/shadow; test -e {}; test -e /opt/none; \
         ls -l /etc/shadow >/dev/null 2>&1; exit 0",
        under_root.path().display()
    );
    let out = t.run(&["seal", "sh", "--learn", "--", "dash", "-c", &script]);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 0, "{stderr}");
    let sealed = t.manifest("sh");
    assert!(
        learned_reason(&sealed, "/usr/share/zoneinfo/UTC").is_some(),
        "{stderr}"
    );
    let entries = sealed["entries"].as_object().unwrap();
    assert!(entries.contains_key("/usr/share/zoneinfo/Etc/UTC"));
    for refused in [
        "/etc/shadow",
        under_root.path().to_str().unwrap(),
        "/opt/none",
    ] {
        assert!(!entries.contains_key(refused), "{refused} sealed");
    }
    assert!(
        stderr.contains("/etc/shadow: not learned from `dash"),
        "{stderr}"
    );
    assert!(!stderr.contains("/opt/none: "), "{stderr}");
    let out = t.run(&[
        "run",
        "--runtime",
        "sh",
        "--",
        "dash",
        "-c",
        "test -e /usr/share/zoneinfo/UTC",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
}
