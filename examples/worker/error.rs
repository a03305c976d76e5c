//! Error answers: `{"error": "...", "field": "..."}` with a status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use jobcell::Error;

use crate::request::Legacy;

/// An error answer: status, message and (for 400) the request field at fault.
#[derive(Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn bad(field: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
            field: Some(field.to_string()),
        }
    }

    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

    pub fn not_found(id: &str) -> ApiError {
        ApiError::new(404, format!("no job with id {id:?}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.field {
            Some(f) => json!({"error": self.message, "field": f}),
            None => json!({"error": self.message}),
        };
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, axum::Json(body)).into_response();
        match self.status {
            401 => {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"jobcell\""),
                );
            }
            503 => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        r
    }
}

/// The answer to a library error from building or submitting a job: 400
/// naming the request field when the input is at fault.
pub fn submit_error(e: &Error, legacy: &Legacy) -> ApiError {
    let field = match e {
        Error::EmptyProgram | Error::ProgramNotFound { .. } => Some("command".to_string()),
        Error::NulByte { what, .. } if what.contains("argument") => Some("args".to_string()),
        Error::NulByte { what, .. } if what.contains("environment") => Some("env".to_string()),
        Error::NulByte { .. } => Some("command".to_string()),
        Error::CurrentDirNotFound { .. } => Some("cwd".to_string()),
        Error::InvalidSetting { name, .. } if name.contains("environment") => {
            Some("env".to_string())
        }
        Error::InvalidSetting { name, .. } => Some(match *name {
            "files" | "collect" | "cwd" | "hostname" => name.to_string(),
            "workdir" => "files".to_string(),
            other => other.to_string(),
        }),
        Error::InvalidPath { .. } => Some("cwd".to_string()),
        Error::InvalidLimit { name, .. } => Some(match *name {
            "memory" if legacy.max_memory.is_some() => "limits.maxMemory".to_string(),
            "cpu_percent" if legacy.max_cpu.is_some() => "limits.maxCPU".to_string(),
            "io_read_bps" | "io_write_bps" if legacy.max_iobps.is_some() => {
                "limits.maxIOBPS".to_string()
            }
            n => format!("limits.{n}"),
        }),
        _ => None,
    };
    match (field, e) {
        (Some(f), _) => ApiError::bad(&f, e.to_string()),
        (None, Error::Refused { .. }) => ApiError::new(503, e.to_string()),
        (None, Error::ControllerUnavailable { limit, .. }) => {
            ApiError::bad(&format!("limits.{limit}"), e.to_string())
        }
        (None, _) => ApiError::new(500, e.to_string()),
    }
}
