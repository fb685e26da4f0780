//! `/v1/jobs` and `POST /v1/run`: commands run in a sealed runtime, as resources to create,
//! watch, stream and cancel, or synchronously, answered when they end.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State as Shared};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use runseal_sandbox::{JobRequest, Limits, Network, User};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::State;
use crate::body::{Body, Params};
use crate::confine::{beneath, Kind};
use crate::errors::{internal, unprocessable, ApiError, ErrorBody};
use crate::helper::{RunReport, RunWork};
use crate::runtimes::{blocking, locate};
use crate::server::Caller;
use crate::spool::Stream;
use crate::tasks::{About, Reading, Status, Stdin, Stop, StopOnDrop, Task};

type Ctx = Shared<Arc<State>>;

pub fn routes() -> OpenApiRouter<Arc<State>> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, delete))
        .routes(routes!(output))
        .routes(routes!(stdin))
        .routes(routes!(run))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// A runtime name under the daemon's root (`openjdk-17`, `java:17`), never a path.
    runtime: String,
    command: Vec<String>,
    /// `K=V` strings, like `runseal run --env`.
    #[serde(default)]
    env: Vec<String>,
    /// Bound at /work; must lie under one of the daemon's `--workdir-root`s.
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
    /// The user to run as, `UID` or `UID:GID` (default 65534:65534), like `runseal run --user`.
    user: Option<String>,
    /// Host files or dirs bound into the job, like `runseal run --volume`; each source must
    /// lie under one of the daemon's `--workdir-root`s.
    #[serde(default)]
    volumes: Vec<VolumeBody>,
    /// The job's stdin as text; else it reads end-of-file.
    stdin: Option<String>,
    /// The job's stdin as base64, for bytes that are not text.
    stdin_b64: Option<String>,
    /// The job's stdin is streamed later, as the body of `PUT /v1/jobs/{id}/stdin`; the job
    /// reads end-of-file when that body ends. Not for `POST /v1/run`.
    #[serde(default)]
    stdin_stream: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeBody {
    #[schema(value_type = String)]
    source: PathBuf,
    #[schema(value_type = String)]
    target: PathBuf,
    #[serde(default)]
    readonly: bool,
}

/// What a job was asked to run, with the limits it runs under.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobAbout {
    runtime: String,
    command: Vec<String>,
    #[schema(value_type = Option<String>)]
    workdir: Option<PathBuf>,
    limits: LimitsView,
}

