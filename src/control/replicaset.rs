//! The ReplicaSet controller: keep `spec.replicas` live pods from the template, owned by
//! the ReplicaSet, and report its status. `reconcile` is pure (pod names come in from the
//! loop); `run` executes its actions through the fenced store and waits for its own writes
//! to reach the informer before looking again, so it never counts a pod twice or misses one.

use std::time::Duration;

use serde_json::{json, Value};

use super::owners::{apply_pod_actions, pod_from_template, suffix, OwnerLoop, Written};
use super::ControlConfig;
use crate::api::resources;
use crate::api::store::ObjectStore;

pub use super::owners::PodAction as Action;

fn is_owned_by(pod: &Value, uid: &str) -> bool {
    pod["metadata"]["ownerReferences"].as_array().is_some_and(|refs| refs.iter().any(|r| r["controller"] == true && r["uid"] == uid))
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Which pods to give up first: unscheduled, then not running, then not ready, then the
/// newest (as Kubernetes' ActivePods ordering does, simplified).
fn deletion_rank(pod: &Value) -> (bool, bool, bool, String) {
    (
        !pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty()),
        pod["status"]["phase"] != "Running",
        !ready(pod),
        pod["metadata"]["creationTimestamp"].as_str().unwrap_or("").to_string(),
    )
}

/// What to do for `rs` given every pod of its namespace; `names` supplies fresh pod names.
pub fn reconcile(rs: &Value, pods: &[Value], names: &mut dyn FnMut() -> String) -> Vec<Action> {
    let meta = &rs["metadata"];
    let (Some(uid), Some(name)) = (meta["uid"].as_str(), meta["name"].as_str()) else { return vec![] };
    let ns = meta["namespace"].as_str().unwrap_or("default");
    let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    let owned: Vec<&Value> = pods.iter().filter(|p| is_owned_by(p, uid)).collect();
    let mut active: Vec<&Value> = owned
        .iter()
        .copied()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .collect();
    let mut actions = Vec::new();
    if meta["deletionTimestamp"].is_null() {
        if active.len() < want {
            let template = &rs["spec"]["template"];
            for _ in active.len()..want {
                let pod_name = format!("{name}-{}", names());
                actions.push(Action::Create(pod_from_template(template, &pod_name, ns, rs, ("apps/v1", "ReplicaSet"), &[])));
            }
        } else if active.len() > want {
            active.sort_by_key(|p| std::cmp::Reverse(deletion_rank(p)));
            let excess = active.len() - want;
            for p in active.drain(..excess) {
                actions.push(Action::Delete { namespace: ns.into(), name: p["metadata"]["name"].as_str().unwrap_or_default().into() });
            }
        }
    }
    // The status describes the set after this pass's deletions: reporting the pods being
    // deleted as ready would let a Deployment take away more than its budget allows.
    let ready_count = active.iter().filter(|p| ready(p)).count();
    let status = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": active.len(),
        "readyReplicas": ready_count,
        "availableReplicas": ready_count,
        "observedGeneration": meta["generation"].as_i64().unwrap_or(1),
    });
    if rs["status"] != status {
        actions.push(Action::Status(status));
    }
    actions
}

pub async fn run(store: ObjectStore, _cfg: ControlConfig) {
    let rs_res = resources::by_plural("apps", "replicasets").expect("replicasets are registered");
    let pods_res = resources::by_plural("", "pods").expect("pods are registered");
    let lp = OwnerLoop::start(&store, rs_res, pods_res, Duration::from_secs(10)).await;
    loop {
        lp.next_pass().await;
        let mut written = Written::default();
        for (rs, pods) in lp.owners_with_children() {
            let actions = reconcile(&rs, &pods, &mut suffix);
            apply_pod_actions(&store, rs_res, &rs, actions, &mut written).await;
        }
        lp.settle(&written).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: i64) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "rs-1", "generation": 2},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    }

    fn pod(name: &str, owner: &str, node: &str, ready: bool, created: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                "ownerReferences": [{"uid": owner, "controller": true}]},
            "spec": {"nodeName": node},
            "status": {"phase": if node.is_empty() { "Pending" } else { "Running" },
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn names() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("n{n}")
        }
    }

    #[test]
    fn scales_up_from_the_template_with_an_owner() {
        let actions = reconcile(&rs(3), &[pod("web-a", "rs-1", "n1", true, "t1"), pod("other", "rs-2", "n1", true, "t1")], &mut names());
        let created: Vec<&Value> = actions.iter().filter_map(|a| if let Action::Create(p) = a { Some(p) } else { None }).collect();
        assert_eq!(created.len(), 2);
        assert_eq!(created[0]["metadata"]["name"], "web-n1");
        assert_eq!(created[0]["metadata"]["labels"]["app"], "web");
        assert_eq!(created[0]["metadata"]["ownerReferences"][0]["uid"], "rs-1");
        assert_eq!(created[0]["spec"]["containers"][0]["image"], "i");
        let Some(Action::Status(s)) = actions.last() else { panic!("no status") };
        assert_eq!((s["replicas"].as_u64(), s["readyReplicas"].as_u64(), s["observedGeneration"].as_u64()), (Some(1), Some(1), Some(2)));
    }

    #[test]
    fn scales_down_unscheduled_unready_and_newest_first() {
        let pods = [
            pod("old-ready", "rs-1", "n1", true, "t1"),
            pod("new-ready", "rs-1", "n2", true, "t3"),
            pod("unready", "rs-1", "n1", false, "t2"),
            pod("pending", "rs-1", "", false, "t1"),
        ];
        let deleted: Vec<String> =
            reconcile(&rs(1), &pods, &mut names()).into_iter().filter_map(|a| if let Action::Delete { name, .. } = a { Some(name) } else { None }).collect();
        assert_eq!(deleted, vec!["pending", "unready", "new-ready"]);
        let status = reconcile(&rs(1), &pods, &mut names()).into_iter().find_map(|a| if let Action::Status(s) = a { Some(s) } else { None }).unwrap();
        assert_eq!((status["replicas"].as_u64(), status["readyReplicas"].as_u64()), (Some(1), Some(1)), "deleted pods are not counted");
    }

    #[test]
    fn terminating_pods_do_not_count_and_a_settled_set_does_nothing() {
        let mut going = pod("going", "rs-1", "n1", true, "t1");
        going["metadata"]["deletionTimestamp"] = json!("t9");
        let actions = reconcile(&rs(1), &[going], &mut names());
        assert_eq!(actions.iter().filter(|a| matches!(a, Action::Create(_))).count(), 1);
        let mut settled = rs(1);
        settled["status"] = json!({"replicas": 1, "fullyLabeledReplicas": 1, "readyReplicas": 1, "availableReplicas": 1, "observedGeneration": 2});
        assert_eq!(reconcile(&settled, &[pod("a", "rs-1", "n1", true, "t1")], &mut names()), vec![]);
    }
}
