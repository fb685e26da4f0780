//! The isolation probe: the job's mount table as the kernel reports it, checked against
//! what the job may see. Each mount must be one of the sandbox's own (the tmpfs root, /proc
//! and its read-only or masked parts, /dev and its device nodes, /tmp, /work) or a sealed
//! mount whose source is the runtime's `isolated/...`, read-only, nosuid and nodev, or an
//! overlay over one (whose layer stays attached, hidden under the job's /proc, so that the
//! table shows where it comes from).

use std::collections::BTreeMap;
use std::path::Path;

use crate::job::Job;
use crate::rootfs::{layers_dir, plan_root, Source, Step, DEVICES, PROC_MASKED};

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

/// What a mount point of the job may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A bind of the runtime's `mounts[i]` source: at its target, or as an overlay's layer.
    Sealed(usize),
    /// An overlay over a sealed tree: read-only, or copy-on-write into a scratch tmpfs.
    Overlay {
        writable: bool,
    },
    Scratch,
    /// A volume of the caller's: any source, nosuid and nodev, read-only if asked.
    Volume {
        readonly: bool,
    },
    Root,
    Proc,
    Masked,
    Dev,
    Tmp,
    Device,
    Work,
}

/// Every way the mount table lets the job see more than it may; empty when isolated. What
/// may be where follows from the steps the job's root is built from.
pub fn check_mount_table(job: &Job, table: &str) -> Vec<String> {
    let steps = match plan_root(job) {
        Ok(steps) => steps,
        Err(e) => return vec![format!("the job's root cannot be planned: {e}")],
    };
    let mut allowed: BTreeMap<String, Expect> = BTreeMap::new();
    let text = |path: &Path| path.display().to_string();
    for (index, step) in steps.iter().enumerate() {
        match step {
            Step::Bind {
                source: Source::Runtime(i),
                target,
                ..
            } => {
                allowed.insert(text(target), Expect::Sealed(*i));
            }
            Step::Bind {
                source: Source::Volume(i),
                target,
                ..
            } => {
                let readonly = job.volumes[*i].readonly;
                allowed.insert(text(target), Expect::Volume { readonly });
            }
            Step::Overlay {
                source,
                target,
                copy_on_write,
                ..
            } => {
                let layers = layers_dir(index);
                allowed.insert(text(&layers.join("lower")), Expect::Sealed(*source));
                if *copy_on_write {
                    allowed.insert(text(&layers.join("scratch")), Expect::Scratch);
                }
                let writable = *copy_on_write;
                allowed.insert(text(target), Expect::Overlay { writable });
            }
            _ => {}
        }
    }
    for (point, kind) in [
        ("/", Expect::Root),
        ("/proc", Expect::Proc),
        ("/dev", Expect::Dev),
        ("/tmp", Expect::Tmp),
    ] {
        allowed.insert(point.into(), kind);
    }
    for name in PROC_MASKED {
        allowed.insert(format!("/proc/{name}"), Expect::Masked);
    }
    for device in DEVICES {
        allowed.insert(format!("/dev/{device}"), Expect::Device);
    }
    if job.workdir.is_some() {
        allowed.insert("/work".into(), Expect::Work);
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
            Expect::Sealed(i) => {
                let source = &job.mounts[i].source;
                let from_runtime = line.root.ends_with(&format!("/{source}"))
                    && Path::new(&line.root)
                        .components()
                        .all(|c| c.as_os_str() != "..");
                if !from_runtime {
                    Some(format!(
                        "comes from {}, not from the runtime's {source}",
                        line.root
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
            Expect::Overlay { writable } => {
                let mode = if writable { "rw" } else { "ro" };
                (line.fstype != "overlay" || !(has(mode) && has("nosuid") && has("nodev"))).then(
                    || {
                        format!(
                            "is {} {}, not a {mode},nosuid,nodev overlay",
                            line.fstype,
                            line.options.join(",")
                        )
                    },
                )
            }
            Expect::Volume { readonly } => {
                let options = has("nosuid") && has("nodev") && (!readonly || has("ro"));
                (!options)
                    .then(|| format!("is {}, not nosuid,nodev as asked", line.options.join(",")))
            }
            Expect::Root => (line.fstype != "tmpfs" || !has("ro")).then(|| {
                format!(
                    "root is {} {}, not a read-only tmpfs",
                    line.fstype,
                    line.options.join(",")
                )
            }),
            Expect::Proc => (line.fstype != "proc" || !has("ro")).then(|| {
                format!(
                    "is {} {}, not a fresh read-only proc",
                    line.fstype,
                    line.options.join(",")
                )
            }),
            Expect::Masked => {
                (line.root != "/null").then(|| format!("shows {}, not /dev/null", line.root))
            }
            Expect::Dev | Expect::Tmp | Expect::Scratch => (line.fstype != "tmpfs")
                .then(|| format!("is {}, not the sandbox's tmpfs", line.fstype)),
            Expect::Device => (line.root != line.mount_point.trim_start_matches("/dev"))
                .then(|| format!("binds {}", line.root)),
            Expect::Work => None,
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
        job_with(&["usr"])
    }

    fn job_with(names: &[&str]) -> Job {
        let dir = tempfile::tempdir().unwrap();
        let mut mounts = Vec::new();
        for name in names {
            std::fs::create_dir_all(dir.path().join("isolated").join(name)).unwrap();
            mounts.push(Mount::readonly(
                format!("isolated/{name}"),
                format!("/{name}"),
            ));
        }
        let config = runseal_spec::RuntimeConfig {
            mounts,
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
    fn an_overlay_on_etc_passes_only_with_its_layer_from_the_runtime() {
        let job = job_with(&["usr", "etc"]);
        let index = plan_root(&job)
            .unwrap()
            .iter()
            .position(|step| matches!(step, Step::Overlay { .. }))
            .unwrap();
        let layer = layers_dir(index).join("lower");
        let table = format!(
            "{GOOD}\
             9 3 254:0 /rt/java/isolated/etc {} ro,nosuid,nodev - ext4 /dev/vda rw\n\
             10 1 0:60 / /etc ro,nosuid,nodev - overlay overlay ro,lowerdir=/proc/self/fd/9\n",
            layer.display()
        );
        assert_eq!(check_mount_table(&job, &table), Vec::<String>::new());
        let from_host = table.replace("/rt/java/isolated/etc", "/etc");
        let problems = check_mount_table(&job, &from_host);
        assert_eq!(
            problems,
            [format!(
                "{}: comes from /etc, not from the runtime's isolated/etc",
                layer.display()
            )]
        );
        let writable = table.replace(
            "/etc ro,nosuid,nodev - overlay",
            "/etc rw,nosuid,nodev - overlay",
        );
        assert!(check_mount_table(&job, &writable)[0].starts_with("/etc: is overlay rw,"));
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