impl JobAbout {
    /// Its strings' bytes, each with what a heap allocation costs beside, and the rest.
    pub fn weight(&self) -> u64 {
        let strings = self.command.iter().map(String::len).chain([
            self.runtime.len(),
            self.workdir.as_ref().map_or(0, |w| w.as_os_str().len()),
        ]);
        strings.map(|len| len as u64 + 64).sum::<u64>() + 256
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
struct LimitsView {
    memory_bytes: Option<u64>,
    cpus: Option<f64>,
    pids: Option<u64>,
    tmp_size_bytes: Option<u64>,
    timeout_secs: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    id: String,
    #[serde(flatten)]
    about: JobAbout,
    #[serde(flatten)]
    status: Status,
    /// Killed for reaching its memory limit (exit code 137).
    oom: bool,
}

/// The job's view; `None` for a build.
fn view(task: &Task) -> Option<JobView> {
    let About::Job(about) = &task.about else {
        return None;
    };
    Some(JobView {
        id: task.id.clone(),
        about: about.clone(),
        status: task.status(),
        oom: task.report::<RunReport>().oom,
    })
}

fn view_json(task: &Task) -> serde_json::Value {
    serde_json::to_value(view(task)).unwrap_or_default()
}

fn job(state: &State, id: &str, caller: &Caller) -> Result<(Arc<Task>, JobView), ApiError> {
    state.tasks.find(id, "job", view, caller)
}

/// Checks the request and starts its job.
async fn start(
    state: &Arc<State>,
    body: RunBody,
    ephemeral: bool,
    caller: &Caller,
) -> Result<Arc<Task>, ApiError> {
    let streamed = body.stdin_stream;
    let stdin = match (body.stdin.as_deref(), body.stdin_b64.as_deref(), streamed) {
        (None, None, _) => None,
        (Some(text), None, false) => Some(text.as_bytes().to_vec()),
        (None, Some(b64), false) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| unprocessable(format!("stdin_b64: {e}")))?,
        ),
        _ => {
            return Err(unprocessable(
                "give one of stdin, stdin_b64 and stdin_stream",
            ))
        }
    };
    if streamed && ephemeral {
        return Err(unprocessable(
            "stdin_stream: a synchronous run takes its stdin in the request (stdin, stdin_b64); stream it to a job of POST /v1/jobs",
        ));
    }
    let owner = (!caller.is_operator()).then_some(caller.uid);
    if let Some(workdir) = &body.workdir {
        beneath(
            workdir,
            &state.workdir_roots,
            "workdir",
            "--workdir-root",
            Kind::Dir,
            owner,
        )?;
    }
    for volume in &body.volumes {
        let roots = &state.workdir_roots;
        beneath(
            &volume.source,
            roots,
            "volume",
            "--workdir-root",
            Kind::Either,
            owner,
        )?;
    }
    let runtime = body.runtime.clone();
    let runtime_dir = {
        let state = Arc::clone(state);
        let runtime = runtime.clone();
        blocking(move || {
            let dir = locate(&state, &runtime)?;
            runseal_seal::runnable_config(&dir)?;
            Ok(dir)
        })
        .await?
    };
    let request = job_request(body, &state.defaults, caller)?;
    let limits = request.limits;
    let about = JobAbout {
        runtime,
        command: request.command.clone(),
        workdir: request.workdir.clone(),
        limits: LimitsView {
            memory_bytes: limits.memory_bytes,
            cpus: limits.cpus,
            pids: limits.pids,
            tmp_size_bytes: limits.tmp_size,
            timeout_secs: limits.timeout.map(|t| t.as_secs_f64()),
        },
    };
    let work = RunWork {
        runtime_dir,
        request,
    };
    let stdin = match (&stdin, streamed) {
        (Some(bytes), _) => Stdin::Bytes(bytes),
        (None, true) => Stdin::Stream,
        (None, false) => Stdin::Empty,
    };
    state
        .tasks
        .start("run", &work, stdin, About::Job(about), ephemeral, caller)
}

fn job_request(body: RunBody, defaults: &Limits, caller: &Caller) -> Result<JobRequest, ApiError> {
    if body.command.is_empty() {
        return Err(unprocessable("command is empty"));
    }
    bounded("command", &body.command)?;
    bounded("env", &body.env)?;
    if body.volumes.len() > MAX_VOLUMES {
        return Err(unprocessable(format!(
            "volumes: {} of them; at most {MAX_VOLUMES}",
            body.volumes.len()
        )));
    }
    let positive = |name: &str, value: Option<f64>| match value {
        Some(v) if !(v.is_finite() && v > 0.0 && v < 1e9) => {
            Err(unprocessable(format!("{name} must be a number above zero")))
        }
        other => Ok(other),
    };
    let env = runseal_sandbox::parse_env(&body.env, None)
        .map_err(|e| unprocessable(format!("env {e}")))?;
    let size = |name: &str, value: Option<&str>| {
        value
            .map(runseal_sandbox::parse_size)
            .transpose()
            .map_err(|e| unprocessable(format!("{name}: {e}")))
    };
    let asked = Limits {
        memory_bytes: size("memory", body.memory.as_deref())?,
        tmp_size: size("tmp_size", body.tmp_size.as_deref())?,
        cpus: positive("cpus", body.cpus)?,
        pids: body.pids.filter(|&p| p > 0),
        timeout: positive("timeout_secs", body.timeout_secs)?
            .map(std::time::Duration::from_secs_f64),
    };
    if !caller.is_operator() {
        within(&asked, defaults)?;
        if body.network == Network::Host {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "only root may run a job on the host's network",
            ));
        }
    }
    let limits = asked.or(defaults);
    Ok(JobRequest {
        command: body.command,
        env,
        workdir: body.workdir,
        limits,
        network: body.network,
        user: job_user(body.user.as_deref(), caller)?,
        volumes: body
            .volumes
            .into_iter()
            .map(|v| runseal_sandbox::Volume {
                source: v.source,
                target: v.target,
                readonly: v.readonly,
            })
            .collect(),
    })
}

