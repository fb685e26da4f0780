use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// The SBOM is JSON already, so `--json` changes nothing.
pub fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    let sbom = runseal_seal::read_sbom(dir)?;
    std::io::stdout().lock().write_all(&sbom)?;
    Ok(ExitCode::SUCCESS)
}
