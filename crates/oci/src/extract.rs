//! Unpacking layers an untrusted author wrote into a fresh sealed tree. Every name is
//! checked before it is used (no absolute path, no `..`, no whiteout), every write goes
//! through the fd of its parent dir reached from the tree's fd with no symlink on the way,
//! and creates its name exclusively without following a link; hard links, device nodes,
//! fifos and anything else but dirs, regular files and symlinks are refused; modes lose
//! setuid, setgid and group/other write as a seal's copies do; the sizes add up to a limit.
//! A symlink is written as data: it may point anywhere, because nothing is ever written or
//! read through one here, and in a job it resolves inside the job's root.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use runseal_seal::dirfd::DirFd;
use runseal_seal::{sealed_mode, ManifestEntry, ManifestKind, MANIFEST_NAME};
use rustix::fs::{
    fchmod, futimens, statat, symlinkat, utimensat, AtFlags, FileType, Mode, Timespec, Timestamps,
};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::layout::MAX_JSON;

/// How much an image may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of file content, all layers together.
    pub max_bytes: u64,
    /// Tar entries, all layers together.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 << 30,
            max_entries: 4_000_000,
        }
    }
}

/// The layers unpacked so far: each path as the job sees it with its record, for the
/// manifest import writes.
pub struct Extraction<'a> {
    tree: &'a DirFd,
    image: String,
    limits: Limits,
    pub entries: BTreeMap<PathBuf, ManifestEntry>,
    /// The manifest the image carries (its profiles and notes are kept; its records are not
    /// trusted: the entries above are what was written).
    pub shipped_manifest: Option<Vec<u8>>,
    bytes: u64,
    count: u64,
}

impl<'a> Extraction<'a> {
    pub fn new(tree: &'a DirFd, image: &str, limits: Limits) -> Self {
        Extraction {
            tree,
            image: image.to_string(),
            limits,
            entries: BTreeMap::new(),
            shipped_manifest: None,
            bytes: 0,
            count: 0,
        }
    }

    fn refuse(&self, path: &Path, reason: impl std::fmt::Display) -> Error {
        Error::refused(
            &self.image,
            format!("layer entry `{}` {reason}", path.display()),
        )
    }

