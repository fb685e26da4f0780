//! Helpers shared by the unit tests.

use std::path::Path;
use std::time::Duration;

/// Runs `f` on a thread and fails the test if it has not returned within 10 s, so a
/// blocking open fails the test instead of hanging the suite.
pub fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || send.send(f()));
    receive
        .recv_timeout(Duration::from_secs(10))
        .expect("blocked for 10 s: a FIFO was opened or read as if it were a file")
}

/// A FIFO at `path`, mode 0755 (executable, so a scan would read its `#!` line).
pub fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o755),
        0,
    )
    .unwrap();
}
