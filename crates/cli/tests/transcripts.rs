//! The interface as users see it: help texts, violation reports and JSON, kept as reviewed
//! snapshots (`cargo insta review` after an intended change). Temp paths read `[ROOT]`.

use crate::util::{text, TestRoot};

fn transcript(t: &TestRoot, args: &[&str]) -> String {
    let out = t.run(args);
    let root = t.path().display().to_string();
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().unwrap_or(-1),
        text(&out.stdout).replace(&root, "[ROOT]"),
        text(&out.stderr).replace(&root, "[ROOT]")
    )
}

#[test]
fn help_texts() {
    let t = TestRoot::new();
    for command in [
        "", "seal", "validate", "run", "verify", "info", "generate", "export", "import", "sbom",
        "du", "gc",
    ] {
        let mut args: Vec<&str> = command.split_whitespace().collect();
        args.push("--help");
        insta::assert_snapshot!(
            format!("help_{}", if command.is_empty() { "main" } else { command }),
            transcript(&t, &args)
        );
    }
}

#[test]
fn a_violation_report_in_text_and_json() {
    let t = TestRoot::new();
    t.runtime(
        "bad",
        "name: bad\nmounts:\n- {source: usr/lib/jvm, target: /usr/lib/jvm, readonly: true}\n\
         - {source: isolated/x, target: /proc/x}\nenvironment:\n  PATH: bin:/usr/bin\n",
    );
    insta::assert_snapshot!(transcript(&t, &["validate", "bad"]));
    insta::assert_snapshot!(transcript(&t, &["--json", "validate", "bad"]));
}

#[test]
fn usage_errors() {
    let t = TestRoot::new();
    insta::assert_snapshot!(transcript(&t, &["validate", "java:17"]));
    insta::assert_snapshot!(transcript(
        &t,
        &["run", "--runtime", "x", "--memory", "lots", "--", "true"]
    ));
    insta::assert_snapshot!(transcript(&t, &["run", "--runtime", "x"]));
    insta::assert_snapshot!(transcript(
        &t,
        &["run", "--runtime", "x", "--timeout", "0", "--", "true"]
    ));
}

#[test]
fn list_shows_each_runtime_and_its_state() {
    let t = TestRoot::new();
    t.runtime("host-mounts", "name: host-mounts\nlanguage: java\nversion: \"17.0.1\"\nmounts:\n- {source: usr/lib/jvm, target: /usr/lib/jvm, readonly: true}\n");
    t.runtime(
        "python/3.11",
        "name: python\nlanguage: python\nversion: \"3.11\"\n",
    );
    t.runtime("broken", "name: [\n");
    insta::assert_snapshot!(transcript(&t, &["list"]));
    insta::assert_snapshot!(transcript(&t, &["--json", "list"]));
}

#[test]
fn du_and_gc_as_text_and_json() {
    let t = TestRoot::new();
    let dir = t.runtime("app", "name: app\nmounts: []\n");
    // What a seal killed while it rewrote runtime.yml leaves.
    std::fs::write(dir.join("runtime.yml.tmp"), "name: a").unwrap();
    insta::assert_snapshot!(transcript(&t, &["du"]));
    insta::assert_snapshot!(transcript(&t, &["--json", "du"]));
    insta::assert_snapshot!(transcript(&t, &["gc", "--dry-run"]));
    insta::assert_snapshot!(transcript(&t, &["--json", "gc"]));
    assert!(!dir.join("runtime.yml.tmp").exists());
    insta::assert_snapshot!(transcript(&t, &["gc"]));
}
