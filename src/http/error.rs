//! Every error the API returns, rendered as `{"error": {"code", "message", "details"}}`.
//!
//! [`ErrorBody`] is both what is serialised and what the OpenAPI document shows, so the
//! two cannot drift apart.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::ingest::IngestError;
use crate::store::StoreError;
use crate::wire::WireError;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`) and for people (`message`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable: `invalid_query`, `invalid_field`, `invalid_path`,
    /// `inconsistent` (422: a rule between fields, or against the server's clock),
    /// `malformed_json`, `invalid_timestamp`, `unsupported_version`, `too_many_alerts`,
    /// `body_too_large`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `rate_limited`, `unavailable`, `internal`, ...
    #[schema(example = "invalid_query")]
    pub code: String,
    /// One sentence for a person; for a client error it starts with the field.
    #[schema(example = "limit: must be a number from 1 to 1000")]
    pub message: String,
    /// Present for errors about one input: `field` names it (a query parameter, a
    /// path segment or the JSON path in the body, such as `alerts[1].startsAt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ErrorDetails>)]
    pub details: Option<Value>,
}

/// Details of an error: `field` names the input of an error about one input; a refusal
/// carries its facts under keys of its own (a Flagger gate's 403: the verdict, the
/// decision, the freezes; an expired approval's 409: `expired_actions`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetails {
    /// The offending input.
    #[schema(example = "limit")]
    pub field: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    /// The message people read.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(StatusCode::BAD_REQUEST, code, format!("{field}: {message}"))
            .with_details(json!({ "field": field }))
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    pub fn forbidden(role: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the {role} role may not use this route"),
        )
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route or resource",
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                details: self.details,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<WireError> for ApiError {
    /// 400 for what the document's schemas state; 422 for the rules they cannot state
    /// (between fields, or against our clock), which the operations describe in words.
    fn from(err: WireError) -> Self {
        let mut error = ApiError::bad_request(err.code, &err.field, err.message);
        if err.code == crate::wire::INCONSISTENT {
            error.status = StatusCode::UNPROCESSABLE_ENTITY;
        }
        error
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Invalid(message) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
            }
            StoreError::Unavailable(_) => {
                tracing::error!(error = %err, "store unavailable");
                ApiError::unavailable("the store is unavailable; retry later")
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::internal()
            }
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(err: IngestError) -> Self {
        match err {
            IngestError::Closed => ApiError::unavailable("shutting down; retry later"),
            // Already logged by the writer that failed.
            IngestError::Store(_) => {
                ApiError::unavailable("the store could not commit; retry later")
            }
            IngestError::Record(err) => err.into(),
        }
    }
}
