//! The isolation probe: the job's mount table as the kernel reports it, checked against
//! what the job may see. Each mount must be one of the sandbox's own (the tmpfs root, /proc
//! and its read-only or masked parts, /dev and its device nodes, /tmp, /work) or a sealed
//! mount whose source is the runtime's `isolated/...`, read-only, nosuid and nodev.

use std::collections::BTreeMap;
use std::path::Path;

use crate::job::Job;
use crate::rootfs::{DEVICES, PROC_MASKED};

/// One line of `/proc/<pid>/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountLine {
    pub root: String,
    pub mount_point: String,
    pub options: Vec<String>,
    pub fstype: String,
}

pub fn parse_mountinfo(table: &str) -> Vec<MountLine> {
    table
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            Some(MountLine {
                root: unescape(fields.get(3)?),
                mount_point: unescape(fields.get(4)?),
                options: fields.get(5)?.split(',').map(String::from).collect(),
                fstype: right.split(' ').next()?.to_string(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Every way the mount table lets the job see more than it may; empty when isolated.
pub fn check_mount_table(job: &Job, table: &str) -> Vec<String> {
    let mut allowed: BTreeMap<String, &str> = BTreeMap::new();
    for mount in &job.mounts {
        allowed.insert(mount.target.clone(), "sealed");
    }
    for (point, kind) in [
        ("/", "root"),
        ("/proc", "proc"),
        ("/dev", "dev"),
        ("/tmp", "tmp"),
    ] {
        allowed.insert(point.into(), kind);
    }
    for name in PROC_MASKED {
        allowed.insert(format!("/proc/{name}"), "masked");
    }
    for device in DEVICES {
        allowed.insert(format!("/dev/{device}"), "device");
    }
    if job.workdir.is_some() {
        allowed.insert("/work".into(), "work");
    }
    let mut problems = Vec::new();
    for line in parse_mountinfo(table) {
        let has = |option: &str| line.options.iter().any(|o| o == option);
        let Some(kind) = allowed.get(&line.mount_point) else {
            problems.push(format!(
                "{}: unexpected mount ({} {})",
                line.mount_point, line.fstype, line.root
            ));
            continue;
        };
        let problem = match *kind {
            "sealed" => {
                let source = job
                    .mounts
                    .iter()
                    .find(|m| m.target == line.mount_point)
                    .map(|m| m.source.as_str());
                let from_runtime = source.is_some_and(|s| line.root.ends_with(&format!("/{s}")))
                    && Path::new(&line.root)
                        .components()
                        .all(|c| c.as_os_str() != "..");
                if !from_runtime {
                    Some(format!(
                        "comes from {}, not from the runtime's {}",
                        line.root,
                        source.unwrap_or("?")
                    ))
                } else if !(has("ro") && has("nosuid") && has("nodev")) {
                    Some(format!(
                        "is {}, not ro,nosuid,nodev",
                        line.options.join(",")
                    ))
                } else {
                    None
                }
            }
            "root" => (line.fstype != "tmpfs" || !has("ro")).then(|| {
                format!(
                    "root is {} {}, not a read-only tmpfs",
                    line.fstype,
                    line.options.join(",")
                )
            }),
            "proc" => (line.fstype != "proc" || !has("ro")).then(|| {
                format!(
                    "is {} {}, not a fresh read-only proc",
                    line.fstype,
                    line.options.join(",")
                )
            }),
            "masked" => {
                (line.root != "/null").then(|| format!("shows {}, not /dev/null", line.root))
            }
            "dev" | "tmp" => (line.fstype != "tmpfs")
                .then(|| format!("is {}, not the sandbox's tmpfs", line.fstype)),
            "device" => (line.root != line.mount_point.trim_start_matches("/dev"))
                .then(|| format!("binds {}", line.root)),
            _ => None,
        };
        if let Some(problem) = problem {
            problems.push(format!("{}: {problem}", line.mount_point));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use runseal_spec::Mount;

    /// A job on a runtime that looks, in the table, as if it lived at /rt/java.
    fn job() -> Job {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("isolated/usr")).unwrap();
        let config = runseal_spec::RuntimeConfig {
            mounts: vec![Mount::readonly("isolated/usr", "/usr")],
            ..Default::default()
        };
        let mut job = Job::for_runtime(dir.path(), config, Default::default()).unwrap();
        job.runtime_dir = "/rt/java".into();
        job
    }

    const GOOD: &str = "\
1 0 0:50 / / ro,nosuid,nodev - tmpfs tmpfs rw\n\
2 1 254:0 /rt/java/isolated/usr /usr ro,nosuid,nodev,relatime - ext4 /dev/vda rw\n\
3 1 0:51 / /proc ro,nosuid,nodev,noexec - proc proc rw\n\
5 3 0:52 /null /proc/keys ro,nosuid,nodev - devtmpfs udev rw\n\
6 1 0:53 / /dev ro,nosuid,nodev - tmpfs tmpfs rw\n\
7 6 0:5 /null /dev/null rw,nosuid - devtmpfs udev rw\n\
8 1 0:54 / /tmp rw,nosuid,nodev - tmpfs tmpfs rw\n";

    #[test]
    fn a_clean_table_passes() {
        assert_eq!(check_mount_table(&job(), GOOD), Vec::<String>::new());
    }

    #[test]
    fn host_mounts_and_writable_sealed_mounts_are_reported() {
        let bad = GOOD
            .replace("/rt/java/isolated/usr /usr ro,", "/usr /usr rw,")
            .replace(
                "8 1 0:54 / /tmp",
                "8 1 0:54 / /tmp rw - tmpfs tmpfs rw\n9 1 254:0 /etc /etc",
            );
        let problems = check_mount_table(&job(), &bad);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("/usr: comes from /usr")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("/etc: unexpected mount")),
            "{problems:?}"
        );
    }
}
