//! The `/scale` subresource (autoscaling/v1 `Scale`) of Deployments, ReplicaSets and
//! StatefulSets, which `kubectl scale` and autoscalers use: the Scale an object shows, and
//! the replica count a Scale (written whole or patched) asks for. Pure; the handler reads
//! and writes the object.

use serde_json::{json, Value};

use super::patch::PatchType;
use super::resources::Resource;
use super::status::ApiError;
use super::table;

/// Kinds with a `/scale`.
pub fn scalable(res: &Resource) -> bool {
    matches!((res.group, res.kind), ("apps", "Deployment" | "ReplicaSet" | "StatefulSet"))
}

/// The Scale of `obj`: its desired replicas, the replicas it has, and its pods' selector.
pub fn of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let mut metadata = json!({});
    for field in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(v) = meta.get(field) {
            metadata[field] = v.clone();
        }
    }
    let selector = match table::selector(&obj["spec"]["selector"]) {
        none if none == "<none>" => String::new(),
        s => s,
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// The replicas a Scale written whole asks for, and the resourceVersion it was read at (a
/// precondition, as on any update).
pub fn requested(name: &str, scale: &Value) -> Result<(i64, Option<String>), ApiError> {
    if let Some(kind) = scale.get("kind").and_then(Value::as_str) {
        if kind != "Scale" {
            return Err(ApiError::bad_request(format!("the body is a {kind}, not a Scale")));
        }
    }
    if let Some(n) = scale.pointer("/metadata/name").and_then(Value::as_str) {
        if n != name {
            return Err(ApiError::bad_request(format!("metadata.name must be {name:?}, as in the request path")));
        }
    }
    let invalid = |why: String| ApiError::invalid(format!("Scale.autoscaling {name:?} is invalid: spec.replicas: {why}"));
    let replicas = match scale.pointer("/spec/replicas") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_i64().filter(|n| i32::try_from(*n).is_ok()).ok_or_else(|| invalid(format!("Invalid value: {v}: must be an integer")))?,
    };
    if replicas < 0 {
        return Err(invalid(format!("Invalid value: {replicas}: must be greater than or equal to 0")));
    }
    let rv = scale.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    Ok((replicas, rv))
}

/// The replicas a patch of `obj`'s Scale asks for. Only `spec.replicas` of a Scale is
/// written back; the rest of it is read-only, and a change to it is ignored, as in
/// Kubernetes.
pub fn patched(name: &str, obj: &Value, patch: &Value, kind: PatchType) -> Result<i64, ApiError> {
    let next = kind.apply("Scale", &of(obj), patch)?;
    Ok(requested(name, &next)?.0)
}

/// The merge patch that sets `replicas` on the object, under `rv` if given.
pub fn object_patch(replicas: i64, rv: Option<&str>) -> Value {
    let mut p = json!({"spec": {"replicas": replicas}});
    if let Some(rv) = rv {
        p["metadata"] = json!({"resourceVersion": rv});
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy() -> Value {
        json!({"metadata": {"name": "web", "namespace": "d", "uid": "u1", "resourceVersion": "12", "labels": {"x": "y"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}})
    }

    #[test]
    fn a_scale_shows_desired_current_and_selector() {
        let s = of(&deploy());
        assert_eq!(s, json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": "web", "namespace": "d", "uid": "u1", "resourceVersion": "12"},
            "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web"}}));
        assert_eq!(of(&json!({"metadata": {"name": "x"}, "spec": {}}))["status"]["selector"], "");
    }

    #[test]
    fn writes_and_patches_set_replicas_only() {
        let body = json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "web", "resourceVersion": "12"}, "spec": {"replicas": 5}});
        assert_eq!(requested("web", &body).unwrap(), (5, Some("12".into())));
        assert_eq!(requested("web", &json!({"spec": {"replicas": -1}})).unwrap_err().code, 422);
        assert_eq!(requested("web", &json!({"spec": {"replicas": "two"}})).unwrap_err().code, 422);
        assert_eq!(requested("web", &json!({"kind": "Deployment"})).unwrap_err().code, 400);
        assert_eq!(requested("web", &json!({"metadata": {"name": "other"}})).unwrap_err().code, 400);

        let merge = json!({"spec": {"replicas": 0}});
        assert_eq!(patched("web", &deploy(), &merge, PatchType::Merge).unwrap(), 0);
        let json_patch = json!([{"op": "replace", "path": "/spec/replicas", "value": 7}]);
        assert_eq!(patched("web", &deploy(), &json_patch, PatchType::Json).unwrap(), 7);
        let failing = json!([{"op": "test", "path": "/spec/replicas", "value": 9}]);
        assert_eq!(patched("web", &deploy(), &failing, PatchType::Json).unwrap_err().code, 422);
        assert_eq!(object_patch(4, Some("12")), json!({"spec": {"replicas": 4}, "metadata": {"resourceVersion": "12"}}));
    }
}
