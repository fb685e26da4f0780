//! The job root: a plan of steps computed from the job (plain data), then applied through
//! [`MountOps`] inside the job's mount namespace.
//!
//! Nothing is done by path. The sandbox's own directories (`/proc`, `/dev`, `/tmp`, `/work`)
//! are made and opened first, while the root holds nothing of the runtime; every other place
//! is reached from the root's fd one component at a time with no symlink followed
//! ([`Dirs`]); sources are fds opened when the job was made. A runtime whose trees hold
//! symlinks aimed at `/`, at `/proc/self/fd` or at anything else can therefore only make the
//! job fail to start, never make a mount land outside the new root.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use runseal_spec::paths::ancestors;
use rustix::fs::FileType;

use crate::error::{Error, PlaceProblem, Result};
use crate::identity::EtcFiles;
use crate::job::Job;
use crate::sys;
use crate::sys::{file_type, read_link, Dirs, Leaf, MountAttr, MountOps};

/// Host device nodes a job may use; nothing else of the host's /dev.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// /proc files that show host-wide state a job's uid may read (its keys, kernel timers):
/// hidden behind /dev/null. The whole /proc is mounted read-only, which keeps /proc/sys,
/// sysrq-trigger and irq out of reach in one mount flag instead of a bind per path;
/// /proc/kcore needs CAP_SYS_RAWIO, which no job has.
pub const PROC_MASKED: [&str; 3] = ["keys", "timer_list", "sched_debug"];

const ETC: &str = "/etc";

/// The directories of the root that belong to the sandbox, never to a runtime.
const SANDBOX_DIRS: [&str; 4] = ["/proc", "/dev", "/tmp", "/work"];

/// One step of assembling the root, with paths as the job sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A directory of the sandbox's own, made and held open before any runtime tree is
    /// mounted; later steps mount on the held fd.
    SandboxDir {
        path: PathBuf,
    },
    Dir {
        path: PathBuf,
    },
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
    /// Bind `source` on `target` (a `leaf`) with `attr`.
    Bind {
        source: Source,
        target: PathBuf,
        leaf: Leaf,
        attr: MountAttr,
    },
    /// The runtime tree `mounts[source]` on `target` through an overlay: `files` of the
    /// sandbox's own over it, and with `copy_on_write`, writes going to a tmpfs of `size`
    /// that vanishes with the job (the runtime's tree never changes).
    Overlay {
        source: usize,
        target: PathBuf,
        files: EtcFiles,
        copy_on_write: bool,
        size: Option<u64>,
    },
    /// A file of the sandbox's own, written into the root's tmpfs where no runtime tree
    /// covers it.
    File {
        target: PathBuf,
        content: Vec<u8>,
    },
    Proc {
        target: PathBuf,
    },
    /// Bind the host's /dev/null over a file, if there is one (a /proc file the kernel may
    /// lack; a host secret under a build's overlay).
    Mask {
        target: PathBuf,
    },
    Tmpfs {
        target: PathBuf,
        mode: u32,
        size: Option<u64>,
    },
    /// Bind the host device `/dev/<name>` on the same path in the job's /dev.
    Device {
        name: &'static str,
    },
    /// Make a populated tmpfs of the sandbox (the job's /dev) read-only.
    ReadOnly {
        target: PathBuf,
    },
}

/// Where a bind comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The job's `mounts[i]` source, opened when the job was made.
    Runtime(usize),
    /// The job's work dir, opened when the job was made.
    Work,
    /// The job's `volumes[i]` source, opened when the job was made.
    Volume(usize),
    /// A host path of the operator's (the builder's script dir and runtimes root).
    Host(PathBuf),
}

