//! ResourceQuota: what a namespace may hold (object counts: `pods`, `services`,
//! `configmaps`, `secrets`, `persistentvolumeclaims`, `count/<resource>[.<group>]`; compute:
//! `requests.cpu|memory`, `limits.cpu|memory`, `cpu`, `memory`). A create that would take a
//! namespace past a quota's `hard` is refused (403, worded as Kubernetes' quota admission);
//! an admitted create charges the quotas it counts toward in its own transaction (see
//! `ObjectStore::charge_quotas`), so creates under one quota are serialized; the leader
//! recomputes each quota's `status.used`. Pure.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::quantity;

/// The quota keys an object of kind `plural` (group `group`) counts toward, with amounts
/// (CPU in millicores, memory in bytes, counts in units).
pub fn demand(plural: &str, group: &str, obj: &Value) -> BTreeMap<String, i64> {
    let mut d = BTreeMap::new();
    let count_key = if group.is_empty() { format!("count/{plural}") } else { format!("count/{plural}.{group}") };
    d.insert(count_key, 1);
    if group.is_empty() && matches!(plural, "pods" | "services" | "configmaps" | "secrets" | "persistentvolumeclaims") {
        d.insert(plural.to_string(), 1);
    }
    if plural == "pods" && group.is_empty() {
        for c in obj["spec"]["containers"].as_array().into_iter().flatten() {
            for (kind, field) in [("requests", &c["resources"]["requests"]), ("limits", &c["resources"]["limits"])] {
                for (res, parse) in [("cpu", quantity::cpu_millis as fn(&str) -> Option<i64>), ("memory", quantity::bytes)] {
                    if let Some(n) = field[res].as_str().and_then(parse) {
                        *d.entry(format!("{kind}.{res}")).or_default() += n;
                        if kind == "requests" {
                            *d.entry(res.to_string()).or_default() += n;
                        }
                    }
                }
            }
        }
    }
    d
}

/// Does a stored object still count (pods that ended or are going away do not)?
pub fn counts(plural: &str, obj: &Value) -> bool {
    plural != "pods" || (obj["metadata"]["deletionTimestamp"].is_null() && !matches!(obj["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
}

/// A quota key's amount in the units `demand` uses.
fn amount(key: &str, q: &Value) -> Option<i64> {
    let s = q.as_str().map(String::from).or_else(|| q.as_i64().map(|n| n.to_string()))?;
    if key.ends_with("cpu") {
        quantity::cpu_millis(&s)
    } else {
        quantity::bytes(&s)
    }
}

/// An amount written back as a quantity.
pub fn show(key: &str, n: i64) -> String {
    if key.ends_with("cpu") {
        if n % 1000 == 0 { (n / 1000).to_string() } else { format!("{n}m") }
    } else if key.ends_with("memory") && n % (1 << 20) == 0 && n > 0 {
        format!("{}Mi", n >> 20)
    } else {
        n.to_string()
    }
}

/// Refuse `adding` if it takes `used` past any quota's hard limit.
pub fn check(quotas: &[Value], used: &BTreeMap<String, i64>, adding: &BTreeMap<String, i64>) -> Result<(), String> {
    for q in quotas {
        let name = q["metadata"]["name"].as_str().unwrap_or_default();
        for (key, hard) in q["spec"]["hard"].as_object().into_iter().flatten() {
            let Some(add) = adding.get(key).copied().filter(|a| *a > 0) else { continue };
            let Some(limit) = amount(key, hard) else { continue };
            let now = used.get(key).copied().unwrap_or(0);
            if now + add > limit {
                return Err(format!(
                    "exceeded quota: {name}, requested: {key}={}, used: {key}={}, limited: {key}={}",
                    show(key, add), show(key, now), show(key, limit)
                ));
            }
        }
    }
    Ok(())
}

/// Does quota `q` limit anything in `demand`?
pub fn limits_any(q: &Value, demand: &BTreeMap<String, i64>) -> bool {
    q["spec"]["hard"].as_object().is_some_and(|hard| hard.keys().any(|k| demand.get(k).is_some_and(|n| *n > 0)))
}

/// The `status` of quota `q` given the namespace's usage.
pub fn status(q: &Value, used: &BTreeMap<String, i64>) -> Value {
    let hard = q["spec"]["hard"].clone();
    let mut u = serde_json::Map::new();
    for key in hard.as_object().into_iter().flatten().map(|(k, _)| k) {
        u.insert(key.clone(), show(key, used.get(key).copied().unwrap_or(0)).into());
    }
    json!({"hard": hard, "used": u})
}

/// Which kinds (plural, group) a set of quotas needs counted.
pub fn kinds_needed(quotas: &[Value]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for key in quotas.iter().flat_map(|q| q["spec"]["hard"].as_object().into_iter().flatten().map(|(k, _)| k.clone())) {
        let kind = match key.as_str() {
            k if k.starts_with("count/") => {
                let r = &k["count/".len()..];
                match r.split_once('.') {
                    Some((plural, group)) => (plural.to_string(), group.to_string()),
                    None => (r.to_string(), String::new()),
                }
            }
            "pods" | "requests.cpu" | "requests.memory" | "limits.cpu" | "limits.memory" | "cpu" | "memory" => ("pods".into(), String::new()),
            other => (other.to_string(), String::new()),
        };
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    out
}

/// Add up the demand of `objects` (of one kind) into `used`.
pub fn add_usage(used: &mut BTreeMap<String, i64>, plural: &str, group: &str, objects: &[Value]) {
    for o in objects.iter().filter(|o| counts(plural, o)) {
        for (k, v) in demand(plural, group, o) {
            *used.entry(k).or_default() += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(hard: Value) -> Value {
        json!({"metadata": {"name": "team-quota"}, "spec": {"hard": hard}})
    }

    #[test]
    fn counts_and_compute() {
        let pod = json!({"spec": {"containers": [
            {"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
            {"resources": {"requests": {"cpu": "250m"}}}]}});
        let d = demand("pods", "", &pod);
        assert_eq!((d["pods"], d["requests.cpu"], d["requests.memory"], d["limits.cpu"], d["cpu"]), (1, 500, 64 << 20, 1000, 500));
        assert_eq!(demand("deployments", "apps", &json!({}))["count/deployments.apps"], 1);
        let q = [quota(json!({"pods": "2", "requests.cpu": "1"}))];
        let mut used = BTreeMap::new();
        add_usage(&mut used, "pods", "", &[pod.clone(), json!({"spec": {}, "status": {"phase": "Succeeded"}})]);
        assert_eq!(used["pods"], 1, "an ended pod does not count");
        assert!(check(&q, &used, &d).is_ok(), "two pods, 1 cpu: at the limit");
        used.insert("pods".into(), 2);
        assert_eq!(check(&q, &used, &d).unwrap_err(), "exceeded quota: team-quota, requested: pods=1, used: pods=2, limited: pods=2");
        assert_eq!(status(&q[0], &used)["used"], json!({"pods": "2", "requests.cpu": "500m"}));
        assert!(limits_any(&q[0], &d));
        assert!(!limits_any(&q[0], &demand("configmaps", "", &json!({}))), "pods and cpu only");
        assert_eq!(kinds_needed(&[quota(json!({"pods": "1", "count/jobs.batch": "1", "configmaps": "3"}))]),
            vec![("configmaps".into(), "".into()), ("jobs".into(), "batch".into()), ("pods".into(), "".into())]);
    }
}
