//! Pushing an image from a layout to a registry and pulling one into a layout, over the
//! OCI distribution API (oci-client). Credentials come as skopeo takes them: `--creds`, else
//! the first containers auth file with an entry for the registry.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use base64::Engine;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use oci_spec::image::{Descriptor, ImageManifest, MediaType};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::export::{oci_digest, ImageReport};
use crate::extract::Limits;
use crate::layout::{Digest, OciDir, MAX_JSON};

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    /// Skopeo's `--tls-verify=false`: HTTPS with any certificate, else plain HTTP.
    pub insecure: bool,
    /// `USER:PASSWORD`.
    pub creds: Option<String>,
    /// A containers auth file to read instead of the default ones.
    pub authfile: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    pub reference: String,
    /// Blobs sent, and their bytes; blobs the registry already had are not sent again.
    pub pushed_blobs: usize,
    pub pushed_bytes: u64,
    pub existing_blobs: usize,
    pub existing_bytes: u64,
    /// Blobs the registry mounted from another of its repositories (`--mount-from`), sent
    /// no more than existing ones.
    pub mounted_blobs: usize,
    pub mounted_bytes: u64,
}

/// The registry calls are async; runseal is not, so each runs on a small runtime of its own.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(future)
}

fn registry_error(reference: &Reference, e: impl std::fmt::Display) -> Error {
    Error::Registry {
        reference: reference.to_string(),
        message: e.to_string(),
    }
}

/// An error and its causes (reqwest hides a TLS failure's reason in its source).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(&format!(": {e}"));
        cause = e.source();
    }
    text
}

fn client(protocol: ClientProtocol, accept_invalid_certificates: bool) -> Client {
    // rustls needs one process-wide crypto provider; a second install is refused, harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig {
        protocol,
        accept_invalid_certificates,
        ..Default::default()
    })
}

/// A client for `reference`'s registry, signed in for `operation`. As skopeo's
/// `--tls-verify=false` does, an insecure transport takes HTTPS without checking the
/// certificate, and plain HTTP when the registry does not speak TLS.
async fn connect(
    reference: &Reference,
    transport: &Transport,
    operation: RegistryOperation,
) -> Result<(Client, RegistryAuth)> {
    let auth = auth(reference, transport)?;
    let https = client(ClientProtocol::Https, transport.insecure);
    let over_https = https.auth(reference, &auth, operation).await;
    let Err(https_error) = over_https else {
        return Ok((https, auth));
    };
    if !transport.insecure {
        return Err(registry_error(reference, causes(&https_error)));
    }
    let registry = reference.resolve_registry().to_string();
    let http = client(ClientProtocol::HttpsExcept(vec![registry]), true);
    match http.auth(reference, &auth, operation).await {
        Ok(_) => Ok((http, auth)),
        Err(http_error) => Err(registry_error(
            reference,
            format!(
                "over HTTPS: {}; over HTTP: {}",
                causes(&https_error),
                causes(&http_error)
            ),
        )),
    }
}

/// `--creds`, else the first auth file with an entry for this registry, else anonymous.
fn auth(reference: &Reference, transport: &Transport) -> Result<RegistryAuth> {
    let basic = |text: &str| {
        text.split_once(':')
            .map(|(user, pass)| RegistryAuth::Basic(user.to_string(), pass.to_string()))
    };
    if let Some(creds) = &transport.creds {
        return basic(creds).ok_or_else(|| Error::Location {
            text: "--creds".into(),
            reason: "must be USER:PASSWORD".into(),
        });
    }
    let registry = reference.resolve_registry();
    for file in auth_files(transport) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let parsed: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::io(
                &file,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        let Some(auths) = parsed.get("auths").and_then(|a| a.as_object()) else {
            continue;
        };
        for (key, entry) in auths {
            let host = key
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            let host = host.split('/').next().unwrap_or(host);
            if host != registry {
                continue;
            }
            let decoded = entry
                .get("auth")
                .and_then(|a| a.as_str())
                .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
                .and_then(|a| String::from_utf8(a).ok());
            if let Some(auth) = decoded.as_deref().and_then(basic) {
                return Ok(auth);
            }
        }
    }
    Ok(RegistryAuth::Anonymous)
}

/// Where skopeo looks, in its order.
fn auth_files(transport: &Transport) -> Vec<PathBuf> {
    if let Some(file) = &transport.authfile {
        return vec![file.clone()];
    }
    let env = |key| std::env::var_os(key).map(PathBuf::from);
    let mut files: Vec<PathBuf> = env("REGISTRY_AUTH_FILE").into_iter().collect();
    files.extend(env("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")));
    if let Some(home) = env("HOME") {
        files.push(home.join(".config/containers/auth.json"));
        files.push(home.join(".docker/config.json"));
    }
    files
}

