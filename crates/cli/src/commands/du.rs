use std::path::Path;
use std::process::ExitCode;

use runseal_seal::usage::Usage;

use crate::output::{human_bytes, print_json};

pub fn run(root: &Path, json: bool) -> anyhow::Result<ExitCode> {
    show(&runseal_seal::usage::usage(root)?, json)
}

/// Prints `usage`, the local one or runseald's.
pub fn show(usage: &Usage, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        print_json(&usage)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>8}  {:>10}  {:>10}  {:>10}  RUNTIME",
        "FILES", "LOGICAL", "PHYSICAL", "EXCLUSIVE"
    );
    for r in &usage.runtimes {
        println!(
            "{:>8}  {:>10}  {:>10}  {:>10}  {}",
            r.files,
            human_bytes(r.logical),
            human_bytes(r.physical),
            human_bytes(r.exclusive),
            r.dir.display()
        );
    }
    println!(
        "{:>8}  {:>10}  {:>10}  {:>10}  total",
        "",
        human_bytes(usage.logical),
        human_bytes(usage.physical),
        ""
    );
    match &usage.store {
        Some(store) => println!(
            "store: {} entries, {}; {} unreferenced ({}), which `runseal gc` removes",
            store.entries,
            human_bytes(store.bytes),
            store.unreferenced,
            human_bytes(store.unreferenced_bytes)
        ),
        // The runtimes' figures stand: what they share is seen by their inodes.
        None => println!(
            "store: root's alone; its figures, and its entries no runtime links (in the \
             total's PHYSICAL), need root"
        ),
    }
    for dir in &usage.unreadable {
        println!("not readable as this user, in no figure: {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
