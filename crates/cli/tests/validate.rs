//! `runseal validate`: each rule reported with file and field; exit codes 0, 1, 2.

use crate::util::{code, json, text, TestRoot};

const SEALED: &str = "name: ok\nlanguage: none\nversion: \"1\"\nmounts:\n\
                      - {source: isolated/usr, target: /usr, readonly: true}\n";

#[test]
fn a_sealed_runtime_is_valid() {
    let t = TestRoot::new();
    let dir = t.runtime("ok", SEALED);
    std::fs::create_dir_all(dir.join("isolated/usr")).unwrap();
    let out = t.run(&["validate", "ok"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    assert!(text(&out.stdout).ends_with("runtime.yml: valid\n"));
}

#[test]
fn every_violation_is_printed_with_file_and_field() {
    let t = TestRoot::new();
    let dir = t.runtime(
        "bad",
        "mounts:\n\
         - {source: isolated/../../etc, target: /etc, readonly: true}\n\
         - {source: /usr/lib/jvm, target: /usr/lib/jvm, readonly: true}\n\
         - {source: isolated/a, target: /etc, readonly: true}\n\
         - {source: isolated/b, target: /x/../y}\n",
    );
    let out = t.run(&["validate", dir.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    let file = dir.join("runtime.yml").display().to_string();
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    let expected = [
        "mounts[0].source: `isolated/../../etc` has a `..` component",
        "mounts[1].source: `/usr/lib/jvm` is an absolute host path",
        "mounts[2].source: `isolated/a` does not exist in the runtime dir",
        "mounts[2].target: `/etc` is already the target of mounts[0]",
        "mounts[3].source: `isolated/b` does not exist",
        "mounts[3].target: `/x/../y` has a `..` component",
        "mounts[3].readonly: must be true",
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (line, want) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(&format!("{file}: {want}")),
            "{line:?} vs {want:?}"
        );
    }

    let out = t.run(&["--json", "validate", dir.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    let report = json(&out);
    assert_eq!(report["valid"], false);
    assert_eq!(report["violations"][3]["field"], "mounts[2].target");
}

#[test]
fn a_symlink_planted_in_isolated_cannot_lead_a_mount_out() {
    let t = TestRoot::new();
    let dir = t.runtime(
        "planted",
        "mounts:\n- {source: isolated/etc, target: /etc, readonly: true}\n\
         - {source: isolated/up/usr, target: /usr, readonly: true}\n",
    );
    std::fs::create_dir_all(dir.join("isolated")).unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("isolated/etc")).unwrap();
    std::os::unix::fs::symlink("../../..", dir.join("isolated/up")).unwrap();
    let out = t.run(&["validate", "planted"]);
    assert_eq!(code(&out), 1);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("mounts[0].source: `isolated/etc` leaves the runtime dir"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mounts[1].source: `isolated/up/usr` leaves the runtime dir"),
        "{stdout}"
    );
}

#[test]
fn malformed_yaml_names_line_and_column() {
    let t = TestRoot::new();
    t.runtime("broken", "name: x\nmounts:\n  - source: [unclosed\n");
    let out = t.run(&["validate", "broken"]);
    assert_eq!(code(&out), 1);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("runtime.yml: line 3 column"), "{stdout}");
}

#[test]
fn unknown_spec_is_a_usage_error_listing_runtimes() {
    let t = TestRoot::new();
    t.runtime("ok", SEALED);
    let out = t.run(&["validate", "java:17"]);
    assert_eq!(code(&out), 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no runtime matches `java:17`") && stderr.contains("ok@1"),
        "{stderr}"
    );
    let out = t.run(&["validate", "/nonexistent/dir"]);
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("not a runtime dir"));
}
