//! API errors as Kubernetes `Status` objects (reason + code), and their HTTP responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(404, "NotFound", format!("{what} not found"))
    }

    pub fn already_exists(what: impl std::fmt::Display) -> Self {
        Self::new(409, "AlreadyExists", format!("{what} already exists"))
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "Conflict", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, "RequestEntityTooLarge", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl From<orch_raft::ProposeError> for ApiError {
    fn from(e: orch_raft::ProposeError) -> Self {
        use orch_raft::ProposeError::*;
        match e {
            NoLeader | NotLeader { .. } => ApiError::unavailable(format!("no quorum: {e}")),
            Unknown(_) => ApiError::timeout(format!("the request may or may not have been applied: {e}")),
            Fatal(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<orch_raft::types::StorageError> for ApiError {
    fn from(e: orch_raft::types::StorageError) -> Self {
        ApiError::internal(format!("storage: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self.to_status())).into_response()
    }
}

/// What a DELETE answers, as Kubernetes' generic registry does: kinds whose storage returns
/// the deleted object (pods, services, volumes and claims) answer with it; the others with
/// a `Success` Status naming what was deleted (`details.kind` is the resource, as there).
pub fn deleted(res: &super::resources::Resource, obj: Value) -> Value {
    if matches!(res.kind, "Pod" | "Service" | "PersistentVolume" | "PersistentVolumeClaim") {
        return obj;
    }
    let meta = &obj["metadata"];
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": meta["name"], "group": res.group, "kind": res.plural, "uid": meta["uid"]},
    })
}
