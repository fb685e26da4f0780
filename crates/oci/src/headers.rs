//! A tar stream's extension entries (PAX `x` and `g`, GNU `L` and `K`) bounded before the
//! tar crate reads them: it reads each one whole into memory, and a few megabytes of gzip
//! can hold gigabytes of one. [`Bounded`] follows the stream block by block as the tar crate
//! reads it (in order, once) and looks at each header as it passes, so an image's author
//! cannot make an import take the host's memory.

use std::io::{self, Read};

/// The largest extension entry accepted: a PAX header with a path of `PATH_MAX` and a few
/// times as much besides is far smaller.
pub const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: usize = 512;

/// A reader of a tar stream that refuses an extension entry past [`MAX_EXTENSION`], a PAX
/// `size` record (which would move the next header where only the tar crate would look) and
/// GNU sparse entries (whose extra header blocks likewise).
pub struct Bounded<R> {
    inner: R,
    /// The header being gathered.
    header: Vec<u8>,
    /// Bytes of the current entry's data (with its padding) still to pass.
    data_left: u64,
    /// A PAX entry's records, gathered to be checked, and how long they are.
    pax: Option<(Vec<u8>, usize)>,
    /// Past the end-of-archive block: what follows is padding the tar crate does not read.
    ended: bool,
}

impl<R: Read> Bounded<R> {
    pub fn new(inner: R) -> Self {
        Bounded {
            inner,
            header: Vec::with_capacity(BLOCK),
            data_left: 0,
            pax: None,
            ended: false,
        }
    }

    fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() && !self.ended {
            if self.data_left > 0 {
                let n = bytes
                    .len()
                    .min(usize::try_from(self.data_left).unwrap_or(usize::MAX));
                if let Some((records, len)) = &mut self.pax {
                    let wanted = (*len - records.len()).min(n);
                    records.extend_from_slice(&bytes[..wanted]);
                    if records.len() == *len {
                        check_pax(records)?;
                        self.pax = None;
                    }
                }
                self.data_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (BLOCK - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() == BLOCK {
                self.next_header()?;
                self.header.clear();
            }
        }
        Ok(())
    }

    fn next_header(&mut self) -> io::Result<()> {
        if self.header.iter().all(|&b| b == 0) {
            self.ended = true;
            return Ok(());
        }
        let size = entry_size(&self.header[124..136])?;
        match self.header[156] {
            kind @ (b'x' | b'g' | b'L' | b'K') => {
                if size > MAX_EXTENSION {
                    return Err(refused(format!(
                        "a tar extension entry (type `{}`) of {size} bytes; the most is {MAX_EXTENSION}",
                        kind as char
                    )));
                }
                if kind == b'x' {
                    let len = size as usize;
                    self.pax = Some((Vec::with_capacity(len), len));
                    if len == 0 {
                        self.pax = None;
                    }
                }
            }
            b'S' => return Err(refused("a GNU sparse entry".into())),
            _ => {}
        }
        self.data_left = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        Ok(())
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

fn refused(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what} is not accepted"),
    )
}

/// A header's size field: octal digits, or base-256 when its first byte's high bit is set.
fn entry_size(field: &[u8]) -> io::Result<u64> {
    if field[0] & 0x80 != 0 {
        let mut size: u64 = 0;
        for &byte in &field[1..] {
            size = size
                .checked_mul(256)
                .and_then(|s| s.checked_add(u64::from(byte)))
                .ok_or_else(|| refused("a tar entry size past 2^64".into()))?;
        }
        return Ok(size);
    }
    let digits = std::str::from_utf8(field)
        .ok()
        .map(|text| text.trim_matches(|c| c == ' ' || c == '\0'));
    digits
        .and_then(|text| u64::from_str_radix(text, 8).ok())
        .ok_or_else(|| refused("a tar header whose size is not octal".into()))
}

/// Refuses a PAX `size` record: runseal's images carry none, and it would move the next
/// header away from where the ustar size puts it.
fn check_pax(records: &[u8]) -> io::Result<()> {
    let mut rest = records;
    while let Some(space) = rest.iter().position(|&b| b == b' ') {
        let Some(len) = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&len| len > space && len <= rest.len())
        else {
            // Malformed: the tar crate refuses it in turn.
            return Ok(());
        };
        let record = &rest[space + 1..len];
        if record.starts_with(b"size=") {
            return Err(refused("a PAX size record".into()));
        }
        rest = &rest[len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tar::{EntryType, Header};

    fn entry(kind: EntryType, name: &str, data: &[u8]) -> Vec<u8> {
        let mut header = Header::new_ustar();
        header.set_entry_type(kind);
        header.set_path(name).unwrap();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_cksum();
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(data);
        bytes.resize(bytes.len().div_ceil(BLOCK) * BLOCK, 0);
        bytes
    }

    /// Reads `stream` through [`Bounded`] and the tar crate, in reads of `chunk` bytes:
    /// the names of its entries, or the error.
    fn names(stream: &[u8], chunk: usize) -> io::Result<Vec<String>> {
        struct Chunked<'a>(&'a [u8], usize);
        impl Read for Chunked<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.1).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut archive = tar::Archive::new(Bounded::new(Chunked(stream, chunk)));
        let mut names = Vec::new();
        for entry in archive.entries()? {
            names.push(entry?.path()?.display().to_string());
        }
        Ok(names)
    }

