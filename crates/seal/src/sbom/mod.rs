//! The SBOM of a sealed tree: an SPDX 2.3 JSON document naming the packages that own its
//! files (Debian's, pip's and npm's), with versions, and every file with its checksums.
//! It is written at seal time beside the manifest and recorded in it as a file like any
//! other, so `verify` checks it, images carry it, and import keeps it.

mod dpkg;
mod language;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use rayon::prelude::*;
use runseal_closure::Root;
use runseal_spec::paths::below_root;
use serde::Serialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::dirfd::DirFd;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, ManifestKind};

/// The SBOM's name in the sealed tree, beside the manifest: a top-level file, which no
/// mount names, so no job sees it.
pub const SBOM_NAME: &str = ".runseal-sbom.spdx.json";

/// Where the SBOM is as a manifest path (and in an exported image's root).
pub fn sbom_path() -> PathBuf {
    Path::new("/").join(SBOM_NAME)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ecosystem {
    Deb,
    Pypi,
    Npm,
}

/// One package and the sealed files (as jobs see them) it owns.
#[derive(Debug)]
struct Package {
    ecosystem: Ecosystem,
    name: String,
    version: String,
    arch: Option<String>,
    homepage: Option<String>,
    supplier: Option<String>,
    files: BTreeSet<PathBuf>,
}

impl Package {
    /// The package URL (purl) naming it in its ecosystem.
    fn purl(&self, distro: &str) -> String {
        let encode = |s: &str| s.replace('@', "%40");
        match self.ecosystem {
            Ecosystem::Deb => format!(
                "pkg:deb/{distro}/{}@{}{}",
                self.name,
                self.version,
                self.arch
                    .as_deref()
                    .map(|a| format!("?arch={a}"))
                    .unwrap_or_default()
            ),
            Ecosystem::Pypi => format!(
                "pkg:pypi/{}@{}",
                self.name.to_lowercase().replace('_', "-"),
                self.version
            ),
            // A scope is the purl's namespace: `@types/node` is `pkg:npm/%40types/node`.
            Ecosystem::Npm => format!("pkg:npm/{}@{}", encode(&self.name), self.version),
        }
    }
}

/// What names the runtime the document describes.
pub struct Subject<'a> {
    pub name: &'a str,
    pub version: Option<&'a str>,
}

/// The SPDX document of the sealed `tree` that `manifest` records (without an SBOM entry),
/// its packages found in `host`'s dpkg database (by each file's source) and in the tree.
/// Deterministic: the same tree and database give the same bytes. Returns the document and
/// the time it says it was created, in seconds since the epoch.
pub fn generate(
    tree: &DirFd,
    manifest: &Manifest,
    host: &Root,
    subject: &Subject,
) -> Result<(Vec<u8>, i64)> {
    let files: BTreeMap<&PathBuf, &str> = manifest
        .entries
        .iter()
        .filter_map(|(path, entry)| match &entry.kind {
            ManifestKind::File { blake3, .. } => Some((path, blake3.as_str())),
            _ => None,
        })
        .collect();
    let sources: BTreeMap<PathBuf, PathBuf> = manifest
        .entries
        .iter()
        .filter(|(path, _)| files.contains_key(path))
        .map(|(path, entry)| (entry.source.clone(), path.clone()))
        .collect();
    let paths: BTreeSet<PathBuf> = files.keys().map(|p| (*p).clone()).collect();
    let mut packages = dpkg::packages(host, &sources)?;
    packages.extend(language::packages(tree, &paths)?);
    packages.sort_by(|a, b| {
        (a.ecosystem, &a.name, &a.version, &a.files).cmp(&(
            b.ecosystem,
            &b.name,
            &b.version,
            &b.files,
        ))
    });

    let hashed: Vec<(&PathBuf, Checksums)> = files
        .par_iter()
        .map(|(path, blake3)| Ok((*path, checksums(tree, path, blake3)?)))
        .collect::<Result<_>>()?;
    // The newest sealed file's time, not the clock's: sealing the same files again writes
    // the same document, so an image of it keeps its digest.
    let newest = manifest
        .entries
        .values()
        .map(|e| e.mtime)
        .max()
        .unwrap_or(0)
        .max(0);
    let created = UNIX_EPOCH + Duration::from_secs(newest.unsigned_abs());
    let document = document(subject, &packages, &hashed, created, &distro(host));
    Ok((document, newest))
}