/// The steps that build `job`'s root. Reads only the job's source fds (to tell symlinked
/// top-level dirs, which become symlinks, from directories and files, which are bound).
pub fn plan_root(job: &Job) -> Result<Vec<Step>> {
    let mut steps: Vec<Step> = SANDBOX_DIRS
        .iter()
        .filter(|dir| **dir != "/work" || job.workdir.is_some())
        .map(|dir| Step::SandboxDir { path: dir.into() })
        .collect();
    let mut etc_laid = false;
    let mut order: Vec<usize> = (0..job.mounts.len()).collect();
    order.sort_by_key(|&i| Path::new(&job.mounts[i].target).components().count());
    for i in order {
        let mount = &job.mounts[i];
        let target = PathBuf::from(&mount.target);
        let source = job.source(i);
        for parent in ancestors(&target) {
            steps.push(Step::Dir { path: parent });
        }
        let label = job.runtime_dir.join(&mount.source);
        let leaf = match file_type(source)? {
            FileType::Directory => Leaf::Dir,
            FileType::RegularFile => Leaf::File,
            FileType::Symlink => {
                if mount.sealed_name().is_none() {
                    return Err(Error::place(label, PlaceProblem::SymlinkSource));
                }
                steps.push(Step::Symlink {
                    path: target,
                    target: read_link(source, &label)?,
                });
                continue;
            }
            other => {
                let kind = format!("{other:?}");
                return Err(Error::place(label, PlaceProblem::SpecialSource(kind)));
            }
        };
        let files = if target == Path::new(ETC) && leaf == Leaf::Dir {
            etc_laid = true;
            etc_files(job)
        } else {
            Vec::new()
        };
        let copy_on_write = mount.readonly == Some(false);
        if files.is_empty() && !copy_on_write {
            steps.push(Step::Bind {
                source: Source::Runtime(i),
                target,
                leaf,
                attr: MountAttr::READ_ONLY,
            });
        } else {
            steps.push(Step::Overlay {
                source: i,
                target,
                files,
                copy_on_write,
                size: job.limits.tmp_size,
            });
        }
    }
    // No runtime tree is /etc (nor a symlink there): the files go into the root's own.
    if !etc_laid
        && !job
            .mounts
            .iter()
            .any(|m| Path::new(&m.target) == Path::new(ETC))
    {
        for (name, content) in etc_files(job) {
            steps.push(Step::File {
                target: Path::new(ETC).join(name),
                content,
            });
        }
    }

    steps.extend(proc_and_dev());
    steps.push(Step::Tmpfs {
        target: "/tmp".into(),
        mode: 0o1777,
        size: job.limits.tmp_size,
    });
    if job.workdir.is_some() {
        steps.push(Step::Bind {
            source: Source::Work,
            target: "/work".into(),
            leaf: Leaf::Dir,
            attr: MountAttr::WRITABLE,
        });
    }
    // Last, so that a volume may go inside /tmp or /work.
    for (i, volume) in job.volumes.iter().enumerate() {
        for parent in ancestors(&volume.target) {
            steps.push(Step::Dir { path: parent });
        }
        let leaf = match file_type(job.volume_fd(i))? {
            FileType::Directory => Leaf::Dir,
            _ => Leaf::File,
        };
        let attr = if volume.readonly {
            MountAttr::READ_ONLY
        } else {
            MountAttr::WRITABLE
        };
        steps.push(Step::Bind {
            source: Source::Volume(i),
            target: volume.target.clone(),
            leaf,
            attr,
        });
    }
    Ok(steps)
}

/// The job's `/etc` files that no runtime mount targets itself (a runtime's own file there
/// is the runtime's choice).
fn etc_files(job: &Job) -> EtcFiles {
    job.etc_files
        .iter()
        .filter(|(name, _)| {
            let target = Path::new(ETC).join(name);
            !job.mounts.iter().any(|m| Path::new(&m.target) == target)
        })
        .cloned()
        .collect()
}

/// A fresh read-only /proc with host-wide files masked, and a read-only /dev of the
/// [`DEVICES`] only: the same for jobs and builds. `/proc` and `/dev` must be sandbox dirs.
pub fn proc_and_dev() -> Vec<Step> {
    let mut steps = vec![Step::Proc {
        target: "/proc".into(),
    }];
    for name in PROC_MASKED {
        steps.push(Step::Mask {
            target: Path::new("/proc").join(name),
        });
    }
    steps.push(Step::Tmpfs {
        target: "/dev".into(),
        mode: 0o755,
        size: None,
    });
    for name in DEVICES {
        steps.push(Step::Device { name });
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
    steps
}

/// Where the layers of the overlay made by step `index` are attached: in the root's `/proc`
/// dir, hidden once the job's proc is attached over it.
pub(crate) fn layers_dir(index: usize) -> PathBuf {
    Path::new("/proc").join(layers_name(index))
}

fn layers_name(index: usize) -> String {
    format!(".layers-{index}")
}

/// Where an overlay's layers are attached while it is made: overlayfs takes its layers by
/// path and only from attached mounts, so they are attached in the root's `/proc` dir,
/// which the job's proc covers before the job runs. The fds keep them reachable.
struct Layers<'a> {
    staging: Dirs<'a>,
    name: PathBuf,
}

