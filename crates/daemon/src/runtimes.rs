//! `/v1/runtimes`: list, info, validate, seal and remove, resolving a runtime like the CLI
//! does and calling the same library functions, off the async threads.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State as Shared};
use axum::Json;
use runseal_seal::SealOptions;
use runseal_spec::RuleOptions;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::State;
use crate::body::Body;
use crate::errors::{internal, unprocessable, ApiError, ErrorBody};
use crate::server::Caller;

type Ctx = Shared<Arc<State>>;
/// The library's own JSON (inventory, reports), documented as objects.
type Answer = Json<serde_json::Value>;

pub fn routes() -> OpenApiRouter<Arc<State>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(info, remove))
        .routes(routes!(validate))
        .routes(routes!(seal))
        .routes(routes!(du))
        .routes(routes!(gc))
}

/// Runs blocking library work off the async threads.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(internal)?
}

fn json(value: impl serde::Serialize) -> Result<Answer, ApiError> {
    Ok(Json(serde_json::to_value(value).map_err(internal)?))
}

/// The runtime `spec` names under the daemon's root. A path (anything with a `/`) is not a
/// spec here: a caller names runtimes, never places on the host.
pub fn locate(state: &State, spec: &str) -> Result<PathBuf, ApiError> {
    if let runseal_spec::RuntimeSpec::Path(_) = runseal_spec::RuntimeSpec::parse(spec) {
        return Err(unprocessable(format!(
            "`{spec}` is a path; runseald takes runtime names under {}",
            state.root.display()
        )));
    }
    Ok(runseal_spec::resolve(&state.root, spec)?)
}

/// The runtimes under the root, each with its version, language and whether it is sealed.
#[utoipa::path(get, path = "/v1/runtimes", tag = "runtimes",
    responses(
        (status = 200, description = "The runtimes, as `runseal list --json` prints them", body = Vec<Object>),
        (status = "5XX", description = "The root could not be read", body = ErrorBody)))]
async fn list(Shared(state): Ctx) -> Result<Answer, ApiError> {
    blocking(move || json(runseal_seal::inventory::list(&state.root)?)).await
}

/// What a sealed runtime holds: size, files, mounts, and why each path is in.
#[utoipa::path(get, path = "/v1/runtimes/{spec}", tag = "runtimes",
    params(("spec" = String, Path, description = "`name`, `name@version`, `lang:version`; never a path")),
    responses(
        (status = 200, description = "As `runseal info --json` prints it", body = Object),
        (status = 404, description = "No such runtime", body = ErrorBody),
        (status = 422, description = "Not a runtime name, or not sealed", body = ErrorBody)))]
async fn info(Shared(state): Ctx, UrlPath(spec): UrlPath<String>) -> Result<Answer, ApiError> {
    blocking(move || json(runseal_seal::inventory::info(&locate(&state, &spec)?)?)).await
}

/// Checks every runtime.yml rule.
#[utoipa::path(post, path = "/v1/runtimes/{spec}/validate", tag = "runtimes",
    params(("spec" = String, Path, description = "a runtime name, never a path")),
    responses(
        (status = 200, description = "The report, valid or not, as `runseal validate --json` prints it", body = Object),
        (status = 404, description = "No such runtime", body = ErrorBody),
        (status = 422, description = "Not a runtime name, or its runtime.yml cannot be read", body = ErrorBody)))]
async fn validate(Shared(state): Ctx, UrlPath(spec): UrlPath<String>) -> Result<Answer, ApiError> {
    blocking(move || {
        let dir = locate(&state, &spec)?;
        json(runseal_seal::validate_runtime(
            &dir,
            RuleOptions::default(),
        )?)
    })
    .await
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SealBody {
    /// Profiles to apply beside the one the runtime's language picks.
    #[serde(default)]
    profiles: Vec<String>,
    /// Plan only; write nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Seals a runtime: its closure copied into `isolated/`, runtime.yml rewritten.
#[utoipa::path(post, path = "/v1/runtimes/{spec}/seal", tag = "runtimes",
    params(("spec" = String, Path, description = "a runtime name, never a path")),
    request_body(content = Option<SealBody>),
    responses(
        (status = 200, description = "The seal's report, as `runseal seal --json` prints it", body = Object),
        (status = 403, description = "Only root may seal", body = ErrorBody),
        (status = 404, description = "No such runtime", body = ErrorBody),
        (status = 409, description = "Another seal of it runs", body = ErrorBody),
        (status = 422, description = "The runtime cannot be sealed; the message says why", body = ErrorBody)))]
