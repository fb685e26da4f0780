//! An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/HEX`): what
//! export writes and import reads, whatever the transport. Blobs are named by digest and
//! every read checks that the bytes hash to it; a digest from an image's JSON is parsed
//! before it names a file, so it cannot name one outside `blobs/sha256/`.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The largest JSON document (index, manifest, config) read from an image.
pub const MAX_JSON: u64 = 8 << 20;

/// `sha256:` and 64 lowercase hex digits, the only digests runseal writes or reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Digest(String);

impl Digest {
    pub fn parse(text: &str, image: &dyn std::fmt::Display) -> Result<Digest> {
        match text.strip_prefix("sha256:") {
            Some(hex)
                if hex.len() == 64
                    && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
            {
                Ok(Digest(text.to_string()))
            }
            _ => Err(Error::refused(
                image,
                format!("`{text}` is not a sha256 digest"),
            )),
        }
    }

    fn of(hasher: Sha256) -> Digest {
        let hex: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Digest(format!("sha256:{hex}"))
    }

    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest::of(Sha256::new_with_prefix(bytes))
    }

    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A writer that hashes what passes through it and counts it.
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    pub written: u64,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::of(self.hasher), self.written)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A blob being written into a temp file of the layout, hashed as it goes; named by its
/// digest when finished, gone if dropped before.
pub struct NewBlob {
    out: Hashing<std::io::BufWriter<File>>,
    temp: tempfile::NamedTempFile,
    /// The layout's `blobs/sha256`.
    blobs: PathBuf,
}

impl NewBlob {
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(self.temp.path(), e))
    }

    /// The bytes written so far.
    pub fn written(&self) -> u64 {
        self.out.written
    }

    /// The blob, under its digest; its digest and size.
    pub fn finish(self) -> Result<(Digest, u64)> {
        let (buffered, digest, size) = self.out.finish();
        buffered
            .into_inner()
            .map_err(|e| Error::io(self.temp.path(), e.into_error()))?;
        let path = self.blobs.join(digest.hex());
        self.temp
            .persist(&path)
            .map_err(|e| Error::io(&path, e.error))?;
        Ok((digest, size))
    }
}

/// A reader that hashes what is read through it: a layer's tar as it is unpacked, whose
/// digest is the layer's diff_id.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The digest of everything the inner reader holds, the part not read yet included.
    pub fn finish(mut self) -> std::io::Result<Digest> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok(Digest::of(self.hasher))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// JSON with every object's keys sorted: oci-spec keeps labels and annotations in hash
/// maps, whose order changes from run to run, and a digest must not.
pub fn canonical_json(value: &impl Serialize) -> Vec<u8> {
    fn sort(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sort(v))).collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sort).collect())
            }
            other => other,
        }
    }
    let value = serde_json::to_value(value).expect("image types always serialize");
    serde_json::to_vec(&sort(value)).expect("JSON values always serialize")
}

#[derive(Debug, Clone)]
pub struct OciDir {
    path: PathBuf,
}