impl Layers<'_> {
    fn overlay(
        &self,
        ops: &mut dyn MountOps,
        tree: OwnedFd,
        files: &EtcFiles,
        copy_on_write: bool,
        size: Option<u64>,
        target: &Path,
    ) -> Result<OwnedFd> {
        let dir = |part: &str| self.staging.make(&self.name.join(part), Leaf::Dir);
        ops.attach(tree.as_fd(), dir("lower")?.as_fd(), target)?;
        let mut lower = Vec::new();
        let files_dir = dir("files")?;
        for (name, content) in files {
            sys::write_new_file(files_dir.as_fd(), name, content)?;
        }
        if !files.is_empty() {
            lower.push(sys::fd_path(files_dir.as_fd()));
        }
        lower.push(sys::fd_path(tree.as_fd()));
        if !copy_on_write {
            return ops.overlay(&lower, None);
        }
        let scratch = ops.tmpfs(0o755, size)?;
        ops.attach(scratch.as_fd(), dir("scratch")?.as_fd(), target)?;
        let scratch_dirs = Dirs::new(scratch.as_fd());
        let upper = scratch_dirs.make(Path::new("/upper"), Leaf::Dir)?;
        let work = scratch_dirs.make(Path::new("/work"), Leaf::Dir)?;
        let upper = Some((sys::fd_path(upper.as_fd()), sys::fd_path(work.as_fd())));
        ops.overlay(&lower, upper)
    }
}

/// The fds a root is built from that do not come from the runtime: opened before anything
/// is mounted in the job's namespace.
pub struct HostFds {
    /// `/dev/<name>` for each of [`DEVICES`].
    pub devices: Vec<(&'static str, OwnedFd)>,
}

impl HostFds {
    pub fn open() -> Result<HostFds> {
        let dev = crate::sys::open_dir(Path::new("/dev"))?;
        let devices = DEVICES
            .iter()
            .map(|&name| {
                crate::sys::open_beneath(dev.as_fd(), Path::new(name), Path::new("/dev"))
                    .map(|fd| (name, fd))
            })
            .collect::<Result<_>>()?;
        Ok(HostFds { devices })
    }

    fn device(&self, name: &str) -> Result<BorrowedFd<'_>> {
        self.devices
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, fd)| fd.as_fd())
            .ok_or_else(|| Error::unprepared(Path::new("/dev").join(name), "was not opened"))
    }
}

/// The detached mount trees a root's binds attach, one per step that binds something,
/// keyed by the step's index.
///
/// They are cloned (`open_tree`) from the fds the job was made with, in the caller's mount
/// namespace, where those fds belong: the kernel copies a tree only from the namespace the
/// caller is in, and a detached tree is then attached in the job's own.
pub struct Trees(HashMap<usize, OwnedFd>);

