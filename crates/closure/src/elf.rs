//! The parts of an ELF file the dynamic loader reads to start it: interpreter, needed
//! libraries and search paths. Untrusted input: every failure is an error, never a panic.

use goblin::elf::Elf;

pub const MAGIC: &[u8; 4] = b"\x7fELF";

/// Class and machine: a library only satisfies a dependency of the same pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub is_64: bool,
    pub machine: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    pub target: Target,
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
}

/// Class and machine from the first 20 bytes, or `None` if this is not an ELF header.
pub fn target_of(header: &[u8]) -> Option<Target> {
    if header.len() < 20 || &header[..4] != MAGIC {
        return None;
    }
    let is_64 = match header[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let raw = [header[18], header[19]];
    let machine = match header[5] {
        1 => u16::from_le_bytes(raw),
        2 => u16::from_be_bytes(raw),
        _ => return None,
    };
    Some(Target { is_64, machine })
}

/// Reads the dynamic-loading facts of an ELF image.
pub fn parse(bytes: &[u8]) -> Result<ElfInfo, String> {
    let target = target_of(bytes).ok_or("not an ELF header")?;
    let elf = Elf::parse(bytes).map_err(|e| e.to_string())?;
    let split = |list: &[&str]| -> Vec<String> {
        list.iter()
            .flat_map(|s| s.split(':'))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(ElfInfo {
        target,
        interpreter: elf.interpreter.map(str::to_string),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        rpath: split(&elf.rpaths),
        runpath: split(&elf.runpaths),
    })
}

/// The Debian multiarch triplet of a target, which names its library dirs.
pub fn multiarch_triplet(target: Target) -> Option<&'static str> {
    use goblin::elf::header::{EM_386, EM_AARCH64, EM_ARM, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64};
    Some(match (target.machine, target.is_64) {
        (EM_X86_64, true) => "x86_64-linux-gnu",
        (EM_AARCH64, true) => "aarch64-linux-gnu",
        (EM_386, false) => "i386-linux-gnu",
        (EM_ARM, false) => "arm-linux-gnueabihf",
        (EM_PPC64, true) => "powerpc64le-linux-gnu",
        (EM_RISCV, true) => "riscv64-linux-gnu",
        (EM_S390, true) => "s390x-linux-gnu",
        _ => return None,
    })
}

/// `$PLATFORM` as the kernel reports it for the target (`AT_PLATFORM`).
pub fn platform(target: Target) -> &'static str {
    use goblin::elf::header::{EM_386, EM_AARCH64, EM_X86_64};
    match target.machine {
        EM_X86_64 => "x86_64",
        EM_AARCH64 => "aarch64",
        EM_386 => "i686",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_dynamic_executable() {
        let bytes = std::fs::read("/bin/ls").expect("/bin/ls is on every Debian machine");
        let info = parse(&bytes).unwrap();
        assert!(info.interpreter.as_deref().unwrap().contains("ld-linux"));
        assert!(info.needed.iter().any(|n| n.starts_with("libc.so")));
        assert_eq!(multiarch_triplet(info.target), Some("x86_64-linux-gnu"));
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        assert!(parse(b"").is_err());
        assert!(parse(b"#!/bin/sh\n").is_err());
        let mut truncated = std::fs::read("/bin/ls").unwrap();
        truncated.truncate(200);
        assert!(parse(&truncated).is_err());
        assert_eq!(target_of(b"\x7fELF\x03"), None);
    }
}
