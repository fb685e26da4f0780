//! Resource limits through cgroups: v2 where the controller is enabled in the unified
//! hierarchy, else the v1 hierarchy that mounts it (hosts like the CI machine mount memory,
//! pids and cpu as v1 beside a controller-less cgroup2). A missing controller is an error.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{openat, Mode, OFlags, CWD};

use crate::error::{Error, Result};
use crate::job::Limits;

const PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    V1,
    V2,
}

/// The cgroup dirs of one job, one per hierarchy used; removed by [`Cgroups::remove`].
#[derive(Debug)]
pub struct Cgroups {
    dirs: Vec<(PathBuf, CgroupMode)>,
    /// The dir of `dirs` the memory controller limits, if one does.
    memory: Option<(PathBuf, CgroupMode)>,
}

/// Where each controller can be used, read from /proc/self/mountinfo.
#[derive(Debug, Default)]
struct Hierarchies {
    unified: Option<PathBuf>,
    /// The controllers the unified hierarchy offers (`cgroup.controllers`).
    unified_controllers: Vec<String>,
    v1: Vec<(PathBuf, Vec<String>)>,
}

impl Hierarchies {
    fn read() -> Result<Hierarchies> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::sys("read(/proc/self/mountinfo)", e))?;
        let mut found = Self::parse(&text);
        if let Some(unified) = &found.unified {
            let listed =
                std::fs::read_to_string(unified.join("cgroup.controllers")).unwrap_or_default();
            found.unified_controllers = listed.split_whitespace().map(String::from).collect();
        }
        Ok(found)
    }

    fn parse(mountinfo: &str) -> Hierarchies {
        let mut found = Hierarchies::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = left.split(' ').nth(4).map(PathBuf::from);
            let mut right = right.split(' ');
            let (fstype, super_options) = (right.next(), right.nth(1));
            match (fstype, mount_point) {
                (Some("cgroup2"), Some(point)) if found.unified.is_none() => {
                    found.unified = Some(point)
                }
                (Some("cgroup"), Some(point)) => {
                    let options = super_options
                        .unwrap_or_default()
                        .split(',')
                        .map(String::from)
                        .collect();
                    found.v1.push((point, options));
                }
                _ => {}
            }
        }
        found
    }

    /// The hierarchy serving `controller`: unified if it lists it, else a v1 mount.
    fn locate(&self, controller: &str) -> Result<(PathBuf, CgroupMode)> {
        if let Some(unified) = &self.unified {
            if self.unified_controllers.iter().any(|c| c == controller) {
                return Ok((unified.clone(), CgroupMode::V2));
            }
        }
        self.v1
            .iter()
            .find(|(_, options)| options.iter().any(|o| o == controller))
            .map(|(point, _)| (point.clone(), CgroupMode::V1))
            .ok_or_else(|| Error::NoController {
                controller: controller.to_string(),
                unified: self
                    .unified
                    .as_deref()
                    .map_or_else(|| "none mounted".into(), |p| p.display().to_string()),
            })
    }
}

