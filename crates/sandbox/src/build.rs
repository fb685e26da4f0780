//! The builder: a runtime's setup script runs against an overlay of the host's root whose
//! writable layer is a tmpfs in a private mount namespace, so whatever it installs, deletes
//! or rewrites never reaches the host. The runtimes root is an empty tmpfs there, shown at
//! Joblet's `/opt/joblet/runtimes` too (its scripts write there, whatever the root), for the
//! runtime dir the script makes; the caller's `seal` then reads the script's results through
//! the overlay while it still exists, and copies them into the runtime dir on the host.
//!
//! The script runs as root (package managers need it) but without the capabilities that
//! reach past the overlay: mounting, chroot, device nodes, raw I/O, modules, reboot, ptrace.
//! It sees the host's network (package registries), a fresh /proc and a minimal /dev.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::pipe::{pipe_with, PipeFlags};

use rustix::thread::CapabilitySet;
use seccompiler::BpfProgram;

use runseal_spec::beneath::{self, Links};
use runseal_spec::paths::below_root;

use crate::error::{BuildProblem, Error, Result};
use crate::launch::wait;
use crate::report::Report;
use crate::rootfs::{detach_trees, populate, proc_and_dev, HostFds, Source, Step};
use crate::seccomp;
use crate::sys::{self, Dirs, Forked, Leaf, MountAttr, MountOps, RealMounts};

/// Where the build's tmpfs is mounted, inside the builder's own mount namespace.
const BUILD_MOUNTPOINT: &str = "/run/runseal/build";

/// Joblet's runtimes root, hard-coded in its setup scripts: in the builder, the same dir as
/// the runtimes root.
const JOBLET_ROOT: &str = "/opt/joblet/runtimes";

#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// The setup script, run by its `#!` line (else by `/bin/sh`) as `SCRIPT RUNTIMES_ROOT`.
    pub script: PathBuf,
    pub runtimes_root: PathBuf,
    /// The runtime dir's name under the root (given to the script as `RUNTIME_NAME`, which
    /// Joblet's scripts read); else the `ROOT/NAME` it prints last, else the one dir it made.
    pub name: Option<String>,
}

/// Runs `spec`'s script in the builder, then `seal(merged_root, runtime_dir)` while the
/// overlay still exists. Returns the runtime dir. The script's output goes to stderr.
pub fn build_in_overlay(
    spec: &BuildSpec,
    seal: &dyn Fn(&Path, &Path) -> std::result::Result<(), String>,
) -> Result<PathBuf> {
    let interpreter = interpreter(&spec.script)?;
    std::fs::create_dir_all(BUILD_MOUNTPOINT)
        .map_err(|e| Error::sys(format!("mkdir -p {BUILD_MOUNTPOINT}"), e))?;
    std::fs::create_dir_all(&spec.runtimes_root)
        .map_err(|e| Error::sys(format!("mkdir -p {}", spec.runtimes_root.display()), e))?;
    let (report_read, report_write) =
        pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
    let flags = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    match sys::clone_into_namespaces(flags)? {
        Forked::Child => {
            drop(report_read);
            let (report, code) = match builder(spec, &interpreter, seal) {
                Ok(dir) => (Report::Built(dir), 0),
                Err(e) => (Report::Failed(e.to_string()), 1),
            };
            report.send(&report_write);
            sys::exit_now(code)
        }
        Forked::Parent(pid) => {
            drop(report_write);
            let report = Report::receive(report_read);
            wait(pid)?;
            let message = match report {
                Some(Report::Built(dir)) => return Ok(dir),
                Some(Report::Failed(message)) => message,
                other => format!("the builder ended without saying what it built ({other:?})"),
            };
            Err(Error::Setup {
                message,
                exit_code: 1,
            })
        }
    }
}

