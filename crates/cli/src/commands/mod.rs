//! One module per subcommand; each calls the libraries and prints.

mod build;
pub mod du;
mod export;
pub mod gc;
mod generate;
mod import;
pub mod info;
pub mod list;
pub mod remove;
pub mod run;
mod sbom;
pub mod seal;
pub mod validate;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{Args, Command, JobsCommand};
use crate::client;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let host = args.host.as_ref();
    let root = args.root.clone();
    let profile_dir = args.profile_dir.clone();
    let locate = |runtime: &str| -> anyhow::Result<PathBuf> {
        let dir = runseal_spec::resolve(&root, runtime)?;
        tracing::debug!(spec = runtime, dir = %dir.display(), "runtime resolved");
        Ok(dir)
    };
    match args.command {
        Command::Validate {
            runtime,
            allow_writable,
        } => match host {
            Some(host) => client::validate(host, &runtime, allow_writable, args.json),
            None => validate::run(&locate(&runtime)?, allow_writable, args.json),
        },
        Command::Seal {
            runtime,
            dry_run,
            profile,
            allow_writable,
            no_wait,
            allow_path,
            allow_untrusted_dir,
            learn,
            learn_timeout,
            command,
        } => {
            let options = runseal_seal::SealOptions {
                dry_run,
                profiles: profile,
                profile_dirs: vec![profile_dir.clone()],
                allow_writable,
                no_wait,
                allow_paths: allow_path,
                allow_untrusted_dir,
                learned: Vec::new(),
                store: None,
            };
            let learning = seal::Learning {
                relearn: learn,
                command,
                timeout: std::time::Duration::from_secs_f64(learn_timeout),
            };
            match host {
                Some(_) if learn => Err(anyhow::anyhow!(
                    "`runseal seal --learn` does not take --host: it runs the command where the runtime is"
                )),
                Some(host) => client::seal(host, &runtime, &options, args.json),
                None => {
                    let dir = locate(&runtime)?;
                    let options = runseal_seal::SealOptions {
                        store: runseal_seal::store::store_root_for(&root, &dir),
                        ..options
                    };
                    seal::run(&dir, options, &learning, args.json)
                }
            }
        }
        Command::Run {
            runtime,
            workdir,
            env,
            env_file,
            volume,
            memory,
            tmp_size,
            cpus,
            pids,
            timeout,
            network,
            user,
            mount_table,
            command,
        } => {
            let options = run::RunOptions {
                workdir,
                env,
                env_files: env_file,
                volumes: volume,
                limits: runseal_sandbox::Limits {
                    memory_bytes: memory,
                    cpus,
                    pids,
                    tmp_size,
                    timeout: timeout.map(std::time::Duration::from_secs_f64),
                },
                user,
                network: match network {
                    crate::cli::NetworkArg::None => runseal_sandbox::Network::None,
                    crate::cli::NetworkArg::Host => runseal_sandbox::Network::Host,
                },
                command,
                mount_table,
            };
            Ok(match host {
                Some(host) => client::run(host, &runtime, args.config.as_deref(), options),
                None => run::run(&root, &runtime, args.config.as_deref(), options),
            })
        }
        Command::Verify { .. } if host.is_some() => Err(client::local_only("verify")),
        Command::Du => match host {
            Some(host) => client::du(host, args.json),
            None => du::run(&root, args.json),
        },
        Command::Gc { dry_run } => match host {
            Some(host) => client::gc(host, dry_run, args.json),
            None => gc::run(&root, dry_run, args.json),
        },
        Command::Verify { runtime, profile } => {
            verify::run(&locate(&runtime)?, &profile, &profile_dir, args.json)
        }
        Command::Info { runtime } => match host {
            Some(host) => client::info(host, &runtime, args.json),
            None => info::run(&locate(&runtime)?, args.json),
        },
        Command::List => match host {
            Some(host) => client::list(host, args.json),
            None => list::run(&root, args.json),
        },
        Command::Remove { runtime } => match host {
            Some(host) => client::remove(host, &runtime, args.json),
            None => remove::run(&locate(&runtime)?, args.json),
        },
        Command::Build {
            script,
            name,
            profile,
        } => match host {
            Some(host) => client::build(host, &script, name, profile, args.json),
            None => build::run(&root, &script, name, profile, &profile_dir, args.json),
        },
        Command::Jobs { command } => match host {
            Some(host) => client::jobs(host, command.unwrap_or(JobsCommand::List), args.json),
            None => Err(anyhow::anyhow!(
                "`runseal jobs` needs --host: jobs are runseald's (a local `runseal run` is a process of your own)"
            )),
        },
        Command::Export {
            runtime,
            destination,
            registry,
            mount_from,
        } => export::run(
            &locate(&runtime)?,
            &destination,
            &registry,
            &mount_from,
            args.json,
        ),
        Command::Sbom { runtime } => sbom::run(&locate(&runtime)?),
        Command::Import { source, options } => {
            import::run(&root, &source, None, &options, args.json)
        }
        Command::Install { source, options } => {
            import::run(&root, &source, Some("docker"), &options, args.json)
        }
        Command::Generate { what } => generate::run(what),
    }
}
