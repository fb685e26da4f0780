//! `/v1/builds`: runtimes built from setup scripts in the overlay builder, then sealed and
//! verified, as resources whose status and log stream like a job's. Scripts must lie under
//! a `--script-dir`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State as Shared};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::State;
use crate::body::{Body, Params};
use crate::confine::{beneath, Kind};
use crate::errors::{ApiError, ErrorBody};
use crate::helper::{BuildReport, BuildWork, Verify};
use crate::jobs::{CreateQuery, OutputQuery};
use crate::server::Caller;
use crate::tasks::{About, Status, Stdin, Task};

type Ctx = Shared<Arc<State>>;

pub fn routes() -> OpenApiRouter<Arc<State>> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get))
        .routes(routes!(log))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BuildBody {
    /// The setup script, run as `sh SCRIPT ROOT`; it must lie under a `--script-dir`.
    #[schema(value_type = String)]
    script: PathBuf,
    /// The runtime dir's name under the root; else the last line the script prints.
    name: Option<String>,
    /// Profiles to seal with, like `runseal build --profile`; else detected.
    #[serde(default)]
    profiles: Vec<String>,
}

/// What a build was asked to do.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BuildAbout {
    #[schema(value_type = String)]
    script: PathBuf,
    name: Option<String>,
}

impl BuildAbout {
    /// Its strings' bytes and the rest, as [`crate::jobs::JobAbout::weight`] counts them.
    pub fn weight(&self) -> u64 {
        let name = self.name.as_ref().map_or(0, String::len);
        (self.script.as_os_str().len() + name) as u64 + 384
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct BuildView {
    id: String,
    #[serde(flatten)]
    about: BuildAbout,
    #[serde(flatten)]
    status: Status,
    /// The runtime dir built, once sealed.
    #[schema(value_type = Option<String>)]
    runtime: Option<PathBuf>,
    /// The sealed runtime's inventory.
    #[schema(value_type = Option<Object>)]
    seal: Option<serde_json::Value>,
    verify: Option<Verify>,
    /// Why the build failed; the script's own output is in the log.
    error: Option<String>,
}

/// The build's view; `None` for a job.
fn view(task: &Task) -> Option<BuildView> {
    let About::Build(about) = &task.about else {
        return None;
    };
    let report: BuildReport = task.report();
    Some(BuildView {
        id: task.id.clone(),
        about: about.clone(),
        status: task.status(),
        runtime: report.runtime,
        seal: report.seal,
        verify: report.verify,
        error: report.error,
    })
}

fn view_json(task: &Task) -> serde_json::Value {
    serde_json::to_value(view(task)).unwrap_or_default()
}

fn build(state: &State, id: &str, caller: &Caller) -> Result<(Arc<Task>, BuildView), ApiError> {
    state.tasks.find(id, "build", view, caller)
}

/// Starts a build; it is queued while `--max-jobs` jobs and builds run.
#[utoipa::path(post, path = "/v1/builds", tag = "builds", request_body = BuildBody, params(CreateQuery),
    responses(
        (status = 201, description = "The build, queued or running; with `attach`, its log stream", body = BuildView),
        (status = 403, description = "Only root may build", body = ErrorBody),
        (status = 422, description = "The script is not a file under a --script-dir", body = ErrorBody),
        (status = 429, description = "Too many jobs and builds queued", body = ErrorBody)))]
async fn create(
    Shared(state): Ctx,
    caller: Caller,
    Params(query): Params<CreateQuery>,
    Body(body): Body<BuildBody>,
) -> Result<Response, ApiError> {
    caller.require_operator("build runtimes")?;
    let script = beneath(
        &body.script,
        &state.script_dirs,
        "script",
        "--script-dir",
        Kind::File,
        None,
    )?;
    let work = BuildWork {
        script: script.clone(),
        name: body.name.clone(),
        root: state.root.clone(),
        profile_dir: state.profile_dir.clone(),
        profiles: body.profiles,
    };
    let about = BuildAbout {
        script,
        name: body.name,
    };
    let task = state.tasks.start(
        "build",
        &work,
        Stdin::Empty,
        About::Build(about),
        false,
        &caller,
    )?;
    crate::jobs::created(task, query.attach, view_json).await
}

/// The builds the daemon knows: queued, running, and ended ones for `--keep-finished`.
#[utoipa::path(get, path = "/v1/builds", tag = "builds", responses((status = 200, description = "The builds, oldest first", body = Vec<BuildView>)))]
async fn list(Shared(state): Ctx, caller: Caller) -> Json<Vec<BuildView>> {
    Json(state.tasks.views(&caller, view))
}

/// One build's state and, once it has ended, its seal and verify results.
#[utoipa::path(get, path = "/v1/builds/{id}", tag = "builds", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The build", body = BuildView),
        (status = 404, description = "No such build", body = ErrorBody)))]
async fn get(
    Shared(state): Ctx,
    caller: Caller,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<BuildView>, ApiError> {
    Ok(Json(build(&state, &id, &caller)?.1))
}

/// The build's log (the script's and the builder's output) as NDJSON frames, like a job's
/// output, then `{"end": BUILD}`.
#[utoipa::path(get, path = "/v1/builds/{id}/log", tag = "builds",
    params(("id" = String, Path), OutputQuery),
    responses(
        (status = 200, description = "NDJSON: frames, then `{\"end\": BUILD}` once it has ended", content_type = "application/x-ndjson", body = crate::spool::Frame),
        (status = 404, description = "No such build", body = ErrorBody)))]
async fn log(
    Shared(state): Ctx,
    caller: Caller,
    UrlPath(id): UrlPath<String>,
    Params(query): Params<OutputQuery>,
) -> Result<Response, ApiError> {
    let (task, _) = build(&state, &id, &caller)?;
    crate::tasks::ndjson(task, query.reading(), view_json).await
}