    /// Unpacks one layer (an uncompressed tar stream) over what is there.
    pub fn layer(&mut self, reader: impl Read) -> Result<()> {
        let tree_path = self.tree.path().to_path_buf();
        let io = |e| Error::io(&tree_path, e);
        let mut archive = tar::Archive::new(crate::headers::Bounded::new(reader));
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            self.count += 1;
            if self.count > self.limits.max_entries {
                return Err(Error::refused(
                    &self.image,
                    format!("has more than {} entries", self.limits.max_entries),
                ));
            }
            let raw = entry.path_bytes().into_owned();
            let Some(rel) = safe_path(&raw)
                .map_err(|reason| self.refuse(Path::new(OsStr::from_bytes(&raw)), reason))?
            else {
                continue; // the root itself
            };
            let mtime = mtime_of(&mut entry).map_err(|reason| self.refuse(&rel, reason))?;
            let header = entry.header();
            let mode = sealed_mode(header.mode().map_err(io)?);
            let kind = header.entry_type();
            let record = |kind| ManifestEntry {
                kind,
                mode,
                uid: 0,
                gid: 0,
                mtime: mtime.0,
                mtime_nsec: mtime.1,
                source: Path::new("/").join(&rel),
            };
            if rel == Path::new(MANIFEST_NAME) && kind.is_file() {
                self.shipped_manifest = Some(self.read_small(&rel, &mut entry)?);
                continue;
            }
            match kind {
                tar::EntryType::Directory => {
                    self.dir(&rel)?;
                    self.entries
                        .insert(Path::new("/").join(&rel), record(ManifestKind::Dir));
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let (size, blake3) = self.file(&rel, mode, mtime, &mut entry)?;
                    let kind = ManifestKind::File {
                        size,
                        blake3,
                        copy: None,
                    };
                    self.entries.insert(Path::new("/").join(&rel), record(kind));
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| PathBuf::from(OsStr::from_bytes(&t)))
                        .filter(|t| !t.as_os_str().is_empty())
                        .ok_or_else(|| self.refuse(&rel, "is a symlink to nothing"))?;
                    self.symlink(&rel, &target, mtime)?;
                    let kind = ManifestKind::Symlink {
                        target,
                        dangling: false,
                    };
                    self.entries.insert(Path::new("/").join(&rel), record(kind));
                }
                tar::EntryType::Link => {
                    return Err(self.refuse(&rel, "is a hard link; runseal images hold none"))
                }
                tar::EntryType::Char | tar::EntryType::Block => {
                    return Err(self.refuse(&rel, "is a device node; a sealed tree holds none"))
                }
                tar::EntryType::Fifo => {
                    return Err(self.refuse(&rel, "is a fifo; a sealed tree holds none"))
                }
                other => return Err(self.refuse(&rel, format!("is of tar type {other:?}"))),
            }
        }
        Ok(())
    }

    /// Gives every dir the mode and mtime its entry carries, deepest first (writing into a
    /// dir changes its mtime).
    pub fn finish(self) -> Result<BTreeMap<PathBuf, ManifestEntry>> {
        for (path, record) in self.entries.iter().rev() {
            if record.kind == ManifestKind::Dir {
                let dir = self.tree.open_dir(path.strip_prefix("/").unwrap_or(path))?;
                set_metadata(dir.fd(), record.mode, (record.mtime, record.mtime_nsec))
                    .map_err(|e| Error::io(dir.path(), e))?;
            }
        }
        Ok(self.entries)
    }

    /// The dir holding `rel` (made as needed, each part recorded), and `rel`'s last name.
    fn parent<'p>(&mut self, rel: &'p Path) -> Result<(DirFd, &'p OsStr)> {
        let name = rel.file_name().expect("safe paths end in a name");
        let parent = rel.parent().unwrap_or(Path::new(""));
        let mut dir = self.tree.open_dir("")?;
        let mut sofar = PathBuf::new();
        for part in parent.iter() {
            sofar.push(part);
            match kind_of(&dir, part)? {
                None => {
                    dir.make_dir(part, 0o755)?;
                    // A dir the layer never named: recorded as made, at time zero.
                    self.entries.insert(
                        Path::new("/").join(&sofar),
                        ManifestEntry {
                            kind: ManifestKind::Dir,
                            mode: 0o755,
                            uid: 0,
                            gid: 0,
                            mtime: 0,
                            mtime_nsec: 0,
                            source: Path::new("/").join(&sofar),
                        },
                    );
                }
                Some(FileType::Directory) => {}
                Some(_) => {
                    return Err(self.refuse(
                        rel,
                        format!(
                            "lies below `{}`, which is not a directory (nothing is written \
                             through a symlink)",
                            sofar.display()
                        ),
                    ))
                }
            }
            dir = dir.open_dir(part)?;
        }
        Ok((dir, name))
    }

    /// Makes room for a non-dir at `rel`: a later layer replaces a file or link, never a dir.
    fn replace<'p>(&mut self, rel: &'p Path) -> Result<(DirFd, &'p OsStr)> {
        let (dir, name) = self.parent(rel)?;
        match kind_of(&dir, name)? {
            None => {}
            Some(FileType::Directory) => return Err(self.refuse(rel, "would replace a directory")),
            Some(_) => {
                dir.remove_file(name)?;
                self.entries.remove(&Path::new("/").join(rel));
            }
        }
        Ok((dir, name))
    }

    fn dir(&mut self, rel: &Path) -> Result<()> {
        let (dir, name) = self.parent(rel)?;
        match kind_of(&dir, name)? {
            None => dir.make_dir(name, 0o755)?,
            Some(FileType::Directory) => {}
            Some(_) => {
                return Err(self.refuse(rel, "would replace a file or symlink with a directory"))
            }
        }
        Ok(())
    }

    fn budget(&mut self, rel: &Path, size: u64) -> Result<()> {
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.limits.max_bytes {
            return Err(self.refuse(
                rel,
                format!(
                    "takes the image past {} bytes of content",
                    self.limits.max_bytes
                ),
            ));
        }
        Ok(())
    }

    fn file(
        &mut self,
        rel: &Path,
        mode: u32,
        mtime: Mtime,
        entry: &mut impl Read,
    ) -> Result<(u64, String)> {
        let (dir, name) = self.replace(rel)?;
        let mut file = dir.create_file(name, 0o600)?;
        let path = dir.join(name);
        let io = |e| Error::io(&path, e);
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = entry.read(&mut buffer).map_err(io)?;
            if n == 0 {
                break;
            }
            self.budget(rel, n as u64)?;
            size += n as u64;
            hasher.update(&buffer[..n]);
            file.write_all(&buffer[..n]).map_err(io)?;
        }
        set_metadata(&file, mode, mtime).map_err(io)?;
        Ok((size, hasher.finalize().to_hex().to_string()))
    }

    fn symlink(&mut self, rel: &Path, target: &Path, mtime: Mtime) -> Result<()> {
        let (dir, name) = self.replace(rel)?;
        let path = dir.join(name);
        symlinkat(target, dir.fd(), name).map_err(|e| Error::io(&path, e.into()))?;
        utimensat(dir.fd(), name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io(&path, e.into()))
    }

    fn read_small(&mut self, rel: &Path, entry: &mut impl Read) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        entry
            .take(MAX_JSON * 8 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(self.tree.join(rel), e))?;
        if bytes.len() as u64 > MAX_JSON * 8 {
            return Err(self.refuse(rel, "is too large for a manifest"));
        }
        self.budget(rel, bytes.len() as u64)?;
        Ok(bytes)
    }
}

