//! Deployment reconcile cases: the first ReplicaSet, each step of a rolling update within
//! maxSurge/maxUnavailable, Recreate, pause, and the parameters' rounding.

use serde_json::{json, Value};

use super::*;

fn deployment(replicas: i64, env: &str, strategy: Value) -> Value {
    json!({"metadata": {"name": "web", "namespace": "default", "uid": "d-1", "generation": 3},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "strategy": strategy,
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "V", "value": env}]}]}}}})
}

fn rs(d: &Value, name: &str, created: &str, desired: i64, pods: i64, ready: i64) -> Value {
    let hash = if name == "new" { template_hash(&d["spec"]["template"]) } else { "0ld".into() };
    json!({"metadata": {"name": format!("web-{name}"), "creationTimestamp": created, "labels": {HASH_LABEL: hash}, "generation": 4,
            "ownerReferences": [{"uid": "d-1", "controller": true}]},
        "spec": {"replicas": desired}, "status": {"replicas": pods, "readyReplicas": ready, "observedGeneration": 4}})
}

fn scales(actions: &[Action]) -> Vec<(String, i64)> {
    actions.iter().filter_map(|a| if let Action::Scale { name, replicas } = a { Some((name.clone(), *replicas)) } else { None }).collect()
}

fn rolling(surge: i64, unavailable: i64) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

#[test]
fn the_first_replicaset_starts_full_and_carries_the_hash() {
    let d = deployment(3, "1", rolling(1, 0));
    let actions = reconcile(&d, &[]);
    let Action::CreateReplicaSet(rs) = &actions[0] else { panic!("{actions:?}") };
    let hash = template_hash(&d["spec"]["template"]);
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(rs["spec"]["replicas"], 3);
    assert_eq!(rs["spec"]["selector"]["matchLabels"][HASH_LABEL], hash.as_str());
    assert_eq!(rs["spec"]["template"]["metadata"]["labels"][HASH_LABEL], hash.as_str());
    assert_eq!(rs["metadata"]["ownerReferences"][0]["uid"], "d-1");
    assert_ne!(template_hash(&deployment(3, "2", rolling(1, 0))["spec"]["template"]), hash);
}

#[test]
fn a_rolling_update_surges_then_trades_ready_old_for_new() {
    let d = deployment(3, "2", rolling(1, 0));
    // New set just created: grow it by the surge; no old pod may go (nothing extra ready).
    let step1 = reconcile(&d, &[rs(&d, "old", "t1", 3, 3, 3), rs(&d, "new", "t2", 0, 0, 0)]);
    assert_eq!(scales(&step1), vec![("web-new".into(), 1)]);
    // The new pod is ready: one old pod may go; the new set may not grow past the surge.
    let step2 = reconcile(&d, &[rs(&d, "old", "t1", 3, 3, 3), rs(&d, "new", "t2", 1, 1, 1)]);
    assert_eq!(scales(&step2), vec![("web-old".into(), 2)]);
    // With one old gone, the new set grows again.
    let step3 = reconcile(&d, &[rs(&d, "old", "t1", 2, 2, 2), rs(&d, "new", "t2", 1, 1, 1)]);
    assert_eq!(scales(&step3), vec![("web-new".into(), 2)]);
    // Done: nothing to scale, status says so.
    let done = reconcile(&d, &[rs(&d, "old", "t1", 0, 0, 0), rs(&d, "new", "t2", 3, 3, 3)]);
    assert!(scales(&done).is_empty());
    let Some(Action::Status(s)) = done.last() else { panic!() };
    assert_eq!((s["updatedReplicas"].as_i64(), s["readyReplicas"].as_i64(), s["observedGeneration"].as_i64()), (Some(3), Some(3), Some(3)));
    assert_eq!(s["conditions"][1]["reason"], "NewReplicaSetAvailable");
}

#[test]
fn a_replicaset_status_behind_its_spec_holds_the_rollout() {
    let d = deployment(3, "2", rolling(1, 0));
    let mut stale = rs(&d, "old", "t1", 3, 3, 3);
    stale["metadata"]["generation"] = json!(5);
    let actions = reconcile(&d, &[stale, rs(&d, "new", "t2", 1, 1, 1)]);
    assert!(scales(&actions).is_empty(), "{actions:?}");
}

