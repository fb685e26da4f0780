//! A sealed runtime as an OCI image, reproducibly: the same sealed tree always gives the same
//! bytes, so the same digests. Entries are in path order, owned by 0:0 with no user or group
//! names, with the sealed tree's own modes and exact mtimes (Python's `.pyc` files are
//! checked against their sources' mtimes, so these are kept, not zeroed; the nanoseconds go
//! in a PAX `mtime` record, so that an import under the same root shares its files with the
//! sealed runtime through the store, keyed by mtime); gzip headers carry no time.
//!
//! Layers chosen so that a registry dedupes what runtimes share. The shared libraries of the
//! host's library dirs are the same files in every runtime sealed on one host, but each
//! runtime needs another set of them, so a layer of all of them would match no other
//! runtime's. Each library of [`ALONE_MIN`] bytes or more (libc, libm, ld-linux, libstdc++,
//! libz, libssl...) is a layer of its own, with its dirs at fixed metadata: any two runtimes
//! that need it push and store it once. The smaller ones (glibc's stubs such as libpthread,
//! a few KiB each) share one layer; then comes everything else, the dirs again with their
//! real metadata, the manifest and the SBOM.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageManifestBuilder, MediaType,
    Os, RootFsBuilder,
};
use rayon::prelude::*;
use runseal_seal::dirfd::DirFd;
use runseal_seal::{sbom_path, Manifest, ManifestEntry, ManifestKind, MANIFEST_NAME};
use runseal_spec::paths::below_root;
use runseal_spec::{RuntimeConfig, ISOLATED_DIR, RUNTIME_YML};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::layout::{canonical_json, Digest, Hashing, OciDir};

/// The label (and manifest annotation) holding the sealed runtime.yml itself.
pub const RUNTIME_YML_LABEL: &str = "io.runseal.runtime.yml";
/// The label (and manifest annotation) giving the SBOM's path in the image and its BLAKE3
/// (`/.runseal-sbom.spdx.json blake3:HEX`), for tools that read an image's SBOM without
/// importing it.
pub const SBOM_LABEL: &str = "io.runseal.sbom";
/// The layer annotation naming what a layer holds: `shared-library`, `shared-libraries` or
/// `runtime`.
pub const LAYER_LABEL: &str = "io.runseal.layer";
/// The job's working dir, made by the sandbox; an image says so for other runtimes.
pub const WORKING_DIR: &str = "/work";

/// The host's library dirs whose shared libraries make the base layer.
fn base_dirs() -> Vec<PathBuf> {
    let multiarch = format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH);
    ["/lib", "/lib64", "/usr/lib64", multiarch.as_str()]
        .iter()
        .map(PathBuf::from)
        .collect()
}

/// The size from which a shared library gets a layer of its own: below it, a layer costs a
/// registry more in requests and records than sharing it saves.
const ALONE_MIN: u64 = 64 * 1024;
/// At most this many libraries get layers of their own (the largest): overlayfs stacks a
/// bounded number of layers, and container engines refuse images past about a hundred.
const MAX_ALONE: usize = 48;

fn is_shared_library(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    name.ends_with(".so") || name.contains(".so.")
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub role: &'static str,
    pub digest: Digest,
    /// Compressed, as stored and sent.
    pub size: u64,
    /// The bytes of the files in it.
    pub content_bytes: u64,
    pub entries: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    pub manifest: Digest,
    pub manifest_size: u64,
    pub config: Digest,
    pub layers: Vec<LayerReport>,
}

impl ImageReport {
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            MediaType::ImageManifest,
            self.manifest_size,
            oci_spec::image::Digest::try_from(self.manifest.as_str()).expect("a sha256 digest"),
        )
    }
}

/// One layer's entries: each path with its record and, for dirs of the base layer, fixed
/// metadata instead of the host's (a dir's mtime changes whenever the host installs into it).
struct Layer<'a> {
    role: &'static str,
    entries: Vec<(&'a Path, Entry<'a>)>,
}

enum Entry<'a> {
    Sealed(&'a ManifestEntry),
    FixedDir,
    Bytes(Vec<u8>),
}

