//! The parts of an ELF file the dynamic loader reads to start it: interpreter, needed
//! libraries and search paths. Like the loader, this reads the program headers, the dynamic
//! segment and its string table, and nothing else, so a 20 MB library costs a few small
//! reads. Untrusted input: every failure is an error, never a panic.

use object::elf::{self, FileHeader32, FileHeader64};
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::{Endianness, ReadRef};

pub const MAGIC: &[u8; 4] = b"\x7fELF";

/// Class and machine: a library only satisfies a dependency of the same pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// The machines this host's kernel runs (its own, and 32-bit x86 on x86-64); `None` where
/// runseal does not know the host, which then judges no file foreign.
fn host_machines() -> Option<&'static [u16]> {
    match std::env::consts::ARCH {
        "x86_64" => Some(&[elf::EM_X86_64.0, elf::EM_386.0]),
        "x86" => Some(&[elf::EM_386.0]),
        "aarch64" => Some(&[elf::EM_AARCH64.0]),
        "riscv64" => Some(&[elf::EM_RISCV.0]),
        _ => None,
    }
}

/// Why an ELF header's file cannot run on this host, if it cannot: built for another
/// machine or another OS (a FreeBSD binary among Go's test data). Such a file is data to
/// the runtime; its loader and libraries are nothing a job could need.
pub fn foreign(header: &[u8]) -> Option<String> {
    let target = target_of(header)?;
    let os_abi = header[7];
    if ![elf::ELFOSABI_SYSV.0, elf::ELFOSABI_GNU.0].contains(&os_abi) {
        return Some(format!("built for another OS (ELF OS ABI {os_abi})"));
    }
    let runs = host_machines().is_none_or(|machines| machines.contains(&target.machine));
    (!runs).then(|| format!("built for another machine (ELF machine {})", target.machine))
}

/// Reads the dynamic-loading facts of an ELF image held in memory.
pub fn parse(bytes: &[u8]) -> Result<ElfInfo, String> {
    parse_from(bytes)
}

/// Reads the dynamic-loading facts of an ELF file, reading only the parts the loader reads.
pub fn read(file: &std::fs::File) -> Result<ElfInfo, String> {
    let cache = object::ReadCache::new(file);
    parse_from(&cache)
}

fn parse_from<'data, R: ReadRef<'data>>(data: R) -> Result<ElfInfo, String> {
    let ident = data
        .read_bytes_at(0, 20)
        .map_err(|()| "shorter than an ELF header".to_string())?;
    let target = target_of(ident).ok_or("not an ELF header")?;
    if target.is_64 {
        parse_class::<FileHeader64<Endianness>, R>(data, target)
    } else {
        parse_class::<FileHeader32<Endianness>, R>(data, target)
    }
}

fn parse_class<'data, E, R>(data: R, target: Target) -> Result<ElfInfo, String>
where
    E: FileHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    let text = |e: object::read::Error| e.to_string();
    let header = E::parse(data).map_err(text)?;
    let endian = header.endian().map_err(text)?;
    let segments = header.program_headers(endian, data).map_err(text)?;
    let mut info = ElfInfo {
        target,
        interpreter: None,
        needed: Vec::new(),
        rpath: Vec::new(),
        runpath: Vec::new(),
    };
    let mut dynamic = None;
    for segment in segments {
        if let Some(path) = segment.interpreter(endian, data).map_err(text)? {
            info.interpreter = Some(String::from_utf8_lossy(path).into_owned());
        }
        if let Some(entries) = segment.dynamic(endian, data).map_err(text)? {
            dynamic = Some(entries);
        }
    }
    let Some(dynamic) = dynamic else {
        return Ok(info);
    };
    let value_of = |tag: elf::DynamicTag| {
        dynamic
            .iter()
            .find(|d| d.d_tag(endian) == tag)
            .map(|d| d.val(endian))
    };
    let (Some(address), Some(size)) = (value_of(elf::DT_STRTAB), value_of(elf::DT_STRSZ)) else {
        return Err("dynamic segment without a string table".into());
    };
    let offset = segments
        .iter()
        .filter(|s| s.p_type(endian) == elf::PT_LOAD)
        .find_map(|s| {
            let (vaddr, offset, filesz) = (
                s.p_vaddr(endian).into(),
                s.p_offset(endian).into(),
                s.p_filesz(endian).into(),
            );
            let inside =
                address >= vaddr && address.checked_add(size)? <= vaddr.checked_add(filesz)?;
            // A file offset past u64 is no place in the file: the table is nowhere.
            inside
                .then(|| (address - vaddr).checked_add(offset))
                .flatten()
        })
        .ok_or("dynamic string table outside every loaded segment")?;
    let strings = data
        .read_bytes_at(offset, size)
        .map_err(|()| "dynamic string table past the end of the file".to_string())?;
    let string_at = |value: u64| -> Result<String, String> {
        let rest = usize::try_from(value)
            .ok()
            .and_then(|start| strings.get(start..))
            .ok_or("string offset outside the string table")?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or("unterminated string")?;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    };
    let split = |value: String| -> Vec<String> {
        value
            .split(':')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    for entry in dynamic {
        let value = entry.val(endian);
        match entry.d_tag(endian) {
            elf::DT_NULL => break,
            elf::DT_NEEDED => info.needed.push(string_at(value)?),
            elf::DT_RPATH => info.rpath.extend(split(string_at(value)?)),
            elf::DT_RUNPATH => info.runpath.extend(split(string_at(value)?)),
            _ => {}
        }
    }
    Ok(info)
}

/// The Debian multiarch triplet of a target, which names its library dirs.
pub fn multiarch_triplet(target: Target) -> Option<&'static str> {
    use elf::{EM_386, EM_AARCH64, EM_ARM, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64};
    Some(match (elf::Machine(target.machine), target.is_64) {
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
    use elf::{EM_386, EM_AARCH64, EM_X86_64};
    match elf::Machine(target.machine) {
        EM_X86_64 => "x86_64",
        EM_AARCH64 => "aarch64",
        EM_386 => "i686",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `elf` fuzz target: a PT_LOAD whose file offset plus the string table's
    /// place in it passes u64.
    #[test]
    fn a_string_table_offset_past_u64_is_an_error() {
        let bytes = include_bytes!("../testdata/elf-string-table-offset-overflow.bin");
        assert!(parse(bytes).is_err());
    }

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
