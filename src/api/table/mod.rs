//! Server-side Tables (`meta.k8s.io/v1` Table), which `kubectl get` asks for and prints:
//! whether a request's `Accept` asks for one, the Table of a list, an object or a watch
//! event, and the text helpers the columns share (Kubernetes' human durations, selectors).
//! The columns and cells of each kind are in `rows`. Pure: the time comes in.

mod rows;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::resources::Resource;
use super::status::ApiError;

/// A Table column, as `columnDefinitions` describes it.
pub struct Column {
    pub name: &'static str,
    /// `string`, `integer`, `boolean` or `date`.
    pub kind: &'static str,
    /// 0 is always printed; 1 only with `kubectl get -o wide`.
    pub priority: u8,
    pub description: &'static str,
}

/// The Table version a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V1beta1,
}

/// What a row carries of its object (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    /// The object's metadata as a `PartialObjectMetadata` (Kubernetes' default).
    Metadata,
    Object,
}

impl Include {
    pub fn parse(v: Option<&str>) -> Result<Include, ApiError> {
        match v {
            None | Some("") | Some("Metadata") => Ok(Include::Metadata),
            Some("None") => Ok(Include::None),
            Some("Object") => Ok(Include::Object),
            Some(other) => Err(ApiError::bad_request(format!(
                "includeObject={other:?} is not one of None, Metadata or Object"
            ))),
        }
    }
}

/// Whether `accept` asks for a Table before anything else this server can answer: media
/// types are taken in the order given (as Kubernetes negotiates them), and the first one
/// served decides. A plain JSON (or protobuf, which is answered in JSON) type first means
/// no Table.
pub fn requested(accept: Option<&str>) -> Option<Version> {
    for media in accept?.split(',') {
        let mut parts = media.split(';').map(str::trim);
        let base = parts.next().unwrap_or_default().to_ascii_lowercase();
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let param = |k: &str| params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.as_str());
        match param("as") {
            Some("Table") if param("g") == Some("meta.k8s.io") && base == "application/json" => match param("v") {
                Some("v1") => return Some(Version::V1),
                Some("v1beta1") => return Some(Version::V1beta1),
                _ => continue,
            },
            // Another transformation (PartialObjectMetadata...) is not served: try the next.
            Some(_) => continue,
            None => return None,
        }
    }
    None
}

/// The Table of `objects` of kind `res`, at list revision `revision`.
pub fn of_list(res: &Resource, objects: &[Value], revision: Option<&str>, v: Version, include: Include, now: DateTime<Utc>) -> Value {
    let columns = rows::columns(res.kind);
    let rows: Vec<Value> = objects.iter().map(|o| row(res, o, include, now)).collect();
    let mut table = json!({
        "kind": "Table",
        "apiVersion": match v { Version::V1 => "meta.k8s.io/v1", Version::V1beta1 => "meta.k8s.io/v1beta1" },
        "metadata": {},
        "columnDefinitions": columns.iter().map(definition).collect::<Vec<_>>(),
        "rows": rows,
    });
    if let Some(rv) = revision {
        table["metadata"]["resourceVersion"] = rv.into();
    }
    table
}

/// The Table of one object (a GET of a name, a watch event's object).
pub fn of_object(res: &Resource, obj: &Value, v: Version, include: Include, now: DateTime<Utc>) -> Value {
    let rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str);
    of_list(res, std::slice::from_ref(obj), rv, v, include, now)
}

fn definition(c: &Column) -> Value {
    let mut d = json!({"name": c.name, "type": c.kind, "format": "", "description": c.description, "priority": c.priority});
    if c.name == "Name" {
        d["format"] = "name".into();
    }
    d
}

fn row(res: &Resource, obj: &Value, include: Include, now: DateTime<Utc>) -> Value {
    let mut row = json!({"cells": rows::cells(res.kind, obj, now)});
    match include {
        Include::None => {}
        Include::Metadata => {
            row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))});
        }
        Include::Object => row["object"] = obj.clone(),
    }
    if let Some(conditions) = row_conditions(res.kind, obj) {
        row["conditions"] = conditions;
    }
    row
}

/// The rows of finished pods carry a `Completed` condition, as Kubernetes' do; no other
/// row has conditions.
fn row_conditions(kind: &str, obj: &Value) -> Option<Value> {
    let message = match obj.pointer("/status/phase").and_then(Value::as_str)? {
        "Succeeded" => "The pod has completed successfully.",
        "Failed" => "The pod failed.",
        _ => return None,
    };
    let phase = obj.pointer("/status/phase").cloned();
    (kind == "Pod").then(|| json!([{"type": "Completed", "status": "True", "reason": phase, "message": message}]))
}

/// How long ago `t` (RFC 3339) was, as Kubernetes prints ages; `<unknown>` without one.
pub fn since(t: Option<&str>, now: DateTime<Utc>) -> String {
    match t.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => human((now - t.with_timezone(&Utc)).num_seconds()),
        None => "<unknown>".to_string(),
    }
}

/// Kubernetes' human-readable duration (apimachinery's `duration.HumanDuration`): the
/// precision shrinks as the duration grows (`90s`, `5m3s`, `15m`, `3h20m`, `30h`, `3d4h`,
/// `40d`, `2y10d`, `9y`). A little negative skew between clocks reads as `0s`.
pub fn human(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    let s = seconds.max(0);
    let (minutes, hours) = (s / 60, s / 3600);
    let days = hours / 24;
    let with = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{small_unit}")
        }
    };
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if minutes < 10 => with(minutes, "m", s % 60, "s"),
        _ if minutes < 180 => format!("{minutes}m"),
        _ if hours < 8 => with(hours, "h", minutes % 60, "m"),
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 24 * 8 => with(days, "d", hours % 24, "h"),
        _ if hours < 24 * 365 * 2 => format!("{days}d"),
        _ if hours < 24 * 365 * 8 => with(days / 365, "y", days % 365, "d"),
        _ => format!("{}y", days / 365),
    }
}

/// `k=v,k2=v2` (sorted by key) for a label map, `<none>` when empty.
pub fn labels(map: &Value) -> String {
    let mut pairs: Vec<String> = map
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    none_if_empty(pairs.join(","))
}

/// A LabelSelector as Kubernetes prints it (`app=web,tier in (a,b),!legacy`), `<none>` when
/// it selects by nothing.
pub fn selector(sel: &Value) -> String {
    let mut terms: Vec<(String, String)> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())))
        .collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let mut values: Vec<&str> = e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        values.sort();
        let term = match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other}"),
        };
        terms.push((key.to_string(), term));
    }
    terms.sort();
    none_if_empty(terms.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(","))
}

pub fn none_if_empty(s: String) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests;
