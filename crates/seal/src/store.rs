//! The content-addressed store under a runtimes root (`ROOT/.runseal-store/`): every sealed
//! or imported file is offered to it, and a file equal to one already stored becomes a hard
//! link to that inode, so identical files across the root's runtimes are kept once. Jobs
//! never see the store: a runtime's mounts name its own tree, and a hard link is only one
//! more name of an inode.
//!
//! An inode carries its mode, owner and mtime as well as its bytes, and a sealed copy's
//! manifest records all of them, so an entry is keyed by all of them:
//! `objects/<blake3>-<mode>-<mtime>.<nsec>` (the owner is always the store's).
//!
//! Nothing but runseal writes the store: it is its owner's (root's) alone, mode 0700, and
//! an entry is only ever the copy a seal or import itself wrote and hashed while writing,
//! linked in under a temporary name and renamed to its key. An entry is read back and
//! hashed before anything links to it (a power cut may have left it torn), and the link is
//! checked to be the inode that was verified. Linking goes through `tmp/`, a name no gc
//! removes while any seal or import holds the store's shared lock, so an inode being moved
//! into a tree is never without a name; see docs/design.md for the races with `gc`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{
    flock, fstat, linkat, mkdirat, renameat, renameat_with, statat, unlinkat, AtFlags,
    FlockOperation, Mode, RenameFlags,
};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::dirfd::DirFd;
use crate::error::{Error, Result};

/// The store's dir in a runtimes root; a hidden name, never a runtime's.
pub const STORE_DIR: &str = ".runseal-store";
const OBJECTS: &str = "objects";
const TEMP: &str = "tmp";

/// What a stored inode holds: its bytes (by BLAKE3), permission bits and mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    pub blake3: &'a str,
    pub mode: u32,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl Key<'_> {
    fn name(&self) -> Option<String> {
        let hex = self.blake3.len() == 64 && self.blake3.bytes().all(|b| b.is_ascii_hexdigit());
        hex.then(|| {
            format!(
                "{}-{:04o}-{}.{:09}",
                self.blake3, self.mode, self.mtime, self.mtime_nsec
            )
        })
    }
}

/// The store of one runtimes root, open for adding and linking. While it is open its
/// holder keeps a shared lock on it, which keeps `gc` out of `tmp/`.
pub struct Store {
    objects: DirFd,
    temp: DirFd,
    owner: u32,
    _shared: OwnedFd,
    next: AtomicU64,
}