impl Cgroups {
    /// Creates the job's cgroups with `limits` applied.
    pub fn create(job_name: &str, limits: &Limits) -> Result<Cgroups> {
        let hierarchies = Hierarchies::read()?;
        let mut wanted: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
        if let Some(bytes) = limits.memory_bytes {
            wanted.push(("memory", vec![("limit", bytes.to_string())]));
        }
        if let Some(pids) = limits.pids {
            wanted.push(("pids", vec![("pids.max", pids.to_string())]));
        }
        if let Some(cpus) = limits.cpus {
            let quota = ((cpus * PERIOD_US as f64).round() as u64).max(1000);
            wanted.push(("cpu", vec![("quota", quota.to_string())]));
        }
        let mut cgroups = Cgroups {
            dirs: Vec::new(),
            memory: None,
        };
        for (controller, settings) in wanted {
            let (mount, mode) = hierarchies.locate(controller)?;
            let base = mount.join("runseal");
            let dir = base.join(job_name);
            create_dir(&base)?;
            reap_stale(&base);
            if mode == CgroupMode::V2 {
                enable_controller(&mount, controller)?;
                enable_controller(&base, controller)?;
            }
            if !cgroups.dirs.iter().any(|(d, _)| *d == dir) {
                create_dir(&dir)?;
                cgroups.dirs.push((dir.clone(), mode));
            }
            apply(&dir, mode, controller, &settings)?;
            if controller == "memory" {
                cgroups.memory = Some((dir, mode));
            }
        }
        Ok(cgroups)
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// Removes the job cgroups whose creator is gone from every hierarchy runseal uses. A
    /// daemon calls it at start: the jobs of the one before died with its helpers, and
    /// their cgroups would otherwise wait for the next job that asks for the same limit.
    pub fn reap_orphans() {
        let Ok(hierarchies) = Hierarchies::read() else {
            return;
        };
        for controller in ["memory", "pids", "cpu"] {
            if let Ok((mount, _)) = hierarchies.locate(controller) {
                reap_stale(&mount.join("runseal"));
            }
        }
    }

    /// What the job's init needs to start in the job's cgroups, opened before it is
    /// cloned: the v2 dir to clone it into, and the v1 `tasks` files it writes itself into.
    pub fn joining(&self) -> Result<Joining> {
        let mut joining = Joining {
            into: None,
            tasks: Vec::new(),
        };
        for (dir, mode) in &self.dirs {
            match mode {
                CgroupMode::V2 => joining.into = Some(open(dir, OFlags::DIRECTORY)?),
                CgroupMode::V1 => {
                    let tasks = dir.join("tasks");
                    let fd = open(&tasks, OFlags::WRONLY)?;
                    joining.tasks.push((tasks, fd));
                }
            }
        }
        Ok(joining)
    }

    /// Removes the job's cgroups, waiting briefly for exiting processes to leave them.
    pub fn remove(&mut self) {
        for (dir, _) in self.dirs.drain(..) {
            for _ in 0..100 {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        }
    }

    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(d, _)| d.as_path())
    }

    /// How many processes the OOM killer killed in the job's memory cgroup (v1
    /// `memory.oom_control`, v2 `memory.events`); 0 without one. Read before removal.
    pub fn oom_kills(&self) -> u64 {
        let Some((dir, mode)) = &self.memory else {
            return 0;
        };
        let file = match mode {
            CgroupMode::V1 => "memory.oom_control",
            CgroupMode::V2 => "memory.events",
        };
        std::fs::read_to_string(dir.join(file)).map_or(0, |text| counter(&text, "oom_kill"))
    }
}

/// How a job's init enters its cgroups without another process moving it there. Moving a
/// process by pid (`cgroup.procs`) takes the kernel's global threadgroup lock for writing,
/// which waits for an RCU grace period: 5-10 ms of every job start. A v2 cgroup is entered
/// at birth instead (`clone3` with `CLONE_INTO_CGROUP`), and on v1 the single-threaded init
/// writes `0` (itself) to each `tasks` file, a move of one thread that skips that lock.
/// The files were opened by the caller, whose credentials the kernel checks.
#[derive(Debug)]
pub struct Joining {
    into: Option<OwnedFd>,
    tasks: Vec<(PathBuf, OwnedFd)>,
}

impl Joining {
    /// The v2 cgroup to clone init into.
    pub fn clone_into(&self) -> Option<BorrowedFd<'_>> {
        self.into.as_ref().map(AsFd::as_fd)
    }

    /// In init, before anything else: moves this (single-threaded) process into every v1
    /// cgroup of the job, so that everything it forks starts there.
    pub fn join_v1(&self) -> Result<()> {
        for (path, tasks) in &self.tasks {
            let written = match rustix::io::write(tasks, b"0") {
                Ok(1) => continue,
                Ok(_) => std::io::ErrorKind::WriteZero.into(),
                Err(e) => e.into(),
            };
            return Err(Error::Cgroup {
                action: "write \"0\" to".into(),
                path: path.clone(),
                source: written,
            });
        }
        Ok(())
    }
}

