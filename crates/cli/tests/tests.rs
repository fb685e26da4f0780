//! End-to-end tests of the `runseal` binary on real runtimes. Tests that need root say so
//! through `util::require_root`: without it they fail, unless `RUNSEAL_ALLOW_SKIP=1` asks
//! for a printed skip instead.

#[macro_use]
mod util;

mod bad_input;
mod build;
mod client;
mod crash;
mod docs;
mod generate;
mod job_env;
mod joblet_forms;
mod languages;
mod learn;
mod limits;
mod logging;
mod oci;
mod run;
mod runtimes;
mod sbom;
mod seal_java;
mod security_closure;
mod security_jobs;
mod security_sandbox;
mod security_seal;
mod store;
mod transcripts;
mod validate;
