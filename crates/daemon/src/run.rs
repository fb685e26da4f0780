//! `POST /v1/build` and `POST /v1/run`: a build or a job in a helper process, answered when
//! it ends.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use axum::extract::State as Shared;
use axum::http::StatusCode;
use axum::Json;
use runseal_sandbox::{JobRequest, Limits, Network};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::State;
use crate::body::Body;
use crate::errors::{internal, unprocessable, ApiError, ErrorBody};
use crate::helper::{BuildInput, RunInput, RunReport};
use crate::runtimes::{blocking, locate};

type Ctx = Shared<Arc<State>>;

pub fn routes() -> OpenApiRouter<Arc<State>> {
    OpenApiRouter::new()
        .routes(routes!(build))
        .routes(routes!(run))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BuildBody {
    #[schema(value_type = String)]
    script: PathBuf,
    name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Built {
    runtime: String,
    log: String,
}

/// Builds a runtime from a setup script and seals it; answers when done.
#[utoipa::path(post, path = "/v1/build", tag = "builds", request_body = BuildBody,
    responses((status = 200, body = Built), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn build(Shared(state): Ctx, Body(body): Body<BuildBody>) -> Result<Json<Built>, ApiError> {
    let input = BuildInput {
        script: body.script,
        name: body.name,
        root: state.root.clone(),
        profile_dir: state.profile_dir.clone(),
    };
    let out = helper(&state, "build", &input).await?;
    if !out.status.success() {
        return Err(unprocessable(out.stderr.text().trim().to_string()));
    }
    Ok(Json(Built {
        runtime: out.stdout.text().trim().to_string(),
        log: out.stderr.text(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RunBody {
    runtime: String,
    command: Vec<String>,
    /// `K=V` strings, like `runseal run --env`.
    #[serde(default)]
    env: Vec<String>,
    #[schema(value_type = Option<String>)]
    workdir: Option<PathBuf>,
    /// Like `runseal run --memory`: `512M`, `2G`.
    memory: Option<String>,
    /// Size of the job's /tmp, like `runseal run --tmp-size`.
    tmp_size: Option<String>,
    cpus: Option<f64>,
    pids: Option<u64>,
    timeout_secs: Option<f64>,
    /// `none` (loopback only, the default) or `host`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    network: Network,
}

#[derive(Debug, Serialize, ToSchema)]
struct Ran {
    exit_code: i32,
    /// Killed for reaching its memory limit (exit code 137).
    oom: bool,
    stdout: String,
    stderr: String,
    /// The job printed more than the daemon keeps (4 MiB a stream); the rest was dropped.
    stdout_truncated: bool,
    stderr_truncated: bool,
}

/// Runs a command in a sealed runtime and answers when it ends; a client that goes away
/// takes its job with it.
#[utoipa::path(post, path = "/v1/run", tag = "jobs", request_body = RunBody,
    responses((status = 200, body = Ran), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn run(Shared(state): Ctx, Body(body): Body<RunBody>) -> Result<Json<Ran>, ApiError> {
    let dir = {
        let state = Arc::clone(&state);
        let runtime = body.runtime.clone();
        blocking(move || {
            let dir = locate(&state, &runtime)?;
            runseal_seal::runnable_config(&dir)?;
            Ok(dir)
        })
        .await?
    };
    let request = job_request(body, &state.defaults)?;
    let report = tempfile::NamedTempFile::new().map_err(internal)?;
    let out = helper(
        &state,
        "run",
        &RunInput {
            runtime_dir: dir,
            request,
            report: report.path().to_path_buf(),
        },
    )
    .await?;
    let said: RunReport = std::fs::read(report.path())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    Ok(Json(Ran {
        exit_code: out.status.code().unwrap_or(runseal_sandbox::SETUP_FAILED),
        oom: said.oom,
        stdout: out.stdout.text(),
        stderr: out.stderr.text(),
        stdout_truncated: out.stdout.truncated,
        stderr_truncated: out.stderr.truncated,
    }))
}

fn job_request(body: RunBody, defaults: &Limits) -> Result<JobRequest, ApiError> {
    if body.command.is_empty() {
        return Err(unprocessable("command is empty"));
    }
    let positive = |name: &str, value: Option<f64>| match value {
        Some(v) if !(v.is_finite() && v > 0.0 && v < 1e9) => {
            Err(unprocessable(format!("{name} must be a number above zero")))
        }
        other => Ok(other),
    };
    let env =
        runseal_sandbox::parse_env(&body.env).map_err(|e| unprocessable(format!("env {e}")))?;
    let size = |name: &str, value: Option<&str>| {
        value
            .map(runseal_sandbox::parse_size)
            .transpose()
            .map_err(|e| unprocessable(format!("{name}: {e}")))
    };
    let limits = Limits {
        memory_bytes: size("memory", body.memory.as_deref())?,
        tmp_size: size("tmp_size", body.tmp_size.as_deref())?,
        cpus: positive("cpus", body.cpus)?,
        pids: body.pids.filter(|&p| p > 0),
        timeout: positive("timeout_secs", body.timeout_secs)?
            .map(std::time::Duration::from_secs_f64),
    }
    .or(defaults);
    Ok(JobRequest {
        command: body.command,
        env,
        workdir: body.workdir,
        limits,
        network: body.network,
        user: None,
    })
}

/// Starts `--helper MODE` with `input` as JSON on its stdin and collects its output.
/// What a helper printed, each stream cut at [`MAX_OUTPUT`] bytes.
struct HelperOutput {
    status: std::process::ExitStatus,
    stdout: Captured,
    stderr: Captured,
}

/// One output stream of a helper: its first bytes, and whether there were more.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// How much of each output stream of a job or build the daemon keeps for its answer; the
/// rest is read and dropped, so a job printing gigabytes costs the daemon no memory.
const MAX_OUTPUT: u64 = 4 << 20;

async fn capture(stream: Option<impl tokio::io::AsyncRead + Unpin>) -> std::io::Result<Captured> {
    let Some(mut stream) = stream else {
        return Ok(Captured::default());
    };
    let mut bytes = Vec::new();
    (&mut stream)
        .take(MAX_OUTPUT)
        .read_to_end(&mut bytes)
        .await?;
    let rest = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await?;
    Ok(Captured {
        bytes,
        truncated: rest > 0,
    })
}

/// Starts `--helper MODE` with `input` as JSON on its stdin and collects its output. At
/// most `--max-jobs` helpers run at once (429 beyond), and a helper whose request is
/// dropped (the client went away) is killed, which ends its job or build.
async fn helper(
    state: &State,
    mode: &str,
    input: &impl Serialize,
) -> Result<HelperOutput, ApiError> {
    let _slot = Arc::clone(&state.slots).try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "runseald already runs {} jobs and builds; try again when one has ended",
                state.max_jobs
            ),
        )
    })?;
    let json = serde_json::to_vec(input).map_err(internal)?;
    let mut child = tokio::process::Command::new(&state.helper)
        .args(["--helper", mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(internal)?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| internal("helper has no stdin"))?;
    stdin.write_all(&json).await.map_err(internal)?;
    drop(stdin);
    let (stdout, stderr) =
        tokio::try_join!(capture(child.stdout.take()), capture(child.stderr.take()))
            .map_err(internal)?;
    let status = child.wait().await.map_err(internal)?;
    Ok(HelperOutput {
        status,
        stdout,
        stderr,
    })
}
