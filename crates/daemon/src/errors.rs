//! Every error the API gives: a status and `{"error": {"code", "message"}}`, where the code
//! names the status for machines and the message says what went wrong for people. Axum's
//! own rejections, unknown endpoints and methods are reported the same way.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

pub struct ApiError {
    status: StatusCode,
    message: String,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `forbidden`, `not_found`, `method_not_allowed`, `conflict`, `payload_too_large`,
    /// `unsupported_media_type`, `unprocessable`, `too_many_requests`, `unavailable`,
    /// `timeout` or `internal`.
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl ToString) -> ApiError {
        ApiError {
            status,
            message: message.to_string(),
        }
    }

    fn code(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::REQUEST_TIMEOUT => "timeout",
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
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

pub fn unprocessable(message: impl ToString) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
}

pub fn not_found(message: impl ToString) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, message)
}

pub fn internal(message: impl ToString) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
}

pub async fn no_such_endpoint() -> ApiError {
    not_found("no such endpoint (GET /v1/openapi.json lists them)")
}

pub async fn no_such_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method",
    )
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
        ApiError::new(status, e)
    }
}

impl From<runseal_seal::Error> for ApiError {
    fn from(e: runseal_seal::Error) -> Self {
        match e {
            runseal_seal::Error::Spec(inner) => inner.into(),
            runseal_seal::Error::Busy { .. } | runseal_seal::Error::InUse { .. } => {
                ApiError::new(StatusCode::CONFLICT, e)
            }
            e if e.is_runtime_problem() => unprocessable(e),
            e => internal(e),
        }
    }
}