fn open(path: &Path, flags: OFlags) -> Result<OwnedFd> {
    openat(CWD, path, flags | OFlags::CLOEXEC, Mode::empty()).map_err(|e| Error::Cgroup {
        action: "open".into(),
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// The value of `key` in a cgroup's `key value` lines; 0 when absent.
fn counter(text: &str, key: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The pid of the runseal that created a job cgroup, from its name (`job-<pid>-<nanos>`).
fn creator(name: &str) -> Option<u32> {
    name.strip_prefix("job-")?.split_once('-')?.0.parse().ok()
}

/// Removes the job cgroups under `base` whose creator is gone: a runseal killed with
/// SIGKILL never removes its own. The kernel refuses to remove a cgroup that still holds a
/// process, so a job that is still running keeps its cgroup whatever this decides.
fn reap_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let alive = creator(&entry.file_name().to_string_lossy())
            .map(|pid| Path::new("/proc").join(pid.to_string()).exists());
        if alive == Some(false) {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        self.remove();
    }
}

fn apply(
    dir: &Path,
    mode: CgroupMode,
    controller: &str,
    settings: &[(&str, String)],
) -> Result<()> {
    for (key, value) in settings {
        match (mode, controller, *key) {
            (CgroupMode::V2, "memory", _) => {
                write(&dir.join("memory.max"), value)?;
                write_if_present(&dir.join("memory.swap.max"), "0")?;
            }
            (CgroupMode::V1, "memory", _) => {
                write(&dir.join("memory.limit_in_bytes"), value)?;
                write_if_present(&dir.join("memory.memsw.limit_in_bytes"), value)?;
            }
            (_, "pids", _) => write(&dir.join("pids.max"), value)?,
            (CgroupMode::V2, "cpu", _) => {
                write(&dir.join("cpu.max"), &format!("{value} {PERIOD_US}"))?
            }
            (CgroupMode::V1, "cpu", _) => {
                write(&dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), value)?;
            }
            _ => unreachable!("only memory, pids and cpu are requested"),
        }
    }
    Ok(())
}

fn enable_controller(dir: &Path, controller: &str) -> Result<()> {
    let control = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&control).unwrap_or_default();
    if enabled.split_whitespace().any(|c| c == controller) {
        return Ok(());
    }
    write(&control, &format!("+{controller}"))
}

fn create_dir(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(Error::Cgroup {
            action: "mkdir".into(),
            path: dir.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|source| Error::Cgroup {
        action: format!("write {value:?} to"),
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `value` to the control file at `path` if the kernel has one there (memory.swap.max
/// and memory.memsw.limit_in_bytes exist only with swap accounting): opened without
/// `O_CREAT`, so that its absence answers the open itself.
fn write_if_present(path: &Path, value: &str) -> Result<()> {
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, value.as_bytes()));
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Cgroup {
            action: format!("write {value:?} to"),
            path: path.to_path_buf(),
            source,
        }),
        Ok(()) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_oom_kills_and_job_names() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(counter(v1, "oom_kill"), 2);
        let v2 = "low 0\nhigh 0\nmax 14\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(counter(v2, "oom_kill"), 1);
        assert_eq!(counter("under_oom 0\n", "oom_kill"), 0);
        assert_eq!(creator("job-4242-123456789"), Some(4242));
        assert_eq!(creator("job-x-1"), None);
        assert_eq!(creator("other"), None);
    }

    #[test]
    fn reads_hybrid_and_unified_mountinfo() {
        let hybrid = "35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n\
                      36 25 0:31 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n\
                      37 25 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n";
        let h = Hierarchies::parse(hybrid);
        assert_eq!(
            h.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(h.v1.len(), 2);
        assert!(h.v1[1].1.contains(&"cpu".to_string()));
        let err = h.locate("pids").unwrap_err().to_string();
        assert!(err.contains("no `pids` controller"), "{err}");
        assert_eq!(
            h.locate("memory").unwrap(),
            (PathBuf::from("/sys/fs/cgroup/memory"), CgroupMode::V1)
        );
    }
}
