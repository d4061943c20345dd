//! The CronJob controller's decisions: due times, missed runs, deadlines, concurrency
//! policies, history limits.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn cronjob(spec: Value, status: Value) -> Value {
    let mut cj = json!({"metadata": {"name": "tick", "namespace": "default", "uid": "cj-1", "creationTimestamp": "2026-01-01T00:00:30Z"},
        "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"metadata": {"labels": {"app": "tick"}}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c"}]}}}}},
        "status": status});
    crate::api::object::merge_patch(&mut cj["spec"], &spec);
    cj
}

fn job(name: &str, created: &str, done: Option<&str>) -> Value {
    let mut j = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "creationTimestamp": created,
        "ownerReferences": [{"uid": "cj-1", "controller": true}]}, "status": {}});
    if let Some(kind) = done {
        j["status"] = json!({"conditions": [{"type": kind, "status": "True"}], "completionTime": created});
    }
    j
}

fn created(actions: &[Action]) -> Vec<String> {
    actions.iter().filter_map(|a| if let Action::CreateJob(j) = a { j["metadata"]["name"].as_str().map(String::from) } else { None }).collect()
}

fn deleted(actions: &[Action]) -> Vec<String> {
    actions.iter().filter_map(|a| if let Action::DeleteJob(n) = a { Some(n.clone()) } else { None }).collect()
}

fn status(actions: &[Action]) -> Value {
    actions.iter().find_map(|a| if let Action::Status(s) = a { Some(s.clone()) } else { None }).unwrap_or(Value::Null)
}

#[test]
fn a_due_time_starts_one_job_named_after_its_minute() {
    let cj = cronjob(json!({}), json!({}));
    assert_eq!(reconcile(&cj, &[], at("2026-01-01T00:04:59Z")).unwrap(), vec![], "nothing due before 00:05");
    let actions = reconcile(&cj, &[], at("2026-01-01T00:05:01Z")).unwrap();
    let minute = at("2026-01-01T00:05:00Z").timestamp() / 60;
    assert_eq!(created(&actions), vec![format!("tick-{minute}")]);
    let Action::CreateJob(j) = &actions[0] else { panic!() };
    assert_eq!(j["metadata"]["annotations"][SCHEDULED_ANNOTATION], "2026-01-01T00:05:00Z");
    assert_eq!(j["metadata"]["labels"]["app"], "tick");
    assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(status(&actions)["lastScheduleTime"], "2026-01-01T00:05:00Z");
    // The job exists: a second pass starts nothing, and records the schedule time.
    let mut again = cronjob(json!({}), json!({"lastScheduleTime": "2026-01-01T00:05:00Z"}));
    let running = job(&format!("tick-{minute}"), "2026-01-01T00:05:01Z", None);
    assert!(created(&reconcile(&again, std::slice::from_ref(&running), at("2026-01-01T00:06:00Z")).unwrap()).is_empty());
    again["status"]["active"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": running["metadata"]["name"], "namespace": "default", "uid": running["metadata"]["uid"]}]);
    assert_eq!(reconcile(&again, &[running], at("2026-01-01T00:06:00Z")).unwrap(), vec![], "settled");
}

#[test]
fn of_many_missed_runs_only_the_latest_starts_unless_past_the_deadline() {
    let cj = cronjob(json!({}), json!({}));
    let late = at("2026-01-01T01:02:00Z");
    let names = created(&reconcile(&cj, &[], late).unwrap());
    assert_eq!(names, vec![format!("tick-{}", at("2026-01-01T01:00:00Z").timestamp() / 60)]);
    let strict = cronjob(json!({"startingDeadlineSeconds": 60}), json!({}));
    assert!(created(&reconcile(&strict, &[], late).unwrap()).is_empty(), "two minutes late, deadline one");
    assert_eq!(created(&reconcile(&strict, &[], at("2026-01-01T01:00:30Z")).unwrap()).len(), 1);
}

#[test]
fn forbid_waits_for_the_running_job_and_replace_deletes_it() {
    let running = job("tick-old", "2026-01-01T00:00:40Z", None);
    let now = at("2026-01-01T00:05:02Z");
    let forbid = cronjob(json!({"concurrencyPolicy": "Forbid"}), json!({}));
    let actions = reconcile(&forbid, std::slice::from_ref(&running), now).unwrap();
    assert!(created(&actions).is_empty());
    assert!(status(&actions).get("lastScheduleTime").is_none(), "the run is still owed");
    let replace = cronjob(json!({"concurrencyPolicy": "Replace"}), json!({}));
    let actions = reconcile(&replace, std::slice::from_ref(&running), now).unwrap();
    assert_eq!(deleted(&actions), vec!["tick-old"]);
    assert_eq!(created(&actions).len(), 1);
    let allow = cronjob(json!({}), json!({}));
    let actions = reconcile(&allow, &[running], now).unwrap();
    assert!(deleted(&actions).is_empty());
    assert_eq!(created(&actions).len(), 1);
    assert_eq!(status(&actions)["active"].as_array().unwrap().len(), 1, "the new job is active once it exists");
}

#[test]
fn finished_jobs_beyond_the_history_limits_go_oldest_first() {
    let cj = cronjob(json!({"successfulJobsHistoryLimit": 2, "failedJobsHistoryLimit": 0}), json!({"lastScheduleTime": "2026-01-01T00:05:00Z"}));
    let jobs = [
        job("a", "2026-01-01T00:01:00Z", Some("Complete")),
        job("b", "2026-01-01T00:02:00Z", Some("Complete")),
        job("c", "2026-01-01T00:03:00Z", Some("Complete")),
        job("f", "2026-01-01T00:04:00Z", Some("Failed")),
    ];
    let actions = reconcile(&cj, &jobs, at("2026-01-01T00:06:00Z")).unwrap();
    assert_eq!(deleted(&actions), vec!["a", "f"]);
    assert_eq!(status(&actions)["lastSuccessfulTime"], "2026-01-01T00:03:00Z");
}

#[test]
fn bad_schedules_and_time_zones_are_refused() {
    assert!(parse_schedule(&cronjob(json!({"schedule": "every minute"}), json!({}))).is_err());
    assert!(parse_schedule(&cronjob(json!({"schedule": "61 * * * *"}), json!({}))).is_err());
    let tz = parse_schedule(&cronjob(json!({"timeZone": "Europe/Paris"}), json!({}))).unwrap_err();
    assert!(tz.contains("only UTC"), "{tz}");
    assert!(parse_schedule(&cronjob(json!({"schedule": "@hourly", "timeZone": "UTC"}), json!({}))).is_ok());
}