async fn seal(
    Shared(state): Ctx,
    caller: Caller,
    UrlPath(spec): UrlPath<String>,
    body: Option<Body<SealBody>>,
) -> Result<Answer, ApiError> {
    caller.require_operator("seal runtimes")?;
    let body = body.map(|Body(b)| b).unwrap_or_default();
    blocking(move || {
        let dir = locate(&state, &spec)?;
        let options = SealOptions {
            dry_run: body.dry_run,
            profiles: body.profiles,
            profile_dirs: vec![state.profile_dir.clone()],
            store: Some(state.root.clone()),
            ..SealOptions::default()
        };
        json(runseal_seal::seal(
            &dir,
            &options,
            &runseal_seal::NoProgress,
        )?)
    })
    .await
}

#[derive(Debug, Serialize, ToSchema)]
struct Removed {
    /// The runtime dir that was removed.
    #[schema(value_type = String)]
    removed: PathBuf,
}

/// Deletes a runtime; refused (409) while a seal of it or a job on it runs.
#[utoipa::path(delete, path = "/v1/runtimes/{spec}", tag = "runtimes",
    params(("spec" = String, Path, description = "a runtime name, never a path")),
    responses(
        (status = 200, description = "Removed", body = Removed),
        (status = 403, description = "Only root may remove runtimes", body = ErrorBody),
        (status = 404, description = "No such runtime", body = ErrorBody),
        (status = 409, description = "A seal of it or a job on it runs", body = ErrorBody),
        (status = 422, description = "Not a runtime name", body = ErrorBody)))]
async fn remove(
    Shared(state): Ctx,
    caller: Caller,
    UrlPath(spec): UrlPath<String>,
) -> Result<Json<Removed>, ApiError> {
    caller.require_operator("remove runtimes")?;
    blocking(move || {
        let dir = locate(&state, &spec)?;
        runseal_seal::remove_runtime(&dir)?;
        Ok(Json(Removed { removed: dir }))
    })
    .await
}

/// Each runtime's files and sizes under the root, and the store's, as `runseal du --json`
/// prints them.
#[utoipa::path(get, path = "/v1/du", tag = "runtimes",
    responses(
        (status = 200, description = "Logical, physical and exclusive sizes per runtime, the total and the store", body = Object),
        (status = "5XX", description = "The root could not be read", body = ErrorBody)))]
async fn du(Shared(state): Ctx) -> Result<Answer, ApiError> {
    blocking(move || json(runseal_seal::usage::usage(&state.root)?)).await
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GcBody {
    /// Say what would be removed; remove nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Removes store entries no runtime links, what killed seals, imports and removals left, and
/// replaced trees no job runs on, as `runseal gc` does; safe while seals and jobs run.
#[utoipa::path(post, path = "/v1/gc", tag = "runtimes", request_body(content = Option<GcBody>),
    responses(
        (status = 200, description = "What was removed (or would be), and what was busy and left", body = Object),
        (status = 403, description = "Only root may collect", body = ErrorBody)))]
async fn gc(
    Shared(state): Ctx,
    caller: Caller,
    body: Option<Body<GcBody>>,
) -> Result<Answer, ApiError> {
    caller.require_operator("collect garbage")?;
    let dry_run = body.is_some_and(|Body(b)| b.dry_run);
    blocking(move || json(runseal_seal::store::gc(&state.root, dry_run)?)).await
}
