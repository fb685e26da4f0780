//! Debian packages, from dpkg's own database read directly: `status` for what is installed
//! and at which version, `info/<package>.list` for the files each one installed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;
use runseal_closure::Root;

use super::{Ecosystem, Package};
use crate::error::{Error, Result};

const STATUS: &str = "/var/lib/dpkg/status";
const INFO: &str = "/var/lib/dpkg/info";

/// The dirs a merged-/usr system makes links into /usr: dpkg still lists files under
/// `/lib/...` that the closure copied from `/usr/lib/...`.
const MERGED: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// The installed packages that own any of `sealed` (each sealed file's source on `host`,
/// with its path in the tree), each with the sealed paths it owns. No dpkg database, no
/// packages: the host is not Debian's kind, or `host` is a fixture.
pub fn packages(host: &Root, sealed: &BTreeMap<PathBuf, PathBuf>) -> Result<Vec<Package>> {
    let status_path = host.real(Path::new(STATUS));
    let status = match std::fs::read(&status_path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(status_path, e)),
    };
    let aliases = merged_aliases(host);
    // Keyed by every spelling dpkg may list a sealed file under, so that each of the lists'
    // hundred thousand lines is one lookup, with no path built for it.
    let mut spellings: HashMap<String, &PathBuf> = HashMap::new();
    for (source, job) in sealed {
        let usr = unmerged(source, &aliases);
        let merged = usr
            .strip_prefix("/usr")
            .ok()
            .filter(|rest| {
                rest.components().next().is_some_and(|top| {
                    top.as_os_str()
                        .to_str()
                        .is_some_and(|t| aliases.contains(t))
                })
            })
            .map(|rest| Path::new("/").join(rest));
        for spelling in [Some(usr), merged].into_iter().flatten() {
            if let Some(text) = spelling.to_str() {
                spellings.insert(text.to_string(), job);
            }
        }
    }
    // Some thousand file lists, read in parallel: every seal reads them.
    let stanzas: Vec<&str> = status.split("\n\n").collect();
    let found = stanzas
        .par_iter()
        .map(|stanza| owner(host, stanza, &spellings))
        .collect::<Result<Vec<_>>>()?;
    Ok(found.into_iter().flatten().collect())
}

/// The package `stanza` describes, if it is installed and owns any of `sealed`.
fn owner(host: &Root, stanza: &str, sealed: &HashMap<String, &PathBuf>) -> Result<Option<Package>> {
    let fields = fields(stanza);
    let field = |name: &str| fields.get(name).cloned();
    let (Some(name), Some(version), Some(state)) =
        (field("Package"), field("Version"), field("Status"))
    else {
        return Ok(None);
    };
    if !state.ends_with(" installed") {
        return Ok(None);
    }
    let arch = field("Architecture").unwrap_or_default();
    let Some(list) = read_list(host, &name, &arch)? else {
        return Ok(None);
    };
    let files: BTreeSet<PathBuf> = list
        .lines()
        .filter_map(|line| sealed.get(line))
        .map(|job| (*job).clone())
        .collect();
    if files.is_empty() {
        return Ok(None);
    }
    Ok(Some(Package {
        ecosystem: Ecosystem::Deb,
        name,
        version,
        arch: Some(arch).filter(|a| !a.is_empty()),
        homepage: field("Homepage"),
        supplier: field("Maintainer"),
        files,
    }))
}

/// A stanza's fields; continuation lines (file lists, descriptions) are not needed.
fn fields(stanza: &str) -> BTreeMap<&str, String> {
    stanza
        .lines()
        .filter(|line| !line.starts_with([' ', '\t']))
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key, value.trim().to_string()))
        .collect()
}

/// A package's file list: `NAME:ARCH.list` for a package that may be installed for more than
/// one architecture, `NAME.list` for the others.
fn read_list(host: &Root, name: &str, arch: &str) -> Result<Option<String>> {
    for file in [format!("{name}:{arch}.list"), format!("{name}.list")] {
        let path = host.real(&Path::new(INFO).join(file));
        match std::fs::read(&path) {
            Ok(bytes) => return Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(None)
}

/// Which of [`MERGED`] are links to their /usr namesake on `host`.
fn merged_aliases(host: &Root) -> BTreeSet<&'static str> {
    MERGED
        .into_iter()
        .filter(|dir| {
            std::fs::read_link(host.real(&Path::new("/").join(dir)))
                .is_ok_and(|target| target == Path::new("usr").join(dir))
        })
        .collect()
}

/// `path` with a merged top-level dir spelt through /usr, so both spellings compare equal.
fn unmerged(path: &Path, aliases: &BTreeSet<&str>) -> PathBuf {
    let mut components = path.components();
    match (components.next(), components.next()) {
        (Some(Component::RootDir), Some(Component::Normal(top)))
            if top.to_str().is_some_and(|t| aliases.contains(t)) =>
        {
            Path::new("/usr").join(path.strip_prefix("/").unwrap_or(path))
        }
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_listed_under_a_merged_dir_belong_to_their_package() {
        let host = tempfile::tempdir().unwrap();
        let base = host.path();
        std::fs::create_dir_all(base.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", base.join("lib")).unwrap();
        std::fs::create_dir_all(base.join("var/lib/dpkg/info")).unwrap();
        std::fs::write(
            base.join("var/lib/dpkg/status"),
            "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n\
             Multi-Arch: same\nVersion: 2.36-9\nDescription: GNU C Library\n text: here\n\n\
             Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
             Package: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 2024a\n",
        )
        .unwrap();
        std::fs::write(
            base.join("var/lib/dpkg/info/libc6:amd64.list"),
            "/.\n/lib\n/lib/libc.so.6\n/usr/lib/libm.so.6\n",
        )
        .unwrap();
        std::fs::write(
            base.join("var/lib/dpkg/info/gone.list"),
            "/usr/lib/libm.so.6\n",
        )
        .unwrap();
        std::fs::write(
            base.join("var/lib/dpkg/info/tzdata.list"),
            "/usr/share/zoneinfo/UTC\n",
        )
        .unwrap();
        let sealed: BTreeMap<PathBuf, PathBuf> = ["/usr/lib/libc.so.6", "/usr/lib/libm.so.6"]
            .iter()
            .map(|p| (PathBuf::from(p), PathBuf::from(p)))
            .collect();
        let found = packages(&Root::new(base), &sealed).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].name.as_str(), found[0].version.as_str()),
            ("libc6", "2.36-9")
        );
        assert_eq!(found[0].arch.as_deref(), Some("amd64"));
        assert_eq!(found[0].files, sealed.into_values().collect());
    }
}
