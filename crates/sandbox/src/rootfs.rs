//! The job root: a plan of steps computed from the job (plain data), then applied through
//! [`MountOps`] inside the job's mount namespace.

use std::path::{Path, PathBuf};

use runseal_spec::paths::ancestors;
use runseal_spec::ISOLATED_DIR;

use crate::error::{Error, Result};
use crate::job::Job;
use crate::sys::{fd_path, open_beneath, BindFlags, MountOps};

/// Host device nodes a job may use; nothing else of the host's /dev.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// /proc files that show host-wide state a job's uid may read (its keys, kernel timers):
/// hidden behind /dev/null. The whole /proc is mounted read-only, which keeps /proc/sys,
/// sysrq-trigger and irq out of reach of a job running as uid 0 in one mount flag instead of
/// a bind per path; /proc/kcore needs CAP_SYS_RAWIO, which no job has.
pub const PROC_MASKED: [&str; 3] = ["keys", "timer_list", "sched_debug"];

/// One step of assembling the root, with paths as the job sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Tmpfs {
        target: PathBuf,
        mode: u32,
        /// Bytes; the kernel's default (half the RAM) when unset.
        size: Option<u64>,
    },
    Dir {
        path: PathBuf,
    },
    File {
        path: PathBuf,
    },
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
    /// Bind `source` (relative to the runtime dir, opened beneath it) read-only.
    BindRuntime {
        source: PathBuf,
        target: PathBuf,
    },
    /// Bind a host path (the work dir, device nodes).
    BindHost {
        source: PathBuf,
        target: PathBuf,
        flags: BindFlags,
    },
    /// Bind a path of the job root over another one (masking /proc parts with /dev/null).
    BindInside {
        source: PathBuf,
        target: PathBuf,
    },
    Proc {
        target: PathBuf,
    },
    /// Remount a tmpfs of the sandbox read-only once it is populated.
    ReadOnly {
        target: PathBuf,
    },
}

/// The steps that build `job`'s root. Reads only the runtime dir (to tell symlinked
/// top-level dirs, which become symlinks, from directories and files, which are bound).
pub fn plan_root(job: &Job) -> Result<Vec<Step>> {
    let mut steps = vec![Step::Tmpfs {
        target: "/".into(),
        mode: 0o755,
        size: None,
    }];
    let mut mounts: Vec<_> = job.mounts.iter().collect();
    mounts.sort_by_key(|m| Path::new(&m.target).components().count());
    for mount in mounts {
        let target = PathBuf::from(&mount.target);
        let source = PathBuf::from(&mount.source);
        let host = job.runtime_dir.join(&source);
        let meta = std::fs::symlink_metadata(&host)
            .map_err(|e| Error::Invalid(format!("mount source {}: {e}", host.display())))?;
        for parent in ancestors(&target) {
            steps.push(Step::Dir { path: parent });
        }
        let mirrors_target =
            source == Path::new(ISOLATED_DIR).join(target.strip_prefix("/").unwrap_or(&target));
        if meta.file_type().is_symlink() && mirrors_target {
            let link = std::fs::read_link(&host)
                .map_err(|e| Error::Invalid(format!("{}: {e}", host.display())))?;
            steps.push(Step::Symlink {
                path: target,
                target: link,
            });
            continue;
        }
        let resolved_is_dir = std::fs::metadata(&host)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        steps.push(if resolved_is_dir {
            Step::Dir {
                path: target.clone(),
            }
        } else {
            Step::File {
                path: target.clone(),
            }
        });
        steps.push(Step::BindRuntime { source, target });
    }

    steps.push(Step::Dir {
        path: "/proc".into(),
    });
    steps.push(Step::Proc {
        target: "/proc".into(),
    });
    steps.push(Step::Dir {
        path: "/dev".into(),
    });
    steps.push(Step::Tmpfs {
        target: "/dev".into(),
        mode: 0o755,
        size: None,
    });
    for device in DEVICES {
        let path = Path::new("/dev").join(device);
        steps.push(Step::File { path: path.clone() });
        let flags = BindFlags {
            writable: true,
            devices: true,
        };
        steps.push(Step::BindHost {
            source: path.clone(),
            target: path,
            flags,
        });
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Step::Symlink {
            path: Path::new("/dev").join(name),
            target: target.into(),
        });
    }
    steps.push(Step::ReadOnly {
        target: "/dev".into(),
    });
    for name in PROC_MASKED {
        steps.push(Step::BindInside {
            source: "/dev/null".into(),
            target: Path::new("/proc").join(name),
        });
    }
    steps.push(Step::Dir {
        path: "/tmp".into(),
    });
    steps.push(Step::Tmpfs {
        target: "/tmp".into(),
        mode: 0o1777,
        size: job.limits.tmp_size,
    });
    if let Some(workdir) = &job.workdir {
        steps.push(Step::Dir {
            path: "/work".into(),
        });
        let flags = BindFlags {
            writable: true,
            devices: false,
        };
        steps.push(Step::BindHost {
            source: workdir.clone(),
            target: "/work".into(),
            flags,
        });
    }
    Ok(steps)
}

