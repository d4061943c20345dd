//! PodDisruptionBudgets (policy/v1): which pods a budget covers, its status (expected,
//! healthy and desired pods, the disruptions it allows, the pods evicted but not yet gone),
//! and whether an eviction may go ahead, as Kubernetes' disruption controller and eviction
//! subresource decide. The leader keeps the status (`control/disruption.rs`); an eviction
//! charges the budget it passes in the budget's own compare-and-set write before the pod
//! is deleted, so concurrent evictions (`kubectl drain` evicts in parallel) cannot spend
//! one allowed disruption twice. Pure: the time comes in.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::api::validation::selects;

/// How long an evicted pod counts as disrupted (not healthy) while it is not yet deleted.
pub const DELETION_TIMEOUT: chrono::Duration = chrono::Duration::minutes(2);

/// Does `pdb` cover `pod` (same namespace; an empty selector covers every pod, a missing
/// one none)?
pub fn covers(pdb: &Value, pod: &Value) -> bool {
    let sel = &pdb["spec"]["selector"];
    pdb["metadata"]["namespace"] == pod["metadata"]["namespace"] && sel.is_object() && selects(sel, &pod["metadata"]["labels"])
}

fn terminal(pod: &Value) -> bool {
    matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

/// Ready and not being deleted.
pub fn healthy(pod: &Value) -> bool {
    let ready = pod["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True");
    ready && !pod["metadata"]["deletionTimestamp"].is_string() && !terminal(pod)
}

/// An int-or-percent of `total`, rounded up as Kubernetes rounds budgets.
fn scaled(v: &Value, total: i64) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
            Some((pct * total + 99) / 100)
        }
        _ => None,
    }
}

fn time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc))
}

/// The status of `pdb` over `pods` (the namespace's pods) at `now`. The pods it covers
/// that are not terminal are expected; a budget by `minAvailable` desires that many healthy
/// ones, by `maxUnavailable` that many fewer than expected.
pub fn status(pdb: &Value, pods: &[Value], now: DateTime<Utc>) -> Value {
    let covered: Vec<&Value> = pods.iter().filter(|p| covers(pdb, p) && !terminal(p)).collect();
    let expected = covered.len() as i64;
    // Evicted pods stay disrupted until deleted or the timeout passes.
    let mut disrupted = Map::new();
    for (name, at) in pdb["status"]["disruptedPods"].as_object().into_iter().flatten() {
        let pod = covered.iter().find(|p| p["metadata"]["name"] == name.as_str());
        let fresh = at.as_str().and_then(time).is_some_and(|t| now - t < DELETION_TIMEOUT);
        if fresh && pod.is_some_and(|p| !p["metadata"]["deletionTimestamp"].is_string()) {
            disrupted.insert(name.clone(), at.clone());
        }
    }
    let current = covered.iter().filter(|p| healthy(p) && !disrupted.contains_key(p["metadata"]["name"].as_str().unwrap_or(""))).count() as i64;
    let spec = &pdb["spec"];
    let desired = if let Some(min) = spec.get("minAvailable").and_then(|v| scaled(v, expected)) {
        min
    } else if let Some(max) = spec.get("maxUnavailable").and_then(|v| scaled(v, expected)) {
        (expected - max).max(0)
    } else {
        // Neither: Kubernetes defaults a policy/v1 budget to minAvailable 1.
        1
    };
    let allowed = (current - desired).max(0);
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(1);
    let (cond_status, reason) = if allowed > 0 { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
    let previous = pdb["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionAllowed"));
    let since = match previous {
        Some(c) if c["status"] == cond_status => c["lastTransitionTime"].clone(),
        _ => json!(now.to_rfc3339_opts(SecondsFormat::Secs, true)),
    };
    json!({
        "observedGeneration": generation,
        "disruptedPods": disrupted,
        "disruptionsAllowed": allowed,
        "currentHealthy": current,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [{"type": "DisruptionAllowed", "status": cond_status, "reason": reason, "message": "",
            "lastTransitionTime": since, "observedGeneration": generation}],
    })
}

/// What an eviction of `pod` under `pdb` (its one budget) may do.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Delete the pod, first writing this status into the budget (the disruption spent).
    Charge(Value),
    /// Delete the pod; the budget is not charged (the pod is not healthy, and the budget
    /// is met without it).
    Free,
    /// Refused with a 429 and this message.
    Refuse(String),
}

