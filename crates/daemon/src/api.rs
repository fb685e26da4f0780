//! The HTTP routes. Every handler resolves the runtime like the CLI does and calls the same
//! library functions; blocking work runs on the blocking pool, jobs and builds in helpers.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State as Shared};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use runseal_sandbox::{JobRequest, Limits, Network};
use runseal_seal::SealOptions;
use runseal_spec::RuleOptions;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helper::{BuildInput, RunInput, RunReport};

#[derive(Debug, Clone)]
pub struct State {
    pub root: PathBuf,
    pub profile_dir: PathBuf,
    /// This binary, started as `--helper run|build`.
    pub helper: PathBuf,
    /// Limits for run requests that set none.
    pub defaults: Limits,
    /// How many jobs and builds may run at once, and the permits for them.
    pub max_jobs: usize,
    pub slots: Arc<tokio::sync::Semaphore>,
}

type Ctx = Shared<Arc<State>>;

pub fn router(state: State) -> Router {
    Router::new()
        .route("/v1/runtimes", get(list))
        .route("/v1/runtimes/{spec}", get(info).delete(remove))
        .route("/v1/runtimes/{spec}/validate", post(validate))
        .route("/v1/runtimes/{spec}/seal", post(seal))
        .route("/v1/build", post(build))
        .route("/v1/run", post(run))
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(no_such_method)
        .with_state(Arc::new(state))
}

/// An error as the API reports it: a status and `{"error": {"code", "message"}}`, where the
/// code names the status for machines and the message says what went wrong for people.
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = serde_json::json!({
            "error": { "code": self.code(), "message": self.message }
        });
        (self.status, Json(error)).into_response()
    }
}

/// A JSON request body whose rejections (not JSON, too large, an unknown field, a wrong
/// type) are reported as every other error is, not as axum's plain text.
pub struct Body<T>(pub T);

fn rejected(rejection: axum::extract::rejection::JsonRejection) -> ApiError {
    ApiError {
        status: rejection.status(),
        message: rejection.body_text(),
    }
}

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let Json(body) = Json::<T>::from_request(req, state)
            .await
            .map_err(rejected)?;
        Ok(Body(body))
    }
}

impl<S, T> axum::extract::OptionalFromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(
        req: axum::extract::Request,
        state: &S,
    ) -> Result<Option<Self>, ApiError> {
        let body = <Json<T> as axum::extract::OptionalFromRequest<S>>::from_request(req, state)
            .await
            .map_err(rejected)?;
        Ok(body.map(|Json(body)| Body(body)))
    }
}

async fn no_such_endpoint() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no such endpoint (see runseald --help)".into(),
    }
}

async fn no_such_method() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "this endpoint does not take that method".into(),
    }
}

fn unprocessable(message: impl ToString) -> ApiError {
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: message.to_string(),
    }
}

fn internal(message: impl ToString) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: message.to_string(),
    }
}

impl From<runseal_spec::Error> for ApiError {
    fn from(e: runseal_spec::Error) -> Self {
        let status = match e {
            runseal_spec::Error::UnknownSpec { .. } | runseal_spec::Error::NotARuntime { .. } => {
                StatusCode::NOT_FOUND
            }
            runseal_spec::Error::AmbiguousSpec { .. } | runseal_spec::Error::Yaml { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

impl From<runseal_seal::Error> for ApiError {
    fn from(e: runseal_seal::Error) -> Self {
        match e {
            runseal_seal::Error::Spec(inner) => inner.into(),
            runseal_seal::Error::Busy { .. } | runseal_seal::Error::InUse { .. } => ApiError {
                status: StatusCode::CONFLICT,
                message: e.to_string(),
            },
            e if e.is_runtime_problem() => unprocessable(e),
            e => internal(e),
        }
    }
}

/// Runs blocking library work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(internal)?
}

/// The runtime `spec` names under the daemon's root. A path (anything with a `/`) is not a
/// spec here: a caller names runtimes, never places on the host.
fn locate(state: &State, spec: &str) -> Result<PathBuf, ApiError> {
    if let runseal_spec::RuntimeSpec::Path(_) = runseal_spec::RuntimeSpec::parse(spec) {
        return Err(unprocessable(format!(
            "`{spec}` is a path; runseald takes runtime names under {}",
            state.root.display()
        )));
    }
    Ok(runseal_spec::resolve(&state.root, spec)?)
}

async fn list(Shared(state): Ctx) -> Result<impl IntoResponse, ApiError> {
    blocking(move || Ok(Json(runseal_seal::inventory::list(&state.root)?))).await
}

async fn info(
    Shared(state): Ctx,
    UrlPath(spec): UrlPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    blocking(move || {
        Ok(Json(runseal_seal::inventory::info(&locate(
            &state, &spec,
        )?)?))
    })
    .await
}

async fn validate(
    Shared(state): Ctx,
    UrlPath(spec): UrlPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    blocking(move || {
        let dir = locate(&state, &spec)?;
        Ok(Json(runseal_seal::validate_runtime(
            &dir,
            RuleOptions::default(),
        )?))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealBody {
    #[serde(default)]
    profiles: Vec<String>,
    #[serde(default)]
    dry_run: bool,
}

async fn seal(
    Shared(state): Ctx,
    UrlPath(spec): UrlPath<String>,
    body: Option<Body<SealBody>>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body.map(|Body(b)| b).unwrap_or_default();
    blocking(move || {
        let dir = locate(&state, &spec)?;
        let options = SealOptions {
            dry_run: body.dry_run,
            profiles: body.profiles,
            profile_dirs: vec![state.profile_dir.clone()],
            ..SealOptions::default()
        };
        Ok(Json(runseal_seal::seal(
            &dir,
            &options,
            &runseal_seal::NoProgress,
        )?))
    })
    .await
}

async fn remove(
    Shared(state): Ctx,
    UrlPath(spec): UrlPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    blocking(move || {
        let dir = locate(&state, &spec)?;
        runseal_seal::remove_runtime(&dir)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildBody {
    script: PathBuf,
    name: Option<String>,
}

#[derive(Debug, Serialize)]
struct Built {
    runtime: String,
    log: String,
}

async fn build(
    Shared(state): Ctx,
    Body(body): Body<BuildBody>,
) -> Result<impl IntoResponse, ApiError> {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    runtime: String,
    command: Vec<String>,
    /// `K=V` strings, like `runseal run --env`.
    #[serde(default)]
    env: Vec<String>,
    workdir: Option<PathBuf>,
    /// Like `runseal run --memory`: `512M`, `2G`.
    memory: Option<String>,
    /// Size of the job's /tmp, like `runseal run --tmp-size`.
    tmp_size: Option<String>,
    cpus: Option<f64>,
    pids: Option<u64>,
    timeout_secs: Option<f64>,
    #[serde(default)]
    network: Network,
}

#[derive(Debug, Serialize)]
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

async fn run(Shared(state): Ctx, Body(body): Body<RunBody>) -> Result<impl IntoResponse, ApiError> {
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
    let _slot = Arc::clone(&state.slots)
        .try_acquire_owned()
        .map_err(|_| ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "runseald already runs {} jobs and builds; try again when one has ended",
                state.max_jobs
            ),
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
