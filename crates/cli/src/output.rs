//! How results and errors are shown.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// The error and its causes on one line.
pub fn chain(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// 1 when the runtime is at fault, 2 for usage and I/O errors.
pub fn exit_code_of(err: &anyhow::Error) -> u8 {
    let runtime_problem = err.chain().any(|cause| {
        let sealing = cause
            .downcast_ref::<runseal_seal::Error>()
            .is_some_and(runseal_seal::Error::is_runtime_problem);
        let building = matches!(
            cause.downcast_ref::<runseal_sandbox::Error>(),
            Some(runseal_sandbox::Error::Setup { .. })
        );
        // runseald answers 422 where the library's error is the runtime's fault.
        let refused = cause
            .downcast_ref::<crate::client::DaemonError>()
            .is_some_and(|e| e.status == 422);
        let image = cause
            .downcast_ref::<runseal_oci::Error>()
            .is_some_and(runseal_oci::Error::is_input_problem);
        sealing || building || refused || image
    });
    if runtime_problem {
        1
    } else {
        2
    }
}

pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A byte progress bar on stderr, drawn only when stderr is a terminal.
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    pub fn new(enabled: bool) -> Self {
        Bar {
            bar: (enabled && std::io::stderr().is_terminal()).then(ProgressBar::hidden),
        }
    }
}

impl runseal_seal::Progress for Bar {
    fn begin(&self, message: &str, total_bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total_bytes);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:>8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            bar.set_message(message.to_string());
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
    }
    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }
    fn end(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// One line per top-level directory of a sealed tree: its share of files and bytes.
pub fn print_top_level(top_level: &[runseal_closure::TopLevel]) {
    println!("  by top-level directory:");
    for top in top_level {
        println!(
            "    {:<10} {:>6} files {:>10}",
            top.path.display(),
            top.files,
            human_bytes(top.bytes)
        );
    }
}

/// Each path that brought files into a sealed tree, with what it brought and why.
pub fn print_inclusions(heading: &str, inclusions: &[runseal_closure::Inclusion]) {
    println!("  {heading}:");
    for inclusion in inclusions {
        println!(
            "    {}  ({} files, {})  {}",
            inclusion.path.display(),
            inclusion.files,
            human_bytes(inclusion.bytes),
            inclusion.reason
        );
    }
}
