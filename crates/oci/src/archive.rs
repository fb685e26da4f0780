//! `oci-archive:`: an OCI image layout in one tar file. Written from a layout runseal just
//! made, reproducibly; read by taking only the layout's own names (`oci-layout`,
//! `index.json`, `blobs/sha256/HEX`) as regular files, so a hostile archive can name nothing
//! else. Their contents are checked when used, as a layout dir's are.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::export::header;
use crate::extract::{safe_path, Limits};
use crate::layout::{Digest, OciDir};

/// Writes `layout` as the tar file `dest`, replacing it whole or not at all.
pub fn write(layout: &OciDir, dest: &Path) -> Result<()> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    let io = |e| Error::io(dest, e);
    let mut builder = tar::Builder::new(std::io::BufWriter::new(temp.as_file()));
    let blobs = layout.path().join("blobs/sha256");
    let mut names: Vec<String> = std::fs::read_dir(&blobs)
        .map_err(|e| Error::io(&blobs, e))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 64)
        .collect();
    names.sort();
    let dir_entry = |builder: &mut tar::Builder<_>, name: &str| {
        let mut header = header(tar::EntryType::Directory, 0o755, 0);
        builder.append_data(&mut header, name, std::io::empty())
    };
    let file_entry = |builder: &mut tar::Builder<_>, name: &str| -> Result<()> {
        let path = layout.path().join(name);
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut header = header(tar::EntryType::Regular, 0o644, 0);
        header.set_size(len);
        builder.append_data(&mut header, name, file).map_err(io)
    };
    file_entry(&mut builder, "oci-layout")?;
    file_entry(&mut builder, "index.json")?;
    dir_entry(&mut builder, "blobs/").map_err(io)?;
    dir_entry(&mut builder, "blobs/sha256/").map_err(io)?;
    for name in names {
        file_entry(&mut builder, &format!("blobs/sha256/{name}"))?;
    }
    builder
        .into_inner()
        .map_err(io)?
        .into_inner()
        .map_err(|e| io(e.into_error()))?;
    temp.as_file().sync_all().map_err(io)?;
    temp.persist(dest).map_err(|e| io(e.error))?;
    Ok(())
}

/// Unpacks the layout names of the archive `source` into the empty dir `into`.
pub fn read(source: &Path, into: &Path, limits: Limits) -> Result<OciDir> {
    let image = format!("oci-archive:{}", source.display());
    let file = File::open(source).map_err(|e| Error::io(source, e))?;
    let io = |e| Error::io(source, e);
    let layout = OciDir::create(into)?;
    let mut archive =
        tar::Archive::new(crate::headers::Bounded::new(std::io::BufReader::new(file)));
    let mut total = 0u64;
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let Ok(Some(path)) = safe_path(&entry.path_bytes()) else {
            continue;
        };
        let Some(name) = path.to_str().map(str::to_string) else {
            continue;
        };
        let wanted = match name.strip_prefix("blobs/sha256/") {
            Some(hex) => Digest::parse(&format!("sha256:{hex}"), &image).is_ok(),
            None => name == "oci-layout" || name == "index.json",
        };
        if !wanted {
            continue;
        }
        total = total.saturating_add(entry.size());
        if total > limits.max_bytes {
            return Err(Error::refused(
                &image,
                format!("holds more than {} bytes", limits.max_bytes),
            ));
        }
        let path = into.join(&name);
        let mut out = File::create(&path).map_err(|e| Error::io(&path, e))?;
        std::io::copy(&mut (&mut entry).take(limits.max_bytes), &mut out)
            .map_err(|e| Error::io(&path, e))?;
    }
    OciDir::open(layout.path())
}