/// The most strings a command or env may have, and their bytes together: what a kept job
/// costs the daemon stays small whatever a client sends.
const MAX_STRINGS: usize = 4096;
const MAX_STRING_BYTES: usize = 256 << 10;
const MAX_VOLUMES: usize = 64;

fn bounded(field: &str, strings: &[String]) -> Result<(), ApiError> {
    let bytes: usize = strings.iter().map(String::len).sum();
    if strings.len() > MAX_STRINGS || bytes > MAX_STRING_BYTES {
        return Err(unprocessable(format!(
            "{field}: {} strings, {bytes} bytes; at most {MAX_STRINGS} strings and {MAX_STRING_BYTES} bytes",
            strings.len()
        )));
    }
    Ok(())
}

/// Refuses limits above the operator's: for a client other than root, the config's job
/// limits are ceilings, not defaults.
fn within(asked: &Limits, ceiling: &Limits) -> Result<(), ApiError> {
    fn check<T: PartialOrd + std::fmt::Display>(
        name: &str,
        asked: Option<T>,
        ceiling: Option<T>,
        unit: &str,
    ) -> Result<(), ApiError> {
        match (asked, ceiling) {
            (Some(asked), Some(ceiling)) if asked > ceiling => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("{name} is above runseald's limit for clients other than root ({ceiling}{unit})"),
            )),
            _ => Ok(()),
        }
    }
    check("memory", asked.memory_bytes, ceiling.memory_bytes, " bytes")?;
    check("tmp_size", asked.tmp_size, ceiling.tmp_size, " bytes")?;
    check("pids", asked.pids, ceiling.pids, "")?;
    check("cpus", asked.cpus, ceiling.cpus, "")?;
    let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64());
    check(
        "timeout_secs",
        secs(asked.timeout),
        secs(ceiling.timeout),
        " s",
    )
}

/// The user a job runs as: as asked, for root; for another client, its own uid and gid
/// (asking for any other is refused), so that no client gets a uid it does not have.
fn job_user(asked: Option<&str>, caller: &Caller) -> Result<Option<User>, ApiError> {
    let asked = asked
        .map(User::parse)
        .transpose()
        .map_err(|e| unprocessable(format!("user {e}")))?;
    if caller.is_operator() {
        return Ok(asked);
    }
    let own = User {
        uid: caller.uid,
        gid: caller.gid,
    };
    match asked {
        None => Ok(Some(own)),
        Some(user) if user == own => Ok(Some(own)),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "a client other than root runs jobs as itself ({}:{})",
                own.uid, own.gid
            ),
        )),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CreateQuery {
    /// Answer with the output instead of the view: NDJSON, `{"start": VIEW}`, the frames as
    /// they are written, then `{"end": VIEW}`. A client that goes away before the end stops
    /// the task (SIGTERM, then SIGKILL after the grace period), as nobody is left to read it.
    #[serde(default)]
    pub attach: bool,
}

/// The answer to a create: the view, or with `attach` the output from its start line on.
pub async fn created(
    task: Arc<Task>,
    attach: bool,
    view: fn(&Task) -> serde_json::Value,
) -> Result<Response, ApiError> {
    if attach {
        // Made before any await: a client gone at the next one stops its task.
        let guard = StopOnDrop(Arc::clone(&task), Stop::Term);
        return crate::tasks::ndjson(task, Reading::Attached(guard), view).await;
    }
    Ok((StatusCode::CREATED, Json(view(&task))).into_response())
}

