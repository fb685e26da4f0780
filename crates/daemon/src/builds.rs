//! `/v1/builds`: runtimes built from setup scripts in the overlay builder, then sealed and
//! verified, as resources whose status and log stream like a job's. Scripts must lie under
//! a `--script-dir`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State as Shared};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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
use crate::jobs::OutputQuery;
use crate::server::Caller;
use crate::tasks::{About, Status, Task};

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
}

/// What a build was asked to do.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BuildAbout {
    #[schema(value_type = String)]
    script: PathBuf,
    name: Option<String>,
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
#[utoipa::path(post, path = "/v1/builds", tag = "builds", request_body = BuildBody,
    responses((status = 403, body = ErrorBody), (status = 201, body = BuildView), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
async fn create(
    Shared(state): Ctx,
    caller: Caller,
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
    };
    let about = BuildAbout {
        script,
        name: body.name,
    };
    let task = state
        .tasks
        .start("build", &work, None, About::Build(about), false, &caller)?;
    Ok((StatusCode::CREATED, Json(view(&task))).into_response())
}

/// The builds the daemon knows: queued, running, and ended ones for `--keep-finished`.
#[utoipa::path(get, path = "/v1/builds", tag = "builds", responses((status = 200, body = Vec<BuildView>)))]
async fn list(Shared(state): Ctx, caller: Caller) -> Json<Vec<BuildView>> {
    Json(state.tasks.views(&caller, view))
}

/// One build's state and, once it has ended, its seal and verify results.
#[utoipa::path(get, path = "/v1/builds/{id}", tag = "builds", params(("id" = String, Path)),
    responses((status = 200, body = BuildView), (status = 404, body = ErrorBody)))]
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
    responses((status = 200, content_type = "application/x-ndjson", body = crate::spool::Frame),
        (status = 404, body = ErrorBody)))]
async fn log(
    Shared(state): Ctx,
    caller: Caller,
    UrlPath(id): UrlPath<String>,
    Params(query): Params<OutputQuery>,
) -> Result<Response, ApiError> {
    let (task, _) = build(&state, &id, &caller)?;
    crate::tasks::ndjson(task, query.follow, view_json).await
}
