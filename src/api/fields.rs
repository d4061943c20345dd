//! Server-side field validation (`fieldValidation=Strict|Warn|Ignore`, Warn by default as
//! in Kubernetes): the fields of a request body that the kind's schema does not have, found
//! by comparing the body with what the typed round trip kept (`Resource::validate` drops
//! what it does not know). Strict refuses them with Kubernetes' "strict decoding error",
//! Warn names them in `Warning` headers, Ignore drops them silently. Pure.

use std::collections::HashMap;

use serde_json::Value;

use super::resources::Resource;
use super::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ignore,
    Warn,
    Strict,
}

impl Mode {
    pub fn of(q: &HashMap<String, String>) -> Result<Mode, ApiError> {
        match q.get("fieldValidation").map(String::as_str) {
            None | Some("") | Some("Warn") => Ok(Mode::Warn),
            Some("Ignore") => Ok(Mode::Ignore),
            Some("Strict") => Ok(Mode::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation={other:?} is not one of Ignore, Warn or Strict"
            ))),
        }
    }
}

/// The paths (`spec.template.spec.containers[0].bogus`) of what `input` has and `kept`
/// (the same object after the typed round trip) lost. Nulls are absent, not unknown.
pub fn unknown(input: &Value, kept: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(input, kept, "", &mut out);
    out
}

fn walk(input: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (input, kept) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let here = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match b.get(k) {
                    Some(w) => walk(v, w, &here, out),
                    None if v.is_null() => {}
                    None => out.push(here),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                walk(v, w, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// What `mode` makes of the unknown fields of a body of kind `res`: an error (Strict), the
/// warnings to send (Warn), or nothing.
pub fn judge(res: &Resource, mode: Mode, unknown: &[String]) -> Result<Vec<String>, ApiError> {
    if unknown.is_empty() || mode == Mode::Ignore {
        return Ok(Vec::new());
    }
    let each: Vec<String> = unknown.iter().map(|p| format!("unknown field {p:?}")).collect();
    if mode == Mode::Strict {
        return Err(ApiError::bad_request(format!(
            "{kind} in version {v:?} cannot be handled as a {kind}: strict decoding error: {}",
            each.join(", "),
            kind = res.kind,
            v = res.version,
        )));
    }
    Ok(each)
}

/// The unknown fields of `body` for kind `res` (a whole object), by its round trip.
pub fn of_body(res: &Resource, body: &Value) -> Result<Vec<String>, ApiError> {
    let kept = res.typed(body).map_err(ApiError::invalid)?;
    Ok(unknown(body, &kept))
}

/// The `Warning` header values for `warnings` (code 299, as Kubernetes sends them).
pub fn warning_headers(warnings: &[String]) -> Vec<axum::http::HeaderValue> {
    warnings
        .iter()
        .filter_map(|w| axum::http::HeaderValue::from_str(&format!("299 - {}", serde_json::Value::from(w.as_str()))).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::resources;

    #[test]
    fn unknown_fields_are_named_by_path() {
        let deploy = resources::by_plural("apps", "deployments").unwrap();
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "colour": "red"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "replica": 3, "template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}, {"name": "d", "image": "i", "imagePolicy": "x"}]}}},
            "status": null});
        let found = of_body(deploy, &body).unwrap();
        assert_eq!(found, ["metadata.colour", "spec.replica", "spec.template.spec.containers[1].imagePolicy"]);
        let err = judge(deploy, Mode::Strict, &found).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err.message.starts_with(r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "metadata.colour""#), "{}", err.message);
        assert_eq!(judge(deploy, Mode::Warn, &found).unwrap().len(), 3);
        assert!(judge(deploy, Mode::Ignore, &found).unwrap().is_empty());
        let secret = resources::by_plural("", "secrets").unwrap();
        assert!(of_body(secret, &json!({"metadata": {"name": "s"}, "stringData": {"a": "b"}})).unwrap().is_empty());
    }

    #[test]
    fn modes_come_from_the_query() {
        let q = |v: &str| HashMap::from([("fieldValidation".to_string(), v.to_string())]);
        assert_eq!(Mode::of(&HashMap::new()).unwrap(), Mode::Warn);
        assert_eq!(Mode::of(&q("Strict")).unwrap(), Mode::Strict);
        assert_eq!(Mode::of(&q("strict")).unwrap_err().code, 400);
    }
}