/// Applies `steps` with `new_root` as the job's `/`, then pivots into it and makes `/`
/// read-only. Runs in the job's own mount namespace.
pub fn apply(
    ops: &mut dyn MountOps,
    runtime_dir: &Path,
    new_root: &Path,
    steps: &[Step],
) -> Result<()> {
    let at = |path: &Path| match path.strip_prefix("/") {
        Ok(rel) if rel.as_os_str().is_empty() => new_root.to_path_buf(),
        Ok(rel) => new_root.join(rel),
        Err(_) => new_root.join(path),
    };
    ops.make_mounts_private()?;
    for step in steps {
        match step {
            Step::Tmpfs {
                target,
                mode,
                size: None,
            } => ops.mount_tmpfs(&at(target), *mode)?,
            Step::Tmpfs {
                target,
                mode,
                size: Some(bytes),
            } => ops.mount_tmpfs_of_size(&at(target), *mode, *bytes)?,
            Step::Dir { path } => {
                if !at(path).is_dir() {
                    ops.mkdir(&at(path), 0o755)?;
                }
            }
            Step::File { path } => ops.create_file(&at(path))?,
            Step::Symlink { path, target } => ops.symlink(target, &at(path))?,
            Step::BindRuntime { source, target } => {
                let fd = open_beneath(runtime_dir, source)?;
                ops.bind(
                    &fd_path(&fd),
                    &at(target),
                    BindFlags {
                        writable: false,
                        devices: false,
                    },
                )?;
            }
            Step::BindHost {
                source,
                target,
                flags,
            } => ops.bind(source, &at(target), *flags)?,
            Step::BindInside { source, target } => {
                let source = at(source);
                if at(target).exists() {
                    // The source is the job's /dev/null: bound as the device it is.
                    let flags = BindFlags {
                        writable: true,
                        devices: true,
                    };
                    ops.bind(&source, &at(target), flags)?;
                }
            }
            Step::Proc { target } => ops.mount_proc(&at(target))?,
            Step::ReadOnly { target } => ops.remount_readonly(&at(target))?,
        }
    }
    ops.pivot_root(new_root)?;
    ops.remount_root_readonly()
}

#[cfg(test)]
mod tests {
    use super::*;
    use runseal_spec::Mount;

    fn job(dir: &Path) -> Job {
        Job {
            runtime_dir: dir.to_path_buf(),
            mounts: vec![
                Mount::readonly("isolated/usr", "/usr"),
                Mount::readonly("isolated/lib", "/lib"),
                Mount::readonly("isolated/opt/tool.conf", "/etc/tool.conf"),
            ],
            environment: vec![],
            command: vec!["true".into()],
            workdir: Some("/srv/work".into()),
            limits: Default::default(),
            network: Default::default(),
        }
    }

