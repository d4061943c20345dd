//! How orchctl shows objects: kubectl-style tables (per-kind columns, `-o wide`), YAML
//! and JSON. Pure: values in, text out; `now` is passed in for ages.

use chrono::{DateTime, Utc};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Wide,
    Yaml,
    Json,
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The string at `ptr`, or `empty` when it is missing or "".
fn s_or(v: &Value, ptr: &str, empty: &str) -> String {
    match s(v, ptr) {
        "" => empty.to_string(),
        found => found.to_string(),
    }
}

fn n(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// kubectl's compact age: 45s, 12m, 5h, 3d.
pub fn age(created: &str, now: DateTime<Utc>) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(created) else { return "<unknown>".into() };
    let secs = (now - t.with_timezone(&Utc)).num_seconds().max(0);
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

fn columns(kind: &str, wide: bool) -> Vec<&'static str> {
    let mut c = match kind {
        "Pod" => vec!["READY", "STATUS", "RESTARTS"],
        "Deployment" | "StatefulSet" => vec!["READY", "UP-TO-DATE", "AVAILABLE"],
        "ReplicaSet" => vec!["DESIRED", "CURRENT", "READY"],
        "DaemonSet" => vec!["DESIRED", "CURRENT", "READY"],
        "Node" => vec!["STATUS", "ROLES"],
        "Service" => vec!["TYPE", "CLUSTER-IP", "PORT(S)"],
        "Job" => vec!["COMPLETIONS"],
        "CronJob" => vec!["SCHEDULE", "SUSPEND", "ACTIVE"],
        "ConfigMap" | "Secret" => vec!["DATA"],
        "Event" => vec!["TYPE", "REASON", "OBJECT", "MESSAGE"],
        _ => vec![],
    };
    c.push("AGE");
    if wide {
        c.extend(match kind {
            "Pod" => vec!["IP", "NODE"],
            "Node" => vec!["INTERNAL-IP", "PROXY", "PROXY-SYNC"],
            "Deployment" | "ReplicaSet" => vec!["SELECTOR"],
            _ => vec![],
        });
    }
    c
}