/// Writes the image of the sealed runtime in `dir` into `layout` (its blobs; tagging is the
/// caller's).
pub fn build_image(dir: &Path, layout: &OciDir) -> Result<ImageReport> {
    let config = runseal_seal::runnable_config(dir)?;
    let runtime = DirFd::open(dir)?;
    let yml_text = runtime.read_to_string(RUNTIME_YML)?.unwrap_or_default();
    let tree = runtime.open_dir(ISOLATED_DIR)?;
    let manifest = Manifest::load_from(&tree)?.ok_or_else(|| {
        Error::io(
            tree.join(MANIFEST_NAME),
            std::io::ErrorKind::NotFound.into(),
        )
    })?;
    let shipped = shipped_manifest(&manifest);
    let layers = split(&manifest, shipped);

    let built: Vec<Result<(LayerReport, Digest)>> = layers
        .par_iter()
        .map(|layer| write_layer(layout, &tree, layer))
        .collect();
    let mut reports = Vec::new();
    let mut diff_ids = Vec::new();
    for built in built {
        let (report, diff_id) = built?;
        reports.push(report);
        diff_ids.push(diff_id.to_string());
    }

    let labels = labels(&config, &yml_text, &manifest);
    let image_config = ImageConfigurationBuilder::default()
        .architecture(Arch::default())
        .os(Os::Linux)
        .config(
            ConfigBuilder::default()
                .env(
                    config
                        .environment
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>(),
                )
                .working_dir(WORKING_DIR)
                .labels(
                    labels
                        .clone()
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                )
                .build()
                .expect("a config with its fields"),
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .expect("a rootfs with its fields"),
        )
        .build()
        .expect("an image config with its fields");
    let (config_digest, config_size) = layout.put_blob(&canonical_json(&image_config))?;
    let layer_descriptors: Vec<Descriptor> = reports
        .iter()
        .map(|l| {
            let mut d = Descriptor::new(MediaType::ImageLayerGzip, l.size, oci_digest(&l.digest));
            d.set_annotations(Some([(LAYER_LABEL.to_string(), l.role.to_string())].into()));
            d
        })
        .collect();
    let image_manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config_size,
            oci_digest(&config_digest),
        ))
        .layers(layer_descriptors)
        .annotations(
            labels
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()
        .expect("a manifest with its fields");
    let (manifest_digest, manifest_size) = layout.put_blob(&canonical_json(&image_manifest))?;
    Ok(ImageReport {
        manifest: manifest_digest,
        manifest_size,
        config: config_digest,
        layers: reports,
    })
}

pub fn oci_digest(digest: &Digest) -> oci_spec::image::Digest {
    oci_spec::image::Digest::try_from(digest.as_str()).expect("a sha256 digest")
}

/// `org.opencontainers.image.*` from runtime.yml's fields, and runtime.yml itself.
fn labels(config: &RuntimeConfig, yml_text: &str, manifest: &Manifest) -> BTreeMap<String, String> {
    let oci = |key: &str| format!("org.opencontainers.image.{key}");
    let mut labels = BTreeMap::new();
    let fields = [
        ("title", config.name.clone()),
        ("version", config.effective_version()),
        ("description", config.description.clone()),
        (
            "created",
            config.build_info.as_ref().and_then(|b| b.built_at.clone()),
        ),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            labels.insert(oci(key), value);
        }
    }
    if let Some(language) = &config.language {
        labels.insert("io.runseal.language".into(), language.clone());
    }
    labels.insert(RUNTIME_YML_LABEL.into(), yml_text.to_string());
    let sbom = sbom_path();
    if let Some(ManifestKind::File { blake3, .. }) = manifest.entries.get(&sbom).map(|e| &e.kind) {
        labels.insert(
            SBOM_LABEL.into(),
            format!("{} blake3:{blake3}", sbom.display()),
        );
    }
    labels
}

/// The manifest as it travels in the image: without each copy's inode and ctime, which
/// describe files on this machine only (import records its own).
fn shipped_manifest(manifest: &Manifest) -> Vec<u8> {
    let mut shipped = manifest.clone();
    for entry in shipped.entries.values_mut() {
        if let ManifestKind::File { copy, .. } = &mut entry.kind {
            *copy = None;
        }
    }
    shipped.to_json()
}

fn split(manifest: &Manifest, shipped: Vec<u8>) -> Vec<Layer<'_>> {
    let bases = base_dirs();
    let mut libraries = Vec::new();
    let mut rest = Vec::new();
    for (path, entry) in &manifest.entries {
        match &entry.kind {
            ManifestKind::File { size, .. }
                if is_shared_library(path)
                    && path
                        .parent()
                        .is_some_and(|p| bases.iter().any(|b| p.starts_with(b))) =>
            {
                libraries.push((*size, path.as_path(), entry));
            }
            _ => rest.push((path.as_path(), Entry::Sealed(entry))),
        }
    }
    // Largest first, then by path: the same tree always splits the same way.
    libraries.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let alone = libraries
        .iter()
        .take(MAX_ALONE)
        .take_while(|(size, ..)| *size >= ALONE_MIN)
        .count();
    let small = libraries.split_off(alone);
    libraries.sort_by(|a, b| a.1.cmp(b.1));
    let mut layers: Vec<Layer> = libraries
        .into_iter()
        .map(|(_, path, entry)| library_layer("shared-library", [(path, entry)]))
        .collect();
    if !small.is_empty() {
        let small = small.into_iter().map(|(_, path, entry)| (path, entry));
        layers.push(library_layer("shared-libraries", small));
    }
    rest.push((Path::new(MANIFEST_NAME), Entry::Bytes(shipped)));
    rest.sort_by(|a, b| below_root(a.0).cmp(below_root(b.0)));
    layers.push(Layer {
        role: "runtime",
        entries: rest,
    });
    layers
}