#[test]
fn max_unavailable_lets_old_pods_go_first() {
    let d = deployment(4, "2", rolling(0, 1));
    let step = reconcile(&d, &[rs(&d, "old", "t1", 4, 4, 4), rs(&d, "new", "t2", 0, 0, 0)]);
    assert_eq!(scales(&step), vec![("web-old".into(), 3)]);
}

#[test]
fn recreate_empties_the_old_set_before_the_new_one_grows() {
    let d = deployment(2, "2", json!({"type": "Recreate"}));
    let step1 = reconcile(&d, &[rs(&d, "old", "t1", 2, 2, 2), rs(&d, "new", "t2", 0, 0, 0)]);
    assert_eq!(scales(&step1), vec![("web-old".into(), 0)]);
    let waiting = reconcile(&d, &[rs(&d, "old", "t1", 0, 1, 0), rs(&d, "new", "t2", 0, 0, 0)]);
    assert!(scales(&waiting).is_empty(), "old pods still terminating");
    let step2 = reconcile(&d, &[rs(&d, "old", "t1", 0, 0, 0), rs(&d, "new", "t2", 0, 0, 0)]);
    assert_eq!(scales(&step2), vec![("web-new".into(), 2)]);
}

#[test]
fn a_paused_deployment_changes_no_replicaset() {
    let mut d = deployment(3, "2", rolling(1, 0));
    d["spec"]["paused"] = json!(true);
    let actions = reconcile(&d, &[rs(&d, "old", "t1", 3, 3, 3)]);
    assert!(actions.iter().all(|a| matches!(a, Action::Status(_))), "{actions:?}");
}

#[test]
fn percentages_round_like_kubernetes() {
    assert_eq!(int_or_percent(&json!("25%"), 10, true, 1), 3);
    assert_eq!(int_or_percent(&json!("25%"), 10, false, 1), 2);
    assert_eq!(int_or_percent(&json!(2), 10, false, 1), 2);
    assert_eq!(int_or_percent(&Value::Null, 10, true, 1), 1);
}

fn revisions(actions: &[Action]) -> Vec<(String, u64)> {
    actions.iter().filter_map(|a| if let Action::SetRevision { name, revision } = a { Some((name.clone(), *revision)) } else { None }).collect()
}

#[test]
fn sets_carry_revisions_a_rollback_renews_one_and_history_is_bounded() {
    let d = deployment(3, "2", rolling(1, 0));
    let mut old = rs(&d, "old", "t1", 3, 3, 3);
    old["metadata"]["annotations"] = json!({REVISION: "4"});
    let actions = reconcile(&d, std::slice::from_ref(&old));
    let Action::CreateReplicaSet(created) = &actions[0] else { panic!("{actions:?}") };
    assert_eq!(created["metadata"]["annotations"][REVISION], "5", "one past the newest");

    // The template went back to an older set's: it becomes revision 5.
    let mut back = rs(&d, "new", "t0", 0, 0, 0);
    back["metadata"]["annotations"] = json!({REVISION: "2"});
    assert_eq!(revisions(&reconcile(&d, &[old.clone(), back.clone()])), vec![("web-new".to_string(), 5)]);
    back["metadata"]["annotations"] = json!({REVISION: "5"});
    assert!(revisions(&reconcile(&d, &[old, back.clone()])).is_empty());

    // Empty old sets beyond the limit go, oldest first.
    let mut limited = d.clone();
    limited["spec"]["revisionHistoryLimit"] = json!(1);
    let empty = |n: &str, r: &str| {
        let mut s = rs(&d, n, "t0", 0, 0, 0);
        s["metadata"]["annotations"] = json!({REVISION: r});
        s
    };
    let actions = reconcile(&limited, &[empty("a", "1"), empty("b", "3"), empty("c", "2"), back]);
    let gone: Vec<&Action> = actions.iter().filter(|a| matches!(a, Action::DeleteReplicaSet(_))).collect();
    assert_eq!(gone, vec![&Action::DeleteReplicaSet("web-a".into()), &Action::DeleteReplicaSet("web-c".into())]);
}