pub fn judge(pdb: &Value, pod: &Value, now: DateTime<Utc>) -> Verdict {
    let s = &pdb["status"];
    let name = pdb["metadata"]["name"].as_str().unwrap_or_default();
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(1);
    if s["observedGeneration"].as_i64().is_none_or(|g| g < generation) {
        return Verdict::Refuse(format!("Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {name} is still being processed by the server."));
    }
    let (current, desired) = (s["currentHealthy"].as_i64().unwrap_or(0), s["desiredHealthy"].as_i64().unwrap_or(0));
    if !healthy(pod) {
        // Kubernetes' default (IfHealthyBudget): an unhealthy pod may go when the budget
        // holds without it.
        return if current >= desired {
            Verdict::Free
        } else {
            Verdict::Refuse(format!("Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {name} needs {desired} healthy pods and has {current} currently"))
        };
    }
    let allowed = s["disruptionsAllowed"].as_i64().unwrap_or(0);
    if allowed <= 0 {
        return Verdict::Refuse(format!("Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {name} needs {desired} healthy pods and has {current} currently"));
    }
    let mut next = s.clone();
    next["disruptionsAllowed"] = json!(allowed - 1);
    if !next["disruptedPods"].is_object() {
        next["disruptedPods"] = json!({});
    }
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    next["disruptedPods"][pod_name] = json!(now.to_rfc3339_opts(SecondsFormat::Secs, true));
    Verdict::Charge(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn pod(name: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "namespace": "d", "labels": {"app": "web"}}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn pdb(spec: Value) -> Value {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "web"}});
        json!({"metadata": {"name": "b", "namespace": "d", "generation": 1}, "spec": spec})
    }

    #[test]
    fn budgets_count_what_they_cover() {
        let pods = vec![pod("a", true), pod("b", true), pod("c", false), json!({"metadata": {"name": "x", "namespace": "d", "labels": {"app": "db"}}})];
        let s = status(&pdb(json!({"minAvailable": 2})), &pods, now());
        assert_eq!((&s["expectedPods"], &s["currentHealthy"], &s["desiredHealthy"], &s["disruptionsAllowed"]), (&json!(3), &json!(2), &json!(2), &json!(0)));
        assert_eq!(s["conditions"][0]["reason"], "InsufficientPods");
        let s = status(&pdb(json!({"maxUnavailable": "50%"})), &pods, now());
        assert_eq!((&s["desiredHealthy"], &s["disruptionsAllowed"]), (&json!(1), &json!(1)), "3 - ceil(1.5)");
        let s = status(&pdb(json!({"minAvailable": "50%"})), &pods, now());
        assert_eq!(s["desiredHealthy"], 2, "ceil(1.5)");
        let mut other_ns = pod("a", true);
        other_ns["metadata"]["namespace"] = json!("e");
        assert!(!covers(&pdb(json!({})), &other_ns));
        let everything = json!({"metadata": {"namespace": "d"}, "spec": {"selector": {}}});
        assert!(covers(&everything, &pod("a", true)), "an empty selector covers every pod");
    }

    #[test]
    fn evicted_pods_stay_disrupted_until_gone_or_timed_out() {
        let mut b = pdb(json!({"minAvailable": 1}));
        let pods = vec![pod("a", true), pod("b", true)];
        b["status"] = status(&b, &pods, now());
        assert_eq!(b["status"]["disruptionsAllowed"], 1);
        let Verdict::Charge(charged) = judge(&b, &pods[0], now()) else { panic!("allowed") };
        assert_eq!(charged["disruptionsAllowed"], 0);
        b["status"] = charged;
        assert!(matches!(judge(&b, &pods[1], now()), Verdict::Refuse(m) if m.contains("needs 1 healthy pods and has 2")), "the one disruption is spent");
        // Recomputed: a is disrupted (not healthy) until it is deleted or two minutes pass.
        let s = status(&b, &pods, now() + chrono::Duration::seconds(30));
        assert_eq!((&s["currentHealthy"], &s["disruptionsAllowed"]), (&json!(1), &json!(0)));
        let later = status(&b, &pods, now() + chrono::Duration::minutes(3));
        assert_eq!((&later["currentHealthy"], later["disruptedPods"].as_object().unwrap().len()), (&json!(2), 0));
        let gone = status(&b, &pods[1..], now() + chrono::Duration::seconds(30));
        assert!(gone["disruptedPods"].as_object().unwrap().is_empty());
    }

    #[test]
    fn unhealthy_pods_go_freely_while_the_budget_holds() {
        let mut b = pdb(json!({"minAvailable": 1}));
        let pods = vec![pod("a", true), pod("sick", false)];
        b["status"] = status(&b, &pods, now());
        assert_eq!(judge(&b, &pods[1], now()), Verdict::Free);
        b["status"]["currentHealthy"] = json!(0);
        assert!(matches!(judge(&b, &pods[1], now()), Verdict::Refuse(_)));
        let mut unseen = pdb(json!({"minAvailable": 1}));
        unseen["metadata"]["generation"] = json!(2);
        unseen["status"] = json!({"observedGeneration": 1, "disruptionsAllowed": 5});
        assert!(matches!(judge(&unseen, &pods[0], now()), Verdict::Refuse(m) if m.contains("still being processed")));
    }
}