/// PID 1 of the builder's namespaces.
fn builder(
    spec: &BuildSpec,
    interpreter: &[OsString],
    seal: &dyn Fn(&Path, &Path) -> std::result::Result<(), String>,
) -> Result<PathBuf> {
    sys::die_with_parent()?;
    let host = HostFds::open()?;
    let merged = builder_root(&mut RealMounts, Path::new(BUILD_MOUNTPOINT), spec, &host)?;
    let filters = seccomp::builder_filters()?;
    let (output_read, output_write) =
        pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::sys("pipe2", e))?;
    let script_pid = match sys::fork()? {
        Forked::Child => {
            drop(output_read);
            let error = run_script(spec, interpreter, &merged, output_write, &filters);
            eprintln!("runseal build: {error}");
            sys::exit_now(127)
        }
        Forked::Parent(pid) => pid,
    };
    drop(output_write);
    let mut last_line = String::new();
    for line in BufReader::new(std::fs::File::from(output_read)).lines() {
        let line = line.map_err(|e| Error::sys("read(setup output)", e))?;
        eprintln!("{line}");
        if !line.trim().is_empty() {
            last_line = line.trim().to_string();
        }
    }
    let status = wait(script_pid)?;
    // Whatever the script left running in the background could keep changing the runtime
    // dir while it is sealed; as PID 1 of the builder, end it all first.
    sys::kill_all_others()?;
    match status.exit_status() {
        Some(0) => {}
        Some(code) => {
            return Err(BuildProblem::ScriptFailed {
                script: spec.script.clone(),
                code,
            }
            .into())
        }
        None => {
            return Err(BuildProblem::ScriptKilled {
                script: spec.script.clone(),
            }
            .into())
        }
    }
    let name = runtime_name(spec, &last_line, || dirs_made(&merged, &spec.runtimes_root))?;
    let dir = spec.runtimes_root.join(&name);
    let yaml = read_runtime_yml(&merged, &dir)?;
    // A build makes the runtime NAME, not one that answers to another runtime's name.
    let declared = runseal_spec::RuntimeConfig::parse(&yaml, &dir.join("runtime.yml"))?.name;
    if let Some(declared) = declared.filter(|declared| *declared != name) {
        return Err(BuildProblem::OtherName {
            dir,
            declared,
            name,
        }
        .into());
    }
    // A fresh dir of runseal's own on the host: nothing the script wrote reaches the host
    // but this text and what the seal copies (setuid bits stripped, modes checked).
    std::fs::create_dir(&dir).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => BuildProblem::Exists {
            dir: dir.clone(),
            name,
        },
        _ => BuildProblem::CreateDir {
            dir: dir.clone(),
            source,
        },
    })?;
    let sealed = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(runseal_spec::RUNTIME_YML))
        .and_then(|mut file| file.write_all(yaml.as_bytes()))
        .map_err(|e| Error::sys(format!("write {}/runtime.yml", dir.display()), e))
        .and_then(|()| seal(&merged, &dir).map_err(|e| BuildProblem::Seal(e).into()));
    if let Err(e) = sealed {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(dir)
}

/// The runtime the script made: `--name`, else the last line it printed if that is
/// `ROOT/NAME` (or Joblet's `/opt/joblet/runtimes/NAME`, the same dir), else the one dir it
/// made under the root (`made`: Joblet's scripts print other things last). NAME must be
/// plain: a script may not name a runtime anywhere else.
fn runtime_name(
    spec: &BuildSpec,
    last_line: &str,
    made: impl FnOnce() -> Result<Vec<String>>,
) -> Result<String> {
    let printed = [spec.runtimes_root.as_path(), Path::new(JOBLET_ROOT)]
        .into_iter()
        .find_map(|root| Path::new(last_line).strip_prefix(root).ok()?.to_str());
    let name = match (&spec.name, printed) {
        (Some(name), _) => name.clone(),
        (None, Some(printed)) => printed.to_string(),
        (None, None) => match made()?.as_slice() {
            [one] => one.clone(),
            _ => String::new(),
        },
    };
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && Path::new(&name).components().count() == 1
        && !name.contains('/');
    if plain {
        return Ok(name);
    }
    Err(BuildProblem::NoRuntimeDir {
        root: spec.runtimes_root.clone(),
        printed: last_line.to_string(),
    }
    .into())
}

