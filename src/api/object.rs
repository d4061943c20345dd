//! Pure object rules: name validation, the metadata the store assigns (uid, creation
//! timestamp, generation; resourceVersion is the revision, added on the way out), JSON
//! merge patch, and label/field selectors. No I/O; ids and times are passed in.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::status::ApiError;

/// Kubernetes' request-size limit is 3 MiB; orch documents and enforces the same.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The names of RBAC objects (`system:node`, `edit`...): Kubernetes' path-segment rule,
/// anything but `.` or `..` without `/` or `%`.
pub fn validate_path_segment_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('%') {
        return Err(format!("invalid name {name:?}: may not be '.' or '..' nor contain '/' or '%'"));
    }
    Ok(())
}

/// DNS-1123 subdomain (most kinds) or label (namespaces).
pub fn validate_name(name: &str, label_only: bool) -> Result<(), String> {
    let max = if label_only { 63 } else { 253 };
    let what = if label_only { "a DNS-1123 label" } else { "a DNS-1123 subdomain" };
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !p.starts_with('-')
            && !p.ends_with('-')
    };
    let parts_ok = if label_only { ok_part(name) } else { name.split('.').all(ok_part) };
    if name.is_empty() || name.len() > max || !parts_ok {
        return Err(format!(
            "invalid name {name:?}: must be {what} (lowercase letters, digits and '-', starting and ending \
             with a letter or digit, at most {max} characters)"
        ));
    }
    Ok(())
}

pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.as_object()
}

pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    obj["metadata"].as_object_mut().expect("metadata was just made an object")
}

pub fn name_of(obj: &Value) -> Option<&str> {
    meta(obj)?.get("name")?.as_str()
}

pub fn str_field<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)?.get(field)?.as_str()
}

/// A pod marked for graceful deletion, or None when it should be removed at once (not
/// bound to a node, or a grace period of 0). A second deletion may shorten the grace.
pub fn pod_deletion(pod: &Value, requested: Option<i64>, now: &str) -> Option<Value> {
    if pod.pointer("/spec/nodeName").and_then(Value::as_str).is_none_or(str::is_empty) || requested == Some(0) {
        return None;
    }
    let spec_grace = pod.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64);
    let mut grace = requested.or(spec_grace).unwrap_or(30).max(1);
    let mut out = pod.clone();
    let m = meta_mut(&mut out);
    if let Some(old) = m.get("deletionGracePeriodSeconds").and_then(Value::as_i64) {
        grace = grace.min(old);
    }
    m.entry("deletionTimestamp").or_insert_with(|| now.into());
    m.insert("deletionGracePeriodSeconds".into(), grace.into());
    Some(out)
}

/// Stamp a new object: uid, creationTimestamp, generation 1; drop resourceVersion.
pub fn prepare_create(obj: &mut Value, uid: &str, now: &str) {
    let m = meta_mut(obj);
    m.remove("resourceVersion");
    m.insert("uid".into(), uid.into());
    m.insert("creationTimestamp".into(), now.into());
    m.insert("generation".into(), 1.into());
    m.remove("deletionTimestamp");
}

/// Carry over what the store owns from `current` into an update, and bump generation
/// when anything but metadata and status changed.
pub fn prepare_update(new: &mut Value, current: &Value) {
    let spec_changed = {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("metadata");
                o.remove("status");
            }
            v
        };
        strip(new) != strip(current)
    };
    let old = meta(current).cloned().unwrap_or_default();
    let generation = old.get("generation").and_then(Value::as_i64).unwrap_or(1);
    let m = meta_mut(new);
    m.remove("resourceVersion");
    for owned in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"] {
        match old.get(owned) {
            Some(v) => m.insert(owned.into(), v.clone()),
            None => m.remove(owned),
        };
    }
    m.insert("generation".into(), (generation + i64::from(spec_changed)).into());
}

/// What clients see: the stored object with its resourceVersion.
pub fn with_revision(mut obj: Value, revision: u64) -> Value {
    meta_mut(&mut obj).insert("resourceVersion".into(), revision.to_string().into());
    obj
}

