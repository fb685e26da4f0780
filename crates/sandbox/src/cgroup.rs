//! Resource limits through cgroups: v2 where the controller is enabled in the unified
//! hierarchy, else the v1 hierarchy that mounts it (hosts like the CI machine mount memory,
//! pids and cpu as v1 beside a controller-less cgroup2). A missing controller is an error.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{openat, Mode, OFlags, CWD};
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

use crate::error::{Error, Result};
use crate::job::Limits;

const PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    V1,
    V2,
}

/// Where the locks of the cgroup slots are: `N` for slot N, held (flock) by the runseal
/// whose job has that slot's cgroups.
const SLOT_LOCKS: &str = "/run/runseal/cgroup-slots";
/// Each v2 limit runseal sets, and its value for no limit.
const UNLIMITED_V2: [(&str, &str); 3] = [
    ("memory.max", "max"),
    ("pids.max", "max"),
    ("cpu.max", "max 100000"),
];
/// Slots below this number are kept for the next job when theirs ends; higher ones, made
/// only when this many jobs run at once, are removed, so that idle cgroups (a memory cgroup
/// holds per-CPU memory in the kernel) stay as many as this at most.
const KEPT_SLOTS: usize = 64;
/// At most this many jobs have cgroups at once.
const MAX_SLOTS: usize = 4096;

/// The cgroup dirs of one job, one per hierarchy used, with its limits applied.
///
/// They are a slot's (`runseal/slot-N` in each hierarchy), reused by job after job, not
/// made and removed for each: a new memory cgroup and its removal, with the kernel's work
/// after it, cost a job start about as much as all the rest of its setup outside the
/// sandbox. A slot is a job's while its runseal holds the slot's lock, and only while no
/// process is left in it: one whose runseal was killed waits until its processes are gone.
/// Each job gets its own limits written; what stays from the one before is page cache
/// charged to the memory cgroup, which the kernel reclaims first.
#[derive(Debug)]
pub struct Cgroups {
    dirs: Vec<(PathBuf, CgroupMode)>,
    /// The dir of `dirs` the memory controller limits, if one does, and the OOM kills it
    /// had counted when this job got it.
    memory: Option<(PathBuf, CgroupMode, u64)>,
    slot: usize,
    /// The slot's lock; the slot is free again once it is closed.
    _lock: OwnedFd,
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
        let text = read_small(Path::new("/proc/self/mountinfo"))
            .map_err(|e| Error::sys("read(/proc/self/mountinfo)", e))?;
        let mut found = Self::parse(&text);
        if let Some(unified) = &found.unified {
            let listed = read_small(&unified.join("cgroup.controllers")).unwrap_or_default();
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

    /// runseal's dir in each hierarchy it uses.
    fn bases(&self) -> Vec<PathBuf> {
        let mut bases: Vec<PathBuf> = ["memory", "pids", "cpu"]
            .iter()
            .filter_map(|controller| self.locate(controller).ok())
            .map(|(mount, _)| mount.join("runseal"))
            .collect();
        bases.dedup();
        bases
    }
}

/// A controller to limit, where, and the settings to write.
struct Wanted {
    controller: &'static str,
    mount: PathBuf,
    mode: CgroupMode,
    value: String,
}

impl Cgroups {
    /// The job's cgroups, a free slot's, with `limits` applied.
    pub fn create(limits: &Limits) -> Result<Cgroups> {
        let hierarchies = Hierarchies::read()?;
        let mut wanted = Vec::new();
        let mut want = |controller: &'static str, value: Option<String>| -> Result<()> {
            if let Some(value) = value {
                let (mount, mode) = hierarchies.locate(controller)?;
                wanted.push(Wanted {
                    controller,
                    mount,
                    mode,
                    value,
                });
            }
            Ok(())
        };
        want("memory", limits.memory_bytes.map(|b| b.to_string()))?;
        want("pids", limits.pids.map(|p| p.to_string()))?;
        want(
            "cpu",
            limits.cpus.filter(|&cpus| throttles(cpus)).map(|cpus| {
                ((cpus * PERIOD_US as f64).round() as u64)
                    .max(1000)
                    .to_string()
            }),
        )?;
        for slot in 0..MAX_SLOTS {
            let Some(lock) = lock_slot(slot)? else {
                continue;
            };
            if let Some(cgroups) = Self::claim(slot, lock, &wanted)? {
                return Ok(cgroups);
            }
        }
        Err(Error::Cgroup {
            action: format!("find a free slot among {MAX_SLOTS} in"),
            path: SLOT_LOCKS.into(),
            source: std::io::ErrorKind::ResourceBusy.into(),
        })
    }

