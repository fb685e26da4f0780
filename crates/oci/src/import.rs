//! An image back into a sealed runtime dir under a runtimes root, all or nothing: it is
//! unpacked into a hidden dir beside the others, its manifest written afresh from what was
//! unpacked, checked as `run` checks a runtime, and only then renamed to its name. A failed
//! import removes its dir; one killed midway leaves it, and the next import of that name
//! removes it (a live import holds a lock on its own).

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest, MediaType};
use rayon::prelude::*;
use runseal_seal::dirfd::DirFd;
use runseal_seal::store::{Key, Store};
use runseal_seal::{Manifest, ManifestKind, FORMAT, MANIFEST_NAME};
use runseal_spec::{RuntimeConfig, ISOLATED_DIR, RUNTIME_YML};
use rustix::fs::{renameat_with, RenameFlags};
use rustix::io::Errno;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::export::RUNTIME_YML_LABEL;
use crate::extract::{Extraction, Limits};
use crate::layout::{Digest, HashingReader, OciDir};

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The runtime dir's name under the root (default: the name runtime.yml declares).
    pub name: Option<String>,
    pub limits: Limits,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub runtime: PathBuf,
    pub image: Digest,
    pub files: u64,
    pub bytes: u64,
    pub layers: usize,
}

/// Imports the image `descriptor` names in `layout` (`image` says where it came from, for
/// messages) as a sealed runtime under `root`.
pub fn import_image(
    layout: &OciDir,
    descriptor: &Descriptor,
    image: &str,
    root: &Path,
    options: &ImportOptions,
) -> Result<ImportReport> {
    if descriptor.media_type() != &MediaType::ImageManifest {
        return Err(Error::refused(
            image,
            format!(
                "names a {}, not an OCI image manifest",
                descriptor.media_type()
            ),
        ));
    }
    let manifest: ImageManifest = layout.read_json(descriptor)?;
    let config: ImageConfiguration = layout.read_json(manifest.config())?;
    let yml_text = config
        .config()
        .as_ref()
        .and_then(|c| c.labels().as_ref())
        .and_then(|l| l.get(RUNTIME_YML_LABEL))
        .ok_or_else(|| {
            Error::refused(
                image,
                format!("is not a sealed runtime (its config has no {RUNTIME_YML_LABEL} label)"),
            )
        })?
        .clone();
    let runtime_config = RuntimeConfig::parse(&yml_text, Path::new(RUNTIME_YML_LABEL))?;
    let name = match &options.name {
        Some(name) => name.clone(),
        None => runtime_config.name.clone().ok_or_else(|| {
            Error::refused(image, "declares no runtime name; import it with --name")
        })?,
    };
    if !valid_name(&name) {
        return Err(Error::refused(
            image,
            format!(
                "`{name}` is not a runtime name (letters, digits, . _ - + @; not starting with .)"
            ),
        ));
    }
    for layer in manifest.layers() {
        if !matches!(
            layer.media_type(),
            MediaType::ImageLayerGzip | MediaType::ImageLayer
        ) {
            return Err(Error::refused(
                image,
                format!(
                    "layer {} is a {}; runseal reads tar and tar+gzip layers",
                    layer.digest(),
                    layer.media_type()
                ),
            ));
        }
    }

    std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    let parent = DirFd::open(root)?;
    if parent.exists(&name)? {
        return Err(Error::Exists {
            target: root.to_path_buf(),
            name,
        });
    }
    let prefix = format!(".{name}.importing-");
    remove_abandoned(&parent, &prefix)?;
    let staging = format!("{prefix}{}", std::process::id());
    let runtime = parent.create_dir(&staging, 0o755)?;
    let _lock = runtime.lock(false)?;
    let source = Source {
        layout,
        manifest: &manifest,
        diff_ids: config.rootfs().diff_ids(),
        image,
        yml_text: &yml_text,
    };
    let written = unpack(&source, &runtime, root, options.limits).and_then(|report| {
        runseal_seal::runnable_config(runtime.path())?;
        renameat_with(
            parent.fd(),
            &staging,
            parent.fd(),
            &name,
            RenameFlags::NOREPLACE,
        )
        .map_err(|e| match e {
            Errno::EXIST => Error::Exists {
                target: root.to_path_buf(),
                name: name.clone(),
            },
            e => Error::io(root.join(&name), e.into()),
        })?;
        parent.sync()?;
        Ok(report)
    });
    match written {
        Ok((files, bytes)) => Ok(ImportReport {
            runtime: root.join(&name),
            image: Digest::parse(descriptor.digest().as_ref(), &image)?,
            files,
            bytes,
            layers: manifest.layers().len(),
        }),
        Err(e) => {
            // The import's own error is the one to report; what cannot be removed now is
            // removed by the next import of this name.
            let _ = parent.remove_tree(&staging);
            Err(e)
        }
    }
}