/// The dirs under the runtimes root in the overlay `merged`, reached through no symlink
/// (the script may have moved a dir on the way and left a link in its place).
fn dirs_made(merged: &Path, root: &Path) -> Result<Vec<String>> {
    use rustix::fs::{Dir, FileType, OFlags};
    let base = sys::open_dir(merged)?;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY;
    let listed = beneath::open(&base, Path::new(below_root(root)), flags, Links::Refuse)
        .and_then(|dir| Dir::read_from(&dir))
        .and_then(|entries| {
            entries
                .filter(|entry| {
                    entry.as_ref().map_or(true, |entry| {
                        entry.file_type() == FileType::Directory
                            && ![&b"."[..], b".."].contains(&entry.file_name().to_bytes())
                    })
                })
                .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
                .collect()
        });
    listed.map_err(|e| Error::sys(format!("list {} in the builder", root.display()), e))
}

/// How `script` is run: the interpreter of its `#!` line and that line's one argument, as
/// the kernel reads it (so Joblet's bash scripts run under bash), else `/bin/sh`. The script
/// need not be executable, as under `sh SCRIPT`. An interpreter the host lacks is refused
/// here, before anything is built, not met as a bare ENOENT from exec.
fn interpreter(script: &Path) -> Result<Vec<OsString>> {
    let mut head = Vec::new();
    // O_NONBLOCK: a FIFO in place of the script reads as empty instead of hanging here.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(script)
        .and_then(|file| file.take(SHEBANG_MAX).read_to_end(&mut head))
        .map_err(|source| BuildProblem::Script {
            script: script.to_path_buf(),
            source,
        })?;
    let Some(argv) = shebang(&head) else {
        return Ok(vec!["/bin/sh".into()]);
    };
    let program = Path::new(&argv[0]);
    if program.is_absolute() && program.is_file() {
        return Ok(argv);
    }
    Err(BuildProblem::NoInterpreter {
        script: script.to_path_buf(),
        interpreter: program.to_path_buf(),
    }
    .into())
}

/// How much of a script the kernel reads for its `#!` line (`BINPRM_BUF_SIZE`).
const SHEBANG_MAX: u64 = 256;

/// The interpreter and optional argument of a `#!` line at the start of `head`: the
/// interpreter up to the first blank, the rest of the line, trimmed, as one argument.
fn shebang(head: &[u8]) -> Option<Vec<OsString>> {
    let line = head.strip_prefix(b"#!")?.split(|b| *b == b'\n').next()?;
    let line = line.trim_ascii();
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let (program, arg) = match line.iter().position(blank) {
        Some(at) => (&line[..at], line[at..].trim_ascii()),
        None => (line, &[][..]),
    };
    let mut argv = vec![OsStr::from_bytes(program).to_os_string()];
    if !arg.is_empty() {
        argv.push(OsStr::from_bytes(arg).to_os_string());
    }
    Some(argv)
}

/// The runtime.yml the script wrote at `dir` inside the overlay `merged`: resolved inside
/// the overlay through no symlink (a link the script made at `ROOT/NAME` would otherwise
/// lead out of it, to any file of the host), a regular file of reasonable size.
fn read_runtime_yml(merged: &Path, dir: &Path) -> Result<String> {
    use rustix::fs::OFlags;
    let inside = dir.join(runseal_spec::RUNTIME_YML);
    let root = sys::open_dir(merged)?;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK;
    let file = beneath::open(&root, Path::new(below_root(&inside)), flags, Links::Refuse).map_err(
        |e| BuildProblem::NoRuntimeYml {
            path: inside.clone(),
            source: e.into(),
        },
    )?;
    Ok(runseal_spec::read_opened_runtime_yml(
        std::fs::File::from(file),
        &inside,
    )?)
}