/// RFC 7386 JSON merge patch. Hand-written: it is the RFC's ten-line algorithm.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (_, Some(_)) => {
            *target = Value::Object(Map::new());
            merge_patch(target, patch);
        }
        _ => *target = patch.clone(),
    }
}

/// A parsed label selector (equality- and set-based, as `kubectl -l` accepts).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Selector {
    pub fn parse(s: &str) -> Result<Selector, ApiError> {
        let bad = |why: &str| ApiError::bad_request(format!("invalid label selector {s:?}: {why}"));
        let mut reqs = Vec::new();
        // Split on commas outside parentheses.
        let (mut depth, mut start, mut parts) = (0i32, 0usize, Vec::new());
        for (i, c) in s.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
            let set = |rest: &str| -> Result<Vec<String>, ApiError> {
                let inner = rest.trim().strip_prefix('(').and_then(|r| r.strip_suffix(')')).ok_or_else(|| bad("expected (values)"))?;
                Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
            };
            let req = if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), set(rest)?)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                Requirement::In(k.trim().into(), set(rest)?)
            } else if part.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
                Requirement::Exists(part.to_string())
            } else {
                return Err(bad("unrecognized requirement"));
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            Requirement::NotEq(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        })
    }

    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let labels = meta(obj)
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|l| l.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        self.matches(&labels)
    }
}

/// A field selector: `path=value` / `path!=value` on dotted paths (`spec.nodeName`).
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(Vec<String>, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<FieldSelector, ApiError> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, eq, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!("invalid field selector {part:?}: expected path=value")));
            };
            out.push((path.trim().split('.').map(String::from).collect(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let got = path.iter().try_fold(obj, |v, p| v.get(p)).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            (got.as_deref().unwrap_or("") == want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("web-0", false).is_ok());
        assert!(validate_name("a.b-c", false).is_ok());
        assert!(validate_name("a.b", true).is_err());
        assert!(validate_path_segment_name("system:aggregate-to-view").is_ok());
        for bad in ["", ".", "..", "a/b", "a%2f"] {
            assert!(validate_path_segment_name(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "Web", "-a", "a-", "a_b", &"x".repeat(254)] {
            assert!(validate_name(bad, false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn update_keeps_identity_and_bumps_generation_on_spec_change() {
        let mut current = json!({"metadata": {"name": "a"}, "spec": {"replicas": 1}});
        prepare_create(&mut current, "uid-1", "2026-01-01T00:00:00Z");
        let mut same = json!({"metadata": {"name": "a", "uid": "forged", "labels": {"x": "y"}}, "spec": {"replicas": 1}});
        prepare_update(&mut same, &current);
        assert_eq!((same["metadata"]["uid"].as_str(), same["metadata"]["generation"].as_i64()), (Some("uid-1"), Some(1)));
        let mut changed = json!({"metadata": {"name": "a"}, "spec": {"replicas": 2}});
        prepare_update(&mut changed, &current);
        assert_eq!(changed["metadata"]["generation"], 2);
        assert_eq!(changed["metadata"]["creationTimestamp"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        merge_patch(&mut doc, &json!({"a": [1]}));
        assert_eq!(doc["a"], json!([1]));
    }

    #[test]
    fn label_selectors() {
        let labels: BTreeMap<String, String> = [("app", "web"), ("tier", "fe")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        for (sel, want) in [
            ("app=web", true),
            ("app==web,tier=fe", true),
            ("app!=web", false),
            ("app in (web, api)", true),
            ("tier notin (fe)", false),
            ("app", true),
            ("!app", false),
            ("", true),
            ("missing notin (x)", true),
        ] {
            assert_eq!(Selector::parse(sel).unwrap().matches(&labels), want, "{sel}");
        }
        assert!(Selector::parse("app in web").is_err());
    }

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}});
        assert!(FieldSelector::parse("spec.nodeName=n1").unwrap().matches(&pod));
        assert!(!FieldSelector::parse("spec.nodeName!=n1").unwrap().matches(&pod));
        assert!(FieldSelector::parse("spec.nodeName=").unwrap().matches(&json!({})));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