/// Clones, with their final attributes, the trees `steps` bind.
pub fn detach_trees(
    ops: &mut dyn MountOps,
    job: Option<&Job>,
    host: &HostFds,
    steps: &[Step],
) -> Result<Trees> {
    let mut trees = HashMap::new();
    for (index, step) in steps.iter().enumerate() {
        let (tree, attr, target) = match step {
            Step::Bind {
                source,
                target,
                attr,
                ..
            } => {
                let tree = match (source, job) {
                    (Source::Runtime(i), Some(job)) => clone_runtime_tree(ops, job, *i)?,
                    (Source::Work, Some(job)) => {
                        let fd = job
                            .workdir_fd()
                            .ok_or_else(|| Error::unprepared(target, "no work dir was opened"))?;
                        ops.clone_tree(fd, target)?
                    }
                    (Source::Volume(i), Some(job)) => ops.clone_tree(job.volume_fd(*i), target)?,
                    (Source::Host(path), _) => {
                        // Through no symlink: whoever may write in the script dir could
                        // otherwise swap in a link to any host file or dir between the
                        // caller's check and this open.
                        let fd = sys::open_through_no_symlink(path, false).map_err(|e| match e
                            .raw_os_error()
                        {
                            Some(libc::ELOOP) => Error::place(path, PlaceProblem::Symlink),
                            _ => Error::sys(format!("open({}, O_PATH)", path.display()), e),
                        })?;
                        ops.clone_tree(fd.as_fd(), path)?
                    }
                    (_, None) => {
                        return Err(Error::unprepared(target, "a build has no job to bind from"))
                    }
                };
                (tree, *attr, target.clone())
            }
            Step::Overlay { source, target, .. } => {
                let job = job.ok_or_else(|| Error::unprepared(target, "a build has no job"))?;
                let tree = clone_runtime_tree(ops, job, *source)?;
                (tree, MountAttr::READ_ONLY, target.clone())
            }
            // The job's /proc shows the same kernel as the caller's, so a file the kernel
            // lacks here needs no mask there; one that appears anyway finds no tree in
            // `populate` and fails the job rather than stay unmasked.
            Step::Mask { target } if std::fs::symlink_metadata(target).is_err() => continue,
            Step::Mask { target } => {
                let null = Path::new("/dev/null");
                let tree = ops.clone_tree(host.device("null")?, null)?;
                (tree, DEVICE, target.clone())
            }
            Step::Device { name } => {
                let path = Path::new("/dev").join(name);
                (ops.clone_tree(host.device(name)?, &path)?, DEVICE, path)
            }
            _ => continue,
        };
        ops.set_attr(tree.as_fd(), attr, &target)?;
        trees.insert(index, tree);
    }
    Ok(Trees(trees))
}

fn clone_runtime_tree(ops: &mut dyn MountOps, job: &Job, index: usize) -> Result<OwnedFd> {
    let label = job.runtime_dir.join(&job.mounts[index].source);
    ops.clone_tree(job.source(index), &label)
}

/// How the host's device nodes are bound: writable and usable as devices.
const DEVICE: MountAttr = MountAttr {
    writable: true,
    devices: true,
};

/// Applies `steps`: a new tmpfs is attached on `mountpoint` (an empty dir of the host's) as
/// the job's `/`, populated, made read-only, and pivoted into. Runs in the job's own mount
/// namespace.
pub fn apply(
    ops: &mut dyn MountOps,
    trees: Trees,
    mountpoint: BorrowedFd<'_>,
    steps: &[Step],
) -> Result<()> {
    ops.make_mounts_private()?;
    let root = ops.tmpfs(0o755, None)?;
    ops.attach(root.as_fd(), mountpoint, Path::new("/"))?;
    populate(ops, root.as_fd(), trees, steps)?;
    ops.set_attr(root.as_fd(), MountAttr::READ_ONLY, Path::new("/"))?;
    ops.pivot(root.as_fd())
}