/// `raw` as a relative path of plain names (`./` and empty parts dropped), `None` for the
/// root itself, or why it is refused.
pub fn safe_path(raw: &[u8]) -> std::result::Result<Option<PathBuf>, &'static str> {
    if raw.starts_with(b"/") {
        return Err("is an absolute path");
    }
    let mut path = PathBuf::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("has a `..` component"),
            part if part.starts_with(b".wh.") => {
                return Err("is a whiteout; runseal images have one complete tree")
            }
            part => path.push(OsStr::from_bytes(part)),
        }
    }
    Ok((!path.as_os_str().is_empty()).then_some(path))
}

/// What `name` in `dir` is, not following a symlink; `None` when nothing is there.
fn kind_of(dir: &DirFd, name: &(impl AsRef<Path> + ?Sized)) -> Result<Option<FileType>> {
    let name = name.as_ref();
    match statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(Error::io(dir.join(name), e.into())),
    }
}

/// Seconds and nanoseconds since 1970, as `stat` gives them and the manifest records them.
type Mtime = (i64, i64);

/// The latest mtime an image may give: the end of year 9999, the last time RFC 3339 (and so
/// every tool that prints one) can write. Far below what overflows any arithmetic on it.
const MAX_MTIME: i64 = 253_402_300_799;

/// The mtime of `entry`: its PAX `mtime` record when it has one (the last, as PAX says a
/// later record overrides), else the header's whole seconds; or why it is refused.
fn mtime_of<R: Read>(entry: &mut tar::Entry<R>) -> std::result::Result<Mtime, String> {
    let mut exact = None;
    if let Some(records) = entry
        .pax_extensions()
        .map_err(|e| format!("has an unreadable PAX header ({e})"))?
    {
        for record in records {
            let record = record.map_err(|_| "has a malformed PAX header record".to_string())?;
            if record.key_bytes() == b"mtime" {
                exact = Some(record.value_bytes());
            }
        }
    }
    match exact {
        Some(value) => pax_mtime(value).map_err(|reason| {
            format!(
                "has a PAX mtime `{}` that {reason}",
                String::from_utf8_lossy(&value[..value.len().min(40)])
            )
        }),
        None => match entry.header().mtime().map(i64::try_from) {
            Ok(Ok(seconds)) if seconds <= MAX_MTIME => Ok((seconds, 0)),
            _ => Err(format!("has no mtime, or one past {MAX_MTIME} (year 9999)")),
        },
    }
}

