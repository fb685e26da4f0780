//! The operator's job defaults (`/etc/runseal/config.toml`): the limits every job gets
//! unless its caller asks for others. Without the file, the built-in defaults (equal to the
//! shipped `dist/config.toml`) apply, so a fresh machine never runs an unlimited job.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::job::{parse_size, Limits};

pub const DEFAULT_CONFIG: &str = "/etc/runseal/config.toml";

const DEFAULT_MEMORY: u64 = 2 << 30;
const DEFAULT_CPUS: f64 = 2.0;
const DEFAULT_PIDS: u64 = 1024;
const DEFAULT_TMP_SIZE: u64 = 1 << 30;

/// What the config file says, resolved over the built-in defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Every job's limits where its caller sets none.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            limits: Limits {
                memory_bytes: Some(DEFAULT_MEMORY),
                cpus: Some(DEFAULT_CPUS),
                pids: Some(DEFAULT_PIDS),
                tmp_size: Some(DEFAULT_TMP_SIZE),
                timeout: None,
            },
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    limits: FileLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    memory: Option<Size>,
    cpus: Option<f64>,
    pids: Option<u64>,
    tmp_size: Option<Size>,
    /// Seconds.
    timeout: Option<f64>,
}

/// `"512M"`, `"2G"` or a number of bytes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Text(String),
    Bytes(u64),
}

impl Config {
    /// Reads the config at `path`, or at [`DEFAULT_CONFIG`] when `path` is `None`; only the
    /// default file may be missing (then the built-in defaults apply), a named one must exist.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let file = path.unwrap_or(Path::new(DEFAULT_CONFIG));
        match std::fs::read_to_string(file) {
            Ok(text) => Config::parse(&text, file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.is_none() => {
                Ok(Config::default())
            }
            Err(e) => Err(Error::sys(format!("read {}", file.display()), e)),
        }
    }

    /// Parses `text`, the content of `file` (named in errors).
    pub fn parse(text: &str, file: &Path) -> Result<Config> {
        let error = |at: String, reason: String| Error::Config {
            file: file.to_path_buf(),
            at,
            reason,
        };
        let parsed: File = toml::from_str(text).map_err(|e| {
            let at = match e.span() {
                Some(span) => format!("line {}", text[..span.start].matches('\n').count() + 1),
                None => "file".into(),
            };
            error(at, e.message().trim().to_string())
        })?;
        let size = |key: &str, value: Option<Size>| -> Result<Option<u64>> {
            value
                .map(|v| match v {
                    Size::Text(text) => parse_size(&text),
                    Size::Bytes(0) => Err("0 is not a size".into()),
                    Size::Bytes(bytes) => Ok(bytes),
                })
                .transpose()
                .map_err(|reason| error(format!("limits.{key}"), reason))
        };
        let positive = |key: &str, value: Option<f64>| -> Result<Option<f64>> {
            match value {
                Some(v) if !(v.is_finite() && v > 0.0 && v < 1e9) => Err(error(
                    format!("limits.{key}"),
                    format!("{v} is not a number above zero"),
                )),
                other => Ok(other),
            }
        };
        let given = parsed.limits;
        if given.pids == Some(0) {
            return Err(error("limits.pids".into(), "must be at least 1".into()));
        }
        let limits = Limits {
            memory_bytes: size("memory", given.memory)?,
            cpus: positive("cpus", given.cpus)?,
            pids: given.pids,
            tmp_size: size("tmp_size", given.tmp_size)?,
            timeout: positive("timeout", given.timeout)?.map(Duration::from_secs_f64),
        };
        Ok(Config {
            limits: limits.or(&Config::default().limits),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/etc/runseal/config.toml"))
    }

    #[test]
    fn the_shipped_file_says_what_the_built_in_defaults_say() {
        let shipped = include_str!("../../../dist/config.toml");
        let config = parse(shipped).unwrap();
        assert_eq!(config, Config::default());
        let bare = parse("").unwrap();
        assert_eq!(bare, Config::default());
        for limit in [
            config.limits.memory_bytes.is_some(),
            config.limits.cpus.is_some(),
            config.limits.pids.is_some(),
            config.limits.tmp_size.is_some(),
        ] {
            assert!(limit, "every default is set: {config:?}");
        }
    }

    #[test]
    fn values_override_the_built_in_defaults_key_by_key() {
        let config = parse("[limits]\nmemory = \"64M\"\npids = 20\ntimeout = 30\n").unwrap();
        assert_eq!(config.limits.memory_bytes, Some(64 << 20));
        assert_eq!(config.limits.pids, Some(20));
        assert_eq!(config.limits.timeout, Some(Duration::from_secs(30)));
        assert_eq!(config.limits.cpus, Config::default().limits.cpus);
        assert_eq!(config.limits.tmp_size, Config::default().limits.tmp_size);
        let config = parse("[limits]\ntmp_size = 1048576\ncpus = 0.5\n").unwrap();
        assert_eq!(config.limits.tmp_size, Some(1 << 20));
        assert_eq!(config.limits.cpus, Some(0.5));
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_reason() {
        for (text, expected) in [
            (
                "[limits]\nmemroy = \"1G\"\n",
                "/etc/runseal/config.toml: line 2: unknown field `memroy`",
            ),
            (
                "[limit]\n",
                "/etc/runseal/config.toml: line 1: unknown field `limit`",
            ),
            (
                "[limits]\nmemory = \"lots\"\n",
                "/etc/runseal/config.toml: limits.memory: `lots` is not a size",
            ),
            (
                "[limits]\ntmp_size = \"5X\"\n",
                "/etc/runseal/config.toml: limits.tmp_size: `5X`: unknown unit",
            ),
            (
                "[limits]\npids = 0\n",
                "/etc/runseal/config.toml: limits.pids: must be at least 1",
            ),
            (
                "[limits]\npids = -3\n",
                "/etc/runseal/config.toml: line 2: invalid value",
            ),
            (
                "[limits]\ncpus = 0\n",
                "/etc/runseal/config.toml: limits.cpus: 0 is not a number above zero",
            ),
            (
                "[limits]\ntimeout = nan\n",
                "/etc/runseal/config.toml: limits.timeout: NaN is not a number above zero",
            ),
            ("[limits\n", "/etc/runseal/config.toml: line 1: "),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn only_the_default_file_may_be_missing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("config.toml");
        let err = Config::load(Some(&missing)).unwrap_err().to_string();
        assert!(
            err.contains("config.toml") && err.contains("No such file"),
            "{err}"
        );
        std::fs::write(&missing, "[limits]\npids = 7\n").unwrap();
        assert_eq!(Config::load(Some(&missing)).unwrap().limits.pids, Some(7));
    }
}