/// Applies `steps` in the attached root `root`, attaching the `trees` made for them.
pub fn populate(
    ops: &mut dyn MountOps,
    root: BorrowedFd<'_>,
    mut trees: Trees,
    steps: &[Step],
) -> Result<()> {
    let dirs = Dirs::new(root);
    let mut held: HashMap<&Path, OwnedFd> = HashMap::new();
    let held_at = |held: &HashMap<&Path, OwnedFd>, target: &Path| -> Result<OwnedFd> {
        held.get(target)
            .and_then(|fd| fd.try_clone().ok())
            .ok_or_else(|| Error::unprepared(target, "was not prepared"))
    };
    let mut tree_for = |index: usize, target: &Path| {
        trees
            .0
            .remove(&index)
            .ok_or_else(|| Error::unprepared(target, "no tree was made for it"))
    };
    for (index, step) in steps.iter().enumerate() {
        match step {
            Step::SandboxDir { path } => {
                held.insert(path, dirs.make(path, Leaf::Dir)?);
            }
            Step::Dir { path } => drop(dirs.make(path, Leaf::Dir)?),
            Step::Symlink { path, target } => dirs.symlink(path, target)?,
            Step::Bind { target, leaf, .. } => {
                let at = match held.get(target.as_path()) {
                    Some(fd) => fd.try_clone().map_err(|e| Error::sys("dup", e))?,
                    None => dirs.make(target, *leaf)?,
                };
                ops.attach(tree_for(index, target)?.as_fd(), at.as_fd(), target)?;
            }
            Step::Overlay {
                target,
                files,
                copy_on_write,
                size,
                ..
            } => {
                let proc_dir = held_at(&held, Path::new("/proc"))?;
                let tree = tree_for(index, target)?;
                let layers = Layers {
                    staging: Dirs::new(proc_dir.as_fd()),
                    name: Path::new("/").join(layers_name(index)),
                };
                let overlay = layers.overlay(ops, tree, files, *copy_on_write, *size, target)?;
                let attr = MountAttr {
                    writable: *copy_on_write,
                    devices: false,
                };
                ops.set_attr(overlay.as_fd(), attr, target)?;
                ops.attach(
                    overlay.as_fd(),
                    dirs.make(target, Leaf::Dir)?.as_fd(),
                    target,
                )?;
            }
            Step::File { target, content } => {
                let (parent, name) = (target.parent(), target.file_name());
                let (Some(parent), Some(name)) = (parent, name.and_then(|n| n.to_str())) else {
                    return Err(Error::place(target, PlaceProblem::NoParent));
                };
                sys::write_new_file(dirs.make(parent, Leaf::Dir)?.as_fd(), name, content)?;
            }
            Step::Proc { target } => {
                let proc = ops.proc()?;
                ops.attach(proc.as_fd(), held_at(&held, target)?.as_fd(), target)?;
                held.insert(target, proc);
            }
            Step::Mask { target } => {
                // Which files exist depends on the kernel's configuration or the host.
                if let Some(at) = dirs.existing(target)? {
                    ops.attach(tree_for(index, target)?.as_fd(), at.as_fd(), target)?;
                }
            }
            Step::Tmpfs { target, mode, size } => {
                let tmpfs = ops.tmpfs(*mode, *size)?;
                ops.attach(tmpfs.as_fd(), held_at(&held, target)?.as_fd(), target)?;
                held.insert(target, tmpfs);
            }
            Step::Device { name } => {
                let path = Path::new("/dev").join(name);
                let at = Dirs::new(held_at(&held, Path::new("/dev"))?.as_fd())
                    .make(Path::new(name), Leaf::File)?;
                ops.attach(tree_for(index, &path)?.as_fd(), at.as_fd(), &path)?;
            }
            Step::ReadOnly { target } => {
                let attr = MountAttr {
                    writable: false,
                    devices: true,
                };
                ops.set_attr(held_at(&held, target)?.as_fd(), attr, target)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobRequest, User};
    use crate::recorder::{refused_symlink_at, Recorder};
    use runseal_spec::{Mount, RuntimeConfig};

    fn runtime_dir() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("isolated/usr/lib")).unwrap();
        std::fs::create_dir_all(t.path().join("isolated/etc")).unwrap();
        std::fs::write(t.path().join("isolated/etc/tool.conf"), "x").unwrap();
        std::fs::write(
            t.path()
                .join(format!("isolated/{}", ".runseal-manifest.json")),
            "{}",
        )
        .unwrap();
        std::os::unix::fs::symlink("usr/lib", t.path().join("isolated/lib")).unwrap();
        t
    }

    fn job_with(dir: &Path, mounts: Vec<Mount>, workdir: Option<&Path>) -> Result<Job> {
        let config = RuntimeConfig {
            mounts,
            ..RuntimeConfig::default()
        };
        let request = JobRequest {
            command: vec!["true".into()],
            workdir: workdir.map(Path::to_path_buf),
            user: Some(User {
                uid: 1000,
                gid: 1000,
            }),
            ..JobRequest::default()
        };
        Job::for_runtime(dir, config, request)
    }

    fn sealed_mounts() -> Vec<Mount> {
        vec![
            Mount::readonly("isolated/usr", "/usr"),
            Mount::readonly("isolated/lib", "/lib"),
            Mount::readonly("isolated/etc", "/etc"),
        ]
    }

    #[test]
    fn the_root_holds_the_sealed_mounts_and_the_sandbox_own_dirs_only() {
        let t = runtime_dir();
        let work = tempfile::tempdir().unwrap();
        let job = job_with(t.path(), sealed_mounts(), Some(work.path())).unwrap();
        let steps = plan_root(&job).unwrap();
        let sandbox_dirs: Vec<&Step> = steps.iter().take(4).collect();
        assert!(
            sandbox_dirs
                .iter()
                .all(|s| matches!(s, Step::SandboxDir { .. })),
            "the sandbox's dirs come before anything of the runtime: {steps:#?}"
        );
        assert!(steps.contains(&Step::Symlink {
            path: "/lib".into(),
            target: "usr/lib".into()
        }));
        assert!(steps.contains(&Step::Bind {
            source: Source::Runtime(0),
            target: "/usr".into(),
            leaf: Leaf::Dir,
            attr: MountAttr::READ_ONLY,
        }));
        assert!(steps.contains(&Step::Bind {
            source: Source::Work,
            target: "/work".into(),
            leaf: Leaf::Dir,
            attr: MountAttr::WRITABLE,
        }));
    }

    #[test]
    fn a_symlinked_source_that_does_not_mirror_its_target_is_refused() {
        let t = runtime_dir();
        let mounts = vec![Mount::readonly("isolated/lib", "/opt/lib")];
        let job = job_with(t.path(), mounts, None).unwrap();
        let err = plan_root(&job).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Place {
                    problem: PlaceProblem::SymlinkSource,
                    ..
                }
            ),
            "{err}"
        );
    }

    fn host_fds() -> HostFds {
        HostFds::open().unwrap()
    }

    #[test]
    fn apply_goes_private_first_then_pivots_into_a_read_only_root() {
        let t = runtime_dir();
        let work = tempfile::tempdir().unwrap();
        let job = job_with(t.path(), sealed_mounts(), Some(work.path())).unwrap();
        let steps = plan_root(&job).unwrap();
        let mut recorder = Recorder::new();
        let mountpoint = tempfile::tempdir().unwrap();
        let at = crate::sys::open_dir(mountpoint.path()).unwrap();
        let trees = detach_trees(&mut recorder, Some(&job), &host_fds(), &steps).unwrap();
        apply(&mut recorder, trees, at.as_fd(), &steps).unwrap();
        let log = &recorder.log;
        // The trees are made, read-only, in the caller's namespace; then the job's own
        // namespace goes private before anything is attached.
        let private = log.iter().position(|l| l == "private /").unwrap();
        assert!(log[..private].iter().all(|l| !l.starts_with("attach")));
        assert!(log[..private].contains(&"ro /usr (tree usr)".to_string()));
        assert_eq!(log[private + 1], "attach tmpfs 755 None at /");
        for expected in [
            "ro /usr (tree usr)",
            "attach tree usr at /usr",
            "attach proc at /proc",
            "attach tree null at /proc/keys",
            "attach tree null at /dev/null",
            "rw /work (tree work)",
        ] {
            assert!(log.iter().any(|l| l == expected), "{expected}: {log:#?}");
        }
        assert_eq!(log[log.len() - 2], "ro / (tmpfs 755 None)");
        assert_eq!(log[log.len() - 1], "pivot tmpfs 755 None");
        let root = recorder.dir_of("tmpfs 755 None");
        assert!(root.join("usr").is_dir() && root.join("etc").is_dir());
        assert_eq!(
            std::fs::read_link(root.join("lib")).unwrap(),
            Path::new("usr/lib")
        );
    }

    #[test]
    fn a_mask_the_kernel_lacks_clones_nothing_and_a_file_left_unmasked_fails_the_root() {
        let mut steps = vec![
            Step::SandboxDir {
                path: "/proc".into(),
            },
            Step::Proc {
                target: "/proc".into(),
            },
        ];
        let unmasked = detach_trees(&mut Recorder::new(), None, &host_fds(), &steps).unwrap();
        for name in ["keys", "runseal-no-such-file"] {
            steps.push(Step::Mask {
                target: Path::new("/proc").join(name),
            });
        }
        let mut recorder = Recorder::new();
        let trees = detach_trees(&mut recorder, None, &host_fds(), &steps).unwrap();
        assert_eq!(recorder.log, ["rw /proc/keys (tree null)"]);
        let mountpoint = tempfile::tempdir().unwrap();
        let at = crate::sys::open_dir(mountpoint.path()).unwrap();
        apply(&mut recorder, trees, at.as_fd(), &steps).unwrap();
        assert!(recorder
            .log
            .contains(&"attach tree null at /proc/keys".to_string()));
        // The job's /proc shows `keys` but no tree was detached for it: no job starts.
        let mountpoint = tempfile::tempdir().unwrap();
        let at = crate::sys::open_dir(mountpoint.path()).unwrap();
        let err = apply(&mut Recorder::new(), unmasked, at.as_fd(), &steps).unwrap_err();
        assert!(
            matches!(&err, Error::Unprepared { target, .. } if target == Path::new("/proc/keys")),
            "{err}"
        );
    }

    /// The review's attack on runseald: a build passed the daemon's check of its script
    /// path, waited in the queue, and meanwhile the script's dir (or the script) became a
    /// symlink to a host dir or to /etc/shadow, which the builder bound and ran. What the
    /// builder binds from the host is opened through no symlink.
    #[test]
    fn a_host_source_reached_through_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::fs::write(dir.path().join("real/setup.sh"), "echo\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("scripts")).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", dir.path().join("real/shadow.sh")).unwrap();
        for (source, link) in [
            (dir.path().join("scripts"), dir.path().join("scripts")),
            (
                dir.path().join("scripts/setup.sh"),
                dir.path().join("scripts/setup.sh"),
            ),
            (
                dir.path().join("real/shadow.sh"),
                dir.path().join("real/shadow.sh"),
            ),
        ] {
            let steps = [Step::Bind {
                source: Source::Host(source.clone()),
                target: "/scripts".into(),
                leaf: Leaf::Dir,
                attr: MountAttr::READ_ONLY,
            }];
            let mut recorder = Recorder::new();
            let Err(err) = detach_trees(&mut recorder, None, &host_fds(), &steps) else {
                panic!("{} was bound", source.display());
            };
            assert!(
                matches!(&err, Error::Place { path, problem: PlaceProblem::Symlink } if *path == link),
                "{}: {err}",
                source.display()
            );
            assert!(recorder.log.is_empty(), "{:?}", recorder.log);
        }
        let steps = [Step::Bind {
            source: Source::Host(dir.path().join("real")),
            target: "/scripts".into(),
            leaf: Leaf::Dir,
            attr: MountAttr::READ_ONLY,
        }];
        assert!(detach_trees(&mut Recorder::new(), None, &host_fds(), &steps).is_ok());
    }

    /// The attack: a runtime tree holding `s/evil -> /` and a mount on `/s/evil/dev`. By
    /// path, the bind landed on the host's /dev; walked by fd, it stops at the symlink.
    #[test]
    fn a_target_through_a_symlink_is_refused_and_nothing_is_made_beyond_it() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("s")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("s/evil")).unwrap();
        let root = crate::sys::open_dir(dir.path()).unwrap();
        for leaf in [Leaf::Dir, Leaf::File] {
            let err = Dirs::new(root.as_fd())
                .make(Path::new("/s/evil/dev/null"), leaf)
                .unwrap_err();
            assert!(refused_symlink_at(&err, "/s/evil"), "{err}");
        }
        let err = Dirs::new(root.as_fd())
            .symlink(Path::new("/s/evil/x"), Path::new("/"))
            .unwrap_err();
        assert!(refused_symlink_at(&err, "/s/evil"), "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_target_that_is_a_symlink_itself_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("etc")).unwrap();
        let root = crate::sys::open_dir(dir.path()).unwrap();
        let err = Dirs::new(root.as_fd())
            .make(Path::new("/etc/passwd"), Leaf::File)
            .unwrap_err();
        assert!(refused_symlink_at(&err, "/etc"), "{err}");
        let err = Dirs::new(root.as_fd())
            .make(Path::new("/etc"), Leaf::Dir)
            .unwrap_err();
        assert!(refused_symlink_at(&err, "/etc"), "{err}");
    }
}
