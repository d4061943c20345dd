//! Patches of stored objects, chosen by the request's Content-Type: JSON patch (RFC 6902,
//! the `json-patch` crate), JSON merge patch (RFC 7386) and Kubernetes' strategic merge
//! patch (`strategic.rs`, with the list strategies of the built-in kinds in `schema.rs`).
//! Pure.

pub mod schema;
pub mod strategic;

use serde_json::Value;

use super::object;
use super::status::ApiError;

/// The patch formats the API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
}

impl PatchType {
    /// The format named by a PATCH request's Content-Type; the others are refused (415).
    pub fn from_content_type(ct: &str) -> Result<PatchType, ApiError> {
        let media = ct.split(';').next().unwrap_or_default().trim();
        match media {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            _ => Err(ApiError::new(415, "UnsupportedMediaType", format!(
                "the patch type {media:?} is not supported; use application/strategic-merge-patch+json, application/merge-patch+json or application/json-patch+json"
            ))),
        }
    }

    /// Apply `patch` to the object `current` of kind `kind`.
    pub fn apply(self, kind: &str, current: &Value, patch: &Value) -> Result<Value, ApiError> {
        match self {
            PatchType::Json => {
                // A list of operations; Kubernetes answers a malformed one with 400 and one
                // that cannot be applied (a failed `test`, a missing path) with 422.
                let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                    .map_err(|e| ApiError::bad_request(format!("the JSON patch is malformed: {e}")))?;
                let mut patched = current.clone();
                json_patch::patch(&mut patched, &ops).map_err(|e| ApiError::invalid(format!("the JSON patch cannot be applied: {e}")))?;
                Ok(patched)
            }
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
        assert_eq!(PatchType::from_content_type("application/json-patch+json").unwrap(), PatchType::Json);
        for refused in ["application/apply-patch+yaml", "application/json", ""] {
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

    #[test]
    fn json_patches_apply_in_order_and_refuse_what_does_not_hold() {
        let live = json!({"metadata": {"name": "d", "resourceVersion": "7"}, "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "a:1"}]}}}});
        let ops = json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/spec/template/spec/containers/-", "value": {"name": "b", "image": "b:1"}},
            {"op": "remove", "path": "/spec/template/spec/containers/0"},
        ]);
        let patched = PatchType::Json.apply("Deployment", &live, &ops).unwrap();
        assert_eq!(patched["spec"]["replicas"], 3);
        assert_eq!(patched["spec"]["template"]["spec"]["containers"], json!([{"name": "b", "image": "b:1"}]));
        let stale = json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "6"}, {"op": "replace", "path": "/spec/replicas", "value": 9}]);
        assert_eq!(PatchType::Json.apply("Deployment", &live, &stale).unwrap_err().code, 422, "a failed test applies nothing");
        assert_eq!(PatchType::Json.apply("Deployment", &live, &json!([{"op": "remove", "path": "/nope"}])).unwrap_err().code, 422);
        assert_eq!(PatchType::Json.apply("Deployment", &live, &json!({"op": "add"})).unwrap_err().code, 400, "not a list of operations");
        assert_eq!(PatchType::Json.apply("Deployment", &live, &json!([{"op": "frobnicate", "path": "/a"}])).unwrap_err().code, 400);
    }
}
