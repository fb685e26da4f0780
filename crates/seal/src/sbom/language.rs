//! Packages that language package managers installed, read from the sealed tree itself:
//! pip's `*.dist-info` (`METADATA` for name and version, `RECORD` for the files) and npm's
//! `node_modules/[@scope/]NAME/package.json` (the files under its dir).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use runseal_spec::paths::below_root;

use super::{Ecosystem, Package};
use crate::dirfd::DirFd;
use crate::error::{Error, Result};

/// Every pip and npm package among `files` (the tree's regular files, as jobs see them).
pub fn packages(tree: &DirFd, files: &BTreeSet<PathBuf>) -> Result<Vec<Package>> {
    let mut found = Vec::new();
    let mut npm_dirs = BTreeMap::new();
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let parent = path.parent().unwrap_or(Path::new("/"));
        if name == "METADATA" && parent.extension().is_some_and(|e| e == "dist-info") {
            found.extend(pip(tree, parent, files)?);
        } else if name == "package.json" && is_npm_package_dir(parent) {
            if let Some(package) = npm(tree, path)? {
                npm_dirs.insert(parent.to_path_buf(), found.len());
                found.push(package);
            }
        }
    }
    // A file belongs to the innermost package dir above it, unless a `node_modules` dir
    // (another package's place) comes first.
    for path in files {
        let owner = path
            .ancestors()
            .skip(1)
            .take_while(|dir| dir.file_name().is_none_or(|n| n != "node_modules"))
            .find_map(|dir| npm_dirs.get(dir));
        if let Some(&index) = owner {
            found[index].files.insert(path.clone());
        }
    }
    Ok(found)
}

/// `node_modules/NAME` or `node_modules/@scope/NAME`.
fn is_npm_package_dir(dir: &Path) -> bool {
    let mut up = dir.ancestors().skip(1).map(|d| d.file_name());
    match (up.next().flatten(), up.next().flatten()) {
        (Some(parent), _) if parent == "node_modules" => true,
        (Some(scope), Some(grand)) => {
            scope.to_string_lossy().starts_with('@') && grand == "node_modules"
        }
        _ => false,
    }
}

fn pip(tree: &DirFd, dist_info: &Path, files: &BTreeSet<PathBuf>) -> Result<Option<Package>> {
    let metadata = read(tree, &dist_info.join("METADATA"))?;
    // The header ends at the first blank line; the long description follows.
    let header = metadata.split("\n\n").next().unwrap_or_default();
    let field = |name: &str| {
        header.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.eq_ignore_ascii_case(name)).then(|| value.trim().to_string())
        })
    };
    let (Some(name), Some(version)) = (field("Name"), field("Version")) else {
        return Ok(None);
    };
    let site = dist_info.parent().unwrap_or(Path::new("/"));
    let record = dist_info.join("RECORD");
    let mut owned: BTreeSet<PathBuf> = files
        .iter()
        .filter(|f| f.starts_with(dist_info))
        .cloned()
        .collect();
    if files.contains(&record) {
        owned.extend(
            read(tree, &record)?
                .lines()
                .filter_map(record_path)
                .map(|rel| normalize(&site.join(rel)))
                .filter(|path| files.contains(path)),
        );
    }
    Ok(Some(Package {
        ecosystem: Ecosystem::Pypi,
        name,
        version,
        arch: None,
        homepage: field("Home-page"),
        supplier: field("Author"),
        files: owned,
    }))
}

/// The path of one `RECORD` line (CSV: path, hash, size; a path holding a comma is quoted).
fn record_path(line: &str) -> Option<String> {
    match line.strip_prefix('"') {
        Some(quoted) => {
            let end = quoted.find("\",")?;
            Some(quoted[..end].replace("\"\"", "\""))
        }
        None => line.split(',').next().map(String::from),
    }
    .filter(|p| !p.is_empty())
}

/// `path` with `.` and `..` resolved by name (a RECORD names scripts as `../../../bin/x`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn npm(tree: &DirFd, package_json: &Path) -> Result<Option<Package>> {
    let text = read(tree, package_json)?;
    // A package.json that is not JSON names no package; npm would not load it either.
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Ok(None);
    };
    let string = |key: &str| json.get(key).and_then(|v| v.as_str()).map(String::from);
    let (Some(name), Some(version)) = (string("name"), string("version")) else {
        return Ok(None);
    };
    let author = json.get("author").and_then(|a| match a {
        serde_json::Value::String(s) => Some(s.clone()),
        other => other.get("name")?.as_str().map(String::from),
    });
    Ok(Some(Package {
        ecosystem: Ecosystem::Npm,
        name,
        version,
        arch: None,
        homepage: string("homepage"),
        supplier: author,
        files: BTreeSet::new(),
    }))
}

/// A sealed file's text; bytes that are not UTF-8 are replaced, not refused.
fn read(tree: &DirFd, path: &Path) -> Result<String> {
    let rel = below_root(path);
    let mut file = tree
        .open_file(rel)?
        .ok_or_else(|| Error::io(tree.join(rel), std::io::ErrorKind::NotFound.into()))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| Error::io(tree.join(rel), e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(base: &Path, rel: &str, text: &str) -> PathBuf {
        let path = base.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        Path::new("/").join(rel)
    }

    #[test]
    fn pip_records_and_npm_dirs_give_each_file_its_package() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let site = "venv/lib/python3.11/site-packages";
        let files: BTreeSet<PathBuf> = [
            write(
                base,
                &format!("{site}/numpy-2.2.6.dist-info/METADATA"),
                "Metadata-Version: 2.1\nName: numpy\nVersion: 2.2.6\n\nName: not this\n",
            ),
            write(
                base,
                &format!("{site}/numpy-2.2.6.dist-info/RECORD"),
                "numpy/__init__.py,sha256=x,10\n\"numpy/a,b.py\",,\n../../../bin/f2py,,\n",
            ),
            write(base, &format!("{site}/numpy/__init__.py"), ""),
            write(base, &format!("{site}/numpy/a,b.py"), ""),
            write(base, "venv/bin/f2py", ""),
            write(base, "venv/bin/python3", ""),
            write(
                base,
                "node/lib/node_modules/typescript/package.json",
                r#"{"name": "typescript", "version": "5.6.3"}"#,
            ),
            write(base, "node/lib/node_modules/typescript/lib/tsc.js", ""),
            write(
                base,
                "node/lib/node_modules/typescript/lib/package.json",
                r#"{"type": "commonjs"}"#,
            ),
            write(
                base,
                "node/lib/node_modules/typescript/node_modules/@s/dep/package.json",
                r#"{"name": "@s/dep", "version": "1.0.0"}"#,
            ),
            write(
                base,
                "node/lib/node_modules/typescript/node_modules/x.js",
                "",
            ),
        ]
        .into_iter()
        .collect();
        let tree = DirFd::open(base).unwrap();
        let found = packages(&tree, &files).unwrap();
        let owned = |name: &str| -> Vec<String> {
            let package = found.iter().find(|p| p.name == name).unwrap();
            package
                .files
                .iter()
                .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(
            owned("numpy"),
            ["f2py", "__init__.py", "a,b.py", "METADATA", "RECORD"]
        );
        assert_eq!(
            owned("typescript"),
            ["package.json", "tsc.js", "package.json"]
        );
        assert_eq!(owned("@s/dep"), ["package.json"]);
    }
}
