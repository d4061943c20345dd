//! The Job controller: run pods from the template until `completions` of them succeed,
//! at most `parallelism` at a time; a failed pod is replaced after an exponential back-off
//! (10 s doubling, at most 6 min, as Kubernetes does) until more than `backoffLimit` have
//! failed; `activeDeadlineSeconds` bounds the whole run. Ends with a Complete or Failed
//! condition, its running pods deleted. `reconcile` is pure (the time and pod names come
//! in); `run` is the owner loop.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::owners::{apply_pod_actions, pod_from_template, suffix, OwnerLoop, Written};
use super::ControlConfig;
use crate::api::resources;
use crate::api::store::ObjectStore;

pub use super::owners::PodAction as Action;

fn is_owned_by(pod: &Value, uid: &str) -> bool {
    pod["metadata"]["ownerReferences"].as_array().is_some_and(|refs| refs.iter().any(|r| r["controller"] == true && r["uid"] == uid))
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("Pending")
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// When a failed pod's container stopped (its last terminated state), else its creation.
fn failed_at(pod: &Value) -> Option<DateTime<Utc>> {
    let finished = pod["status"]["containerStatuses"].as_array().into_iter().flatten().filter_map(|c| time(&c["state"]["terminated"]["finishedAt"])).max();
    finished.or_else(|| time(&pod["metadata"]["creationTimestamp"]))
}

/// The delay before replacing the `failed`-th failed pod: 10 s, doubling, at most 6 min.
pub fn backoff(failed: usize) -> Duration {
    if failed == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs((10u64 << (failed - 1).min(6)).min(360))
}

/// Restarts of containers in pods that restart in place (`OnFailure`) count as failures.
fn restarts(pod: &Value) -> usize {
    pod["status"]["containerStatuses"].as_array().into_iter().flatten().map(|c| c["restartCount"].as_u64().unwrap_or(0) as usize).sum()
}

fn condition(kind: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": kind, "status": "True", "reason": reason, "message": message, "lastProbeTime": now, "lastTransitionTime": now})
}

/// What to do for `job` given every pod of its namespace, at `now`; `names` supplies pod
/// name suffixes.
pub fn reconcile(job: &Value, pods: &[Value], now: DateTime<Utc>, names: &mut dyn FnMut() -> String) -> Vec<Action> {
    let meta = &job["metadata"];
    let (Some(uid), Some(name)) = (meta["uid"].as_str(), meta["name"].as_str()) else { return vec![] };
    let ns = meta["namespace"].as_str().unwrap_or("default");
    let spec = &job["spec"];
    let completions = spec["completions"].as_u64().unwrap_or(1) as usize;
    let parallelism = spec["parallelism"].as_u64().unwrap_or(1) as usize;
    let backoff_limit = spec["backoffLimit"].as_u64().unwrap_or(6) as usize;
    let status = &job["status"];
    let finished = status["conditions"].as_array().into_iter().flatten().any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True");

    let owned: Vec<&Value> = pods.iter().filter(|p| is_owned_by(p, uid)).collect();
    let succeeded = owned.iter().filter(|p| phase(p) == "Succeeded").count();
    let failed_pods: Vec<&Value> = owned.iter().copied().filter(|p| phase(p) == "Failed").collect();
    let active: Vec<&Value> =
        owned.iter().copied().filter(|p| !matches!(phase(p), "Succeeded" | "Failed") && p["metadata"]["deletionTimestamp"].is_null()).collect();
    let failures = failed_pods.len() + active.iter().map(|p| restarts(p)).sum::<usize>();

    let now_s = stamp(now);
    let start = time(&status["startTime"]).unwrap_or(now);
    let mut next = json!({
        "startTime": stamp(start),
        "active": active.len(),
        "ready": active.iter().filter(|p| ready(p)).count(),
        "succeeded": succeeded,
        "failed": failed_pods.len(),
    });
    let mut actions = vec![];
    let delete_active = |actions: &mut Vec<Action>| {
        for p in &active {
            actions.push(Action::Delete { namespace: ns.into(), name: p["metadata"]["name"].as_str().unwrap_or_default().into() });
        }
    };
    let past_deadline = spec["activeDeadlineSeconds"].as_i64().is_some_and(|d| now >= start + chrono::Duration::seconds(d));

    if finished {
        // Done: keep the outcome; pods still running (a race with the last pass) go.
        for field in ["conditions", "completionTime"] {
            if !status[field].is_null() {
                next[field] = status[field].clone();
            }
        }
        next["active"] = json!(0);
        delete_active(&mut actions);
    } else if succeeded >= completions {
        next["conditions"] = json!([condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods", &now_s)]);
        next["completionTime"] = json!(now_s);
        next["active"] = json!(0);
        delete_active(&mut actions);
    } else if failures > backoff_limit {
        next["conditions"] = json!([condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit", &now_s)]);
        next["active"] = json!(0);
        delete_active(&mut actions);
    } else if past_deadline {
        next["conditions"] = json!([condition("Failed", "DeadlineExceeded", "Job was active longer than specified deadline", &now_s)]);
        next["active"] = json!(0);
        delete_active(&mut actions);
    } else if meta["deletionTimestamp"].is_null() && spec["suspend"] != true {
        let want = parallelism.min(completions - succeeded);
        // After a failure, new pods wait out the back-off from the newest failure.
        let last_failure = failed_pods.iter().filter_map(|p| failed_at(p)).max();
        let waiting = last_failure.is_some_and(|t| now < t + chrono::Duration::from_std(backoff(failed_pods.len())).unwrap_or_default());
        if active.len() < want && !waiting {
            let template = &spec["template"];
            let labels = [("batch.kubernetes.io/job-name", name), ("job-name", name), ("batch.kubernetes.io/controller-uid", uid), ("controller-uid", uid)];
            for _ in active.len()..want {
                let pod_name = format!("{name}-{}", names());
                actions.push(Action::Create(pod_from_template(template, &pod_name, ns, job, ("batch/v1", "Job"), &labels)));
            }
        } else if active.len() > want {
            for p in active.iter().skip(want) {
                actions.push(Action::Delete { namespace: ns.into(), name: p["metadata"]["name"].as_str().unwrap_or_default().into() });
            }
        }
    }
    // Written as a merge patch (so `next` holds no nulls: null deletes); news only when one
    // of its fields differs.
    if next.as_object().is_some_and(|m| m.iter().any(|(k, v)| status[k] != *v)) {
        actions.push(Action::Status(next));
    }
    actions
}

pub async fn run(store: ObjectStore, cfg: ControlConfig) {
    let job_res = resources::by_plural("batch", "jobs").expect("jobs are registered");
    let pods_res = resources::by_plural("", "pods").expect("pods are registered");
    // Back-offs and deadlines end without a change to wake the loop: look every few seconds.
    let lp = OwnerLoop::start(&store, job_res, pods_res, cfg.resync.min(Duration::from_secs(2))).await;
    loop {
        lp.next_pass().await;
        let mut written = Written::default();
        for (job, pods) in lp.owners_with_children() {
            let actions = reconcile(&job, &pods, Utc::now(), &mut suffix);
            apply_pod_actions(&store, job_res, &job, actions, &mut written).await;
        }
        lp.settle(&written).await;
    }
}

#[cfg(test)]
mod tests;