    fn runtime_dir() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("isolated/usr/lib")).unwrap();
        std::fs::create_dir_all(t.path().join("isolated/opt")).unwrap();
        std::fs::write(t.path().join("isolated/opt/tool.conf"), "x").unwrap();
        std::os::unix::fs::symlink("usr/lib", t.path().join("isolated/lib")).unwrap();
        t
    }

    #[test]
    fn the_root_holds_the_sealed_mounts_and_the_sandbox_own_dirs_only() {
        let t = runtime_dir();
        let steps = plan_root(&job(t.path())).unwrap();
        assert_eq!(
            steps[0],
            Step::Tmpfs {
                target: "/".into(),
                mode: 0o755,
                size: None
            }
        );
        assert!(steps.contains(&Step::Symlink {
            path: "/lib".into(),
            target: "usr/lib".into()
        }));
        assert!(steps.contains(&Step::BindRuntime {
            source: "isolated/usr".into(),
            target: "/usr".into()
        }));
        let conf = steps
            .iter()
            .position(|s| {
                *s == Step::File {
                    path: "/etc/tool.conf".into(),
                }
            })
            .unwrap();
        let etc = steps
            .iter()
            .position(|s| {
                *s == Step::Dir {
                    path: "/etc".into(),
                }
            })
            .unwrap();
        assert!(etc < conf);
        let host_binds: Vec<&PathBuf> = steps
            .iter()
            .filter_map(|s| match s {
                Step::BindHost { source, .. } => Some(source),
                _ => None,
            })
            .collect();
        let mut expected: Vec<PathBuf> =
            DEVICES.iter().map(|d| Path::new("/dev").join(d)).collect();
        expected.push("/srv/work".into());
        assert_eq!(
            host_binds,
            expected.iter().collect::<Vec<_>>(),
            "only devices and the work dir come from the host"
        );
    }

    #[derive(Default)]
    struct Recorder(Vec<String>);

    impl MountOps for Recorder {
        fn make_mounts_private(&mut self) -> Result<()> {
            self.0.push("private /".into());
            Ok(())
        }
        fn mount_tmpfs(&mut self, target: &Path, mode: u32) -> Result<()> {
            self.0.push(format!("tmpfs {} {mode:o}", target.display()));
            Ok(())
        }
        fn mount_tmpfs_of_size(&mut self, target: &Path, mode: u32, bytes: u64) -> Result<()> {
            self.0
                .push(format!("tmpfs {} {mode:o} size={bytes}", target.display()));
            Ok(())
        }
        fn mount_proc(&mut self, target: &Path) -> Result<()> {
            self.0.push(format!("proc {}", target.display()));
            Ok(())
        }
        fn bind(&mut self, source: &Path, target: &Path, flags: BindFlags) -> Result<()> {
            let mode = if flags.writable { "rw" } else { "ro" };
            let source = if source.starts_with("/proc/self/fd") {
                Path::new("<fd>")
            } else {
                source
            };
            self.0.push(format!(
                "bind {} {} {mode}",
                source.display(),
                target.display()
            ));
            Ok(())
        }
        fn mkdir(&mut self, path: &Path, _: u32) -> Result<()> {
            self.0.push(format!("mkdir {}", path.display()));
            Ok(())
        }
        fn create_file(&mut self, path: &Path) -> Result<()> {
            self.0.push(format!("touch {}", path.display()));
            Ok(())
        }
        fn symlink(&mut self, target: &Path, path: &Path) -> Result<()> {
            self.0.push(format!(
                "symlink {} -> {}",
                path.display(),
                target.display()
            ));
            Ok(())
        }
        fn pivot_root(&mut self, new_root: &Path) -> Result<()> {
            self.0.push(format!("pivot {}", new_root.display()));
            Ok(())
        }
        fn remount_root_readonly(&mut self) -> Result<()> {
            self.0.push("ro /".into());
            Ok(())
        }
        fn remount_readonly(&mut self, target: &Path) -> Result<()> {
            self.0.push(format!("ro {}", target.display()));
            Ok(())
        }
    }

    #[test]
    fn apply_goes_private_first_then_pivots_and_ends_read_only() {
        let t = runtime_dir();
        let steps = plan_root(&job(t.path())).unwrap();
        let mut recorder = Recorder::default();
        apply(
            &mut recorder,
            t.path(),
            Path::new("/nonexistent/root"),
            &steps,
        )
        .unwrap();
        let log = recorder.0;
        assert_eq!(log[0], "private /");
        assert_eq!(log[1], "tmpfs /nonexistent/root 755");
        assert!(
            log.contains(&"bind <fd> /nonexistent/root/usr ro".to_string()),
            "{log:#?}"
        );
        assert!(log.contains(&"bind /srv/work /nonexistent/root/work rw".to_string()));
        assert!(log.contains(&"ro /nonexistent/root/dev".to_string()));
        assert_eq!(log[log.len() - 2], "pivot /nonexistent/root");
        assert_eq!(log[log.len() - 1], "ro /");
    }

    #[test]
    fn a_source_escaping_the_runtime_dir_is_not_bound() {
        let t = runtime_dir();
        std::os::unix::fs::symlink("/etc", t.path().join("isolated/etc")).unwrap();
        let mut j = job(t.path());
        j.mounts = vec![Mount::readonly("isolated/etc/passwd", "/etc/passwd")];
        let steps = plan_root(&j).unwrap();
        let err = apply(&mut Recorder::default(), t.path(), Path::new("/x"), &steps).unwrap_err();
        assert!(err.to_string().contains("RESOLVE_BENEATH"), "{err}");
    }
}