/// The SBOM recorded in the sealed runtime in `dir`, checked against the manifest's hash.
pub fn read_sbom(dir: &Path) -> Result<Vec<u8>> {
    let tree = DirFd::open(&crate::layout::Layout::new(dir).isolated())?;
    let manifest = Manifest::load_from(&tree)?.ok_or_else(|| {
        Error::io(
            tree.join(crate::MANIFEST_NAME),
            std::io::ErrorKind::NotFound.into(),
        )
    })?;
    let unrecorded = || Error::Unsealable {
        file: dir.to_path_buf(),
        message: "was sealed before runseal recorded SBOMs; seal it again".into(),
    };
    let Some(ManifestKind::File { blake3, .. }) =
        manifest.entries.get(&sbom_path()).map(|e| &e.kind)
    else {
        return Err(unrecorded());
    };
    let mut bytes = Vec::new();
    tree.open_file(SBOM_NAME)?
        .ok_or_else(unrecorded)?
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(tree.join(SBOM_NAME), e))?;
    if blake3::hash(&bytes).to_hex().as_str() != blake3 {
        return Err(Error::Unsealable {
            file: tree.join(SBOM_NAME),
            message:
                "differs from what the manifest records; `runseal verify` says what else changed"
                    .into(),
        });
    }
    Ok(bytes)
}

struct Checksums {
    sha1: String,
    sha256: String,
    blake3: String,
}

