//! What a process inside a sandbox tells the one that started it, over a pipe, before it
//! execs or exits: at most one message, a tag line and then its text. A pipe closed with
//! nothing in it (by a successful exec, as the pipe is close-on-exec) says "started".

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Setting up failed; the text says why.
    Failed(String),
    /// The job's mount table, for the isolation probe.
    Mounts(String),
    /// The builder made this runtime dir.
    Built(PathBuf),
}

impl Report {
    /// Writes the report; a reader gone away is nothing to report to.
    pub fn send(&self, pipe: &OwnedFd) {
        let (tag, text) = match self {
            Report::Failed(text) => ("failed", text.clone()),
            Report::Mounts(text) => ("mounts", text.clone()),
            Report::Built(dir) => ("built", dir.display().to_string()),
        };
        let message = format!("{tag}\n{text}");
        let mut rest = message.as_bytes();
        while !rest.is_empty() {
            match rustix::io::write(pipe, rest) {
                Ok(0) | Err(_) => return,
                Ok(written) => rest = &rest[written..],
            }
        }
    }

    /// Reads what the other end sent until it closed the pipe.
    pub fn receive(pipe: OwnedFd) -> Option<Report> {
        let mut message = String::new();
        let _ = std::fs::File::from(pipe).read_to_string(&mut message);
        let (tag, text) = message.split_once('\n')?;
        let text = text.to_string();
        match tag {
            "failed" => Some(Report::Failed(text)),
            "mounts" => Some(Report::Mounts(text)),
            "built" => Some(Report::Built(text.into())),
            _ => Some(Report::Failed(format!("an unreadable report: {message}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_report_arrives_as_sent_and_silence_means_started() {
        for report in [
            Report::Failed("mount: EPERM\nand a second line".into()),
            Report::Mounts("1 0 0:5 / / ro - tmpfs tmpfs rw\n".repeat(5000)),
            Report::Built("/opt/runseal/runtimes/hello".into()),
        ] {
            let (read, write) = rustix::pipe::pipe().unwrap();
            let sender = {
                let report = report.clone();
                std::thread::spawn(move || report.send(&write))
            };
            assert_eq!(Report::receive(read), Some(report));
            sender.join().unwrap();
        }
        let (read, write) = rustix::pipe::pipe().unwrap();
        drop(write);
        assert_eq!(Report::receive(read), None);
    }
}
