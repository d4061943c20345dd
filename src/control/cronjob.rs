//! The CronJob controller: at each time the schedule names (standard 5-field cron, UTC, via
//! the croner crate), a Job from `jobTemplate`, named after the scheduled minute so a
//! repeated pass never starts one run twice. A run missed while no leader was up (or the
//! controller was behind) starts late unless `startingDeadlineSeconds` has passed; of many
//! missed runs only the latest starts. `concurrencyPolicy` Allow, Forbid (skip while one
//! runs; retried while the deadline allows) or Replace (the running Job is deleted);
//! finished Jobs beyond the history limits are deleted, oldest first. `reconcile` is pure.

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use croner::Cron;
use serde_json::{json, Value};

use super::events::on_success;
use super::owners::{write_status, OwnerLoop, Written};
use super::ControlConfig;
use crate::api::resources;
use crate::api::store::ObjectStore;

pub const SCHEDULED_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreateJob(Value),
    DeleteJob(String),
    Status(Value),
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn finished(job: &Value) -> Option<&str> {
    job["status"]["conditions"].as_array()?.iter().find(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")?["type"].as_str()
}

/// The schedule, or why it is not one.
pub fn parse_schedule(cj: &Value) -> Result<Cron, String> {
    let schedule = cj["spec"]["schedule"].as_str().ok_or("spec.schedule is missing")?;
    if let Some(tz) = cj["spec"]["timeZone"].as_str().filter(|tz| !matches!(*tz, "UTC" | "Etc/UTC")) {
        return Err(format!("spec.timeZone {tz:?}: only UTC is supported"));
    }
    Cron::from_str(schedule).map_err(|e| format!("spec.schedule {schedule:?}: {e}"))
}

/// The latest scheduled time after `after` and no later than `now`, with how many there were.
fn latest_due(cron: &Cron, after: DateTime<Utc>, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, usize) {
    let mut latest = None;
    let mut count = 0;
    let mut t = after;
    while let Ok(next) = cron.find_next_occurrence(&t, false) {
        if next > now {
            break;
        }
        latest = Some(next);
        count += 1;
        t = next;
        if count > 10_000 {
            break;
        }
    }
    (latest, count)
}

/// What to do for `cj` given the Jobs of its namespace, at `now`.
pub fn reconcile(cj: &Value, jobs: &[Value], now: DateTime<Utc>) -> Result<Vec<Action>, String> {
    let meta = &cj["metadata"];
    let (Some(uid), Some(name)) = (meta["uid"].as_str(), meta["name"].as_str()) else { return Ok(vec![]) };
    let spec = &cj["spec"];
    let cron = parse_schedule(cj)?;
    let owned: Vec<&Value> = jobs
        .iter()
        .filter(|j| j["metadata"]["ownerReferences"].as_array().is_some_and(|rs| rs.iter().any(|r| r["controller"] == true && r["uid"] == uid)))
        .collect();
    let mut active: Vec<&Value> = owned.iter().copied().filter(|j| finished(j).is_none() && j["metadata"]["deletionTimestamp"].is_null()).collect();
    let mut actions = vec![];
    let mut last_schedule = time(&cj["status"]["lastScheduleTime"]);

    let earliest = last_schedule.or_else(|| time(&meta["creationTimestamp"])).unwrap_or(now);
    let (due, _missed) = latest_due(&cron, earliest, now);
    let within_deadline = |t: DateTime<Utc>| spec["startingDeadlineSeconds"].as_i64().is_none_or(|d| now - t <= chrono::Duration::seconds(d));
    if let Some(t) = due.filter(|t| spec["suspend"] != true && meta["deletionTimestamp"].is_null() && within_deadline(*t)) {
        let job_name = format!("{name}-{}", t.timestamp() / 60);
        let exists = owned.iter().any(|j| j["metadata"]["name"] == job_name.as_str());
        let policy = spec["concurrencyPolicy"].as_str().unwrap_or("Allow");
        let forbidden = policy == "Forbid" && !active.is_empty();
        let start = !exists && !forbidden;
        if start {
            if policy == "Replace" {
                actions.extend(active.iter().filter_map(|j| j["metadata"]["name"].as_str()).map(|n| Action::DeleteJob(n.to_string())));
                active.clear();
            }
            let template = &spec["jobTemplate"];
            let mut annotations = template["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
            annotations.insert(SCHEDULED_ANNOTATION.into(), json!(stamp(t)));
            let mut job = json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": job_name, "namespace": meta["namespace"], "annotations": annotations,
                    "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
                "spec": template["spec"].clone(),
            });
            if let Some(labels) = template["metadata"]["labels"].as_object() {
                job["metadata"]["labels"] = Value::Object(labels.clone());
            }
            actions.push(Action::CreateJob(job));
        }
        if start || exists {
            last_schedule = Some(t);
        }
    }

    // History: finished Jobs beyond the limits go, oldest first.
    for (kind, limit) in [("Complete", spec["successfulJobsHistoryLimit"].as_u64().unwrap_or(3)), ("Failed", spec["failedJobsHistoryLimit"].as_u64().unwrap_or(1))] {
        let mut done: Vec<&Value> = owned.iter().copied().filter(|j| finished(j) == Some(kind) && j["metadata"]["deletionTimestamp"].is_null()).collect();
        done.sort_by_key(|j| j["metadata"]["creationTimestamp"].as_str().unwrap_or("").to_string());
        let excess = done.len().saturating_sub(limit as usize);
        actions.extend(done[..excess].iter().filter_map(|j| j["metadata"]["name"].as_str()).map(|n| Action::DeleteJob(n.to_string())));
    }

    // Written as a merge patch: an empty `active` is null, which removes the field.
    let refs: Vec<Value> = active
        .iter()
        .map(|j| json!({"apiVersion": "batch/v1", "kind": "Job", "name": j["metadata"]["name"], "namespace": j["metadata"]["namespace"], "uid": j["metadata"]["uid"]}))
        .collect();
    let mut status = json!({"active": if refs.is_empty() { Value::Null } else { Value::Array(refs) }});
    if let Some(t) = last_schedule {
        status["lastScheduleTime"] = json!(stamp(t));
    }
    if let Some(t) = owned.iter().filter(|j| finished(j) == Some("Complete")).filter_map(|j| time(&j["status"]["completionTime"])).max() {
        status["lastSuccessfulTime"] = json!(stamp(t));
    }
    if status.as_object().is_some_and(|m| m.iter().any(|(k, v)| cj["status"][k] != *v)) {
        actions.push(Action::Status(status));
    }
    Ok(actions)
}

