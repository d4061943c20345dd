//! Strategic merge patch cases, after the behaviours apimachinery's strategicpatch tests pin.

use serde_json::{json, Value};

use super::*;
use crate::api::patch::schema::root;

fn deploy(containers: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 2, "template": {"spec": {"containers": containers}}}})
}

fn containers(v: &Value) -> &Value {
    &v["spec"]["template"]["spec"]["containers"]
}

fn patch(original: &Value, p: Value) -> Value {
    apply(original, &p, root(original["kind"].as_str().unwrap())).unwrap()
}

#[test]
fn adding_a_container_keeps_the_others() {
    let live = deploy(json!([{"name": "app", "image": "app:1"}, {"name": "log", "image": "log:1"}]));
    let out = patch(&live, json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "s:1"}]}}}}));
    // New items lead, as apimachinery orders them; the live ones keep their order.
    assert_eq!(containers(&out), &json!([
        {"name": "sidecar", "image": "s:1"}, {"name": "app", "image": "app:1"}, {"name": "log", "image": "log:1"}]));
    assert_eq!(out["spec"]["replicas"], 2);
}

#[test]
fn a_container_is_changed_by_name() {
    let live = deploy(json!([{"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]}, {"name": "log", "image": "log:1"}]));
    let out = patch(&live, json!({"spec": {"template": {"spec": {"containers": [
        {"name": "log", "image": "log:2", "env": [{"name": "B", "value": "2"}]}]}}}}));
    assert_eq!(containers(&out), &json!([
        {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
        {"name": "log", "image": "log:2", "env": [{"name": "B", "value": "2"}]}]));
    // Nested keyed lists merge too.
    let out = patch(&out, json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "A", "value": "changed"}, {"name": "C", "value": "3"}]}]}}}}));
    assert_eq!(containers(&out)[0]["env"], json!([{"name": "A", "value": "changed"}, {"name": "C", "value": "3"}]));
    assert_eq!(containers(&out)[0]["image"], "app:1");
}

#[test]
fn kubectl_apply_patch_with_element_order() {
    // What `kubectl apply` sends after a manifest's image changed and a container was removed.
    let live = deploy(json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}, {"name": "c", "image": "c:1"}]));
    let out = patch(&live, json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
        "containers": [{"name": "a", "image": "a:2"}, {"name": "b", "$patch": "delete"}]}}}}));
    assert_eq!(containers(&out), &json!([{"name": "c", "image": "c:1"}, {"name": "a", "image": "a:2"}]));
    // An order alone reorders the live list.
    let out = patch(&out, json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "c"}]}}}}));
    assert_eq!(containers(&out), &json!([{"name": "a", "image": "a:2"}, {"name": "c", "image": "c:1"}]));
}

#[test]
fn replace_directives() {
    let live = deploy(json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]));
    let out = patch(&live, json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "z", "image": "z"}]}}}}));
    assert_eq!(containers(&out), &json!([{"name": "z", "image": "z"}]));
    let live = json!({"kind": "ConfigMap", "data": {"a": "1", "b": "2"}});
    let out = patch(&live, json!({"data": {"$patch": "replace", "c": "3"}}));
    assert_eq!(out["data"], json!({"c": "3"}));
    let out = patch(&live, json!({"data": {"$patch": "delete"}}));
    assert_eq!(out["data"], json!({}));
}

#[test]
fn null_deletes_and_maps_merge() {
    let live = json!({"kind": "ConfigMap", "metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}, "data": {"k": "v"}});
    let out = patch(&live, json!({"metadata": {"labels": {"a": null, "c": "3"}}, "data": null}));
    assert_eq!(out, json!({"kind": "ConfigMap", "metadata": {"name": "x", "labels": {"b": "2", "c": "3"}}}));
}

#[test]
fn lists_without_a_strategy_are_replaced() {
    let live = json!({"kind": "Pod", "spec": {"tolerations": [{"key": "a"}, {"key": "b"}], "containers": []}});
    let out = patch(&live, json!({"spec": {"tolerations": [{"key": "c"}]}}));
    assert_eq!(out["spec"]["tolerations"], json!([{"key": "c"}]));
}

#[test]
fn retain_keys_switches_a_volume_source() {
    let live = json!({"kind": "Pod", "spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}});
    let out = patch(&live, json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/x"}}]}}));
    assert_eq!(out["spec"]["volumes"], json!([{"name": "v", "hostPath": {"path": "/x"}}, {"name": "w", "emptyDir": {}}]));
    let err = apply(&live, &json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name"], "hostPath": {"path": "/x"}}]}}), root("Pod"));
    assert!(err.unwrap_err().0.contains("$retainKeys"));
}

#[test]
fn scalar_lists_merge_as_sets() {
    let live = json!({"kind": "Pod", "metadata": {"finalizers": ["a", "b"]}});
    let out = patch(&live, json!({"metadata": {"finalizers": ["b", "c"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    let out = patch(&out, json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "c"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
}

#[test]
fn malformed_patches_are_refused() {
    let live = deploy(json!([{"name": "a", "image": "a:1"}]));
    let root = root("Deployment");
    for bad in [
        json!({"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}}),
        json!({"spec": {"template": {"spec": {"containers": ["a string"]}}}}),
        json!({"spec": {"$patch": "explode"}}),
        json!({"spec": {"$unknown": 1}}),
        json!({"spec": {"template": {"spec": {"$setElementOrder/containers": "not a list"}}}}),
        json!(["not", "an", "object"]),
    ] {
        assert!(apply(&live, &bad, root).is_err(), "{bad} should be refused");
    }
}

#[test]
fn status_conditions_merge_by_type() {
    let live = json!({"kind": "Node", "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}]}});
    let out = patch(&live, json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "X"}]}}));
    assert_eq!(out["status"]["conditions"], json!([
        {"type": "Ready", "status": "False", "reason": "X"}, {"type": "DiskPressure", "status": "False"}]));
}