/// The image being imported.
struct Source<'a> {
    layout: &'a OciDir,
    manifest: &'a ImageManifest,
    /// The digest of each layer's uncompressed tar, as the config lists them.
    diff_ids: &'a [String],
    /// Where it came from, for messages.
    image: &'a str,
    yml_text: &'a str,
}

/// Unpacks the layers into `runtime`/isolated, shares its files through the store of
/// `root`, and writes the manifest and runtime.yml; returns the files and bytes written.
fn unpack(source: &Source, runtime: &DirFd, root: &Path, limits: Limits) -> Result<(u64, u64)> {
    let Source {
        layout,
        manifest,
        diff_ids,
        image,
        yml_text,
    } = *source;
    if diff_ids.len() != manifest.layers().len() {
        return Err(Error::refused(
            image,
            format!(
                "has {} layers but its config lists {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    let tree = runtime.create_dir(ISOLATED_DIR, 0o755)?;
    let mut extraction = Extraction::new(&tree, image, limits);
    for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
        let expected = Digest::parse(diff_id, &image)?;
        let blob = layout.open_blob(layer)?;
        let reader: Box<dyn Read> = match layer.media_type() {
            MediaType::ImageLayerGzip => Box::new(GzDecoder::new(std::io::BufReader::new(blob))),
            _ => Box::new(std::io::BufReader::new(blob)),
        };
        let mut tar = HashingReader::new(reader);
        extraction.layer(&mut tar)?;
        let actual = tar.finish().map_err(|e| Error::io(image, e))?;
        // The manifest names each layer by its compressed blob, the config by its tar,
        // which other engines key unpacked layers by: where the two disagree, the image
        // is not one image.
        if actual != expected {
            return Err(Error::refused(
                image,
                format!(
                    "layer {} unpacks to {actual}, but the config's rootfs.diff_ids names \
                     {expected}; refusing an inconsistent or tampered image",
                    layer.digest()
                ),
            ));
        }
    }
    let shipped = extraction
        .shipped_manifest
        .take()
        .and_then(|bytes| serde_json::from_slice::<Manifest>(&bytes).ok());
    let mut entries = extraction.finish()?;
    // What the image's own manifest says of its links (dangling on the host it was sealed
    // on) and its profiles only steer `verify`; every record is what was written here.
    if let Some(shipped) = &shipped {
        for (path, entry) in entries.iter_mut() {
            if let (
                ManifestKind::Symlink { target, dangling },
                Some(ManifestKind::Symlink {
                    target: shipped_target,
                    dangling: true,
                }),
            ) = (&mut entry.kind, shipped.entries.get(path).map(|e| &e.kind))
            {
                *dangling = target == shipped_target;
            }
        }
    }
    let (files, bytes) = entries
        .values()
        .filter_map(|e| match e.kind {
            ManifestKind::File { size, .. } => Some(size),
            _ => None,
        })
        .fold((0, 0), |(n, total), size| (n + 1, total + size));
    let mut sealed = Manifest {
        format: FORMAT,
        files,
        bytes,
        profiles: shipped
            .as_ref()
            .map(|m| m.profiles.clone())
            .unwrap_or_default(),
        inclusions: shipped
            .as_ref()
            .map(|m| m.inclusions.clone())
            .unwrap_or_default(),
        unmet_on_source: shipped.map(|m| m.unmet_on_source).unwrap_or_default(),
        entries,
    };
    // Opened only now: an image refused while unpacking leaves no store behind.
    if let Some(store) = Store::open(root, runtime)? {
        share(&tree, &sealed, &store)?;
    }
    runseal_seal::stamp(&tree, &mut sealed)?;
    tree.write_atomic(MANIFEST_NAME, &sealed.to_json())?;
    runtime.write_atomic(RUNTIME_YML, yml_text.as_bytes())?;
    runtime.sync_filesystem()?;
    Ok((files, bytes))
}

/// Offers every file of `tree` to the store: each was written and hashed by the
/// extraction, as its record says.
fn share(tree: &DirFd, manifest: &Manifest, store: &Store) -> Result<()> {
    manifest.entries.par_iter().try_for_each(|(path, record)| {
        let ManifestKind::File { blake3, .. } = &record.kind else {
            return Ok(());
        };
        let rel = path.strip_prefix("/").unwrap_or(path);
        let (dir, name) = tree.parent_of(rel)?;
        let copy = dir
            .open_file(name)?
            .ok_or_else(|| Error::io(dir.join(name), std::io::ErrorKind::NotFound.into()))?;
        let key = Key {
            blake3,
            mode: record.mode,
            mtime: record.mtime,
            mtime_nsec: record.mtime_nsec,
        };
        store.share(&dir, name, &copy, &key)?;
        Ok(())
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+@".contains(c))
}

/// Removes the staging dirs of imports that were killed: those no live import holds.
fn remove_abandoned(parent: &DirFd, prefix: &str) -> Result<()> {
    for name in parent.names_starting(prefix)? {
        let Ok(dir) = parent.open_dir(&name) else {
            parent.remove_tree(&name)?;
            continue;
        };
        match dir.lock(false) {
            Ok(_unused) => parent.remove_tree(&name)?,
            Err(runseal_seal::Error::Busy { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::oci_digest;
    use crate::extract::tests::{raw, tar_of};
    use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder, ImageManifestBuilder};

    /// A layout holding one image whose only layer is `layer` (uncompressed).
    fn image_with(layout: &OciDir, layer: &[u8]) -> Descriptor {
        image_claiming(layout, layer, None)
    }

    /// [`image_with`], its config naming `diff_id` as the layer's tar (default: the true one).
    fn image_claiming(layout: &OciDir, layer: &[u8], diff_id: Option<&[u8]>) -> Descriptor {
        let descriptor = |media, (digest, size): (Digest, u64)| {
            Descriptor::new(media, size, oci_digest(&digest))
        };
        let tar_digest = |bytes: &[u8]| {
            let mut hashing = crate::layout::Hashing::new(std::io::sink());
            std::io::Write::write_all(&mut hashing, bytes).unwrap();
            hashing.finish().1.to_string()
        };
        let rootfs = oci_spec::image::RootFsBuilder::default()
            .typ("layers")
            .diff_ids(vec![tar_digest(diff_id.unwrap_or(layer))])
            .build()
            .unwrap();
        let yml =
            "name: evil\nmounts:\n  - source: isolated/usr\n    target: /usr\n    readonly: true\n";
        let config = ImageConfigurationBuilder::default()
            .rootfs(rootfs)
            .config(
                ConfigBuilder::default()
                    .labels(std::collections::HashMap::from([(
                        RUNTIME_YML_LABEL.to_string(),
                        yml.to_string(),
                    )]))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let config = layout
            .put_blob(&serde_json::to_vec(&config).unwrap())
            .unwrap();
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(MediaType::ImageConfig, config))
            .layers(vec![descriptor(
                MediaType::ImageLayer,
                layout.put_blob(layer).unwrap(),
            )])
            .build()
            .unwrap();
        let manifest = layout
            .put_blob(&serde_json::to_vec(&manifest).unwrap())
            .unwrap();
        descriptor(MediaType::ImageManifest, manifest)
    }

    #[test]
    fn a_failed_import_leaves_nothing_under_the_root() {
        let scratch = tempfile::tempdir().unwrap();
        let layout = OciDir::create(&scratch.path().join("layout")).unwrap();
        let root = scratch.path().join("root");
        let hostile = tar_of(&[
            raw(b"usr/", tar::EntryType::Directory),
            raw(b"usr/../../escape", tar::EntryType::Regular),
        ]);
        let image = image_with(&layout, &hostile);
        let err = import_image(&layout, &image, "test", &root, &ImportOptions::default());
        assert!(err.unwrap_err().to_string().contains("`..`"));
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
        assert!(!scratch.path().join("escape").exists());

        let named = ImportOptions {
            name: Some("../x".into()),
            ..Default::default()
        };
        let err = import_image(&layout, &image, "test", &root, &named).unwrap_err();
        assert!(err.to_string().contains("not a runtime name"), "{err}");
    }

    #[test]
    fn a_blob_that_does_not_match_its_digest_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let layout = OciDir::create(scratch.path()).unwrap();
        let image = image_with(&layout, &tar_of(&[raw(b"usr/", tar::EntryType::Directory)]));
        let manifest: ImageManifest = layout.read_json(&image).unwrap();
        let layer = &manifest.layers()[0];
        let digest = Digest::parse(layer.digest().as_ref(), &"test").unwrap();
        let mut bytes = std::fs::read(layout.blob_path(&digest)).unwrap();
        bytes[0] ^= 1;
        std::fs::write(layout.blob_path(&digest), bytes).unwrap();
        let root = scratch.path().join("root");
        let err = import_image(&layout, &image, "test", &root, &ImportOptions::default());
        assert!(matches!(err, Err(Error::Digest { .. })), "{err:?}");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
        // A digest naming a path is refused before it names a file.
        assert!(Digest::parse("sha256:../../etc/passwd", &"test").is_err());
    }

    #[test]
    fn a_layer_that_is_not_the_tar_its_config_names_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let layout = OciDir::create(&scratch.path().join("layout")).unwrap();
        let root = scratch.path().join("root");
        let named = tar_of(&[raw(b"usr/", tar::EntryType::Directory)]);
        let swapped = tar_of(&[
            raw(b"usr/", tar::EntryType::Directory),
            raw(b"usr/bin/", tar::EntryType::Directory),
        ]);
        // The blob and its descriptor agree; the config (which the image digest covers)
        // names another tar.
        let image = image_claiming(&layout, &swapped, Some(&named));
        let err = import_image(&layout, &image, "test", &root, &ImportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("rootfs.diff_ids"), "{err}");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);

        let image = image_claiming(&layout, &named, None);
        let report = import_image(&layout, &image, "test", &root, &ImportOptions::default());
        assert!(report.is_ok(), "{report:?}");
    }

    #[test]
    fn two_imports_under_one_root_share_each_file_through_the_store() {
        use std::os::unix::fs::MetadataExt;
        let scratch = tempfile::tempdir().unwrap();
        let layout = OciDir::create(&scratch.path().join("layout")).unwrap();
        let root = scratch.path().join("root");
        let tool = crate::extract::tests::Raw {
            data: b"#!/bin/sh\n",
            mode: 0o755,
            ..raw(b"usr/tool", tar::EntryType::Regular)
        };
        let image = image_with(
            &layout,
            &tar_of(&[raw(b"usr/", tar::EntryType::Directory), tool]),
        );
        for name in ["one", "two"] {
            let options = ImportOptions {
                name: Some(name.into()),
                ..Default::default()
            };
            import_image(&layout, &image, "test", &root, &options).unwrap();
        }
        let meta =
            |name: &str| std::fs::metadata(root.join(name).join("isolated/usr/tool")).unwrap();
        assert_eq!(meta("one").ino(), meta("two").ino());
        // The two trees and the store's entry.
        assert_eq!(meta("one").nlink(), 3);
        assert_eq!(meta("one").mode() & 0o7777, 0o755);
        for name in ["one", "two"] {
            let (_, differences) =
                runseal_seal::check_integrity(&root.join(name).join(ISOLATED_DIR)).unwrap();
            assert!(differences.is_empty(), "{differences:?}");
        }
    }
}
