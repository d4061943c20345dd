//! Patches of stored objects, chosen by the request's Content-Type: JSON merge patch
//! (RFC 7386) and Kubernetes' strategic merge patch (`strategic.rs`, with the list
//! strategies of the built-in kinds in `schema.rs`). Pure.

pub mod schema;
pub mod strategic;

use serde_json::Value;

use super::object;
use super::status::ApiError;

/// The patch formats the API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Strategic,
}

impl PatchType {
    /// The format named by a PATCH request's Content-Type; the others are refused (415).
    pub fn from_content_type(ct: &str) -> Result<PatchType, ApiError> {
        let media = ct.split(';').next().unwrap_or_default().trim();
        match media {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            _ => Err(ApiError::new(415, "UnsupportedMediaType", format!(
                "the patch type {media:?} is not supported; use application/strategic-merge-patch+json or application/merge-patch+json"
            ))),
        }
    }

    /// Apply `patch` to the object `current` of kind `kind`.
    pub fn apply(self, kind: &str, current: &Value, patch: &Value) -> Result<Value, ApiError> {
        match self {
            PatchType::Merge => {
                let mut merged = current.clone();
                object::merge_patch(&mut merged, patch);
                Ok(merged)
            }
            PatchType::Strategic => strategic::apply(current, patch, schema::root(kind))
                .map_err(|e| ApiError::bad_request(format!("the strategic merge patch cannot be applied: {}", e.0))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(PatchType::from_content_type("application/strategic-merge-patch+json").unwrap(), PatchType::Strategic);
        assert_eq!(PatchType::from_content_type("application/merge-patch+json; charset=utf-8").unwrap(), PatchType::Merge);
        for refused in ["application/json-patch+json", "application/apply-patch+yaml", "application/json", ""] {
            assert_eq!(PatchType::from_content_type(refused).unwrap_err().code, 415, "{refused}");
        }
    }

    #[test]
    fn merge_and_strategic_differ_on_keyed_lists() {
        let live = json!({"spec": {"containers": [{"name": "a", "image": "a"}]}});
        let p = json!({"spec": {"containers": [{"name": "b", "image": "b"}]}});
        let merged = PatchType::Merge.apply("Pod", &live, &p).unwrap();
        assert_eq!(merged["spec"]["containers"].as_array().unwrap().len(), 1);
        let strategic = PatchType::Strategic.apply("Pod", &live, &p).unwrap();
        assert_eq!(strategic["spec"]["containers"].as_array().unwrap().len(), 2);
        let bad = PatchType::Strategic.apply("Pod", &live, &json!({"spec": {"containers": [{"image": "x"}]}}));
        assert_eq!(bad.unwrap_err().code, 400);
    }
}