/// Starts a job; it is queued while `--max-jobs` others run.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = RunBody, params(CreateQuery),
    responses(
        (status = 201, description = "The job, queued or running; with `attach`, its output stream", body = JobView),
        (status = 403, description = "A client other than root asked for another user, limits above the operator's or the host's network", body = ErrorBody),
        (status = 404, description = "No such runtime", body = ErrorBody),
        (status = 422, description = "The request is invalid or the runtime is not runnable", body = ErrorBody),
        (status = 429, description = "Too many jobs queued, or too many of this client's", body = ErrorBody)))]
async fn create(
    Shared(state): Ctx,
    caller: Caller,
    Params(query): Params<CreateQuery>,
    Body(body): Body<RunBody>,
) -> Result<Response, ApiError> {
    let task = start(&state, body, false, &caller).await?;
    created(task, query.attach, view_json).await
}

/// The jobs the daemon knows: queued, running, and ended ones for `--keep-finished`.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", responses((status = 200, description = "The jobs this client may see, oldest first", body = Vec<JobView>)))]
async fn list(Shared(state): Ctx, caller: Caller) -> Json<Vec<JobView>> {
    Json(state.tasks.views(&caller, view))
}

/// One job's state, times, exit status and limits.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "No such job, or another client's", body = ErrorBody)))]
async fn get(
    Shared(state): Ctx,
    caller: Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(job(&state, &id, &caller)?.1))
}

/// Cancels a queued or running job (SIGTERM, then SIGKILL after the grace period): 202;
/// forgets an ended one and its output: 204.
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses(
        (status = 202, description = "Being stopped", body = JobView),
        (status = 204, description = "It had ended, and is forgotten"),
        (status = 404, description = "No such job, or another client's", body = ErrorBody)))]
async fn delete(
    Shared(state): Ctx,
    caller: Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let (task, _) = job(&state, &id, &caller)?;
    Ok(if state.tasks.delete(&task) {
        (StatusCode::ACCEPTED, Json(view(&task))).into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OutputQuery {
    /// Keep streaming as the output is written, until the job ends.
    #[serde(default)]
    pub follow: bool,
}

impl OutputQuery {
    pub fn reading(&self) -> Reading {
        if self.follow {
            Reading::Follow
        } else {
            Reading::Written
        }
    }
}

/// The job's stdout and stderr as NDJSON, one frame a chunk:
/// `{"stream": "stdout"|"stderr", "offset", "data"}` (UTF-8) or `"data_b64"` (other bytes),
/// then `{"end": JOB}` once the job has ended.
#[utoipa::path(get, path = "/v1/jobs/{id}/output", tag = "jobs",
    params(("id" = String, Path), OutputQuery),
    responses(
        (status = 200, description = "NDJSON: frames, then `{\"end\": JOB}` once it has ended", content_type = "application/x-ndjson", body = crate::spool::Frame),
        (status = 404, description = "No such job, or another client's", body = ErrorBody)))]
async fn output(
    Shared(state): Ctx,
    caller: Caller,
    UrlPath(id): UrlPath<String>,
    Params(query): Params<OutputQuery>,
) -> Result<Response, ApiError> {
    let (task, _) = job(&state, &id, &caller)?;
    crate::tasks::ndjson(task, query.reading(), view_json).await
}

#[derive(Debug, Serialize, ToSchema)]
struct StdinWritten {
    /// Bytes the job's stdin took.
    written: u64,
    /// The job closed its stdin (or ended) before the body did; the rest was not written.
    closed: bool,
}

/// Streams the request body into the job's stdin (a job made with `stdin_stream`); the job
/// reads end-of-file when the body ends. One writer per job.
#[utoipa::path(put, path = "/v1/jobs/{id}/stdin", tag = "jobs", params(("id" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "The body was written, or the job stopped reading", body = StdinWritten),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job's stdin is not streamed, already taken, or the job has ended", body = ErrorBody)))]
async fn stdin(
    Shared(state): Ctx,
    caller: Caller,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Body,
) -> Result<Json<StdinWritten>, ApiError> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let (task, _) = job(&state, &id, &caller)?;
    let pipe = task.take_stdin().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("job `{id}` takes no streamed stdin: it was not made with stdin_stream, another client streams it, or the job has ended"),
        )
    })?;
    let mut pipe = tokio::net::unix::pipe::Sender::from_owned_fd(pipe).map_err(internal)?;
    let mut chunks = body.into_data_stream();
    let mut written = StdinWritten {
        written: 0,
        closed: false,
    };
    loop {
        // A body that stalls does not hold its connection past the job's end.
        let chunk = tokio::select! {
            chunk = chunks.next() => chunk,
            () = task.ended() => {
                written.closed = true;
                break;
            }
        };
        let Some(chunk) = chunk else { break };
        // A client gone mid-body: the job reads end-of-file, as from a closed terminal.
        let chunk = chunk.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
        match pipe.write_all(&chunk).await {
            Ok(()) => written.written += chunk.len() as u64,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                written.closed = true;
                break;
            }
            Err(e) => return Err(internal(e)),
        }
    }
    Ok(Json(written))
}

