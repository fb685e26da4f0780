//! Logging through `RUST_LOG`: off by default, so output is unchanged, and on when asked.

use crate::util::{text, TestRoot};

#[test]
fn rust_log_turns_on_diagnostics_on_stderr_only() {
    let t = TestRoot::new();
    t.runtime("plain", "name: plain\nmounts: []\n");
    let quiet = t.run(&["validate", "plain"]);
    let mut command = t.runseal_std();
    command
        .env("RUST_LOG", "runseal=debug")
        .args(["validate", "plain"]);
    let logged = command.output().unwrap();
    assert_eq!(quiet.status.code(), logged.status.code());
    assert_eq!(quiet.stdout, logged.stdout);
    assert!(quiet.stderr.is_empty(), "{}", text(&quiet.stderr));
    let stderr = text(&logged.stderr);
    assert!(
        stderr.contains("DEBUG") && stderr.contains("runtime resolved") && stderr.contains("plain"),
        "{stderr}"
    );
}
