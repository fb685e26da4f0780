//! Any bytes given as /etc/ld.so.cache yield entries or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runseal_closure::ldcache::LdCache;

fuzz_target!(|data: &[u8]| {
    if let Ok(cache) = LdCache::parse(data) {
        for entry in &cache.entries {
            let _ = cache.lookup(&entry.soname).count();
        }
    }
});