    /// Slot `slot`'s cgroups with the wanted limits, its `lock` held; `None` while a process
    /// is left in it, or when a cgroup reused from an earlier job refuses the new limits
    /// (a memory limit below what the last job left charged).
    fn claim(slot: usize, lock: OwnedFd, wanted: &[Wanted]) -> Result<Option<Cgroups>> {
        let mut cgroups = Cgroups {
            dirs: Vec::new(),
            memory: None,
            slot,
            _lock: lock,
        };
        let mut reused = false;
        for want in wanted {
            let base = want.mount.join("runseal");
            let dir = slot_dir(&base, slot);
            if want.mode == CgroupMode::V2 {
                create_dir(&base)?;
                enable_controller(&want.mount, want.controller)?;
                enable_controller(&base, want.controller)?;
            }
            if cgroups.dirs.iter().any(|(d, _)| *d == dir) {
                continue;
            }
            // runseal's own dir exists but for the first job on this hierarchy.
            reused |= match std::fs::create_dir(&dir) {
                Ok(()) => false,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    create_dir(&base)?;
                    create_dir(&dir)?;
                    false
                }
                Err(source) => {
                    return Err(Error::Cgroup {
                        action: "mkdir".into(),
                        path: dir,
                        source,
                    })
                }
            };
            cgroups.dirs.push((dir, want.mode));
        }
        // Every process of a job is in each of its cgroups: one says whether any is left.
        if let Some((dir, _)) = cgroups.dirs.first() {
            let procs = read_small(&dir.join("cgroup.procs")).unwrap_or_default();
            if !procs.trim().is_empty() {
                return Ok(None);
            }
        }
        for want in wanted {
            let dir = slot_dir(&want.mount.join("runseal"), slot);
            if reused && want.controller == "memory" && !Self::fresh_if_charged(&dir, want.mode) {
                return Ok(None);
            }
            match apply(&dir, want.mode, want.controller, &want.value) {
                Ok(()) => {}
                Err(_) if reused => return Ok(None),
                Err(e) => return Err(e),
            }
            if want.controller == "memory" {
                let before = oom_kills_in(&dir, want.mode);
                cgroups.memory = Some((dir, want.mode, before));
            }
        }
        // A v2 slot holds every controller in one dir: one this job does not limit must not
        // keep the last job's limit.
        for (dir, mode) in &cgroups.dirs {
            if *mode == CgroupMode::V2 {
                for (file, unlimited) in UNLIMITED_V2 {
                    let limited = wanted.iter().any(|w| file.starts_with(w.controller));
                    if !limited {
                        write_if_present(&dir.join(file), unlimited)?;
                    }
                }
            }
        }
        Ok(Some(cgroups))
    }

    /// Makes the memory cgroup `dir`, whose processes are gone, a new one if the last job
    /// in it left more than [`LEFT_CHARGED`] that reclaim cannot free (files on a tmpfs
    /// volume, its `/tmp` while its sandbox was torn down, SysV shared memory): the next
    /// job would have that on top of its own and meet its limit early. A removed cgroup's
    /// charge goes to its parent. `false` if it could not be removed.
    fn fresh_if_charged(dir: &Path, mode: CgroupMode) -> bool {
        if unreclaimable(dir, mode) <= LEFT_CHARGED {
            return true;
        }
        std::fs::remove_dir(dir).is_ok() && create_dir(dir).is_ok()
    }

    /// Removes, from every hierarchy runseal uses, the slots no job holds and nothing is
    /// left in, and the per-job cgroups earlier versions made whose creator is gone. A daemon
    /// calls it at start.
    pub fn reap_orphans() {
        let Ok(hierarchies) = Hierarchies::read() else {
            return;
        };
        let bases = hierarchies.bases();
        for base in &bases {
            reap_stale(base);
        }
        let mut slots: Vec<usize> = bases
            .iter()
            .flat_map(|base| std::fs::read_dir(base).into_iter().flatten().flatten())
            .filter_map(|entry| slot_number(&entry.file_name().to_string_lossy()))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        for slot in slots {
            if let Ok(Some(_lock)) = lock_slot(slot) {
                for base in &bases {
                    let _ = std::fs::remove_dir(slot_dir(base, slot));
                }
            }
        }
    }

    /// What the job needs to start in its cgroups, opened before the sandbox is cloned: the
    /// v2 dir to clone it into, and the v1 `tasks` files it writes itself into.
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

    /// How many processes the OOM killer killed in the job's memory cgroup since the job
    /// got it (v1 `memory.oom_control`, v2 `memory.events`); 0 without one.
    pub fn oom_kills(&self) -> u64 {
        self.memory.as_ref().map_or(0, |(dir, mode, before)| {
            oom_kills_in(dir, *mode).saturating_sub(*before)
        })
    }
}

