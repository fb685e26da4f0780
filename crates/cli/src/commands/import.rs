use std::path::Path;
use std::process::ExitCode;

use runseal_oci::{ImportOptions, Limits, Location, Transport};

use crate::cli::{ImportArgs, RegistryArgs};
use crate::output::{human_bytes, print_json};

pub fn transport(args: &RegistryArgs) -> Transport {
    Transport {
        insecure: !args.tls_verify,
        creds: args.creds.clone(),
        authfile: args.authfile.clone(),
    }
}

pub fn run(
    root: &Path,
    source: &str,
    default_transport: Option<&str>,
    args: &ImportArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let location = Location::parse(source, default_transport)?;
    let options = ImportOptions {
        name: args.name.clone(),
        limits: Limits {
            max_bytes: args.max_size,
            ..Limits::default()
        },
    };
    let report = runseal_oci::import(&location, root, &options, &transport(&args.registry))?;
    if json {
        print_json(&report)?;
    } else {
        println!(
            "{}: imported {} from {location}: {} files, {}; check it with `runseal verify {}`",
            report.runtime.display(),
            report.image,
            report.files,
            human_bytes(report.bytes),
            report.runtime.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
