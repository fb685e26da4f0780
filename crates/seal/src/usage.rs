//! `runseal du`: how much the runtimes under a root hold as they see it, and how much of
//! it the disk keeps once, with hard links (the store's and a tree's own) counted once.

use std::collections::HashMap;
use std::io::ErrorKind::PermissionDenied;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::STORE_DIR;

/// Sizes are file bytes (as `du --apparent-size`), so that two measures of the same files
/// compare: `logical` counts every name, `physical` every inode once.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Usage {
    pub runtimes: Vec<RuntimeUsage>,
    /// `None` when this user may not read the store (root's alone, mode 0700).
    pub store: Option<StoreUsage>,
    /// The runtimes' logical sizes added up.
    pub logical: u64,
    /// Every file under the root, store and runseal's hidden dirs included, each inode once.
    pub physical: u64,
    /// Dirs under the root this user may not read; nothing below them is in any figure.
    /// The runtimes' trees are readable by all (jobs run unprivileged), so for a user
    /// other than root this is the store, whose entries no runtime links are then missing
    /// from `physical`; what runtimes share is still seen by their inodes.
    pub unreadable: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuntimeUsage {
    pub dir: PathBuf,
    pub files: u64,
    /// Every file in the runtime dir (its sealed tree, trees jobs still use, runtime.yml)
    /// as if none shared an inode.
    pub logical: u64,
    /// Each inode of the runtime dir once.
    pub physical: u64,
    /// The part of `physical` no other runtime links: what removing it and a `gc` free.
    pub exclusive: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoreUsage {
    pub entries: u64,
    pub bytes: u64,
    /// Entries only the store links, which the next `gc` removes.
    pub unreferenced: u64,
    pub unreferenced_bytes: u64,
}

/// What each inode is, and which runtimes (by index) link it.
struct Inode {
    size: u64,
    runtimes: Vec<usize>,
}

/// Walks everything under `root` once. Seals and gcs running meanwhile make the figures
/// those of no single moment, never wrong about a file that was there throughout.
pub fn usage(root: &Path) -> Result<Usage> {
    let dirs: Vec<PathBuf> = runseal_spec::list_runtimes(root)?
        .into_iter()
        .map(|r| r.dir)
        .collect();
    let mut usage = Usage {
        runtimes: dirs
            .iter()
            .map(|dir| RuntimeUsage {
                dir: dir.clone(),
                ..RuntimeUsage::default()
            })
            .collect(),
        ..Usage::default()
    };
    let store_dir = root.join(STORE_DIR);
    let objects = store_dir.join("objects");
    let mut store = StoreUsage::default();
    let mut inodes: HashMap<(u64, u64), Inode> = HashMap::new();
    let mut unreadable = Vec::new();
    each_file(root, true, Some(&mut unreadable), |path, meta| {
        let inode = inodes.entry((meta.dev(), meta.ino())).or_insert(Inode {
            size: meta.len(),
            runtimes: Vec::new(),
        });
        if path.parent() == Some(&objects) {
            store.entries += 1;
            store.bytes += meta.len();
            if meta.nlink() == 1 {
                store.unreferenced += 1;
                store.unreferenced_bytes += meta.len();
            }
        }
        // The innermost runtime dir holding it (a runtime may hold nested ones).
        let owner = dirs
            .iter()
            .enumerate()
            .filter(|(_, dir)| path.starts_with(dir))
            .max_by_key(|(_, dir)| dir.components().count())
            .map(|(i, _)| i);
        if let Some(i) = owner {
            usage.runtimes[i].files += 1;
            usage.runtimes[i].logical += meta.len();
            if !inode.runtimes.contains(&i) {
                inode.runtimes.push(i);
            }
        }
    })?;
    for inode in inodes.values() {
        usage.physical += inode.size;
        for &i in &inode.runtimes {
            usage.runtimes[i].physical += inode.size;
            if inode.runtimes.len() == 1 {
                usage.runtimes[i].exclusive += inode.size;
            }
        }
    }
    usage.logical = usage.runtimes.iter().map(|r| r.logical).sum();
    let store_read = !unreadable.iter().any(|dir| dir.starts_with(&store_dir));
    usage.store = store_read.then_some(store);
    usage.unreadable = unreadable;
    Ok(usage)
}

/// Calls `f` on each regular file at or below `top`, with its metadata, following no
/// symlink below `top` (nor `top` itself unless `follow_top`: a root the operator names may
/// be one) and staying on `top`'s filesystem. Seals and gcs removing files meanwhile make a
/// file vanish between its listing and its `stat`: it is skipped. A dir this user may not
/// read is added to `unreadable` and skipped when that is given, else an error.
pub(crate) fn each_file(
    top: &Path,
    follow_top: bool,
    mut unreadable: Option<&mut Vec<PathBuf>>,
    mut f: impl FnMut(&Path, &std::fs::Metadata),
) -> Result<()> {
    let walk = walkdir::WalkDir::new(top)
        .follow_links(false)
        .follow_root_links(follow_top)
        .same_file_system(true);
    for item in walk {
        let item = match item {
            Ok(item) => item,
            Err(e) if e.io_error().map(|e| e.kind()) == Some(std::io::ErrorKind::NotFound) => {
                continue
            }
            Err(e) if e.io_error().map(|e| e.kind()) == Some(PermissionDenied) => {
                match unreadable.as_deref_mut() {
                    Some(list) => list.push(e.path().unwrap_or(top).to_path_buf()),
                    None => return Err(Error::io(e.path().unwrap_or(top).to_path_buf(), e.into())),
                }
                continue;
            }
            Err(e) => {
                let path = e.path().map(Path::to_path_buf).unwrap_or_default();
                return Err(Error::io(path, e.into()));
            }
        };
        if !item.file_type().is_file() {
            continue;
        }
        match item.metadata() {
            Ok(meta) => f(item.path(), &meta),
            Err(_) if !item.path().exists() => {}
            Err(e) => return Err(Error::io(item.path(), e.into())),
        }
    }
    Ok(())
}
