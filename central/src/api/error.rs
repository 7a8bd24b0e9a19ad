//! The one place errors become HTTP responses. Client mistakes get the error JSON of the
//! customer module (`{"error": {"code", "message", "field"}}`); internal causes are logged
//! with the request's span and answered with a generic 500 that reveals nothing.

use crate::storage::StorageError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use easyisp_protocol::validate::ValidationError;
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{message}")]
    Validation {
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is not valid JSON for this endpoint: {0}")]
    InvalidJson(String),
    #[error("authentication required: send a valid `Authorization: Bearer TOKEN` header")]
    Unauthorized,
    #[error("invalid tenant, username or password")]
    BadCredentials,
    /// Unknown, used and expired enrollment tokens all get this one answer.
    #[error(
        "this enrollment token is unknown, already used or expired; create a new one with POST /api/routers/:id/enroll"
    )]
    EnrollTokenInvalid,
    #[error("this action needs the permission {0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("{message}")]
    Conflict {
        field: Option<String>,
        message: String,
    },
    #[error("the request body is larger than 1 MiB")]
    PayloadTooLarge,
    #[error("too many requests: retry after {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
    /// A router's agent cannot be reached now (offline, no answer, sync not running): 503.
    #[error("{message}")]
    AgentUnavailable { code: &'static str, message: String },
    /// The router's agent answered that it could not do it: 502.
    #[error("{message}")]
    AgentFailed { code: &'static str, message: String },
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
    field: Option<&'a str>,
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Validation {
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, Option<&str>) {
        match self {
            ApiError::Validation { field, .. } => (
                StatusCode::BAD_REQUEST,
                "validation_failed",
                field.as_deref(),
            ),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", None),
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json", None),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ApiError::BadCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials", None),
            ApiError::EnrollTokenInvalid => {
                (StatusCode::UNAUTHORIZED, "enroll_token_invalid", None)
            }
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", None),
            ApiError::Conflict { field, .. } => {
                (StatusCode::CONFLICT, "conflict", field.as_deref())
            }
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", None),
            ApiError::AgentUnavailable { code, .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, code, None)
            }
            ApiError::AgentFailed { code, .. } => (StatusCode::BAD_GATEWAY, code, None),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %cause, "request failed with an internal error");
        }
        let (status, code, field) = self.parts();
        let body = Body {
            error: Detail {
                code,
                message: self.to_string(),
                field,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::RateLimited { retry_after_secs } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        match e {
            StorageError::NotFound => ApiError::NotFound,
            StorageError::Conflict { field, message } => ApiError::Conflict {
                field: field.map(str::to_string),
                message,
            },
            StorageError::Invalid { field, message } => ApiError::field(field, message),
            StorageError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                ApiError::Conflict {
                    field: None,
                    message: "this already exists".into(),
                }
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::broker::BrokerError> for ApiError {
    fn from(e: crate::broker::BrokerError) -> ApiError {
        match e {
            crate::broker::BrokerError::Storage(e) => e.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> ApiError {
        ApiError::Validation {
            field: Some(e.field.to_string()),
            message: e.to_string(),
        }
    }
}
