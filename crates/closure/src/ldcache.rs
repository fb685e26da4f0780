//! Reader of glibc's `/etc/ld.so.cache` (the `glibc-ld.so.cache1.1` format written since
//! glibc 2.32): the map from soname to path that `ldconfig` builds and the loader consults
//! before its default dirs. Untrusted input: every offset is checked.

const MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const HEADER_LEN: usize = 48;
const ENTRY_LEN: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub soname: String,
    pub path: String,
    pub flags: i32,
}

#[derive(Debug, Clone, Default)]
pub struct LdCache {
    pub entries: Vec<CacheEntry>,
}

impl LdCache {
    pub fn parse(data: &[u8]) -> Result<LdCache, String> {
        if !data.starts_with(MAGIC) {
            return Err("unknown format (expected glibc-ld.so.cache1.1)".into());
        }
        if data.len() < HEADER_LEN {
            return Err("truncated header".into());
        }
        // Low two bits of `flags`: 3 marks a big-endian cache, anything else native little.
        let little = data[28] & 3 != 3;
        let u32_at = |at: usize| -> Result<u32, String> {
            let bytes: [u8; 4] = data
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("offset {at} past the end"))?;
            Ok(if little {
                u32::from_le_bytes(bytes)
            } else {
                u32::from_be_bytes(bytes)
            })
        };
        let count = u32_at(20)? as usize;
        let table_end = count
            .checked_mul(ENTRY_LEN)
            .and_then(|n| n.checked_add(HEADER_LEN))
            .filter(|&end| end <= data.len())
            .ok_or("entry table past the end")?;
        let string_at = |offset: u32| -> Result<String, String> {
            let start = offset as usize;
            let rest = data.get(start..).ok_or("string offset past the end")?;
            let len = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or("unterminated string")?;
            Ok(String::from_utf8_lossy(&rest[..len]).into_owned())
        };
        let mut entries = Vec::with_capacity(count);
        for at in (HEADER_LEN..table_end).step_by(ENTRY_LEN) {
            entries.push(CacheEntry {
                flags: u32_at(at)? as i32,
                soname: string_at(u32_at(at + 4)?)?,
                path: string_at(u32_at(at + 8)?)?,
            });
        }
        Ok(LdCache { entries })
    }

    /// Paths listed for `soname`, best first (ldconfig sorts them that way).
    pub fn lookup<'a>(&'a self, soname: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.soname == soname)
            .map(|e| e.path.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_hosts_cache() {
        let data = std::fs::read("/etc/ld.so.cache").expect("Debian has /etc/ld.so.cache");
        let cache = LdCache::parse(&data).unwrap();
        let libc: Vec<_> = cache.lookup("libc.so.6").collect();
        assert!(libc.iter().any(|p| p.ends_with("/libc.so.6")), "{libc:?}");
        assert!(cache.entries.len() > 10);
    }

    #[test]
    fn refuses_truncated_or_lying_input() {
        let data = std::fs::read("/etc/ld.so.cache").unwrap();
        assert!(LdCache::parse(&data[..30]).is_err());
        assert!(LdCache::parse(&data[..HEADER_LEN + 10]).is_err());
        let mut lying = data[..HEADER_LEN + ENTRY_LEN].to_vec();
        lying[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        lying[20..24].copy_from_slice(&1u32.to_le_bytes());
        assert!(LdCache::parse(&lying).is_err());
        assert!(LdCache::parse(b"ld.so-1.7.0").is_err());
    }
}