    #[test]
    fn ordinary_streams_pass_whatever_the_read_sizes() {
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_pax_extensions([("mtime", &b"1.5"[..])])
            .unwrap();
        let long = "d/".repeat(80) + "file";
        let mut header = Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, &long, &b"abc"[..])
            .unwrap();
        let mut stream = builder.into_inner().unwrap();
        // Padding past the end that the tar crate never reads, not headers.
        stream.extend_from_slice(&[0xff; 1024]);
        for chunk in [1, 7, 512, 100_000] {
            assert_eq!(
                names(&stream, chunk).unwrap(),
                std::slice::from_ref(&long),
                "reads of {chunk}"
            );
        }
    }

    #[test]
    fn a_huge_extension_a_pax_size_and_a_sparse_entry_are_refused_before_they_are_read() {
        let big = vec![b'a'; MAX_EXTENSION as usize + 1];
        let file = entry(EntryType::Regular, "f", b"x");
        for (stream, why) in [
            (
                [entry(EntryType::XHeader, "pax", &big), file.clone()].concat(),
                "type `x`",
            ),
            (
                [entry(EntryType::XGlobalHeader, "g", &big), file.clone()].concat(),
                "type `g`",
            ),
            (
                [
                    entry(EntryType::GNULongName, "././@LongLink", &big),
                    file.clone(),
                ]
                .concat(),
                "type `L`",
            ),
            (
                [
                    entry(EntryType::GNULongLink, "././@LongLink", &big),
                    file.clone(),
                ]
                .concat(),
                "type `K`",
            ),
            (
                [
                    entry(EntryType::XHeader, "pax", b"12 size=100\n"),
                    file.clone(),
                ]
                .concat(),
                "PAX size",
            ),
            (entry(EntryType::GNUSparse, "s", b""), "sparse"),
        ] {
            let err = names(&stream, 4096).unwrap_err().to_string();
            assert!(
                err.contains(why) && err.contains("not accepted"),
                "{why}: {err}"
            );
        }
    }

    #[test]
    fn sizes_are_read_in_octal_and_base_256() {
        assert_eq!(entry_size(b"00000001750\0").unwrap(), 1000);
        assert_eq!(entry_size(b"     1750 \0\0").unwrap(), 1000);
        let mut base256 = [0u8; 12];
        base256[0] = 0x80;
        base256[11] = 0x10;
        base256[10] = 0x01;
        assert_eq!(entry_size(&base256).unwrap(), 0x110);
        base256[1..].fill(0xff);
        assert!(entry_size(&base256).is_err());
        assert!(entry_size(b"12x45670000\0").is_err());
    }
}