/// The builder's root: a private tmpfs on `base` holds an overlay of `/` (every write of
/// the script lands in its upper dir, on the tmpfs), populated with [`builder_steps`].
/// Returns where the overlay is attached.
fn builder_root(
    ops: &mut dyn MountOps,
    base: &Path,
    spec: &BuildSpec,
    host: &HostFds,
) -> Result<PathBuf> {
    ops.make_mounts_private()?;
    let scratch = ops.tmpfs(0o700, None)?;
    ops.attach(scratch.as_fd(), sys::open_dir(base)?.as_fd(), base)?;
    let scratch_dirs = Dirs::new(scratch.as_fd());
    scratch_dirs.make(Path::new("/upper"), Leaf::Dir)?;
    scratch_dirs.make(Path::new("/work"), Leaf::Dir)?;
    let merged_at = scratch_dirs.make(Path::new("/merged"), Leaf::Dir)?;
    let (upper, work, merged) = (base.join("upper"), base.join("work"), base.join("merged"));
    let overlay = ops.overlay(&["/".into()], Some((upper, work)))?;
    ops.attach(overlay.as_fd(), merged_at.as_fd(), &merged)?;
    let steps = builder_steps(spec);
    // The script is shown last, so that Joblet's root, attached before it, cannot cover it.
    let (places, script) = steps.split_at(steps.len() - 1);
    let apply = |ops: &mut dyn MountOps, steps: &[Step]| {
        let trees = detach_trees(ops, None, host, steps)?;
        populate(ops, overlay.as_fd(), trees, steps)
    };
    apply(ops, places)?;
    show_root_at_joblets(ops, overlay.as_fd(), &spec.runtimes_root)?;
    apply(ops, script)?;
    Ok(merged)
}

/// Attaches the runtimes root's tmpfs at [`JOBLET_ROOT`] in the builder's root `root` as
/// well: one dir at two paths, so a runtime a Joblet script makes there is `ROOT/NAME`, and
/// what the host keeps at Joblet's path (a Joblet install's runtimes) stays hidden. A root
/// inside Joblet's, or holding it, is refused: the two could not be one dir.
fn show_root_at_joblets(
    ops: &mut dyn MountOps,
    root: BorrowedFd<'_>,
    runtimes: &Path,
) -> Result<()> {
    let joblet = Path::new(JOBLET_ROOT);
    if runtimes == joblet {
        return Ok(());
    }
    if runtimes.starts_with(joblet) || joblet.starts_with(runtimes) {
        return Err(BuildProblem::NestedRoot {
            root: runtimes.to_path_buf(),
        }
        .into());
    }
    let dirs = Dirs::new(root);
    let tree = ops.clone_tree(dirs.make(runtimes, Leaf::Dir)?.as_fd(), runtimes)?;
    ops.attach(tree.as_fd(), dirs.make(joblet, Leaf::Dir)?.as_fd(), joblet)
}