/// SHA1 (which SPDX 2.3 requires of every file), SHA256, and the manifest's BLAKE3.
fn checksums(tree: &DirFd, path: &Path, blake3: &str) -> Result<Checksums> {
    let rel = below_root(path);
    let io = |e| Error::io(tree.join(rel), e);
    let mut file = tree
        .open_file(rel)?
        .ok_or_else(|| io(std::io::ErrorKind::NotFound.into()))?;
    let (mut sha1, mut sha256) = (Sha1::new(), Sha256::new());
    let mut buffer = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut buffer).map_err(io)?;
        if n == 0 {
            break;
        }
        sha1.update(&buffer[..n]);
        sha256.update(&buffer[..n]);
    }
    Ok(Checksums {
        sha1: hex(&sha1.finalize()),
        sha256: hex(&sha256.finalize()),
        blake3: blake3.to_string(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The host's distribution (`ID` in os-release), for Debian packages' purls.
fn distro(host: &Root) -> String {
    std::fs::read_to_string(host.real(Path::new("/etc/os-release")))
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("ID=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "debian".into())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: String,
    document_namespace: String,
    creation_info: CreationInfo,
    packages: Vec<SpdxPackage>,
    files: Vec<SpdxFile<'a>>,
    relationships: Vec<Relationship>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreationInfo {
    created: String,
    creators: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxPackage {
    name: String,
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_info: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supplier: Option<String>,
    download_location: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    homepage: Option<String>,
    files_analyzed: bool,
    package_verification_code: VerificationCode,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<ExternalRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary_package_purpose: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VerificationCode {
    package_verification_code_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxFile<'a> {
    file_name: String,
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    checksums: [Checksum<'a>; 3],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Checksum<'a> {
    algorithm: &'static str,
    checksum_value: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

impl Relationship {
    fn new(from: &str, kind: &'static str, to: &str) -> Self {
        Relationship {
            spdx_element_id: from.into(),
            relationship_type: kind,
            related_spdx_element: to.into(),
        }
    }
}

const RUNTIME_ID: &str = "SPDXRef-Runtime";

/// An SPDX identifier: letters, digits, `.` and `-` only.
fn spdx_id(kind: &str, index: usize, name: &str) -> String {
    format!("SPDXRef-{kind}-{index}-{}", id_chars(name))
}

/// SPDX's package verification code: the SHA1 of the sorted SHA1s of its files.
fn verification_code<'a>(sha1s: impl Iterator<Item = &'a str>) -> VerificationCode {
    let mut sorted: Vec<&str> = sha1s.collect();
    sorted.sort_unstable();
    VerificationCode {
        package_verification_code_value: hex(&Sha1::digest(sorted.concat().as_bytes())),
    }
}

/// The document: the runtime as a package containing every package found, each package
/// containing its files, and the runtime containing the files no package owns.
fn document(
    subject: &Subject,
    packages: &[Package],
    files: &[(&PathBuf, Checksums)],
    created: std::time::SystemTime,
    distro: &str,
) -> Vec<u8> {
    let file_ids: BTreeMap<&Path, (String, &str)> = files
        .iter()
        .enumerate()
        .map(|(i, (path, sums))| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            (
                path.as_path(),
                (spdx_id("File", i, &name), sums.sha1.as_str()),
            )
        })
        .collect();
    let mut relationships = vec![Relationship::new(
        "SPDXRef-DOCUMENT",
        "DESCRIBES",
        RUNTIME_ID,
    )];
    let mut owned = BTreeSet::new();
    let mut spdx_packages = Vec::new();
    for (i, package) in packages.iter().enumerate() {
        let id = spdx_id("Package", i, &package.name);
        relationships.push(Relationship::new(RUNTIME_ID, "CONTAINS", &id));
        let contained: Vec<&(String, &str)> = package
            .files
            .iter()
            .filter_map(|f| file_ids.get(f.as_path()))
            .collect();
        for (file_id, _) in &contained {
            relationships.push(Relationship::new(&id, "CONTAINS", file_id));
        }
        owned.extend(package.files.iter().map(PathBuf::as_path));
        spdx_packages.push(SpdxPackage {
            name: package.name.clone(),
            spdx_id: id,
            version_info: Some(package.version.clone()),
            // SPDX writes `Name (email)` where dpkg and npm write `Name <email>`.
            supplier: package
                .supplier
                .as_ref()
                .map(|s| format!("Person: {}", s.replace('<', "(").replace('>', ")"))),
            download_location: "NOASSERTION",
            homepage: package.homepage.clone(),
            files_analyzed: true,
            package_verification_code: verification_code(contained.iter().map(|(_, s)| *s)),
            external_refs: vec![ExternalRef {
                reference_category: "PACKAGE-MANAGER",
                reference_type: "purl",
                reference_locator: package.purl(distro),
            }],
            primary_package_purpose: Some("LIBRARY"),
        });
    }
    let unowned: Vec<&(String, &str)> = file_ids
        .iter()
        .filter(|(path, _)| !owned.contains(*path))
        .map(|(_, id)| id)
        .collect();
    for (file_id, _) in &unowned {
        relationships.push(Relationship::new(RUNTIME_ID, "CONTAINS", file_id));
    }
    spdx_packages.insert(
        0,
        SpdxPackage {
            name: subject.name.to_string(),
            spdx_id: RUNTIME_ID.into(),
            version_info: subject.version.map(String::from),
            supplier: None,
            download_location: "NOASSERTION",
            homepage: None,
            files_analyzed: true,
            package_verification_code: verification_code(unowned.iter().map(|(_, s)| *s)),
            external_refs: Vec::new(),
            primary_package_purpose: Some("CONTAINER"),
        },
    );
    let spdx_files = files
        .iter()
        .map(|(path, sums)| SpdxFile {
            file_name: format!(".{}", path.display()),
            spdx_id: file_ids[path.as_path()].0.clone(),
            checksums: [
                Checksum {
                    algorithm: "SHA1",
                    checksum_value: &sums.sha1,
                },
                Checksum {
                    algorithm: "SHA256",
                    checksum_value: &sums.sha256,
                },
                Checksum {
                    algorithm: "BLAKE3",
                    checksum_value: &sums.blake3,
                },
            ],
        })
        .collect();
    let mut document = Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name: subject.name.to_string(),
        document_namespace: String::new(),
        creation_info: CreationInfo {
            created: humantime::format_rfc3339_seconds(created).to_string(),
            creators: vec![format!("Tool: runseal-{}", env!("CARGO_PKG_VERSION"))],
        },
        packages: spdx_packages,
        files: spdx_files,
        relationships,
    };
    // Unique per content, as SPDX asks, and still the same for the same tree.
    let content = serde_json::to_vec(&document).expect("SPDX types always serialize");
    document.document_namespace = format!(
        "https://spdx.org/spdxdocs/runseal-{}-{}",
        id_chars(subject.name),
        blake3::hash(&content).to_hex()
    );
    let mut bytes = serde_json::to_vec_pretty(&document).expect("SPDX types always serialize");
    bytes.push(b'\n');
    bytes
}

/// `name` with what an SPDX identifier (or a URI path) may not hold replaced by `-`.
fn id_chars(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