/// Whether a quota of `cpus` CPUs can slow a job down: not when it is at least the CPUs the
/// machine has online (a job may widen its CPU affinity to all of them), where a cpu cgroup
/// would only cost every start its setup.
fn throttles(cpus: f64) -> bool {
    let online = read_small(Path::new("/sys/devices/system/cpu/online"));
    online
        .ok()
        .and_then(|list| cpus_in(&list))
        .is_none_or(|online| cpus < online as f64)
}

/// How many CPUs a kernel CPU list (`0-3,8,10-11`) names.
fn cpus_in(list: &str) -> Option<usize> {
    let mut count = 0;
    for part in list.trim().split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
        count += last.checked_sub(first)? + 1;
    }
    Some(count)
}

impl Drop for Cgroups {
    /// Removes the slot, while its lock is still held, if it is past [`KEPT_SLOTS`]. The
    /// job's processes are gone by then (else the removal fails, and a daemon's start
    /// removes it).
    fn drop(&mut self) {
        if self.slot >= KEPT_SLOTS {
            for (dir, _) in &self.dirs {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// The memory a kept slot may have charged that the kernel cannot reclaim: little more
/// than what the kernel's own bookkeeping of a job's exit leaves for a moment.
const LEFT_CHARGED: u64 = 1 << 20;

/// The memory charged to the memory cgroup `dir` that reclaim cannot free: all of it but
/// the page cache of files not on a tmpfs (`cache`/`file` count tmpfs and shm pages too,
/// as `shmem`). An unreadable cgroup counts as all charged.
fn unreclaimable(dir: &Path, mode: CgroupMode) -> u64 {
    let (usage, cache) = match mode {
        CgroupMode::V1 => ("memory.usage_in_bytes", "cache"),
        CgroupMode::V2 => ("memory.current", "file"),
    };
    let Some(usage) = read_small(&dir.join(usage))
        .ok()
        .and_then(|usage| usage.trim().parse::<u64>().ok())
    else {
        return u64::MAX;
    };
    // Nothing charged, or little: no need for the statistics (the costlier read).
    if usage <= LEFT_CHARGED {
        return usage;
    }
    let Ok(stat) = read_small(&dir.join("memory.stat")) else {
        return u64::MAX;
    };
    let reclaimable = counter(&stat, cache).saturating_sub(counter(&stat, "shmem"));
    usage.saturating_sub(reclaimable)
}

/// Slot `slot`'s dir under runseal's dir `base` of a hierarchy; [`slot_number`] reads it back.
fn slot_dir(base: &Path, slot: usize) -> PathBuf {
    base.join(format!("slot-{slot}"))
}

/// The number of a slot's dir name (`slot-N`).
fn slot_number(name: &str) -> Option<usize> {
    name.strip_prefix("slot-")?
        .parse()
        .ok()
        .filter(|n| *n < MAX_SLOTS)
}

/// Slot `slot`'s lock, if no one else holds it.
fn lock_slot(slot: usize) -> Result<Option<OwnedFd>> {
    let path = Path::new(SLOT_LOCKS).join(slot.to_string());
    let opened = || {
        rustix::fs::open(
            &path,
            OFlags::CREATE | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    };
    let lock = match opened() {
        Err(rustix::io::Errno::NOENT) => {
            std::fs::create_dir_all(SLOT_LOCKS).map_err(|source| Error::Cgroup {
                action: "mkdir -p".into(),
                path: SLOT_LOCKS.into(),
                source,
            })?;
            opened()
        }
        other => other,
    }
    .map_err(|e| Error::Cgroup {
        action: "open".into(),
        path: path.clone(),
        source: e.into(),
    })?;
    match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(lock)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(Error::Cgroup {
            action: "flock".into(),
            path,
            source: e.into(),
        }),
    }
}

/// The OOM killer's count in the memory cgroup `dir`.
fn oom_kills_in(dir: &Path, mode: CgroupMode) -> u64 {
    let file = match mode {
        CgroupMode::V1 => "memory.oom_control",
        CgroupMode::V2 => "memory.events",
    };
    read_small(&dir.join(file)).map_or(0, |text| counter(&text, "oom_kill"))
}

/// How a job enters its cgroups without another process moving it there. Moving a process
/// by pid (`cgroup.procs`) takes the kernel's global threadgroup lock for writing, which
/// waits for an RCU grace period: 5-10 ms of every job start. A v2 cgroup is entered at
/// birth instead (`clone3` with `CLONE_INTO_CGROUP`), and on v1 the single-threaded job
/// process writes `0` (itself) to each `tasks` file, a move of one thread that skips that
/// lock. The files are opened by runseal, with its credentials, which the kernel checks,
/// and passed to the sandbox's init over a socket ([`Joining::send`]): runseal claims the
/// cgroups while init builds the root.
#[derive(Debug)]
pub struct Joining {
    into: Option<OwnedFd>,
    tasks: Vec<(PathBuf, OwnedFd)>,
}

/// The most files a [`Joining`] holds: a v1 `tasks` file per controller limited.
const JOINING_FILES: usize = 3;

impl Joining {
    /// The v2 cgroup to clone the job into.
    pub fn clone_into(&self) -> Option<BorrowedFd<'_>> {
        self.into.as_ref().map(AsFd::as_fd)
    }

    /// In the job process, before anything else: moves this (single-threaded) process into
    /// every v1 cgroup of the job, so that everything it forks starts there.
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

    /// Sends the files, in one message, over the `socket` (a `SOCK_SEQPACKET` one) to
    /// [`Joining::receive`]. The text names each file, the v2 dir (if any) first.
    pub fn send(&self, socket: BorrowedFd<'_>) -> Result<()> {
        let mut text = String::new();
        let mut fds = Vec::new();
        if let Some(into) = &self.into {
            text.push_str("v2\n");
            fds.push(into.as_fd());
        }
        for (path, fd) in &self.tasks {
            text.push_str(&path.to_string_lossy());
            text.push('\n');
            fds.push(fd.as_fd());
        }
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(JOINING_FILES))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        sendmsg(
            socket,
            &[IoSlice::new(text.as_bytes())],
            &mut control,
            SendFlags::empty(),
        )
        .map(drop)
        .map_err(|e| Error::sys("sendmsg(the job's cgroups)", e))
    }

    /// What [`Joining::send`] sent on `socket`; `None` when the sender closed it unsent.
    pub fn receive(socket: BorrowedFd<'_>) -> Result<Option<Joining>> {
        let mut text = [0u8; 4096];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(JOINING_FILES))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut text)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(|e| Error::sys("recvmsg(the job's cgroups)", e))?;
        let mut fds: Vec<OwnedFd> = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = message {
                fds.extend(rights);
            }
        }
        if received.bytes == 0 && fds.is_empty() {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&text[..received.bytes]);
        let names: Vec<&str> = text.lines().collect();
        if names.len() != fds.len() || received.flags.contains(ReturnFlags::CTRUNC) {
            return Err(Error::sys(
                "recvmsg(the job's cgroups)",
                std::io::Error::from(std::io::ErrorKind::InvalidData),
            ));
        }
        let mut joining = Joining {
            into: None,
            tasks: Vec::new(),
        };
        for (name, fd) in names.into_iter().zip(fds) {
            match name {
                "v2" => joining.into = Some(fd),
                path => joining.tasks.push((PathBuf::from(path), fd)),
            }
        }
        Ok(Some(joining))
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

/// Writes the limit `value` of `controller` in `dir`.
fn apply(dir: &Path, mode: CgroupMode, controller: &str, value: &str) -> Result<()> {
    match (mode, controller) {
        (CgroupMode::V2, "memory") => {
            write(&dir.join("memory.max"), value)?;
            write_if_present(&dir.join("memory.swap.max"), "0")
        }
        (CgroupMode::V1, "memory") => {
            let (memory, with_swap) = (
                dir.join("memory.limit_in_bytes"),
                dir.join("memory.memsw.limit_in_bytes"),
            );
            // Memory+swap may never be below memory: a limit raised from an earlier job's
            // needs memory+swap raised first.
            if write(&memory, value).is_err() {
                write_if_present(&with_swap, value)?;
                write(&memory, value)?;
            }
            write_if_present(&with_swap, value)
        }
        (_, "pids") => write(&dir.join("pids.max"), value),
        (CgroupMode::V2, "cpu") => write(&dir.join("cpu.max"), &format!("{value} {PERIOD_US}")),
        (CgroupMode::V1, "cpu") => {
            write(&dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
            write(&dir.join("cpu.cfs_quota_us"), value)
        }
        _ => unreachable!("only memory, pids and cpu are requested"),
    }
}

/// A small file of the kernel's (procfs and cgroupfs say no size), read with one read and
/// the one that finds its end, instead of a doubling buffer's many.
fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::with_capacity(16 * 1024);
    std::fs::File::open(path)?.read_to_string(&mut text)?;
    Ok(text)
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
        assert_eq!(creator("slot-3"), None);
        assert_eq!(slot_number("slot-3"), Some(3));
        assert_eq!(slot_number("slot-4096"), None);
        assert_eq!(slot_number("slot-x"), None);
        assert_eq!(slot_number("job-1-2"), None);
        assert_eq!(cpus_in("0-1\n"), Some(2));
        assert_eq!(cpus_in("0-3,8,10-11"), Some(7));
        assert_eq!(cpus_in("0"), Some(1));
        assert_eq!(cpus_in("3-1"), None);
        assert_eq!(cpus_in(""), None);
    }

