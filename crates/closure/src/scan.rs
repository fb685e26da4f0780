//! What a file's first bytes say it needs: an ELF's loader facts or a script's interpreter.

use std::io::Read;
use std::path::Path;

use crate::elf::{self, ElfInfo};
use crate::error::{Error, Result};
use crate::root::Root;

/// Enough for any `#!` line the kernel honours (it reads at most 256 bytes).
const HEADER_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    Elf(ElfInfo),
    /// An ELF file the loader could not use, or one for another machine or OS; its
    /// dependencies are not followed.
    BadElf(String),
    Script {
        interpreter: String,
        argument: Option<String>,
    },
    Other,
}

/// Classifies the regular file at `path` (resolved, under `root`; see
/// [`Root::open_regular`]: anything else there now is an error, never a blocked read). A
/// `#!` line only counts in an executable file: the kernel reads it only when exec'ing one
/// (`cgi.py`'s `#! /usr/local/bin/python` in a 0644 library file names nothing needed).
pub fn scan(root: &Root, path: &Path, executable: bool) -> Result<FileKind> {
    let mut file = root.open_regular(path)?;
    let mut header = Vec::with_capacity(HEADER_BYTES);
    (&mut file)
        .take(HEADER_BYTES as u64)
        .read_to_end(&mut header)
        .map_err(|e| Error::io(root.real(path), e))?;
    if let Some(why) = elf::foreign(&header) {
        return Ok(FileKind::BadElf(why));
    }
    if header.starts_with(elf::MAGIC) {
        return Ok(match elf::read(&file) {
            Ok(info) => FileKind::Elf(info),
            Err(message) => FileKind::BadElf(message),
        });
    }
    if !executable {
        return Ok(FileKind::Other);
    }
    Ok(parse_shebang(&header).unwrap_or(FileKind::Other))
}

/// The kernel's reading of `#!`: the interpreter path, then everything else as one argument.
pub fn parse_shebang(header: &[u8]) -> Option<FileKind> {
    let rest = header.strip_prefix(b"#!")?;
    let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = std::str::from_utf8(&rest[..line_end]).ok()?.trim();
    let (interpreter, argument) = match line.split_once([' ', '\t']) {
        Some((i, a)) => (i, Some(a.trim().to_string()).filter(|a| !a.is_empty())),
        None => (line, None),
    };
    interpreter.starts_with('/').then(|| FileKind::Script {
        interpreter: interpreter.to_string(),
        argument,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{mkfifo, within_seconds};

    /// The plan saw a file; by the time it is scanned its owner has put a FIFO, or a
    /// symlink to a FIFO, in its place.
    #[test]
    fn a_fifo_in_place_of_a_planned_file_is_an_error_not_a_hang() {
        let t = tempfile::tempdir().unwrap();
        mkfifo(&t.path().join("tool"));
        std::os::unix::fs::symlink("tool", t.path().join("link")).unwrap();
        std::fs::create_dir(t.path().join("dir")).unwrap();
        std::os::unix::fs::symlink("dir", t.path().join("via")).unwrap();
        std::fs::write(t.path().join("dir/file"), "#!/bin/sh\n").unwrap();
        let root = Root::new(t.path());
        let (fifo, link, via) = within_seconds(move || {
            let scan = |p: &str| scan(&root, Path::new(p), true).map_err(|e| e.to_string());
            (scan("/tool"), scan("/link"), scan("/via/file"))
        });
        let fifo = fifo.unwrap_err();
        assert!(
            fifo.ends_with(
                "/tool: is a fifo; a sealed runtime holds only files, directories and symlinks"
            ),
            "{fifo}"
        );
        assert!(link.unwrap_err().contains("symbolic links"));
        // A symlink on the way is refused as well: a planned path has none.
        assert!(via.unwrap_err().contains("symbolic links"));
    }

    #[test]
    fn shebang_lines() {
        assert_eq!(
            parse_shebang(b"#!/usr/bin/env node\nrest"),
            Some(FileKind::Script {
                interpreter: "/usr/bin/env".into(),
                argument: Some("node".into())
            })
        );
        assert_eq!(
            parse_shebang(b"#! /bin/sh"),
            Some(FileKind::Script {
                interpreter: "/bin/sh".into(),
                argument: None
            })
        );
        assert_eq!(parse_shebang(b"#!relative"), None);
        assert_eq!(parse_shebang(b"plain text"), None);
    }
}
