//! SBOMs of real sealed runtimes: SPDX 2.3 documents naming the Debian, pip and npm
//! packages that own sealed files, checked by `verify` and carried by exported images.

use serde_json::Value;

use crate::util::{code, json, text, TestRoot};

/// The SBOM `runseal sbom RUNTIME` prints, after checking the fields SPDX 2.3 requires of
/// the document, its packages and its files.
pub fn sbom(t: &TestRoot, runtime: &str) -> Value {
    let out = t.run(&["sbom", runtime]);
    assert_eq!(code(&out), 0, "sbom {runtime}: {}", text(&out.stderr));
    let document: Value = json(&out);
    assert_eq!(document["spdxVersion"], "SPDX-2.3");
    assert_eq!(document["dataLicense"], "CC0-1.0");
    assert_eq!(document["SPDXID"], "SPDXRef-DOCUMENT");
    for field in ["name", "documentNamespace"] {
        assert!(document[field].is_string(), "{field}");
    }
    let created = document["creationInfo"]["created"].as_str().unwrap();
    assert!(created.len() == 20 && created.ends_with('Z'), "{created}");
    assert!(document["creationInfo"]["creators"][0]
        .as_str()
        .unwrap()
        .starts_with("Tool: runseal-"));
    let ids: Vec<&str> = ["packages", "files"]
        .iter()
        .flat_map(|list| document[list].as_array().unwrap())
        .map(|element| element["SPDXID"].as_str().unwrap())
        .collect();
    assert!(ids.iter().all(|id| id.starts_with("SPDXRef-")
        && id[8..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))));
    let unique: std::collections::BTreeSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "SPDX ids repeat");
    for package in document["packages"].as_array().unwrap() {
        assert!(package["name"].is_string() && package["downloadLocation"].is_string());
    }
    for file in document["files"].as_array().unwrap() {
        assert!(file["fileName"].as_str().unwrap().starts_with("./"));
        assert_eq!(file["checksums"][0]["algorithm"], "SHA1", "{file}");
    }
    for relationship in document["relationships"].as_array().unwrap() {
        for end in ["spdxElementId", "relatedSpdxElement"] {
            let id = relationship[end].as_str().unwrap();
            assert!(id == "SPDXRef-DOCUMENT" || unique.contains(&id), "{id}");
        }
    }
    document
}

/// Asserts that `document` names the package with this purl and that it contains a file
/// whose path ends with `file`.
pub fn assert_package(document: &Value, purl: &str, file: &str) {
    let package = document["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["externalRefs"][0]["referenceLocator"] == purl)
        .unwrap_or_else(|| panic!("no package {purl} in the SBOM"));
    let file_id = document["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fileName"].as_str().unwrap().ends_with(file))
        .unwrap_or_else(|| panic!("no file {file} in the SBOM"))["SPDXID"]
        .clone();
    assert!(
        document["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| {
                r["spdxElementId"] == package["SPDXID"]
                    && r["relationshipType"] == "CONTAINS"
                    && r["relatedSpdxElement"] == file_id
            }),
        "{purl} does not contain {file}"
    );
}

fn dpkg_version(package: &str) -> String {
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .unwrap();
    text(&out.stdout)
}

#[test]
fn openjdk_sbom_names_its_debian_packages_and_verify_and_images_keep_it() {
    let t = sealtest!();
    let dir = t.sealed_openjdk();
    let document = sbom(&t, "openjdk-17");
    let version = dpkg_version("openjdk-17-jre-headless");
    assert_package(
        &document,
        &format!("pkg:deb/debian/openjdk-17-jre-headless@{version}?arch=amd64"),
        "/bin/java",
    );
    // libc6 lists /lib/x86_64-linux-gnu/libc.so.6; the closure copied /usr/lib/...
    let libc = dpkg_version("libc6");
    assert_package(
        &document,
        &format!("pkg:deb/debian/libc6@{libc}?arch=amd64"),
        "/libc.so.6",
    );

    // The same files sealed under another root give the same SBOM, byte for byte.
    let sealed = std::fs::read(dir.join("isolated/.runseal-sbom.spdx.json")).unwrap();
    let other = TestRoot::new();
    let again = other
        .sealed_openjdk()
        .join("isolated/.runseal-sbom.spdx.json");
    assert!(
        std::fs::read(again).unwrap() == sealed,
        "two seals wrote different SBOMs"
    );

    // An exported image carries it, and says where.
    let layout = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:17", layout.path().display());
    let out = t.run(&["export", "openjdk-17", &dest]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.path().join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = |digest: &str| layout.path().join("blobs/sha256").join(&digest[7..]);
    let manifest: Value = serde_json::from_slice(&std::fs::read(blob(digest)).unwrap()).unwrap();
    let label = manifest["annotations"]["io.runseal.sbom"].as_str().unwrap();
    let hash = blake3::hash(&sealed).to_hex();
    assert_eq!(label, format!("/.runseal-sbom.spdx.json blake3:{hash}"));
    let second = TestRoot::new();
    let out = second.run(&["import", &dest]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(
            second
                .path()
                .join("openjdk-17/isolated/.runseal-sbom.spdx.json")
        )
        .unwrap(),
        sealed
    );

    // verify checks it like every sealed file, and `sbom` refuses a changed one.
    let file = dir.join("isolated/.runseal-sbom.spdx.json");
    std::fs::write(&file, sealed.iter().rev().copied().collect::<Vec<u8>>()).unwrap();
    let out = t.run(&["--json", "verify", "openjdk-17"]);
    assert_ne!(code(&out), 0);
    assert!(text(&out.stdout).contains(".runseal-sbom.spdx.json"));
    let out = t.run(&["sbom", "openjdk-17"]);
    assert_ne!(code(&out), 0);
    assert!(
        text(&out.stderr).contains("differs from what the manifest records"),
        "{}",
        text(&out.stderr)
    );
}
