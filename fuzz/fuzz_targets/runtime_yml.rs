//! runtime.yml is untrusted: parsing, validating and rewriting any bytes must not panic, and
//! a document that parses must survive its own rewrite unchanged.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use runseal_spec::{validate, RuleOptions, RuntimeConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("runtime.yml");
    let Ok(config) = RuntimeConfig::parse(text, path) else {
        return;
    };
    let _ = validate(&config, RuleOptions::default());
    let rewritten = config.to_yaml(path).expect("a parsed document serializes");
    let again = RuntimeConfig::parse(&rewritten, path).expect("rewritten YAML parses");
    assert_eq!(again.to_yaml(path).unwrap(), rewritten, "rewrite is not stable");
});