pub async fn run(store: ObjectStore, _cfg: ControlConfig) {
    let cj_res = resources::by_plural("batch", "cronjobs").expect("cronjobs are registered");
    let jobs_res = resources::by_plural("batch", "jobs").expect("jobs are registered");
    // Schedules come due without an event: look every second.
    let lp = OwnerLoop::start(&store, cj_res, jobs_res, std::time::Duration::from_secs(1)).await;
    loop {
        lp.next_pass().await;
        let mut written = Written::default();
        for (cj, jobs) in lp.owners_with_children() {
            let ns = cj["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
            let name = cj["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let actions = match reconcile(&cj, &jobs, Utc::now()) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(cronjob = %name, namespace = %ns, error = %e, "cronjob not scheduled");
                    continue;
                }
            };
            for action in actions {
                let on_jobs = !matches!(action, Action::Status(_));
                let result = match action {
                    Action::CreateJob(job) => {
                        let message = format!("Created job {}", job["metadata"]["name"].as_str().unwrap_or_default());
                        on_success(store.create(jobs_res, Some(&ns), job).await, &store, &cj, cj_res, "SuccessfulCreate", &message).await
                    }
                    Action::DeleteJob(job) => store.delete(jobs_res, Some(&ns), &job, None).await,
                    Action::Status(status) => write_status(&store, cj_res, &cj, status).await,
                };
                written.record(result, on_jobs, &name);
            }
        }
        lp.settle(&written).await;
    }
}

#[cfg(test)]
mod tests;
