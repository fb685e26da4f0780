//! The JSON request body extractor: its rejections (not JSON, too large, an unknown field,
//! a wrong type) are [`ApiError`]s, and a body that trickles in too slowly is cut off, so a
//! client that sends headers and then stalls holds no connection slot for long.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, OptionalFromRequest, Request};
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use crate::errors::ApiError;

/// How long a request body may take to arrive once its headers have.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Body<T>(pub T);

fn rejected(rejection: JsonRejection) -> ApiError {
    ApiError::new(rejection.status(), rejection.body_text())
}

fn too_slow(_: tokio::time::error::Elapsed) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "the request body did not arrive within {} s",
            BODY_TIMEOUT.as_secs()
        ),
    )
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(body) = tokio::time::timeout(
            BODY_TIMEOUT,
            <Json<T> as FromRequest<S>>::from_request(req, state),
        )
        .await
        .map_err(too_slow)?
        .map_err(rejected)?;
        Ok(Body(body))
    }
}

impl<S: Send + Sync, T: DeserializeOwned> OptionalFromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let body = tokio::time::timeout(
            BODY_TIMEOUT,
            <Json<T> as OptionalFromRequest<S>>::from_request(req, state),
        )
        .await
        .map_err(too_slow)?
        .map_err(rejected)?;
        Ok(body.map(|Json(body)| Body(body)))
    }
}

/// Query parameters whose rejections (an unknown or malformed parameter) are [`ApiError`]s.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let axum::extract::Query(params) =
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
        Ok(Params(params))
    }
}
