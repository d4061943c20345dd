//! The StatefulSet controller's decisions: ordered start, claims, ordered scale-down,
//! replacement of failed pods, rolling update.

use serde_json::{json, Value};

use super::*;

fn sts(spec: Value) -> Value {
    let mut s = json!({"metadata": {"name": "web", "namespace": "default", "uid": "sts-1", "generation": 1},
        "spec": {"replicas": 3, "serviceName": "web", "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "v1"}]}}}});
    crate::api::object::merge_patch(&mut s["spec"], &spec);
    s
}

fn pod(set: &Value, i: usize, ready: bool) -> Value {
    json!({"metadata": {"name": format!("web-{i}"), "namespace": "default",
            "labels": {HASH_LABEL: template_hash(&set["spec"]["template"])}, "ownerReferences": [{"uid": "sts-1", "controller": true}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

fn created(actions: &[Action]) -> Vec<String> {
    actions.iter().filter_map(|a| if let Action::CreatePod(p) = a { p["metadata"]["name"].as_str().map(String::from) } else { None }).collect()
}

fn deleted(actions: &[Action]) -> Vec<String> {
    actions.iter().filter_map(|a| if let Action::DeletePod(n) = a { Some(n.clone()) } else { None }).collect()
}

#[test]
fn pods_start_in_order_each_after_the_previous_is_ready() {
    let s = sts(json!({}));
    let actions = reconcile(&s, &[], &[]);
    assert_eq!(created(&actions), vec!["web-0"]);
    let Action::CreatePod(p) = &actions[0] else { panic!("{actions:?}") };
    assert_eq!((p["spec"]["hostname"].as_str(), p["spec"]["subdomain"].as_str()), (Some("web-0"), Some("web")));
    assert_eq!(p["metadata"]["labels"][POD_NAME_LABEL], "web-0");
    assert_eq!(p["metadata"]["labels"]["app"], "web");
    assert!(created(&reconcile(&s, &[pod(&s, 0, false)], &[])).is_empty(), "web-0 not ready: wait");
    assert_eq!(created(&reconcile(&s, &[pod(&s, 0, true)], &[])), vec!["web-1"]);
    // Parallel: everything missing at once.
    let p = sts(json!({"podManagementPolicy": "Parallel"}));
    assert_eq!(created(&reconcile(&p, &[], &[])), vec!["web-0", "web-1", "web-2"]);
}

#[test]
fn each_pod_gets_its_own_claims_made_before_it_and_kept() {
    let s = sts(json!({"replicas": 1, "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}));
    let actions = reconcile(&s, &[], &[]);
    let Action::CreateClaim(pvc) = &actions[0] else { panic!("claim first: {actions:?}") };
    assert_eq!(pvc["metadata"]["name"], "data-web-0");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "1Gi");
    let Action::CreatePod(p) = &actions[1] else { panic!("{actions:?}") };
    assert_eq!(p["spec"]["volumes"], json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}}]));
    let existing = [json!({"metadata": {"name": "data-web-0", "namespace": "default"}})];
    assert!(!reconcile(&s, &[], &existing).iter().any(|a| matches!(a, Action::CreateClaim(_))), "an existing claim is reused");
}

#[test]
fn scale_down_removes_the_highest_ordinal_first_one_at_a_time() {
    let s = sts(json!({"replicas": 1}));
    let pods = [pod(&s, 0, true), pod(&s, 1, true), pod(&s, 2, true)];
    assert_eq!(deleted(&reconcile(&s, &pods, &[])), vec!["web-2"]);
    let mut going = pod(&s, 2, true);
    going["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert!(deleted(&reconcile(&s, &[pod(&s, 0, true), pod(&s, 1, true), going], &[])).is_empty(), "wait for web-2 to go");
    assert!(deleted(&reconcile(&s, &[pod(&s, 0, false), pod(&s, 1, true)], &[])).is_empty(), "web-0 not ready: wait");
}

#[test]
fn a_failed_pod_is_replaced_under_the_same_name() {
    let s = sts(json!({}));
    let mut failed = pod(&s, 0, false);
    failed["status"]["phase"] = json!("Failed");
    assert_eq!(deleted(&reconcile(&s, &[failed], &[])), vec!["web-0"]);
}

#[test]
fn a_new_template_replaces_pods_from_the_highest_ordinal_above_the_partition() {
    let old = sts(json!({}));
    let new = sts(json!({"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}));
    let pods = [pod(&old, 0, true), pod(&old, 1, true), pod(&old, 2, true)];
    assert_eq!(deleted(&reconcile(&new, &pods, &[])), vec!["web-2"]);
    let pods = [pod(&old, 0, true), pod(&old, 1, true), pod(&new, 2, true)];
    assert_eq!(deleted(&reconcile(&new, &pods, &[])), vec!["web-1"]);
    let partitioned = sts(json!({"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}, "updateStrategy": {"rollingUpdate": {"partition": 2}}}));
    let mut p2 = pod(&new, 2, true);
    p2["metadata"]["labels"][HASH_LABEL] = json!(template_hash(&partitioned["spec"]["template"]));
    assert!(deleted(&reconcile(&partitioned, &[pod(&old, 0, true), pod(&old, 1, true), p2], &[])).is_empty(), "below the partition stays");
}
