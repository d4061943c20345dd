//! The DaemonSet controller's decisions: placement, nodes coming and going, rolling update.

use serde_json::{json, Value};

use super::*;

fn ds(template_spec: Value) -> Value {
    json!({"metadata": {"name": "agent", "namespace": "kube-system", "uid": "ds-1", "generation": 1},
        "spec": {"template": {"metadata": {"labels": {"app": "agent"}}, "spec": template_spec}}})
}

fn node(name: &str, labels: Value, taints: Value) -> Value {
    json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}})
}

fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Value {
    json!({"metadata": {"name": name, "namespace": "kube-system", "labels": {HASH_LABEL: hash},
            "ownerReferences": [{"uid": "ds-1", "controller": true}]},
        "spec": {"nodeName": node},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

fn names() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("n{n}")
    }
}

fn created_on(actions: &[Action]) -> Vec<String> {
    actions.iter().filter_map(|a| if let Action::Create(p) = a { p["spec"]["nodeName"].as_str().map(String::from) } else { None }).collect()
}

fn deleted(actions: &[Action]) -> Vec<String> {
    actions.iter().filter_map(|a| if let Action::Delete { name, .. } = a { Some(name.clone()) } else { None }).collect()
}

#[test]
fn one_pod_per_eligible_node_bound_to_it() {
    let d = ds(json!({"nodeSelector": {"disk": "ssd"}, "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}], "containers": [{"name": "c"}]}));
    let nodes = [
        node("a", json!({"disk": "ssd"}), json!([])),
        node("b", json!({"disk": "hdd"}), json!([])),
        node("c", json!({"disk": "ssd"}), json!([{"key": "gpu", "value": "x", "effect": "NoSchedule"}])),
        node("d", json!({"disk": "ssd"}), json!([{"key": "dedicated", "value": "db", "effect": "NoExecute"}])),
        node("e", json!({"disk": "ssd"}), json!([{"key": "soft", "effect": "PreferNoSchedule"}])),
    ];
    let actions = reconcile(&d, &nodes, &[], &mut names());
    assert_eq!(created_on(&actions), vec!["a", "c", "e"]);
    let Action::Create(p) = &actions[0] else { panic!() };
    assert_eq!(p["metadata"]["name"], "agent-n1");
    assert_eq!(p["metadata"]["labels"]["app"], "agent");
    assert_eq!(p["metadata"]["labels"][HASH_LABEL], template_hash(&d["spec"]["template"]).as_str());
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
}

#[test]
fn follows_nodes_joining_and_leaving_and_removes_duplicates() {
    let d = ds(json!({"containers": [{"name": "c"}]}));
    let h = template_hash(&d["spec"]["template"]);
    let pods = [pod("on-a", "a", &h, true), pod("on-a-too", "a", &h, true), pod("on-gone", "gone", &h, true)];
    let nodes = [node("a", json!({}), json!([])), node("new", json!({}), json!([]))];
    let actions = reconcile(&d, &nodes, &pods, &mut names());
    assert_eq!(created_on(&actions), vec!["new"]);
    assert_eq!(deleted(&actions), vec!["on-a-too", "on-gone"]);
    let status = actions.iter().find_map(|a| if let Action::Status(s) = a { Some(s.clone()) } else { None }).unwrap();
    assert_eq!((status["desiredNumberScheduled"].as_u64(), status["numberMisscheduled"].as_u64()), (Some(2), Some(1)));
}

#[test]
fn a_new_template_rolls_out_one_node_at_a_time() {
    let d = ds(json!({"containers": [{"name": "c", "image": "v2"}]}));
    let h = template_hash(&d["spec"]["template"]);
    let nodes: Vec<Value> = ["a", "b", "c"].iter().map(|n| node(n, json!({}), json!([]))).collect();
    let old = |n: &str, ready: bool| pod(&format!("old-{n}"), n, "old", ready);
    // All old and ready: one goes.
    let actions = reconcile(&d, &nodes, &[old("a", true), old("b", true), old("c", true)], &mut names());
    assert_eq!(deleted(&actions).len(), 1);
    assert!(created_on(&actions).is_empty());
    // Node a's new pod is not ready yet: nothing else goes.
    let actions = reconcile(&d, &nodes, &[pod("new-a", "a", &h, false), old("b", true), old("c", true)], &mut names());
    assert_eq!(deleted(&actions), Vec::<String>::new());
    // Ready again: the next one goes; an unready old pod goes at no cost.
    let actions = reconcile(&d, &nodes, &[pod("new-a", "a", &h, true), old("b", true), old("c", false)], &mut names());
    assert_eq!(deleted(&actions), vec!["old-c"], "the unready old pod goes at no cost; b waits while c is unavailable");
    // All current: settled.
    let mut settled = d.clone();
    let pods = [pod("x", "a", &h, true), pod("y", "b", &h, true), pod("z", "c", &h, true)];
    settled["status"] = reconcile(&d, &nodes, &pods, &mut names()).into_iter().find_map(|a| if let Action::Status(s) = a { Some(s) } else { None }).unwrap();
    assert_eq!(reconcile(&settled, &nodes, &pods, &mut names()), vec![]);
}
