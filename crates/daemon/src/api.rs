//! The HTTP API: its shared state, and the router assembled from each resource's routes,
//! whose annotations are also the OpenAPI document.

use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use runseal_sandbox::Limits;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::errors::{no_such_endpoint, no_such_method};
use crate::tasks::Registry;

pub struct State {
    pub root: PathBuf,
    pub profile_dir: PathBuf,
    /// Limits for run requests that set none.
    pub defaults: Limits,
    pub tasks: Arc<Registry>,
    /// Where build scripts may lie (canonical).
    pub script_dirs: Vec<PathBuf>,
    /// Where work dirs may lie (canonical).
    pub workdir_roots: Vec<PathBuf>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "runseald",
        description = "The runseal service: sealed runtimes and sandboxed jobs over a Unix socket. \
            Every error is `{\"error\": {\"code\", \"message\"}}`; request bodies refuse unknown fields."
    ),
    tags(
        (name = "runtimes", description = "Runtimes under the daemon's root, named, never given as paths"),
        (name = "jobs", description = "Commands run in a sealed runtime"),
        (name = "builds", description = "Runtimes built by setup scripts, then sealed"),
    )
)]
struct ApiDoc;

fn routes() -> OpenApiRouter<Arc<State>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(crate::runtimes::routes())
        .merge(crate::jobs::routes())
        .merge(crate::builds::routes())
}

/// The OpenAPI 3.1 document of this API, as served at `GET /v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The API's router; request bodies of at most `max_body` bytes.
pub fn router(state: Arc<State>, max_body: usize) -> Router {
    let (router, doc) = routes().split_for_parts();
    router
        .route("/v1/openapi.json", get(move || async move { Json(doc) }))
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(no_such_method)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(crate::server::log_request))
        .with_state(state)
}