/// A layer of shared libraries, each with its dirs at fixed metadata (a dir's mtime changes
/// whenever the host installs into it), so that it is the same in every runtime.
fn library_layer<'a>(
    role: &'static str,
    libraries: impl IntoIterator<Item = (&'a Path, &'a ManifestEntry)>,
) -> Layer<'a> {
    let mut dirs = BTreeSet::new();
    let mut entries = Vec::new();
    for (path, entry) in libraries {
        dirs.extend(path.ancestors().skip(1).filter(|a| *a != Path::new("/")));
        entries.push((path, Entry::Sealed(entry)));
    }
    entries.extend(dirs.into_iter().map(|d| (d, Entry::FixedDir)));
    entries.sort_by(|a, b| a.0.cmp(b.0));
    Layer { role, entries }
}

/// Writes one layer as a gzipped tar blob; returns it and the digest of the tar itself.
fn write_layer(layout: &OciDir, tree: &DirFd, layer: &Layer) -> Result<(LayerReport, Digest)> {
    let mut diff_id = None;
    let mut content_bytes = 0;
    let (digest, size) = layout.write_blob(|out| {
        let gz = GzEncoder::new(out, flate2::Compression::default());
        let mut builder = tar::Builder::new(Hashing::new(gz));
        for (path, entry) in &layer.entries {
            content_bytes += append(&mut builder, tree, path, entry)?;
        }
        let io = |e| Error::io(tree.path(), e);
        let hashing = builder.into_inner().map_err(io)?;
        let (gz, tar_digest, _) = hashing.finish();
        gz.finish().map_err(io)?;
        diff_id = Some(tar_digest);
        Ok(())
    })?;
    Ok((
        LayerReport {
            role: layer.role,
            digest,
            size,
            content_bytes,
            entries: layer.entries.len(),
        },
        diff_id.expect("set by the writer"),
    ))
}

/// Appends one entry; returns the bytes of content it added.
fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    tree: &DirFd,
    path: &Path,
    entry: &Entry,
) -> Result<u64> {
    let rel = below_root(path);
    let io = |e| Error::io(tree.join(rel), e);
    let record = match entry {
        Entry::FixedDir => {
            let mut header = header(tar::EntryType::Directory, 0o755, 0);
            builder
                .append_data(&mut header, dir_name(rel), std::io::empty())
                .map_err(io)?;
            return Ok(0);
        }
        Entry::Bytes(bytes) => {
            let mut header = header(tar::EntryType::Regular, 0o644, 0);
            header.set_size(bytes.len() as u64);
            builder
                .append_data(&mut header, rel, bytes.as_slice())
                .map_err(io)?;
            return Ok(bytes.len() as u64);
        }
        Entry::Sealed(record) => record,
    };
    // A time before 1970 is written as 1970 (ustar has no sign), whole.
    let (mtime, nsec) = match u64::try_from(record.mtime) {
        Ok(mtime) => (mtime, record.mtime_nsec),
        Err(_) => (0, 0),
    };
    // The header holds whole seconds; the exact time goes in a PAX record before it, as
    // GNU tar and bsdtar write it, so that an import restores the very mtime the store
    // keys its entries by and shares these files with the sealed runtime's.
    if nsec != 0 {
        let exact = format!("{mtime}.{nsec:09}");
        builder
            .append_pax_extensions([("mtime", exact.as_bytes())])
            .map_err(io)?;
    }
    let kind = match &record.kind {
        ManifestKind::Dir => tar::EntryType::Directory,
        ManifestKind::Symlink { .. } => tar::EntryType::Symlink,
        ManifestKind::File { .. } => tar::EntryType::Regular,
    };
    let mut header = header(kind, record.mode, mtime);
    match &record.kind {
        ManifestKind::Dir => {
            builder
                .append_data(&mut header, dir_name(rel), std::io::empty())
                .map_err(io)?;
            Ok(0)
        }
        ManifestKind::Symlink { target, .. } => {
            builder.append_link(&mut header, rel, target).map_err(io)?;
            Ok(0)
        }
        ManifestKind::File { size, blake3, .. } => {
            let changed = |what: &str| Error::Changed {
                file: tree.join(rel),
                what: what.into(),
            };
            let file = tree.open_file(rel)?.ok_or_else(|| changed("removed"))?;
            if file.metadata().map_err(io)?.len() != *size {
                return Err(changed("its size differs from the manifest's"));
            }
            header.set_size(*size);
            let mut reader = Blake3Reader {
                inner: file.take(*size),
                hasher: blake3::Hasher::new(),
            };
            builder
                .append_data(&mut header, rel, &mut reader)
                .map_err(io)?;
            // A file rewritten in place is caught by its hash, before the image is tagged.
            if reader.hasher.finalize().to_hex().as_str() != blake3 {
                return Err(changed("its content differs from the manifest's BLAKE3"));
            }
            Ok(*size)
        }
    }
}

/// A POSIX (ustar) header owned by 0:0 with no user or group names, size 0: the format
/// PAX records extend. Every entry runseal writes, in a layer or an archive, starts so.
pub(crate) fn header(kind: tar::EntryType, mode: u32, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_size(0);
    header
}

/// Directory entries end with `/`, as every tar tool writes them.
fn dir_name(rel: &Path) -> PathBuf {
    let mut name = rel.as_os_str().to_owned();
    name.push("/");
    PathBuf::from(name)
}

struct Blake3Reader<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> Read for Blake3Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
