//! The record of a sealed tree: every path with its kind, metadata and BLAKE3 hash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use runseal_closure::{Entry, EntryKind, Inclusion, LearnedSet, Plan};
use serde::{Deserialize, Serialize};

use crate::dirfd::DirFd;
use crate::error::{Error, Result};
use crate::layout::MANIFEST_NAME;
use crate::sbom::sbom_path;

/// 2: each file records its sealed copy's inode and ctime ([`CopyStamp`]). Format 1
/// manifests still load; their files lack stamps, so the next seal copies them afresh.
pub const FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub files: u64,
    pub bytes: u64,
    /// The profiles the tree was sealed with, so `verify` smoke-tests with the same ones.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Each path that brought something into the closure, and why (for `runseal info`).
    #[serde(default)]
    pub inclusions: Vec<Inclusion>,
    /// Paths whose needs were unmet on the source already (see `Plan::unmet_on_source`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub unmet_on_source: std::collections::BTreeSet<PathBuf>,
    /// Paths as the job sees them (`/usr/bin/java`).
    pub entries: BTreeMap<PathBuf, ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    #[serde(flatten)]
    pub kind: ManifestKind,
    /// Permission bits of the sealed copy (never setuid or setgid).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: i64,
    /// Where it was copied from, for audit and for re-sealing only what changed.
    pub source: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ManifestKind {
    Dir,
    File {
        size: u64,
        blake3: String,
        /// The sealed copy as it stood when the tree was swapped in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        copy: Option<CopyStamp>,
    },
    Symlink {
        target: PathBuf,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dangling: bool,
    },
}

/// What rewriting a file in place changes even when its size and mtime are put back: its
/// ctime (no user can set it), and its inode when it is replaced instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyStamp {
    pub ino: u64,
    pub ctime: i64,
    pub ctime_nsec: i64,
}

impl CopyStamp {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        CopyStamp {
            ino: meta.ino(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        }
    }

    pub fn of_stat(stat: &rustix::fs::Stat) -> Self {
        CopyStamp {
            ino: stat.st_ino,
            ctime: stat.st_ctime,
            ctime_nsec: stat.st_ctime_nsec as i64,
        }
    }

    /// Whether the file whose stamp is now `now` is still the copy this stamp records,
    /// holding `blake3`: the same inode, and the same ctime or else the same bytes (`hash`
    /// reads them). An inode shared through the store changes its ctime whenever another
    /// runtime links or unlinks it, which changes nothing the job sees.
    pub fn holds(
        &self,
        now: CopyStamp,
        blake3: &str,
        hash: impl FnOnce() -> std::io::Result<blake3::Hash>,
    ) -> bool {
        now.ino == self.ino && (*self == now || hash().is_ok_and(|h| h.to_hex().as_str() == blake3))
    }
}

/// Who owns every sealed copy, whoever owned its source: root, who makes the copies. A host
/// user owning a sealed file could change what every job runs.
pub const SEALED_OWNER: (u32, u32) = (0, 0);

/// The permission bits a sealed copy gets: setuid and setgid never survive sealing, and
/// neither does write permission for group or others, which would let a host user change
/// what every job runs.
pub fn sealed_mode(mode: u32) -> u32 {
    mode & 0o1755
}

impl ManifestEntry {
    /// The manifest entry a plan entry becomes; `blake3` is the copy's hash for files.
    pub fn from_plan(entry: &Entry, blake3: Option<String>) -> Self {
        let kind = match &entry.kind {
            EntryKind::Dir => ManifestKind::Dir,
            EntryKind::File => ManifestKind::File {
                size: entry.size,
                blake3: blake3.unwrap_or_default(),
                copy: None,
            },
            EntryKind::Symlink { target, dangling } => ManifestKind::Symlink {
                target: target.clone(),
                dangling: *dangling,
            },
        };
        ManifestEntry {
            kind,
            mode: sealed_mode(entry.mode),
            uid: SEALED_OWNER.0,
            gid: SEALED_OWNER.1,
            mtime: entry.mtime,
            mtime_nsec: entry.mtime_nsec,
            source: entry.source.clone(),
        }
    }