/// Pushes the image `image` of `layout` to `reference`: each blob the registry lacks, then
/// the manifest, byte for byte as in the layout, so its digest is the same everywhere. A
/// blob the repository lacks is first asked of the registry's `mount_from` repositories (a
/// cross-repository mount, which sends nothing), then sent.
pub fn push(
    layout: &OciDir,
    image: &ImageReport,
    reference: &Reference,
    transport: &Transport,
    mount_from: &[String],
) -> Result<PushReport> {
    let fail = |e| registry_error(reference, e);
    block_on(async {
        let (client, _) = connect(reference, transport, RegistryOperation::Push).await?;
        let mut report = PushReport {
            reference: reference.to_string(),
            pushed_blobs: 0,
            pushed_bytes: 0,
            existing_blobs: 0,
            existing_bytes: 0,
            mounted_blobs: 0,
            mounted_bytes: 0,
        };
        let sources: Vec<Reference> = mount_from
            .iter()
            .map(|repository| {
                Reference::with_tag(
                    reference.registry().to_owned(),
                    repository.clone(),
                    "latest".to_owned(),
                )
            })
            .collect();
        let blobs = std::iter::once(&image.config).chain(image.layers.iter().map(|l| &l.digest));
        for digest in blobs {
            let path = layout.blob_path(digest);
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            let size = file.metadata().map_err(|e| Error::io(&path, e))?.len();
            if client
                .blob_exists(reference, digest.as_str())
                .await
                .map_err(fail)?
            {
                report.existing_blobs += 1;
                report.existing_bytes += size;
                continue;
            }
            // A source lacking the blob answers 202 (an upload begun), which is no mount.
            let mut mounted = false;
            for source in &sources {
                if client
                    .mount_blob(reference, source, digest.as_str())
                    .await
                    .is_ok()
                {
                    mounted = true;
                    break;
                }
            }
            if mounted {
                report.mounted_blobs += 1;
                report.mounted_bytes += size;
                continue;
            }
            client
                .push_blob_stream(reference, chunks(file), digest.as_str(), Some(size))
                .await
                .map_err(fail)?;
            report.pushed_blobs += 1;
            report.pushed_bytes += size;
        }
        let path = layout.blob_path(&image.manifest);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let content_type =
            http::HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json");
        client
            .push_manifest_raw(reference, bytes, content_type)
            .await
            .map_err(fail)?;
        Ok(report)
    })
}

/// A blob file as the chunks an upload sends, each read when the upload asks for it: a
/// layer of hundreds of megabytes is never whole in memory. (Read on the runtime's one
/// thread, which has nothing else to do meanwhile.)
fn chunks(file: File) -> impl Stream<Item = oci_client::errors::Result<Bytes>> + Send + 'static {
    futures_util::stream::try_unfold(file, |mut file| async move {
        let mut chunk = Vec::with_capacity(UPLOAD_CHUNK);
        (&mut file)
            .take(UPLOAD_CHUNK as u64)
            .read_to_end(&mut chunk)?;
        Ok((!chunk.is_empty()).then(|| (Bytes::from(chunk), file)))
    })
}

/// What an upload reads of a blob at a time: oci-client's chunk for a chunked upload.
const UPLOAD_CHUNK: usize = 4 << 20;

/// Pulls the image `reference` names into `layout`, checking the manifest against the
/// digest the reference names (if it names one) and every blob against its descriptor.
pub fn pull(
    reference: &Reference,
    transport: &Transport,
    layout: &OciDir,
    limits: Limits,
) -> Result<Descriptor> {
    let fail = |e| registry_error(reference, e);
    let image = format!("docker://{reference}");
    block_on(async {
        let (client, auth) = connect(reference, transport, RegistryOperation::Pull).await?;
        let accepted = [MediaType::ImageManifest.to_string()];
        let accepted: Vec<&str> = accepted.iter().map(String::as_str).collect();
        let (bytes, _) = client
            .pull_manifest_raw(reference, &auth, &accepted)
            .await
            .map_err(fail)?;
        if bytes.len() as u64 > MAX_JSON {
            return Err(Error::refused(&image, "its manifest is too large"));
        }
        let digest = Digest::of_bytes(&bytes);
        if let Some(wanted) = reference.digest() {
            if wanted != digest.as_str() {
                return Err(Error::Digest {
                    image: image.clone(),
                    expected: wanted.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let manifest: ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| Error::refused(&image, format!("not an OCI image manifest: {e}")))?;
        layout.put_blob(&bytes)?;
        let mut total = 0u64;
        for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
            total = total.saturating_add(blob.size());
            if total > limits.max_bytes {
                return Err(Error::refused(
                    &image,
                    format!("its blobs pass {} bytes", limits.max_bytes),
                ));
            }
            let wanted = Digest::parse(blob.digest().as_ref(), &image)?;
            let actual = fetch(&client, reference, &wanted, blob.size(), layout)
                .await
                .map_err(|e| match e {
                    Fetch::Registry(e) => registry_error(reference, e),
                    Fetch::TooLong => Error::refused(
                        &image,
                        format!("blob {wanted} is longer than its descriptor says"),
                    ),
                    Fetch::Layout(e) => e,
                })?;
            if actual != wanted {
                let _ = std::fs::remove_file(layout.blob_path(&actual));
                return Err(Error::Digest {
                    image: image.clone(),
                    expected: wanted.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        Ok(Descriptor::new(
            MediaType::ImageManifest,
            bytes.len() as u64,
            oci_digest(&digest),
        ))
    })
}

enum Fetch {
    Registry(String),
    TooLong,
    Layout(Error),
}

/// A blob written into `layout` as it arrives, no more than `size` bytes of it: a registry
/// sending more is refused before it fills the disk, and no blob is ever whole in memory.
/// Its digest, which the caller checks.
async fn fetch(
    client: &Client,
    reference: &Reference,
    digest: &Digest,
    size: u64,
    layout: &OciDir,
) -> std::result::Result<Digest, Fetch> {
    let mut stream = client
        .pull_blob_stream(reference, digest.as_str())
        .await
        .map_err(|e| Fetch::Registry(e.to_string()))?;
    let mut blob = layout.new_blob().map_err(Fetch::Layout)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Fetch::Registry(e.to_string()))?;
        if blob.written().saturating_add(chunk.len() as u64) > size {
            return Err(Fetch::TooLong);
        }
        blob.write(&chunk).map_err(Fetch::Layout)?;
    }
    blob.finish()
        .map(|(digest, _)| digest)
        .map_err(Fetch::Layout)
}
