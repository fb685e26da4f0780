//! `runseal du`: how much the runtimes under a root hold as they see it, and how much of
//! it the disk keeps once, with hard links (the store's and a tree's own) counted once.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::STORE_DIR;

/// Sizes are file bytes (as `du --apparent-size`), so that two measures of the same files
/// compare: `logical` counts every name, `physical` every inode once.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    pub runtimes: Vec<RuntimeUsage>,
    pub store: StoreUsage,
    /// The runtimes' logical sizes added up.
    pub logical: u64,
    /// Every file under the root, store and runseal's hidden dirs included, each inode once.
    pub physical: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
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

#[derive(Debug, Clone, Default, Serialize)]
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
    let objects = root.join(STORE_DIR).join("objects");
    let mut inodes: HashMap<(u64, u64), Inode> = HashMap::new();
    each_file(root, true, |path, meta| {
        let inode = inodes.entry((meta.dev(), meta.ino())).or_insert(Inode {
            size: meta.len(),
            runtimes: Vec::new(),
        });
        if path.parent() == Some(&objects) {
            usage.store.entries += 1;
            usage.store.bytes += meta.len();
            if meta.nlink() == 1 {
                usage.store.unreferenced += 1;
                usage.store.unreferenced_bytes += meta.len();
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
    Ok(usage)
}

/// Calls `f` on each regular file at or below `top`, with its metadata, following no
/// symlink below `top` (nor `top` itself unless `follow_top`: a root the operator names may
/// be one) and staying on `top`'s filesystem. Seals and gcs removing files meanwhile make a
/// file vanish between its listing and its `stat`: it is skipped.
pub(crate) fn each_file(
    top: &Path,
    follow_top: bool,
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