impl Store {
    /// The store of the runtimes root `root`, created if absent, for files written below
    /// `near`; `None` when `near` is on another filesystem (no hard link can join them).
    /// A store that is not its owner's alone is refused: a file someone else could have
    /// written must never be linked into a runtime.
    pub fn open(root: &Path, near: &DirFd) -> Result<Option<Store>> {
        let root = DirFd::open(root)?;
        let dev = |d: &DirFd| {
            fstat(d.fd())
                .map(|s| s.st_dev)
                .map_err(|e| Error::io(d.path(), e.into()))
        };
        if dev(&root)? != dev(near)? {
            return Ok(None);
        }
        let dir = open_private_dir(&root, STORE_DIR)?;
        // A store that is a mount point of its own holds nothing a hard link can reach.
        if dev(&dir)? != dev(near)? {
            return Ok(None);
        }
        let shared = dir
            .fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io(dir.path(), e))?;
        flock(&shared, FlockOperation::LockShared).map_err(|e| Error::io(dir.path(), e.into()))?;
        Ok(Some(Store {
            objects: open_private_dir(&dir, OBJECTS)?,
            temp: open_private_dir(&dir, TEMP)?,
            owner: rustix::process::geteuid().as_raw(),
            _shared: shared,
            next: AtomicU64::new(0),
        }))
    }

    /// Makes the file `name` in `parent`, a private copy runseal wrote and hashed as `key`
    /// says (`copy` is it, open), share its inode with every equal file under the root:
    /// replaced by a link to the stored entry, or stored itself when none is. Returns whether
    /// it is shared; when a race with `gc` or a damaged entry leaves no entry to share, the
    /// private copy stays, which is as correct, only not deduplicated.
    pub fn share(&self, parent: &DirFd, name: &OsStr, copy: &File, key: &Key) -> Result<bool> {
        let Some(entry) = key.name() else {
            return Ok(false);
        };
        let copied = copy
            .metadata()
            .map_err(|e| Error::io(parent.join(name), e))?;
        // Twice: an entry gc removes between the look-up and the link is added again once.
        for _ in 0..2 {
            let done = match self.verified(&entry, key, copied.len())? {
                Stored::Good(stored) => self.link_stored(&stored, &entry, parent, name)?,
                Stored::Absent => self.add(parent, name, copied.ino(), &entry, false)?,
                Stored::Damaged => self.add(parent, name, copied.ino(), &entry, true)?,
            };
            if done {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The entry `entry`, if it is what its key says: its owner's, with the key's mode,
    /// mtime and bytes (hashed now).
    fn verified(&self, entry: &str, key: &Key, size: u64) -> Result<Stored> {
        let Some(mut file) = self.objects.open_file(entry)? else {
            return Ok(Stored::Absent);
        };
        let io = |e| Error::io(self.objects.join(entry), e);
        let meta = file.metadata().map_err(io)?;
        let intact = meta.uid() == self.owner
            && meta.mode() & 0o7777 == key.mode
            && (meta.mtime(), meta.mtime_nsec()) == (key.mtime, key.mtime_nsec)
            && meta.len() == size
            && blake3::Hasher::new()
                .update_reader(&mut file)
                .map_err(io)?
                .finalize()
                .to_hex()
                .as_str()
                == key.blake3;
        Ok(if intact {
            Stored::Good(file)
        } else {
            Stored::Damaged
        })
    }

    /// Replaces `parent`/`name` with the verified entry `stored`; `false` when the entry
    /// is no longer that inode (gc removed it, or it was replaced since).
    fn link_stored(
        &self,
        stored: &File,
        entry: &str,
        parent: &DirFd,
        name: &OsStr,
    ) -> Result<bool> {
        let ino = stored
            .metadata()
            .map_err(|e| Error::io(self.objects.join(entry), e))?
            .ino();
        let temp = self.temp_name();
        match linkat(
            self.objects.fd(),
            entry,
            self.temp.fd(),
            &temp,
            AtFlags::empty(),
        ) {
            Ok(()) => {}
            // Removed by gc since it was verified; or linked as often as the filesystem
            // allows (65000 on ext4), when the private copy simply stays.
            Err(Errno::NOENT | Errno::MLINK) => return Ok(false),
            Err(e) => return Err(Error::io(self.objects.join(entry), e.into())),
        }
        if !self.temp_is(&temp, ino)? {
            self.temp.remove_file(&temp)?;
            return Ok(false);
        }
        renameat(self.temp.fd(), &temp, parent.fd(), name)
            .map_err(|e| Error::io(parent.join(name), e.into()))?;
        Ok(true)
    }

    /// Stores `parent`/`name` (the inode `ino`) as `entry`, in place of a damaged entry
    /// with `replace`; `false` when an entry appeared meanwhile.
    fn add(
        &self,
        parent: &DirFd,
        name: &OsStr,
        ino: u64,
        entry: &str,
        replace: bool,
    ) -> Result<bool> {
        let temp = self.temp_name();
        linkat(parent.fd(), name, self.temp.fd(), &temp, AtFlags::empty())
            .map_err(|e| Error::io(parent.join(name), e.into()))?;
        if !self.temp_is(&temp, ino)? {
            self.temp.remove_file(&temp)?;
            return Err(Error::Unsealable {
                file: parent.join(name),
                message: "was replaced while runseal stored it; only root can do that here".into(),
            });
        }
        let flags = if replace {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        match renameat_with(self.temp.fd(), &temp, self.objects.fd(), entry, flags) {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => {
                self.temp.remove_file(&temp)?;
                Ok(false)
            }
            Err(e) => Err(Error::io(self.objects.join(entry), e.into())),
        }
    }

    fn temp_is(&self, temp: &str, ino: u64) -> Result<bool> {
        statat(self.temp.fd(), temp, AtFlags::SYMLINK_NOFOLLOW)
            .map(|s| s.st_ino == ino)
            .map_err(|e| Error::io(self.temp.join(temp), e.into()))
    }

    /// A name in `tmp/` that no other process or thread uses.
    fn temp_name(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", std::process::id())
    }
}

enum Stored {
    Good(File),
    Absent,
    Damaged,
}

/// The dir `name` in `parent`, made 0700 if absent; refused unless it is this user's and
/// nobody else's (no other user may read, write or enter it).
fn open_private_dir(parent: &DirFd, name: &str) -> Result<DirFd> {
    match mkdirat(parent.fd(), name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(Error::io(parent.join(name), e.into())),
    }
    let dir = parent.open_dir(name)?;
    let stat = fstat(dir.fd()).map_err(|e| Error::io(dir.path(), e.into()))?;
    if stat.st_uid != rustix::process::geteuid().as_raw() || stat.st_mode & 0o077 != 0 {
        return Err(Error::Unsealable {
            file: dir.path().to_path_buf(),
            message: format!(
                "is owned by uid {} with mode {:o}; runseal's store must be its user's alone \
                 (mode 0700): a file someone else could write there would reach every runtime",
                stat.st_uid,
                stat.st_mode & 0o7777
            ),
        });
    }
    Ok(dir)
}

/// What `gc` removed, or would remove with `dry_run`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Store entries nothing but the store links to any more, and their bytes.
    pub entries: u64,
    pub bytes: u64,
    /// Whole trees and temporary names: staging trees and temp files of seals that died,
    /// replaced trees no job uses, the dirs of removals that died, the store's temp names
    /// of seals and imports that died.
    pub removed: Vec<PathBuf>,
    /// Left for now because a seal, import or job holds them.
    pub busy: Vec<PathBuf>,
}

/// Removes from `root` what nothing uses, safe while seals, imports and jobs run (each step
/// says why; docs/design.md has the races): first what dead seals left in each runtime and
/// the replaced trees no job uses, under the runtime's lock (a runtime being sealed is
/// left alone); then the dirs of removals that died; then the store's temp names, only
/// while no seal or import has the store open; then every entry whose only link is the
/// store's own, which is the last moment it could be linked: a seal that links it
/// meanwhile keeps the inode alive in its tree. A dry run removes nothing and counts the
/// entries whose other links are all in what it lists, which a real run would free.
pub fn gc(root: &Path, dry_run: bool) -> Result<GcReport> {
    let mut report = GcReport {
        dry_run,
        ..GcReport::default()
    };
    for listed in runseal_spec::list_runtimes(root)? {
        let runtime = match DirFd::open(&listed.dir) {
            Ok(runtime) => runtime,
            // Removed since it was listed.
            Err(_) if !listed.dir.exists() => continue,
            Err(e) => return Err(e),
        };
        let _lock = match runtime.lock(false) {
            Ok(lock) => lock,
            Err(Error::Busy { .. }) => {
                report.busy.push(listed.dir);
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut names = crate::seal::leftovers(&runtime)?;
        let mut held = Vec::new();
        for (name, lock) in crate::seal::unused_replaced(&runtime)? {
            names.push(name);
            held.push(lock);
        }
        for name in names {
            if !dry_run {
                runtime.remove_tree(&name)?;
            }
            report.removed.push(runtime.join(name));
        }
    }

    let top = DirFd::open(root)?;
    dead_removals(&top, dry_run, &mut report)?;
    if !top.exists(STORE_DIR)? {
        return Ok(report);
    }
    let store = open_private_dir(&top, STORE_DIR)?;
    let temp = open_private_dir(&store, TEMP)?;
    match store.lock(false) {
        Ok(_no_seal_has_it_open) => {
            for name in temp.names_starting("")? {
                if !dry_run {
                    temp.remove_tree(&name)?;
                }
                report.removed.push(temp.join(name));
            }
        }
        Err(Error::Busy { .. }) => report.busy.push(temp.path().to_path_buf()),
        Err(e) => return Err(e),
    }
    let mut listed_links: HashMap<(u64, u64), u64> = HashMap::new();
    if dry_run {
        for path in &report.removed {
            crate::usage::each_file(path, false, None, |_, meta| {
                *listed_links.entry((meta.dev(), meta.ino())).or_default() += 1;
            })?;
        }
    }
    let objects = open_private_dir(&store, OBJECTS)?;
    for name in objects.names_starting("")? {
        let stat = match statat(objects.fd(), name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(Error::io(objects.join(&name), e.into())),
        };
        let listed = listed_links.get(&(stat.st_dev, stat.st_ino)).copied();
        if stat.st_nlink != 1 + listed.unwrap_or(0) {
            continue;
        }
        if !dry_run {
            match unlinkat(objects.fd(), name.as_str(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(Error::io(objects.join(&name), e.into())),
            }
        }
        report.entries += 1;
        report.bytes += stat.st_size as u64;
    }
    Ok(report)
}

/// Removes the dirs of removals that were killed midway (`ROOT/.NAME.removing`). A removal
/// renames the runtime there holding the runtime's lock and each tree's, taken when no job
/// ran on them, and holds them until the dir is gone: whoever gets the runtime's lock finds
/// a dead removal's dir. A job that was waiting for a tree's lock when the removal died may
/// hold it since: that dir is left, busy, as is a live removal's. Should a new removal of
/// NAME rename its runtime to the name meanwhile, removing it only does what that removal
/// does itself (it checked the same locks first).
fn dead_removals(top: &DirFd, dry_run: bool, report: &mut GcReport) -> Result<()> {
    for name in top.names_starting(".")? {
        if !name.ends_with(crate::seal::REMOVING_SUFFIX) {
            continue;
        }
        let trash = match top.open_dir(&name) {
            Ok(trash) => trash,
            Err(_) if !top.exists(&name)? => continue,
            Err(e) => return Err(e),
        };
        // Held until the dir is gone, as the removal held them.
        let held = match trash.lock(false) {
            Ok(lock) => crate::seal::lock_unused_trees(&trash)?.map(|trees| (lock, trees)),
            Err(Error::Busy { .. }) => None,
            Err(e) => return Err(e),
        };
        if held.is_none() {
            report.busy.push(trash.path().to_path_buf());
            continue;
        }
        if !dry_run {
            top.remove_tree(&name)?;
        }
        report.removed.push(top.join(&name));
    }
    Ok(())
}

/// The root whose store a seal of `dir` shares files through: `root` when `dir` is below
/// it; a runtime dir elsewhere keeps private copies.
pub fn store_root_for(root: &Path, dir: &Path) -> Option<PathBuf> {
    let root = root.canonicalize().ok()?;
    let dir = dir.canonicalize().ok()?;
    (dir != root && dir.starts_with(&root)).then_some(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use rustix::fs::{fchmod, futimens, Timespec, Timestamps};

    /// A runtimes root with one runtime dir, `a`, to write private copies in.
    struct Scene {
        root: tempfile::TempDir,
        tree: DirFd,
    }

    impl Scene {
        fn new() -> Scene {
            let root = tempfile::tempdir().unwrap();
            std::fs::create_dir(root.path().join("a")).unwrap();
            let tree = DirFd::open(&root.path().join("a")).unwrap();
            Scene { root, tree }
        }

        fn store(&self) -> Store {
            Store::open(self.root.path(), &self.tree).unwrap().unwrap()
        }

        /// Writes `bytes` as `name` with `mode` and `mtime`, as a seal writes a copy, and
        /// offers it to `store`.
        fn share(&self, store: &Store, name: &str, bytes: &[u8], mode: u32, mtime: i64) -> bool {
            let mut file = self.tree.create_file(name, 0o600).unwrap();
            file.write_all(bytes).unwrap();
            fchmod(&file, Mode::from_raw_mode(mode)).unwrap();
            let time = Timespec {
                tv_sec: mtime,
                tv_nsec: 0,
            };
            let times = Timestamps {
                last_access: time,
                last_modification: time,
            };
            futimens(&file, &times).unwrap();
            let hash = blake3::hash(bytes).to_hex().to_string();
            let key = Key {
                blake3: &hash,
                mode,
                mtime,
                mtime_nsec: 0,
            };
            store
                .share(&self.tree, OsStr::new(name), &file, &key)
                .unwrap()
        }

        fn meta(&self, name: &str) -> std::fs::Metadata {
            std::fs::metadata(self.root.path().join("a").join(name)).unwrap()
        }

        fn objects(&self) -> PathBuf {
            self.root.path().join(STORE_DIR).join(OBJECTS)
        }

        fn entries(&self) -> Vec<PathBuf> {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(self.objects())
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            entries
        }
    }

    #[test]
    fn equal_files_share_an_inode_and_a_different_mode_or_mtime_does_not() {
        let s = Scene::new();
        let store = s.store();
        assert!(s.share(&store, "one", b"bytes", 0o644, 1000));
        assert!(s.share(&store, "two", b"bytes", 0o644, 1000));
        assert!(s.share(&store, "exec", b"bytes", 0o755, 1000));
        assert!(s.share(&store, "older", b"bytes", 0o644, 999));
        assert_eq!(s.meta("one").ino(), s.meta("two").ino());
        assert_eq!(s.meta("one").nlink(), 3);
        assert_ne!(s.meta("one").ino(), s.meta("exec").ino());
        assert_ne!(s.meta("one").ino(), s.meta("older").ino());
        assert_eq!(s.meta("exec").mode() & 0o7777, 0o755);
        assert_eq!(s.meta("older").mtime(), 999);
        assert_eq!(
            std::fs::read(s.root.path().join("a/two")).unwrap(),
            b"bytes"
        );
        assert_eq!(s.entries().len(), 3);
        assert!(std::fs::read_dir(s.root.path().join(STORE_DIR).join(TEMP))
            .unwrap()
            .next()
            .is_none());
        let mode = std::fs::metadata(s.root.path().join(STORE_DIR))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o7777, 0o700);
    }

    #[test]
    fn equal_files_shared_at_once_by_many_threads_end_on_one_inode() {
        let s = Scene::new();
        let store = s.store();
        let names: Vec<String> = (0..16).map(|i| format!("copy{i}")).collect();
        std::thread::scope(|scope| {
            for name in &names {
                let (s, store) = (&s, &store);
                scope.spawn(move || assert!(s.share(store, name, b"same", 0o644, 1000)));
            }
        });
        let ino = s.meta("copy0").ino();
        assert!(names.iter().all(|n| s.meta(n).ino() == ino));
        assert_eq!(s.meta("copy0").nlink(), 17);
        assert_eq!(s.entries().len(), 1);
    }

    #[test]
    fn a_damaged_entry_is_replaced_never_linked() {
        let s = Scene::new();
        let store = s.store();
        assert!(s.share(&store, "one", b"bytes", 0o644, 1000));
        let entry = s.entries().remove(0);
        // Torn by a power cut, say: same size, other bytes, mtime put back.
        let mut torn = std::fs::OpenOptions::new()
            .write(true)
            .open(&entry)
            .unwrap();
        torn.write_all(b"BYTES").unwrap();
        let time = Timespec {
            tv_sec: 1000,
            tv_nsec: 0,
        };
        let times = Timestamps {
            last_access: time,
            last_modification: time,
        };
        futimens(&torn, &times).unwrap();
        let damaged = torn.metadata().unwrap().ino();
        assert!(s.share(&store, "two", b"bytes", 0o644, 1000));
        assert_ne!(s.meta("two").ino(), damaged);
        assert_eq!(
            std::fs::read(s.root.path().join("a/two")).unwrap(),
            b"bytes"
        );
        assert_eq!(
            std::fs::metadata(&entry).unwrap().ino(),
            s.meta("two").ino()
        );
    }

    #[test]
    fn an_entry_gc_removes_before_the_link_leaves_the_copy_private_and_stored_again() {
        let s = Scene::new();
        let store = s.store();
        assert!(s.share(&store, "one", b"bytes", 0o644, 1000));
        let entry = s.entries().remove(0);
        let name = entry.file_name().unwrap().to_str().unwrap().to_string();
        let Stored::Good(stored) = store
            .verified(&name, &key_of(b"bytes", 0o644, 1000), 5)
            .unwrap()
        else {
            panic!("the entry just stored does not verify");
        };
        let mut private = s.tree.create_file("two", 0o644).unwrap();
        private.write_all(b"bytes").unwrap();
        // gc: the name goes between the check and the link.
        std::fs::remove_file(&entry).unwrap();
        assert!(!store
            .link_stored(&stored, &name, &s.tree, OsStr::new("two"))
            .unwrap());
        assert_eq!(
            std::fs::read(s.root.path().join("a/two")).unwrap(),
            b"bytes"
        );
        assert_eq!(s.meta("two").ino(), private.metadata().unwrap().ino());
        let ino = s.meta("two").ino();
        assert!(store
            .add(&s.tree, OsStr::new("two"), ino, &name, false)
            .unwrap());
        assert_eq!(std::fs::metadata(&entry).unwrap().ino(), ino);
    }

    fn key_of(bytes: &[u8], mode: u32, mtime: i64) -> Key<'static> {
        let hash: &'static str = Box::leak(blake3::hash(bytes).to_hex().to_string().into());
        Key {
            blake3: hash,
            mode,
            mtime,
            mtime_nsec: 0,
        }
    }

    #[test]
    fn a_store_others_can_enter_or_write_is_refused() {
        let s = Scene::new();
        drop(s.store());
        let dir = s.root.path().join(STORE_DIR);
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let err = Store::open(s.root.path(), &s.tree)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("must be its user's alone"), "{err}");
        assert!(gc(s.root.path(), false).is_err());
    }

    #[test]
    fn gc_removes_only_what_nothing_uses() {
        let s = Scene::new();
        {
            let store = s.store();
            assert!(s.share(&store, "kept", b"kept", 0o644, 1000));
            assert!(s.share(&store, "dropped", b"dropped", 0o644, 1000));
        }
        std::fs::remove_file(s.root.path().join("a/dropped")).unwrap();
        let temp = s.root.path().join(STORE_DIR).join(TEMP);
        std::fs::write(temp.join("1-0"), b"a dead seal's").unwrap();

        let open = s.store();
        let dry = gc(s.root.path(), true).unwrap();
        assert_eq!((dry.entries, dry.bytes), (1, 7));
        assert_eq!(s.entries().len(), 2);
        let report = gc(s.root.path(), false).unwrap();
        assert_eq!((report.entries, report.bytes), (1, 7));
        assert_eq!(report.busy, vec![temp.clone()]);
        assert!(temp.join("1-0").exists());
        let left = s.entries();
        assert_eq!(left.len(), 1);
        assert_eq!(
            std::fs::metadata(&left[0]).unwrap().ino(),
            s.meta("kept").ino()
        );

        drop(open);
        let report = gc(s.root.path(), false).unwrap();
        assert_eq!(report.removed, vec![temp.join("1-0")]);
        assert_eq!(report.entries, 0);
        assert!(s.meta("kept").is_file());
    }

    #[test]
    fn gc_removes_a_dead_removals_dir_never_a_live_ones_and_counts_what_that_frees() {
        let s = Scene::new();
        std::fs::create_dir(s.root.path().join("a/isolated")).unwrap();
        let tree = s.tree.open_dir("isolated").unwrap();
        {
            let store = s.store();
            let mut file = tree.create_file("f", 0o600).unwrap();
            file.write_all(b"bytes").unwrap();
            fchmod(&file, Mode::from_raw_mode(0o644)).unwrap();
            let hash = blake3::hash(b"bytes").to_hex().to_string();
            let key = Key {
                mode: 0o644,
                mtime: file.metadata().unwrap().mtime(),
                mtime_nsec: file.metadata().unwrap().mtime_nsec(),
                blake3: &hash,
            };
            assert!(store.share(&tree, OsStr::new("f"), &file, &key).unwrap());
        }
        // What a removal killed after its rename leaves: the runtime under a hidden name.
        let trash = s.root.path().join(".a.removing");
        std::fs::rename(s.root.path().join("a"), &trash).unwrap();
        let untouched = |report: GcReport| {
            assert_eq!(report.busy, vec![trash.clone()]);
            assert!(report.removed.is_empty() && report.entries == 0);
            assert!(trash.join("isolated/f").exists());
        };
        // A live removal holds the runtime's lock; a job that got its tree holds that.
        let removal = DirFd::open(&trash).unwrap().lock(false).unwrap();
        untouched(gc(s.root.path(), false).unwrap());
        drop(removal);
        flock(tree.fd(), FlockOperation::LockShared).unwrap();
        untouched(gc(s.root.path(), false).unwrap());
        flock(tree.fd(), FlockOperation::Unlock).unwrap();

        // The entry's only other link is in the dir a dry run lists: it counts it.
        let dry = gc(s.root.path(), true).unwrap();
        assert_eq!((dry.entries, dry.bytes), (1, 5));
        assert_eq!(dry.removed, vec![trash.clone()]);
        assert!(trash.join("isolated/f").exists());
        let report = gc(s.root.path(), false).unwrap();
        assert_eq!((report.entries, report.removed), (1, vec![trash.clone()]));
        assert!(!trash.exists() && s.entries().is_empty());
    }

    #[test]
    fn only_runtime_dirs_below_the_root_use_its_store() {
        let s = Scene::new();
        let root = s.root.path();
        assert!(store_root_for(root, &root.join("a")).is_some());
        assert!(store_root_for(root, root).is_none());
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(store_root_for(root, elsewhere.path()).is_none());
    }
}
