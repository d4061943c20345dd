//! The Job controller's decisions: parallelism, completion, back-off, limits, deadline.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn job(spec: Value) -> Value {
    let mut j = json!({"metadata": {"name": "pi", "namespace": "default", "uid": "job-1"},
        "spec": {"template": {"metadata": {"labels": {"app": "pi"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}});
    crate::api::object::merge_patch(&mut j["spec"], &spec);
    j
}

fn pod(name: &str, phase: &str, finished: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z",
            "ownerReferences": [{"uid": "job-1", "controller": true}]},
        "status": {"phase": phase, "containerStatuses": [{"restartCount": 0, "state": {"terminated": {"finishedAt": finished}}}]}})
}

fn names() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("n{n}")
    }
}

fn created(actions: &[Action]) -> Vec<&Value> {
    actions.iter().filter_map(|a| if let Action::Create(p) = a { Some(p) } else { None }).collect()
}

fn status(actions: &[Action]) -> Value {
    actions.iter().find_map(|a| if let Action::Status(s) = a { Some(s.clone()) } else { None }).expect("a status")
}

const NOW: &str = "2026-01-01T00:10:00Z";

#[test]
fn runs_parallelism_pods_and_no_more_than_the_completions_left() {
    let j = job(json!({"completions": 5, "parallelism": 2}));
    let actions = reconcile(&j, &[], at(NOW), &mut names());
    let pods = created(&actions);
    assert_eq!(pods.len(), 2);
    assert_eq!(pods[0]["metadata"]["name"], "pi-n1");
    assert_eq!(pods[0]["metadata"]["labels"]["job-name"], "pi");
    assert_eq!(pods[0]["metadata"]["labels"]["app"], "pi");
    assert_eq!(pods[0]["metadata"]["ownerReferences"][0]["kind"], "Job");
    assert_eq!(status(&actions)["startTime"], NOW);

    // Four done, one running: nothing more to start.
    let done: Vec<Value> = (0..4).map(|i| pod(&format!("d{i}"), "Succeeded", NOW)).chain([pod("r", "Running", "")]).collect();
    let actions = reconcile(&j, &done, at(NOW), &mut names());
    assert!(created(&actions).is_empty());
    assert_eq!((status(&actions)["succeeded"].as_u64(), status(&actions)["active"].as_u64()), (Some(4), Some(1)));
}

#[test]
fn completes_once_enough_pods_succeeded_and_then_stays_quiet() {
    let mut j = job(json!({"completions": 2}));
    let pods = [pod("a", "Succeeded", NOW), pod("b", "Succeeded", NOW)];
    let s = status(&reconcile(&j, &pods, at(NOW), &mut names()));
    assert_eq!(s["conditions"][0]["type"], "Complete");
    assert_eq!(s["completionTime"], NOW);
    j["status"] = s;
    assert_eq!(reconcile(&j, &pods, at("2026-01-01T01:00:00Z"), &mut names()), vec![], "a finished job is settled");
}

#[test]
fn failed_pods_are_replaced_after_a_growing_back_off_until_the_limit() {
    assert_eq!([1, 2, 3, 7, 20].map(|n| backoff(n).as_secs()), [10, 20, 40, 360, 360]);
    let j = job(json!({"backoffLimit": 2}));
    let one = [pod("a", "Failed", "2026-01-01T00:09:55Z")];
    assert!(created(&reconcile(&j, &one, at(NOW), &mut names())).is_empty(), "5 s after the failure: waiting out 10 s");
    assert_eq!(created(&reconcile(&j, &one, at("2026-01-01T00:10:06Z"), &mut names())).len(), 1);
    let two = [pod("a", "Failed", "2026-01-01T00:09:00Z"), pod("b", "Failed", "2026-01-01T00:09:55Z")];
    assert!(created(&reconcile(&j, &two, at("2026-01-01T00:10:06Z"), &mut names())).is_empty(), "20 s after the second");
    let three = [pod("a", "Failed", NOW), pod("b", "Failed", NOW), pod("c", "Failed", NOW)];
    let actions = reconcile(&j, &three, at("2026-01-01T01:00:00Z"), &mut names());
    assert!(created(&actions).is_empty());
    let s = status(&actions);
    assert_eq!((s["conditions"][0]["type"].as_str(), s["conditions"][0]["reason"].as_str()), (Some("Failed"), Some("BackoffLimitExceeded")));
    assert_eq!(s["failed"], 3);
    assert!(s.get("completionTime").is_none(), "a failed job has no completion time");
}

#[test]
fn container_restarts_of_on_failure_pods_count_against_the_limit() {
    let j = job(json!({"backoffLimit": 1}));
    let mut p = pod("a", "Running", "");
    p["status"]["containerStatuses"][0]["restartCount"] = json!(2);
    let actions = reconcile(&j, &[p], at(NOW), &mut names());
    assert_eq!(status(&actions)["conditions"][0]["reason"], "BackoffLimitExceeded");
    assert!(actions.contains(&Action::Delete { namespace: "default".into(), name: "a".into() }), "its running pod goes");
}

#[test]
fn the_active_deadline_fails_the_job_and_stops_its_pods() {
    let mut j = job(json!({"activeDeadlineSeconds": 30}));
    j["status"] = json!({"startTime": "2026-01-01T00:09:00Z"});
    let actions = reconcile(&j, &[pod("a", "Running", "")], at(NOW), &mut names());
    assert_eq!(status(&actions)["conditions"][0]["reason"], "DeadlineExceeded");
    assert!(actions.contains(&Action::Delete { namespace: "default".into(), name: "a".into() }));
    let early = reconcile(&j, &[pod("a", "Running", "")], at("2026-01-01T00:09:20Z"), &mut names());
    assert!(!early.iter().any(|a| matches!(a, Action::Delete { .. })));
}