impl OciDir {
    /// The layout at `path`, made (with its parents) if missing.
    pub fn create(path: &Path) -> Result<OciDir> {
        let blobs = path.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(|e| Error::io(&blobs, e))?;
        let marker = path.join("oci-layout");
        if !marker.exists() {
            std::fs::write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)
                .map_err(|e| Error::io(&marker, e))?;
        }
        Ok(OciDir {
            path: path.to_path_buf(),
        })
    }

    /// An existing layout.
    pub fn open(path: &Path) -> Result<OciDir> {
        let marker = path.join("oci-layout");
        if !marker.is_file() {
            return Err(Error::refused(
                path.display(),
                "is not an OCI image layout (no oci-layout file)",
            ));
        }
        Ok(OciDir {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.path.join("blobs/sha256").join(digest.hex())
    }

    /// Writes a blob through `fill`, named by the digest of what it wrote.
    pub fn write_blob(
        &self,
        fill: impl FnOnce(&mut Hashing<std::io::BufWriter<File>>) -> Result<()>,
    ) -> Result<(Digest, u64)> {
        let mut blob = self.new_blob()?;
        fill(&mut blob.out)?;
        blob.finish()
    }

    /// A blob to write piece by piece (as it arrives from a registry), never whole in memory.
    pub fn new_blob(&self) -> Result<NewBlob> {
        let dir = self.path.join("blobs/sha256");
        let temp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| Error::io(&dir, e))?;
        let file = temp.reopen().map_err(|e| Error::io(temp.path(), e))?;
        Ok(NewBlob {
            out: Hashing::new(std::io::BufWriter::new(file)),
            temp,
            blobs: dir,
        })
    }

    pub fn put_blob(&self, bytes: &[u8]) -> Result<(Digest, u64)> {
        self.write_blob(|out| {
            out.write_all(bytes)
                .map_err(|e| Error::io(self.path.join("blobs"), e))
        })
    }

    /// The blob `descriptor` names, open at its start, once its bytes are checked against
    /// its digest and size.
    pub fn open_blob(&self, descriptor: &Descriptor) -> Result<File> {
        let digest = Digest::parse(descriptor.digest().as_ref(), &self.path.display())?;
        let path = self.blob_path(&digest);
        let mut file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut hashing = Hashing::new(std::io::sink());
        std::io::copy(&mut file, &mut hashing).map_err(|e| Error::io(&path, e))?;
        let (_, actual, size) = hashing.finish();
        if actual != digest {
            return Err(Error::Digest {
                image: self.path.display().to_string(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        if size != descriptor.size() {
            return Err(Error::refused(
                self.path.display(),
                format!(
                    "blob {digest} has {size} bytes, its descriptor says {}",
                    descriptor.size()
                ),
            ));
        }
        file.rewind().map_err(|e| Error::io(&path, e))?;
        Ok(file)
    }

    /// A JSON blob, checked, of at most [`MAX_JSON`] bytes.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, descriptor: &Descriptor) -> Result<T> {
        if descriptor.size() > MAX_JSON {
            return Err(Error::refused(
                self.path.display(),
                format!(
                    "{} is {} bytes, more than a document may be",
                    descriptor.digest(),
                    descriptor.size()
                ),
            ));
        }
        let mut bytes = Vec::new();
        self.open_blob(descriptor)?
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::refused(
                self.path.display(),
                format!("{}: not the document expected: {e}", descriptor.digest()),
            )
        })
    }

    fn index_path(&self) -> PathBuf {
        self.path.join("index.json")
    }

    fn index(&self) -> Result<Option<ImageIndex>> {
        let path = self.index_path();
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
            Ok(meta) if meta.len() > MAX_JSON => {
                return Err(Error::refused(path.display(), "is too large"))
            }
            Ok(_) => {}
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::refused(path.display(), format!("not an image index: {e}")))
    }

    /// Records `manifest` in index.json under `tag`, replacing what the tag named before.
    pub fn tag(&self, mut manifest: Descriptor, tag: Option<&str>) -> Result<()> {
        let mut manifests = self
            .index()?
            .map(|i| i.manifests().clone())
            .unwrap_or_default();
        if let Some(tag) = tag {
            manifests.retain(|m| ref_name(m) != Some(tag));
            manifest.set_annotations(Some([(REF_NAME.to_string(), tag.to_string())].into()));
        }
        manifests.retain(|m| m != &manifest);
        manifests.push(manifest);
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .expect("an index with its required fields");
        let path = self.index_path();
        let temp = tempfile::NamedTempFile::new_in(&self.path).map_err(|e| Error::io(&path, e))?;
        std::fs::write(temp.path(), canonical_json(&index)).map_err(|e| Error::io(&path, e))?;
        temp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        Ok(())
    }

    /// The manifest `tag` names; without a tag, the only one there is.
    pub fn find(&self, tag: Option<&str>) -> Result<Descriptor> {
        let refuse = |reason: String| Error::refused(self.path.display(), reason);
        let manifests = self
            .index()?
            .ok_or_else(|| refuse("has no index.json".into()))?
            .manifests()
            .clone();
        let mut found: Vec<&Descriptor> = manifests
            .iter()
            .filter(|m| tag.is_none() || ref_name(m) == tag)
            .collect();
        match (found.len(), tag) {
            (1, _) => Ok(found.remove(0).clone()),
            (0, Some(tag)) => Err(refuse(format!("holds no image tagged `{tag}`"))),
            (0, None) => Err(refuse("holds no image".into())),
            (_, _) => Err(refuse("holds several images; name one with :TAG".into())),
        }
    }
}

fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}