/// The builder's root on top of the overlay, as steps of the same kind a job root is made of.
fn builder_steps(spec: &BuildSpec) -> Vec<Step> {
    let mut steps: Vec<Step> = ["/proc", "/dev", "/tmp", "/run"]
        .into_iter()
        .map(|dir| Step::SandboxDir { path: dir.into() })
        .collect();
    steps.extend(proc_and_dev());
    for (dir, mode) in [("/tmp", 0o1777), ("/run", 0o755)] {
        steps.push(Step::Tmpfs {
            target: dir.into(),
            mode,
            size: None,
        });
    }
    // Host state a setup script has no business reading, and the runtimes root, where it
    // writes its runtime.yml into a tmpfs of its own: it sees no other runtime, and nothing
    // it writes there reaches the host except through the seal.
    for dir in HIDDEN_DIRS
        .iter()
        .map(PathBuf::from)
        .chain([spec.runtimes_root.clone()])
    {
        steps.push(Step::SandboxDir { path: dir.clone() });
        steps.push(Step::Tmpfs {
            target: dir,
            mode: 0o755,
            size: None,
        });
    }
    for file in HIDDEN_FILES {
        steps.push(Step::Mask {
            target: file.into(),
        });
    }
    // The script's dir, for the files it sources beside it (it may live in /tmp), unless
    // that dir is one the script must not see: then the script alone.
    let script_dir = spec.script.parent().unwrap_or(Path::new("/"));
    let hidden = HIDDEN_DIRS
        .iter()
        .map(Path::new)
        .chain([spec.runtimes_root.as_path(), Path::new(JOBLET_ROOT)])
        .any(|dir| script_dir.starts_with(dir));
    let (shown, leaf) = if hidden {
        (spec.script.as_path(), Leaf::File)
    } else {
        (script_dir, Leaf::Dir)
    };
    steps.push(Step::Bind {
        source: Source::Host(shown.to_path_buf()),
        target: shown.to_path_buf(),
        leaf,
        attr: MountAttr::READ_ONLY,
    });
    steps
}

/// Directories of the host a setup script sees empty: users' homes and temp files.
const HIDDEN_DIRS: [&str; 3] = ["/root", "/home", "/var/tmp"];

/// Files of the host a setup script sees as /dev/null: password hashes and host keys.
const HIDDEN_FILES: [&str; 10] = [
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_dsa_key",
    "/etc/security/opasswd",
    "/etc/sudoers",
];

/// What a package manager needs of root's powers, and nothing that reaches past the
/// overlay: no mount, raw I/O, file handles (`open_by_handle_at` needs DAC_READ_SEARCH),
/// network configuration, modules, ptrace, or resource limits beyond the host's.
const KEPT_CAPABILITIES: CapabilitySet = CapabilitySet::CHOWN
    .union(CapabilitySet::DAC_OVERRIDE)
    .union(CapabilitySet::FOWNER)
    .union(CapabilitySet::FSETID)
    .union(CapabilitySet::KILL)
    .union(CapabilitySet::SETGID)
    .union(CapabilitySet::SETUID);

