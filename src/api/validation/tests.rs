//! Table tests for the field rules: the defects kubectl users met, pod specs wherever they are, Jobs, messages, selectors.

use serde_json::{json, Value};

use super::*;

fn deployment(spec: Value) -> Value {
    let mut d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "i"}]}}}});
    crate::api::object::merge_patch(&mut d, &json!({"spec": spec}));
    d
}

#[test]
fn a_good_object_has_no_errors() {
    assert!(check("Deployment", &deployment(json!({}))).is_empty());
    assert!(check("Pod", &json!({"spec": {"containers": [{"name": "a", "image": "i", "ports": [{"containerPort": 80, "name": "http"}]}]}})).is_empty());
    assert!(check("ConfigMap", &json!({"data": {}})).is_empty());
}

#[test]
fn the_defects_kubectl_users_met_are_refused_with_their_field() {
    assert_eq!(check("Deployment", &deployment(json!({"replicas": -3}))), ["spec.replicas: Invalid value: -3: must be greater than or equal to 0"]);
    let mismatch = deployment(json!({"selector": {"matchLabels": {"app": "other"}}}));
    assert_eq!(check("Deployment", &mismatch), [r#"spec.template.metadata.labels: Invalid value: {"app":"web"}: `selector` does not match template `labels`"#]);
    let twins = json!({"spec": {"containers": [{"name": "a", "image": "i"}, {"name": "a", "image": "j"}]}});
    assert_eq!(check("Pod", &twins), [r#"spec.containers[1].name: Duplicate value: "a""#]);
    let old = deployment(json!({}));
    let moved = deployment(json!({"selector": {"matchLabels": {"app": "web", "v": "2"}}, "template": {"metadata": {"labels": {"v": "2"}}}}));
    assert!(check("Deployment", &moved).is_empty());
    assert_eq!(check_update("Deployment", &old, &moved), [r#"spec.selector: Invalid value: {"matchLabels":{"app":"web","v":"2"}}: field is immutable"#]);
    assert!(check_update("Deployment", &old, &deployment(json!({"replicas": 4}))).is_empty());
}

#[test]
fn pod_specs_are_checked_wherever_they_are() {
    let errs = check("Pod", &json!({"spec": {"containers": [], "restartPolicy": "Sometimes"}}));
    assert_eq!(errs, ["spec.containers: Required value", r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#]);
    let bad = json!({"containers": [{"name": "Bad_Name", "image": " ", "ports": [{"containerPort": 0}, {"containerPort": 81, "name": "p"}, {"containerPort": 82, "name": "p"}]}]});
    let errs = check("Deployment", &deployment(json!({"template": {"spec": bad}})));
    assert_eq!(errs.len(), 4, "{errs:?}");
    assert!(errs[0].starts_with(r#"spec.template.spec.containers[0].name: Invalid value: "Bad_Name": "#), "{errs:?}");
    assert_eq!(errs[1..], [
        "spec.template.spec.containers[0].image: Required value".to_string(),
        "spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive".to_string(),
        r#"spec.template.spec.containers[0].ports[2].name: Duplicate value: "p""#.to_string(),
    ]);
    let never = check("Deployment", &deployment(json!({"template": {"spec": {"restartPolicy": "Never"}}})));
    assert_eq!(never, [r#"spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always""#]);
}

#[test]
fn jobs_need_a_restart_policy_that_ends() {
    let job = |restart: Value| json!({"spec": {"template": {"spec": {"restartPolicy": restart, "containers": [{"name": "a", "image": "i"}]}}}});
    assert!(check("Job", &job(json!("Never"))).is_empty());
    assert_eq!(check("Job", &job(json!("Always"))), [r#"spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#]);
    let cron = json!({"spec": {"concurrencyPolicy": "Sometimes", "jobTemplate": {"spec": job(json!("OnFailure"))["spec"].clone()}}});
    assert_eq!(check("CronJob", &cron).len(), 1);
}

#[test]
fn messages_read_as_kubernetes_writes_them() {
    assert_eq!(message("Deployment", "apps", "web", &["a: b".into()]), r#"Deployment.apps "web" is invalid: a: b"#);
    assert_eq!(message("Pod", "", "p", &["a".into(), "b".into()]), r#"Pod "p" is invalid: [a, b]"#);
}

#[test]
fn selectors_match_labels_and_expressions() {
    let labels = json!({"app": "web", "tier": "f"});
    assert!(selects(&json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["f", "b"]}]}), &labels));
    assert!(!selects(&json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["f"]}]}), &labels));
    assert!(selects(&json!({"matchExpressions": [{"key": "legacy", "operator": "DoesNotExist"}]}), &labels));
    assert!(!selects(&json!({"matchLabels": {"app": "web"}}), &json!(null)));
}
