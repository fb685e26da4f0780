//! Sealed runtimes as OCI images: `export` writes a reproducible image of a sealed runtime
//! to an image layout dir, an archive or a registry; `import` turns one back into a sealed
//! runtime dir, checking every blob's digest and refusing what a hostile image could do to
//! the host. The image's author is not trusted; the operator who names the places is.
#![forbid(unsafe_code)]

mod archive;
mod error;
mod export;
mod extract;
mod headers;
mod import;
mod layout;
mod location;
mod registry;

use std::path::Path;

use serde::Serialize;

pub use error::{Error, Result};
pub use export::{ImageReport, LayerReport, LAYER_LABEL, RUNTIME_YML_LABEL, SBOM_LABEL};
pub use extract::Limits;
pub use import::{ImportOptions, ImportReport};
pub use layout::{Digest, OciDir};
pub use location::Location;
pub use registry::{PushReport, Transport};

#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub runtime: std::path::PathBuf,
    pub destination: String,
    pub image: ImageReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<PushReport>,
}

/// Writes the image of the sealed runtime in `dir` to `destination`; a push may mount blobs
/// from the registry's `mount_from` repositories.
pub fn export(
    dir: &Path,
    destination: &Location,
    transport: &Transport,
    mount_from: &[String],
) -> Result<ExportReport> {
    let mut push = None;
    let image = match destination {
        Location::Dir { path, tag } => {
            let layout = OciDir::create(path)?;
            let image = export::build_image(dir, &layout)?;
            layout.tag(image.descriptor(), tag.as_deref())?;
            image
        }
        Location::Archive { path, tag } => {
            let scratch = scratch()?;
            let layout = OciDir::create(scratch.path())?;
            let image = export::build_image(dir, &layout)?;
            layout.tag(image.descriptor(), tag.as_deref())?;
            archive::write(&layout, path)?;
            image
        }
        Location::Registry(reference) => {
            let scratch = scratch()?;
            let layout = OciDir::create(scratch.path())?;
            let image = export::build_image(dir, &layout)?;
            push = Some(registry::push(
                &layout, &image, reference, transport, mount_from,
            )?);
            image
        }
    };
    Ok(ExportReport {
        runtime: dir.to_path_buf(),
        destination: destination.to_string(),
        image,
        push,
    })
}

/// Imports the image at `source` as a sealed runtime under `root`.
pub fn import(
    source: &Location,
    root: &Path,
    options: &ImportOptions,
    transport: &Transport,
) -> Result<ImportReport> {
    let image = source.to_string();
    match source {
        Location::Dir { path, tag } => {
            let layout = OciDir::open(path)?;
            let descriptor = layout.find(tag.as_deref())?;
            import::import_image(&layout, &descriptor, &image, root, options)
        }
        Location::Archive { path, tag } => {
            let scratch = scratch()?;
            let layout = archive::read(path, scratch.path(), options.limits)?;
            let descriptor = layout.find(tag.as_deref())?;
            import::import_image(&layout, &descriptor, &image, root, options)
        }
        Location::Registry(reference) => {
            let scratch = scratch()?;
            let layout = OciDir::create(scratch.path())?;
            let descriptor = registry::pull(reference, transport, &layout, options.limits)?;
            import::import_image(&layout, &descriptor, &image, root, options)
        }
    }
}

/// A private dir for a layout on its way to or from elsewhere, removed when dropped.
fn scratch() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("runseal-oci")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))
}