#[derive(Debug, Serialize, ToSchema)]
struct Ran {
    exit_code: i32,
    /// The signal that ended the job, if one did.
    signal: Option<i32>,
    /// Killed for reaching its memory limit (exit code 137).
    oom: bool,
    stdout: String,
    stderr: String,
    /// The job printed more than the answer holds (4 MiB a stream); the rest is not in it.
    stdout_truncated: bool,
    stderr_truncated: bool,
}

/// How much of each stream a synchronous answer holds.
const MAX_ANSWER: usize = 4 << 20;

/// Runs a command in a sealed runtime and answers when it ends, with the job's output (4
/// MiB a stream at most); a client that goes away takes its job with it.
#[utoipa::path(post, path = "/v1/run", tag = "jobs", request_body = RunBody,
    responses(
        (status = 200, description = "The job ended; its exit code and output", body = Ran),
        (status = 403, description = "A client other than root asked for another user, limits above the operator's or the host's network", body = ErrorBody),
        (status = 404, description = "No such runtime", body = ErrorBody),
        (status = 422, description = "The request is invalid or the runtime is not runnable", body = ErrorBody),
        (status = 429, description = "Too many jobs queued, or too many of this client's", body = ErrorBody)))]
async fn run(
    Shared(state): Ctx,
    caller: Caller,
    Body(body): Body<RunBody>,
) -> Result<Json<Ran>, ApiError> {
    let task = start(&state, body, true, &caller).await?;
    // Made before any await: a client gone at the next one takes its job with it.
    let guard = StopOnDrop(Arc::clone(&task), Stop::Kill);
    // Opened now: the job is forgotten, its spool removed, as soon as it ends.
    let mut reader = task.output().await.map_err(internal)?;
    task.ended().await;
    drop(guard);
    let mut streams = [Vec::new(), Vec::new()];
    let mut truncated = [false, false];
    while let Some((stream, _, data)) = reader.next(false).await.map_err(internal)? {
        let kept = &mut streams[stream as usize];
        let room = MAX_ANSWER - kept.len();
        truncated[stream as usize] |= data.len() > room;
        kept.extend_from_slice(&data[..data.len().min(room)]);
    }
    let progress = reader.progress();
    let job = view(&task).ok_or_else(|| internal("a job without its view"))?;
    let [stdout, stderr] = streams.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    Ok(Json(Ran {
        exit_code: job
            .status
            .exit_code
            .unwrap_or(runseal_sandbox::SETUP_FAILED),
        signal: job.status.signal,
        oom: job.oom,
        stdout,
        stderr,
        stdout_truncated: truncated[0] || progress.dropped(Stream::Stdout),
        stderr_truncated: truncated[1] || progress.dropped(Stream::Stderr),
    }))
}
