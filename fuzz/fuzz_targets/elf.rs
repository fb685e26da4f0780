//! Any bytes given to the ELF reader yield facts or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = runseal_closure::elf::parse(data);
});
