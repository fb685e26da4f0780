//! Where an image is, written as skopeo writes it: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
//! `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`.

use std::fmt;
use std::path::PathBuf;

use oci_client::Reference;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An OCI image layout directory; the tag is its `org.opencontainers.image.ref.name`.
    Dir { path: PathBuf, tag: Option<String> },
    /// An OCI image layout in one tar file.
    Archive { path: PathBuf, tag: Option<String> },
    /// A repository of a registry speaking the OCI distribution API.
    Registry(Reference),
}

impl Location {
    /// Parses `text`; `default_transport` is the one a bare reference implies (`install`
    /// takes `reg/repo:tag` as `docker://reg/repo:tag`).
    pub fn parse(text: &str, default_transport: Option<&str>) -> Result<Location> {
        let bad = |reason: &str| Error::Location {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let (transport, rest) = match text.split_once(':') {
            Some((t @ ("oci" | "oci-archive" | "docker"), rest)) => (t, rest),
            _ => match default_transport {
                Some(t) => (t, text),
                None => {
                    return Err(bad(
                        "names no transport; use oci:DIR[:TAG], oci-archive:FILE[:TAG] or \
                         docker://HOST/REPO:TAG",
                    ))
                }
            },
        };
        match transport {
            "docker" => {
                let reference = rest.strip_prefix("//").unwrap_or(rest);
                if reference.is_empty() {
                    return Err(bad("names no image after docker://"));
                }
                reference
                    .parse::<Reference>()
                    .map(Location::Registry)
                    .map_err(|e| bad(&format!("not an image reference: {e}")))
            }
            _ => {
                // As skopeo: the path ends at the first colon, the tag is what follows it.
                let (path, tag) = match rest.split_once(':') {
                    Some((path, tag)) => (path, Some(tag.to_string())),
                    None => (rest, None),
                };
                if path.is_empty() {
                    return Err(bad("names no path"));
                }
                if let Some(tag) = &tag {
                    if !valid_tag(tag) {
                        return Err(bad(
                            "the tag must be 1 to 128 of [A-Za-z0-9_.-], not starting with . or -",
                        ));
                    }
                }
                let path = PathBuf::from(path);
                Ok(match transport {
                    "oci" => Location::Dir { path, tag },
                    _ => Location::Archive { path, tag },
                })
            }
        }
    }
}

fn valid_tag(tag: &str) -> bool {
    (1..=128).contains(&tag.len())
        && !tag.starts_with(['.', '-'])
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (transport, path, tag) = match self {
            Location::Registry(reference) => return write!(f, "docker://{reference}"),
            Location::Dir { path, tag } => ("oci", path, tag),
            Location::Archive { path, tag } => ("oci-archive", path, tag),
        };
        write!(f, "{transport}:{}", path.display())?;
        match tag {
            Some(tag) => write!(f, ":{tag}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skopeo_syntax_parses() {
        assert_eq!(
            Location::parse("oci:/tmp/x:17", None).unwrap(),
            Location::Dir {
                path: "/tmp/x".into(),
                tag: Some("17".into())
            }
        );
        assert_eq!(
            Location::parse("oci-archive:a.tar", None).unwrap(),
            Location::Archive {
                path: "a.tar".into(),
                tag: None
            }
        );
        let Location::Registry(r) =
            Location::parse("docker://127.0.0.1:5000/runtimes/openjdk:17", None).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("127.0.0.1:5000", "runtimes/openjdk", Some("17"))
        );
        let digest = format!("reg:5000/r@sha256:{}", "a".repeat(64));
        let Location::Registry(r) = Location::parse(&digest, Some("docker")).unwrap() else {
            panic!()
        };
        assert!(r.digest().is_some());
        for bad in ["x", "oci:", "oci:/d:../x", "docker://", "oci:/d:"] {
            assert!(Location::parse(bad, None).is_err(), "{bad}");
        }
    }
}