    /// Whether this record still describes what `entry` would produce (content by size and
    /// mtime: the source was not rewritten since it was copied).
    pub fn matches(&self, entry: &Entry) -> bool {
        let same_kind = match (&self.kind, &entry.kind) {
            (ManifestKind::Dir, EntryKind::Dir) => true,
            (ManifestKind::File { size, .. }, EntryKind::File) => *size == entry.size,
            (
                ManifestKind::Symlink { target, dangling },
                EntryKind::Symlink {
                    target: t,
                    dangling: d,
                },
            ) => target == t && dangling == d,
            _ => false,
        };
        same_kind
            && self.mode == sealed_mode(entry.mode)
            && (self.uid, self.gid) == SEALED_OWNER
            && (self.mtime, self.mtime_nsec) == (entry.mtime, entry.mtime_nsec)
            && self.source == entry.source
    }
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Manifest::parse(&bytes, path)
    }

    /// The manifest of the sealed tree open at `tree`, if it has one.
    pub fn load_from(tree: &DirFd) -> Result<Option<Manifest>> {
        tree.read_to_string(MANIFEST_NAME)?
            .map(|text| Manifest::parse(text.as_bytes(), &tree.join(MANIFEST_NAME)))
            .transpose()
    }

    fn parse(bytes: &[u8], path: &Path) -> Result<Manifest> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            )
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("manifest types always serialize");
        bytes.push(b'\n');
        bytes
    }

    /// Whether the sealed tree this manifest records is exactly what `plan` asks for, with
    /// its SBOM (a tree sealed before runseal wrote them is sealed again).
    pub fn matches_plan(&self, plan: &Plan) -> bool {
        self.entries.contains_key(&sbom_path())
            && self.entries.len() == plan.entries.len() + 1
            && plan
                .entries
                .iter()
                .all(|(path, entry)| self.entries.get(path).is_some_and(|m| m.matches(entry)))
    }

    /// What learn commands brought into the tree, by command: each learned path is one of
    /// the inclusions, with the reason `learned from <command>`.
    pub fn learned(&self) -> Vec<LearnedSet> {
        LearnedSet::from_inclusions(&self.inclusions)
    }

    /// Records the SBOM written into the tree as one more file.
    pub fn record_sbom(&mut self, entry: ManifestEntry) {
        if let ManifestKind::File { size, .. } = entry.kind {
            self.files += 1;
            self.bytes += size;
        }
        self.entries.insert(sbom_path(), entry);
    }

    /// Paths that were already broken on the source at seal time: dangling symlinks and
    /// files whose libraries or interpreter were not installed. The static check accepts them.
    pub fn known_unmet(&self) -> std::collections::BTreeSet<PathBuf> {
        self.entries
            .iter()
            .filter(|(_, e)| matches!(e.kind, ManifestKind::Symlink { dangling: true, .. }))
            .map(|(p, _)| p.clone())
            .chain(self.unmet_on_source.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn blake3_file(path: &Path) -> std::io::Result<blake3::Hash> {
        blake3::Hasher::new()
            .update_mmap(path)
            .map(|h| h.finalize())
    }

    #[test]
    fn a_copy_whose_ctime_moved_holds_while_its_bytes_are_the_sealed_ones() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("copy");
        std::fs::write(&path, b"sealed").unwrap();
        let hash = blake3::hash(b"sealed").to_hex().to_string();
        let stamp = CopyStamp::of(&std::fs::metadata(&path).unwrap());
        let holds = |stamp: &CopyStamp| {
            stamp.holds(
                CopyStamp::of(&std::fs::metadata(&path).unwrap()),
                &hash,
                || blake3_file(&path),
            )
        };
        assert!(holds(&stamp));

        // Another runtime linking the inode moves its ctime, and changes nothing else.
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::hard_link(&path, t.path().join("other")).unwrap();
        assert_ne!(CopyStamp::of(&std::fs::metadata(&path).unwrap()), stamp);
        assert!(holds(&stamp));

        // Rewritten in place, same size: the ctime moved and the bytes differ.
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all(b"SEALED").unwrap();
        assert!(!holds(&stamp));

        // Another inode at the name never holds, whatever it holds (the old one kept
        // linked, so that its number is not reused).
        std::fs::rename(&path, t.path().join("old")).unwrap();
        std::fs::write(&path, b"sealed").unwrap();
        assert!(!holds(&stamp));
    }
}