/// In the script's process: chroot into the overlay, give up every capability but
/// [`KEPT_CAPABILITIES`], close what the caller had open, load the builder's seccomp
/// filters, send stdout into the pipe, exec `interpreter SCRIPT ROOT`. Returns only on
/// failure.
fn run_script(
    spec: &BuildSpec,
    interpreter: &[OsString],
    merged: &Path,
    output: OwnedFd,
    filters: &[BpfProgram],
) -> Error {
    let setup = sys::chroot_into(merged)
        .and_then(|()| sys::keep_only_capabilities(KEPT_CAPABILITIES))
        .and_then(|()| sys::close_inherited_fds())
        .and_then(|()| seccomp::load(filters));
    if let Err(e) = setup {
        return e;
    }
    let (program, args) = interpreter
        .split_first()
        .expect("an interpreter is at least a program");
    let mut command = Command::new(program);
    command
        .args(args)
        .arg(&spec.script)
        .arg(&spec.runtimes_root)
        .stdout(std::fs::File::from(output));
    if let Some(name) = &spec.name {
        command.env("RUNTIME_NAME", name);
    }
    let error = std::os::unix::process::CommandExt::exec(&mut command);
    let _ = std::io::stderr().flush();
    Error::sys(
        format!(
            "exec {} {}",
            Path::new(program).display(),
            spec.script.display()
        ),
        error,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{refused_symlink_at, Recorder};

    /// A stand-in for the overlay of `/`, holding a host secret and the host dirs the
    /// builder hides.
    fn host_like() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for dir in ["etc", "root", "home/alice", "var/tmp", "usr/bin"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        std::fs::write(root.path().join("etc/shadow"), "root:$y$secret").unwrap();
        root
    }

    fn spec(script_dir: &Path, runtimes_root: &Path) -> BuildSpec {
        BuildSpec {
            script: script_dir.join("setup.sh"),
            runtimes_root: runtimes_root.to_path_buf(),
            name: None,
        }
    }

    /// The builder's root made with `root` standing in for the overlay of `/`.
    fn build_root(spec: &BuildSpec, root: &Path) -> (Result<PathBuf>, Recorder) {
        let mut recorder = Recorder::new();
        recorder.overlay_shows = Some(root.to_path_buf());
        let host = HostFds::open().unwrap();
        let base = recorder.scratch.path().join("base");
        std::fs::create_dir(&base).unwrap();
        let outcome = builder_root(&mut recorder, &base, spec, &host);
        (outcome, recorder)
    }

    #[test]
    fn the_builder_root_hides_runtimes_and_secrets_and_shows_the_script_read_only() {
        let (scripts, runtimes) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let spec = spec(scripts.path(), runtimes.path());
        let root = host_like();
        let (outcome, recorder) = build_root(&spec, root.path());
        let base = recorder.scratch.path().join("base");
        assert_eq!(outcome.unwrap(), base.join("merged"));
        let b = base.display();
        // The scratch tmpfs is attached before anything else, the overlay on it, and only
        // then is the builder's root populated inside the overlay.
        assert_eq!(
            recorder.log[..4],
            [
                "private /".to_string(),
                format!("attach tmpfs 700 None at {b}"),
                format!("overlay / upper {b}/upper work {b}/work"),
                format!("attach overlay at {b}/merged"),
            ]
        );
        assert!(
            base.read_dir().unwrap().next().is_none(),
            "nothing made on the host"
        );
        let log = recorder.log.join("\n");
        let runtimes = runtimes.path().display();
        for expected in [
            format!("attach tmpfs 755 None at {runtimes}"),
            "attach tmpfs 755 None at /root".to_string(),
            "attach tmpfs 755 None at /home".to_string(),
            "attach tmpfs 755 None at /var/tmp".to_string(),
            "attach tree null at /etc/shadow".to_string(),
            "attach proc at /proc".to_string(),
            format!("ro {} (tree ", scripts.path().display()),
        ] {
            assert!(log.contains(&expected), "{expected}:\n{log}");
        }
        // The runtimes root is never bound from the host, only made empty.
        assert!(!log.contains(&format!("tree {} ", runtimes)), "{log}");
    }

    #[test]
    fn joblets_root_is_the_runtimes_roots_tmpfs_attached_before_the_script_is_shown() {
        let (scripts, runtimes) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let root = host_like();
        let (outcome, recorder) = build_root(&spec(scripts.path(), runtimes.path()), root.path());
        outcome.unwrap();
        let runtimes_tmpfs = recorder
            .log
            .iter()
            .position(|l| *l == format!("attach tmpfs 755 None at {}", runtimes.path().display()))
            .unwrap();
        let name = runtimes.path().file_name().unwrap().to_string_lossy();
        let joblet = recorder
            .log
            .iter()
            .position(|l| *l == format!("attach tree {name} at {JOBLET_ROOT}"))
            .unwrap();
        let script = recorder
            .log
            .iter()
            .position(|l| l.starts_with(&format!("ro {} ", scripts.path().display())))
            .unwrap();
        assert!(
            runtimes_tmpfs < joblet && joblet < script,
            "{:#?}",
            recorder.log
        );
        assert!(root.path().join("opt/joblet/runtimes").is_dir());

        // Either root inside the other could not be one dir at two paths.
        for nested in ["/opt/joblet/runtimes/team", "/opt"] {
            let root = host_like();
            let (outcome, _) = build_root(&spec(scripts.path(), Path::new(nested)), root.path());
            let err = outcome.unwrap_err().to_string();
            assert!(err.contains("neither may lie inside the other"), "{err}");
        }
        let root = host_like();
        let (outcome, recorder) =
            build_root(&spec(scripts.path(), Path::new(JOBLET_ROOT)), root.path());
        outcome.unwrap();
        assert!(!recorder
            .log
            .iter()
            .any(|l| l.starts_with("attach tree runtimes")));
    }

    #[test]
    fn a_scripts_interpreter_is_read_from_its_first_line_as_the_kernel_reads_it() {
        let argv = |head: &str| {
            shebang(head.as_bytes()).map(|argv| {
                argv.iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(argv("#!/bin/bash\nset -e\n").unwrap(), ["/bin/bash"]);
        assert_eq!(
            argv("#! /usr/bin/env  bash \n").unwrap(),
            ["/usr/bin/env", "bash"]
        );
        // One argument, the rest of the line, as Linux passes it.
        assert_eq!(argv("#!/bin/sh -e -u\n").unwrap(), ["/bin/sh", "-e -u"]);
        assert_eq!(argv("set -e\n"), None);

        let scripts = tempfile::tempdir().unwrap();
        let script = scripts.path().join("setup.sh");
        for (head, expected) in [
            ("#!/bin/sh -e\n", Ok("/bin/sh -e")),
            ("echo\n", Ok("/bin/sh")),
            ("#!/no/such-shell\n", Err("`/no/such-shell`")),
            ("#!bash\n", Err("`bash`")),
        ] {
            std::fs::write(&script, head).unwrap();
            match (interpreter(&script), expected) {
                (Ok(argv), Ok(expected)) => assert_eq!(argv.join(OsStr::new(" ")), expected),
                (Err(e), Err(expected)) => assert!(e.to_string().contains(expected), "{e}"),
                (outcome, _) => panic!("{head}: {outcome:?}"),
            }
        }
    }

    #[test]
    fn the_runtime_is_named_by_name_else_by_the_path_printed_else_by_the_one_dir_made() {
        let spec = |name: Option<&str>| BuildSpec {
            script: "/s/setup.sh".into(),
            runtimes_root: "/var/lib/rt".into(),
            name: name.map(String::from),
        };
        let made = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            move || Ok(names)
        };
        let name = |spec: &BuildSpec, printed: &str, dirs: &[&str]| {
            runtime_name(spec, printed, made(dirs)).map_err(|e| e.to_string())
        };
        assert_eq!(name(&spec(Some("py")), "done", &[]).unwrap(), "py");
        assert_eq!(
            name(&spec(None), "/var/lib/rt/py", &["a", "b"]).unwrap(),
            "py"
        );
        assert_eq!(
            name(&spec(None), "/opt/joblet/runtimes/py", &[]).unwrap(),
            "py"
        );
        assert_eq!(
            name(&spec(None), "🎉 done", &["python-3.11"]).unwrap(),
            "python-3.11"
        );
        for (printed, dirs) in [
            ("done", &["a", "b"][..]),
            ("done", &[]),
            ("/var/lib/rt/../etc", &["a"]),
            ("/opt/joblet/runtimes/a/b", &["a"]),
            ("done", &[".hidden"]),
        ] {
            let err = name(&spec(None), printed, dirs).unwrap_err();
            assert!(
                err.contains("must make one runtime dir"),
                "{printed}: {err}"
            );
        }
    }

    #[test]
    fn a_symlink_where_the_builder_hides_a_dir_stops_the_build_and_reaches_nothing() {
        let (scripts, runtimes) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let spec = spec(scripts.path(), runtimes.path());
        let root = host_like();
        let outside = tempfile::tempdir().unwrap();
        std::fs::remove_dir_all(root.path().join("home")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("home")).unwrap();
        let (outcome, recorder) = build_root(&spec, root.path());
        let err = outcome.unwrap_err();
        assert!(refused_symlink_at(&err, "/home"), "{err}");
        assert!(!recorder.log.iter().any(|l| l.ends_with(" at /home")));
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