fn cell(obj: &Value, col: &str, now: DateTime<Utc>) -> String {
    match col {
        "AGE" => age(s(obj, "/metadata/creationTimestamp"), now),
        "READY" if obj["kind"] == "Pod" => {
            let cs = obj.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
            let total = obj.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
            format!("{}/{}", cs.iter().filter(|c| c["ready"] == true).count(), total)
        }
        "STATUS" if obj["kind"] == "Pod" => s_or(obj, "/status/phase", "Pending"),
        "RESTARTS" => obj
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .map_or(0, |cs| cs.iter().map(|c| c["restartCount"].as_i64().unwrap_or(0)).sum::<i64>())
            .to_string(),
        "READY" if obj["kind"] == "ReplicaSet" || obj["kind"] == "DaemonSet" => {
            n(obj, if obj["kind"] == "DaemonSet" { "/status/numberReady" } else { "/status/readyReplicas" }).to_string()
        }
        "READY" => format!("{}/{}", n(obj, "/status/readyReplicas"), n(obj, "/spec/replicas")),
        "UP-TO-DATE" => n(obj, "/status/updatedReplicas").to_string(),
        "AVAILABLE" => n(obj, "/status/availableReplicas").to_string(),
        "DESIRED" if obj["kind"] == "DaemonSet" => n(obj, "/status/desiredNumberScheduled").to_string(),
        "DESIRED" => n(obj, "/spec/replicas").to_string(),
        "CURRENT" if obj["kind"] == "DaemonSet" => n(obj, "/status/currentNumberScheduled").to_string(),
        "CURRENT" => n(obj, "/status/replicas").to_string(),
        "STATUS" => {
            let ready = obj.pointer("/status/conditions").and_then(Value::as_array).and_then(|cs| {
                cs.iter().find(|c| c["type"] == "Ready").map(|c| c["status"] == "True")
            });
            let base = match ready {
                Some(true) => "Ready",
                Some(false) => "NotReady",
                None => "Unknown",
            };
            if obj.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
                format!("{base},SchedulingDisabled")
            } else {
                base.into()
            }
        }
        "ROLES" => s_or(obj, "/metadata/labels/orch.dev~1role", "<none>"),
        "TYPE" if obj["kind"] == "Event" => s(obj, "/type").into(),
        "TYPE" => s_or(obj, "/spec/type", "ClusterIP"),
        "CLUSTER-IP" => s_or(obj, "/spec/clusterIP", "<pending>"),
        "PORT(S)" => obj
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        "COMPLETIONS" => format!("{}/{}", n(obj, "/status/succeeded"), obj.pointer("/spec/completions").and_then(Value::as_i64).unwrap_or(1)),
        "SCHEDULE" => s(obj, "/spec/schedule").into(),
        "SUSPEND" => (obj.pointer("/spec/suspend") == Some(&Value::Bool(true))).to_string().replace("true", "True").replace("false", "False"),
        "ACTIVE" => obj.pointer("/status/active").and_then(Value::as_array).map_or(0, Vec::len).to_string(),
        "DATA" => ["/data", "/binaryData"].iter().filter_map(|p| obj.pointer(p).and_then(Value::as_object)).map(|m| m.len()).sum::<usize>().to_string(),
        "REASON" => s(obj, "/reason").into(),
        "OBJECT" => format!("{}/{}", s(obj, "/involvedObject/kind").to_ascii_lowercase(), s(obj, "/involvedObject/name")),
        "MESSAGE" => s(obj, "/message").into(),
        "IP" => s_or(obj, "/status/podIP", "<none>"),
        "NODE" => s_or(obj, "/spec/nodeName", "<none>"),
        "INTERNAL-IP" => obj
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
            .and_then(|x| x["address"].as_str())
            .unwrap_or("<none>")
            .into(),
        "PROXY" | "PROXY-SYNC" => {
            let cond = obj.pointer("/status/conditions").and_then(Value::as_array).and_then(|cs| cs.iter().find(|c| c["type"] == "ServiceProxy"));
            match (cond, col) {
                (None, _) => "<none>".into(),
                (Some(c), "PROXY") if c["status"] == "True" => s(c, "/reason").into(),
                (Some(c), "PROXY") => format!("{} (not synced)", s(c, "/reason")),
                (Some(c), _) if c["status"] == "True" => age(s(c, "/lastTransitionTime"), now),
                (Some(_), _) => "<never>".into(),
            }
        }
        "SELECTOR" => obj
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// A table of objects of one kind. `with_ns` adds the NAMESPACE column (for `-A`).
pub fn table(kind: &str, items: &[Value], wide: bool, with_ns: bool, now: DateTime<Utc>) -> String {
    let cols = columns(kind, wide);
    let mut header: Vec<String> = Vec::new();
    if with_ns {
        header.push("NAMESPACE".into());
    }
    header.push("NAME".into());
    header.extend(cols.iter().map(|c| c.to_string()));
    let mut rows = vec![header];
    for obj in items {
        let mut row = Vec::new();
        if with_ns {
            row.push(s(obj, "/metadata/namespace").to_string());
        }
        row.push(s(obj, "/metadata/name").to_string());
        row.extend(cols.iter().map(|c| cell(obj, c, now)));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

pub fn yaml(v: &Value) -> String {
    serde_norway::to_string(v).unwrap_or_default()
}

pub fn json(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ages() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(age("2026-01-01T23:59:15Z", now), "45s");
        assert_eq!(age("2026-01-01T23:00:00Z", now), "60m");
        assert_eq!(age("2025-12-30T00:00:00Z", now), "3d");
        assert_eq!(age("garbage", now), "<unknown>");
    }

    #[test]
    fn empty_fields_show_placeholders() {
        let svc = json!({"kind": "Service", "spec": {"clusterIP": ""}});
        assert_eq!(cell(&svc, "TYPE", Utc::now()), "ClusterIP");
        assert_eq!(cell(&svc, "CLUSTER-IP", Utc::now()), "<pending>");
        let pod = json!({"kind": "Pod", "spec": {"nodeName": "n1"}});
        assert_eq!((cell(&pod, "STATUS", Utc::now()), cell(&pod, "NODE", Utc::now()), cell(&pod, "IP", Utc::now())),
            ("Pending".to_string(), "n1".to_string(), "<none>".to_string()));
    }

    #[test]
    fn wide_nodes_show_the_proxy_mode_and_last_sync() {
        let now: DateTime<Utc> = "2026-01-01T00:01:00Z".parse().unwrap();
        let node = |status: &str| json!({"kind": "Node", "metadata": {"name": "n1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}], "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "ServiceProxy", "status": status, "reason": "nftables", "lastTransitionTime": "2026-01-01T00:00:30Z"}]}});
        let t = table("Node", &[node("True"), node("False"), json!({"kind": "Node", "metadata": {"name": "bare"}})], true, false, now);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains("INTERNAL-IP") && lines[0].contains("PROXY") && lines[0].contains("PROXY-SYNC"), "{t}");
        assert!(lines[1].contains("10.0.0.1") && lines[1].contains("nftables") && lines[1].contains("30s"), "{t}");
        assert!(lines[2].contains("nftables (not synced)") && lines[2].contains("<never>"), "{t}");
        assert!(lines[3].contains("<none>"), "{t}");
    }

    #[test]
    fn pod_table_with_namespaces_and_wide() {
        let now = Utc::now();
        let pod = json!({"kind": "Pod", "metadata": {"name": "web-1", "namespace": "prod", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{}, {}], "nodeName": "n2"},
            "status": {"phase": "Running", "podIP": "10.1.0.5", "containerStatuses": [{"ready": true, "restartCount": 2}, {"ready": false, "restartCount": 1}]}});
        let t = table("Pod", &[pod], true, true, now);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE   NAME"));
        for want in ["prod", "web-1", "1/2", "Running", "3", "10.1.0.5", "n2"] {
            assert!(lines[1].contains(want), "{want} missing in {:?}", lines[1]);
        }
    }
}