/// A PAX time (`SECONDS[.FRACTION]`, decimal) as seconds and nanoseconds; digits past the
/// ninth of the fraction are dropped, as GNU tar and Go read them. Runseal's exports write
/// no time before 1970 (ustar has no sign), so a negative one is refused, as is one past
/// [`MAX_MTIME`] and anything else; only 12 digits at most are ever converted, so no value
/// overflows.
fn pax_mtime(value: &[u8]) -> std::result::Result<Mtime, &'static str> {
    let (seconds, fraction) = match value.iter().position(|b| *b == b'.') {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &[][..]),
    };
    if seconds.first() == Some(&b'-') {
        return Err("is before 1970; runseal images hold no such time");
    }
    let digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
    if seconds.is_empty() || !digits(seconds) || !digits(fraction) {
        return Err("is not a decimal time (SECONDS or SECONDS.FRACTION)");
    }
    let significant = &seconds[seconds.iter().take_while(|b| **b == b'0').count()..];
    let seconds = match significant.len() {
        // At most 12 digits, far within an i64: parsing cannot overflow.
        0..=12 => std::str::from_utf8(significant)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0),
        _ => i64::MAX,
    };
    if seconds > MAX_MTIME {
        return Err("is past the year 9999");
    }
    let nanos = fraction
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(9)
        .fold(0i64, |n, digit| n * 10 + i64::from(digit - b'0'));
    Ok((seconds, nanos))
}

fn times((seconds, nanos): Mtime) -> Timestamps {
    let time = Timespec {
        tv_sec: seconds,
        tv_nsec: nanos,
    };
    Timestamps {
        last_access: time,
        last_modification: time,
    }
}