    /// What the job joins arrives in init as runseal opened it; a socket closed unsent
    /// says that runseal failed.
    #[test]
    fn joining_files_arrive_as_sent() {
        use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
        let pair = || {
            socketpair(
                AddressFamily::UNIX,
                SocketType::SEQPACKET,
                SocketFlags::CLOEXEC,
                None,
            )
            .unwrap()
        };
        let file = |path: &str| open(Path::new(path), OFlags::RDONLY).unwrap();
        let inode = |fd: &OwnedFd| {
            let stat = rustix::fs::fstat(fd).unwrap();
            (stat.st_dev, stat.st_ino)
        };
        let sent = Joining {
            into: Some(file("/")),
            tasks: vec![
                ("/a/memory/tasks".into(), file("/dev/null")),
                ("/a/pids/tasks".into(), file("/proc/self/stat")),
            ],
        };
        let (to, from) = pair();
        sent.send(to.as_fd()).unwrap();
        let got = Joining::receive(from.as_fd()).unwrap().unwrap();
        assert_eq!(
            inode(got.into.as_ref().unwrap()),
            inode(sent.into.as_ref().unwrap())
        );
        assert_eq!(got.tasks.len(), 2);
        for ((got_path, got_fd), (path, fd)) in got.tasks.iter().zip(&sent.tasks) {
            assert_eq!((got_path, inode(got_fd)), (path, inode(fd)));
        }
        let v1_only = Joining {
            into: None,
            tasks: vec![("/a/pids/tasks".into(), file("/dev/null"))],
        };
        v1_only.send(to.as_fd()).unwrap();
        let got = Joining::receive(from.as_fd()).unwrap().unwrap();
        assert!(got.into.is_none() && got.tasks.len() == 1);
        drop(to);
        assert!(Joining::receive(from.as_fd()).unwrap().is_none());
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