fn set_metadata(fd: impl std::os::fd::AsFd, mode: u32, mtime: Mtime) -> std::io::Result<()> {
    fchmod(&fd, Mode::from_raw_mode(mode))?;
    futimens(&fd, &times(mtime))?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use tar::EntryType;

    /// One raw tar entry: name and link name are written as they are, `..` and all, as a
    /// hostile image would write them (tar's own API refuses such names).
    pub struct Raw<'a> {
        pub name: &'a [u8],
        pub kind: EntryType,
        pub data: &'a [u8],
        pub link: &'a [u8],
        pub mode: u32,
    }

    pub fn raw(name: &[u8], kind: EntryType) -> Raw<'_> {
        Raw {
            name,
            kind,
            data: b"",
            link: b"",
            mode: 0o644,
        }
    }

    pub fn tar_of(entries: &[Raw]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in entries {
            let mut header = tar::Header::new_old();
            header.as_old_mut().name[..entry.name.len()].copy_from_slice(entry.name);
            header.as_old_mut().linkname[..entry.link.len()].copy_from_slice(entry.link);
            header.set_entry_type(entry.kind);
            header.set_mode(entry.mode);
            header.set_size(entry.data.len() as u64);
            header.set_mtime(1_700_000_000);
            header.set_cksum();
            builder.append(&header, entry.data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// A tree in a temp dir beside an `outside` dir that nothing may ever touch.
    struct Scene {
        dir: tempfile::TempDir,
    }

    impl Scene {
        fn new() -> Scene {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("tree")).unwrap();
            std::fs::create_dir(dir.path().join("outside")).unwrap();
            Scene { dir }
        }

        fn outside(&self) -> PathBuf {
            self.dir.path().join("outside")
        }

        fn extract(
            &self,
            layers: &[Vec<u8>],
            limits: Limits,
        ) -> Result<BTreeMap<PathBuf, ManifestEntry>> {
            let tree = DirFd::open(&self.dir.path().join("tree")).unwrap();
            let mut extraction = Extraction::new(&tree, "test-image", limits);
            for layer in layers {
                extraction.layer(layer.as_slice())?;
            }
            extraction.finish()
        }

        fn refused(&self, layers: &[Vec<u8>], why: &str) {
            let err = self
                .extract(layers, Limits::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{err}");
            assert_eq!(std::fs::read_dir(self.outside()).unwrap().count(), 0);
            assert!(!self.dir.path().join("escape").exists());
        }
    }

    #[test]
    fn absolute_and_dotdot_paths_are_refused() {
        for name in [&b"../escape"[..], b"a/../../escape", b"./../escape"] {
            let scene = Scene::new();
            scene.refused(&[tar_of(&[raw(name, EntryType::Regular)])], "`..`");
        }
        let scene = Scene::new();
        let absolute = format!("{}/escape", scene.dir.path().display());
        let layer = tar_of(&[raw(absolute.as_bytes(), EntryType::Regular)]);
        scene.refused(&[layer], "absolute");
    }

    #[test]
    fn nothing_is_written_through_a_symlink_even_one_from_an_earlier_layer() {
        let scene = Scene::new();
        let outside = scene.outside().display().to_string();
        let mut link = raw(b"lib", EntryType::Symlink);
        link.link = outside.as_bytes();
        let mut up = raw(b"up", EntryType::Symlink);
        up.link = b"..";
        let first = tar_of(&[link, up]);
        for name in [&b"lib/evil"[..], b"up/escape", b"lib/sub/evil"] {
            let second = tar_of(&[raw(name, EntryType::Regular)]);
            scene.refused(&[first.clone(), second.clone()], "not a directory");
            let dir = tar_of(&[raw(name, EntryType::Directory)]);
            scene.refused(&[first.clone(), dir], "not a directory");
        }
    }

    #[test]
    fn hard_links_device_nodes_and_fifos_are_refused() {
        let mut hard = raw(b"passwd", EntryType::Link);
        hard.link = b"/etc/passwd";
        let mut inside = raw(b"again", EntryType::Link);
        inside.link = b"file";
        for (entries, why) in [
            (vec![hard], "hard link"),
            (vec![raw(b"file", EntryType::Regular), inside], "hard link"),
            (vec![raw(b"null", EntryType::Char)], "device node"),
            (vec![raw(b"sda", EntryType::Block)], "device node"),
            (vec![raw(b"pipe", EntryType::Fifo)], "fifo"),
            (vec![raw(b"a/.wh.b", EntryType::Regular)], "whiteout"),
            (vec![raw(b"sparse", EntryType::GNUSparse)], "sparse"),
        ] {
            let scene = Scene::new();
            scene.refused(&[tar_of(&entries)], why);
        }
    }

    #[test]
    fn setuid_setgid_and_write_for_others_do_not_survive() {
        let scene = Scene::new();
        let mut suid = raw(b"bin/su", EntryType::Regular);
        suid.mode = 0o6777;
        suid.data = b"#!/bin/sh\n";
        let entries = scene
            .extract(&[tar_of(&[suid])], Limits::default())
            .unwrap();
        let path = scene.dir.path().join("tree/bin/su");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        assert_eq!(entries[Path::new("/bin/su")].mode, 0o755);
        // The dir the layer never named is recorded, so verify finds nothing unexplained.
        assert_eq!(entries[Path::new("/bin")].kind, ManifestKind::Dir);
    }

    #[test]
    fn sizes_and_entry_counts_past_the_limits_are_refused() {
        let big = vec![0u8; 2 << 20];
        let mut file = raw(b"big", EntryType::Regular);
        file.data = &big;
        let layer = tar_of(&[file]);
        let limits = Limits {
            max_bytes: 1 << 20,
            ..Limits::default()
        };
        let err = Scene::new()
            .extract(std::slice::from_ref(&layer), limits)
            .unwrap_err();
        assert!(err.to_string().contains("bytes of content"), "{err}");
        assert!(Scene::new().extract(&[layer], Limits::default()).is_ok());

        let many: Vec<Raw> = (0..5).map(|_| raw(b"d", EntryType::Directory)).collect();
        let limits = Limits {
            max_entries: 4,
            ..Limits::default()
        };
        let err = Scene::new().extract(&[tar_of(&many)], limits).unwrap_err();
        assert!(err.to_string().contains("more than 4 entries"), "{err}");
    }

    #[test]
    fn pax_mtimes_are_read_exactly_and_hostile_ones_refused() {
        assert_eq!(pax_mtime(b"1700000000"), Ok((1_700_000_000, 0)));
        assert_eq!(pax_mtime(b"1700000000."), Ok((1_700_000_000, 0)));
        assert_eq!(pax_mtime(b"1700000000.5"), Ok((1_700_000_000, 500_000_000)));
        assert_eq!(
            pax_mtime(b"1700000000.123456789"),
            Ok((1_700_000_000, 123_456_789))
        );
        // Past nanoseconds, digits are dropped, not rounded.
        assert_eq!(pax_mtime(b"0.1234567899999"), Ok((0, 123_456_789)));
        assert_eq!(pax_mtime(b"000000000000000000000042.0"), Ok((42, 0)));
        assert_eq!(
            pax_mtime(b"253402300799.999999999"),
            Ok((MAX_MTIME, 999_999_999))
        );
        for (value, why) in [
            (&b"-1"[..], "before 1970"),
            (b"-1.5", "before 1970"),
            (b"253402300800", "past the year 9999"),
            (b"9223372036854775808", "past the year 9999"),
            (&[b'9'; 4096][..], "past the year 9999"),
            (b"", "not a decimal time"),
            (b".5", "not a decimal time"),
            (b"1e9", "not a decimal time"),
            (b"+1", "not a decimal time"),
            (b" 1", "not a decimal time"),
            (b"1.2.3", "not a decimal time"),
            (b"1.-2", "not a decimal time"),
            (b"\xff", "not a decimal time"),
        ] {
            let err = pax_mtime(value).unwrap_err();
            assert!(err.contains(why), "{value:?}: {err}");
        }
    }

    /// A layer as `tar --format=pax` writes it: each entry's exact mtime in a PAX record.
    fn pax_layer(entries: &[(&[u8], EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, mtime) in entries {
            builder.append_pax_extensions([("mtime", *mtime)]).unwrap();
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_mtime(1);
            header.set_size(0);
            header.set_path(std::str::from_utf8(name).unwrap()).unwrap();
            if kind.is_symlink() {
                header.set_link_name("target").unwrap();
            }
            header.set_cksum();
            builder.append(&header, std::io::empty()).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_pax_mtime_is_restored_and_recorded_to_the_nanosecond() {
        use std::os::unix::fs::MetadataExt;
        let scene = Scene::new();
        let layer = pax_layer(&[
            (b"d/", EntryType::Directory, b"1600000000.000000007"),
            (b"d/f", EntryType::Regular, b"1700000000.123456789"),
            (b"d/l", EntryType::Symlink, b"1650000000.5"),
        ]);
        let entries = scene.extract(&[layer], Limits::default()).unwrap();
        let tree = scene.dir.path().join("tree");
        for (path, expected) in [
            ("d", (1_600_000_000, 7)),
            ("d/f", (1_700_000_000, 123_456_789)),
            ("d/l", (1_650_000_000, 500_000_000)),
        ] {
            let meta = std::fs::symlink_metadata(tree.join(path)).unwrap();
            assert_eq!((meta.mtime(), meta.mtime_nsec()), expected, "{path}");
            let record = &entries[&Path::new("/").join(path)];
            assert_eq!((record.mtime, record.mtime_nsec), expected, "{path}");
        }

        for (mtime, why) in [
            (&b"-5"[..], "before 1970"),
            (b"99999999999999999999999", "past the year 9999"),
            (b"soon", "not a decimal time"),
        ] {
            let layer = pax_layer(&[(b"f", EntryType::Regular, mtime)]);
            Scene::new().refused(&[layer], why);
        }
        let mut late = tar::Header::new_gnu();
        late.set_entry_type(EntryType::Regular);
        late.set_path("f").unwrap();
        late.set_size(0);
        late.set_mtime(u64::MAX);
        late.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&late, std::io::empty()).unwrap();
        Scene::new().refused(&[builder.into_inner().unwrap()], "year 9999");
    }

    #[test]
    fn a_later_layer_replaces_files_and_links_but_never_a_dir() {
        let scene = Scene::new();
        let mut old = raw(b"f", EntryType::Regular);
        old.data = b"old";
        let mut new = raw(b"f", EntryType::Symlink);
        new.link = b"elsewhere";
        let entries = scene
            .extract(&[tar_of(&[old]), tar_of(&[new])], Limits::default())
            .unwrap();
        assert!(matches!(
            entries[Path::new("/f")].kind,
            ManifestKind::Symlink { .. }
        ));
        let scene = Scene::new();
        let layers = [
            tar_of(&[raw(b"d", EntryType::Directory)]),
            tar_of(&[raw(b"d", EntryType::Regular)]),
        ];
        scene.refused(&layers, "would replace a directory");
    }
}
