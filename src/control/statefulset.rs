//! The StatefulSet controller: pods with stable identities `NAME-0 .. NAME-(N-1)` (hostname
//! and subdomain set for DNS), each with its own PersistentVolumeClaims from
//! `volumeClaimTemplates` (`TEMPLATE-NAME-i`, kept when the pod goes). With the default
//! `OrderedReady` policy, pod i is created only once pods 0..i are running and ready, and
//! scale-down removes the highest ordinal first, one at a time, when the rest are ready;
//! `Parallel` does both at once. A changed template rolls out from the highest ordinal
//! down (above `partition`), one pod at a time. A new pod never shares a name with one
//! still terminating (names are unique in the store), so one identity never runs twice.
//! `reconcile` is pure.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::daemonset::{template_hash, HASH_LABEL};
use super::informer::Informer;
use super::events::on_success;
use super::owners::{pod_from_template, write_status, OwnerLoop, Written};
use super::ControlConfig;
use crate::api::resources;
use crate::api::store::ObjectStore;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreateClaim(Value),
    CreatePod(Value),
    DeletePod(String),
    Status(Value),
}

fn is_owned_by(pod: &Value, uid: &str) -> bool {
    pod["metadata"]["ownerReferences"].as_array().is_some_and(|refs| refs.iter().any(|r| r["controller"] == true && r["uid"] == uid))
}

fn running_and_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// The ordinal of `pod` if it is one of `set`'s (`SET-i`).
fn ordinal(set: &str, pod: &Value) -> Option<usize> {
    pod["metadata"]["name"].as_str()?.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn claim_name(template: &Value, pod: &str) -> String {
    format!("{}-{pod}", template["metadata"]["name"].as_str().unwrap_or("data"))
}

/// What to do for `sts` given every pod and PersistentVolumeClaim of its namespace.
pub fn reconcile(sts: &Value, pods: &[Value], claims: &[Value]) -> Vec<Action> {
    let meta = &sts["metadata"];
    let (Some(uid), Some(name)) = (meta["uid"].as_str(), meta["name"].as_str()) else { return vec![] };
    let ns = meta["namespace"].as_str().unwrap_or("default");
    let spec = &sts["spec"];
    let replicas = spec["replicas"].as_u64().unwrap_or(1) as usize;
    let parallel = spec["podManagementPolicy"] == "Parallel";
    let template = &spec["template"];
    let hash = template_hash(template);
    let claim_templates: Vec<&Value> = spec["volumeClaimTemplates"].as_array().map(|v| v.iter().collect()).unwrap_or_default();

    let mine: BTreeMap<usize, &Value> = pods.iter().filter(|p| is_owned_by(p, uid)).filter_map(|p| Some((ordinal(name, p)?, p))).collect();
    let have_claim = |n: &str| claims.iter().any(|c| c["metadata"]["name"] == n);
    let mut actions = vec![];

    let new_pod = |i: usize| -> Value {
        let pod_name = format!("{name}-{i}");
        let mut labels = template["metadata"]["labels"].as_object().cloned().unwrap_or_default();
        labels.insert(HASH_LABEL.into(), json!(hash));
        labels.insert(POD_NAME_LABEL.into(), json!(pod_name));
        labels.insert("apps.kubernetes.io/pod-index".into(), json!(i.to_string()));
        let mut pod_spec = template["spec"].clone();
        pod_spec["hostname"] = json!(pod_name);
        if let Some(svc) = spec["serviceName"].as_str().filter(|s| !s.is_empty()) {
            pod_spec["subdomain"] = json!(svc);
        }
        let mut volumes: Vec<Value> = pod_spec["volumes"].as_array().cloned().unwrap_or_default();
        for t in &claim_templates {
            let vol = t["metadata"]["name"].as_str().unwrap_or("data");
            volumes.retain(|v| v["name"] != vol);
            volumes.push(json!({"name": vol, "persistentVolumeClaim": {"claimName": claim_name(t, &pod_name)}}));
        }
        if !claim_templates.is_empty() {
            pod_spec["volumes"] = Value::Array(volumes);
        }
        let mut pod = pod_from_template(template, &pod_name, ns, sts, ("apps/v1", "StatefulSet"), &[]);
        pod["metadata"]["labels"] = Value::Object(labels);
        pod["spec"] = pod_spec;
        pod
    };

    if meta["deletionTimestamp"].is_null() {
        // Up: create what is missing in order (all at once when Parallel), each pod's claims
        // first. Failed pods are deleted to be made again.
        for i in 0..replicas {
            match mine.get(&i) {
                None => {
                    let pod_name = format!("{name}-{i}");
                    for t in &claim_templates {
                        let claim = claim_name(t, &pod_name);
                        if !have_claim(&claim) {
                            let mut pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                "metadata": {"name": claim, "namespace": ns, "labels": template["metadata"]["labels"].clone()},
                                "spec": t["spec"].clone()});
                            if pvc["metadata"]["labels"].is_null() {
                                pvc["metadata"].as_object_mut().expect("object").remove("labels");
                            }
                            actions.push(Action::CreateClaim(pvc));
                        }
                    }
                    actions.push(Action::CreatePod(new_pod(i)));
                    if !parallel {
                        break;
                    }
                }
                Some(p) if matches!(p["status"]["phase"].as_str(), Some("Failed" | "Succeeded")) && p["metadata"]["deletionTimestamp"].is_null() => {
                    actions.push(Action::DeletePod(format!("{name}-{i}")));
                    if !parallel {
                        break;
                    }
                }
                Some(p) if !running_and_ready(p) && !parallel => break,
                Some(_) => {}
            }
        }
        let all_ready = (0..replicas).all(|i| mine.get(&i).is_some_and(|p| running_and_ready(p)));
        // Down: the highest ordinals beyond `replicas` go, one at a time once the rest are
        // ready (all at once when Parallel).
        let extra: Vec<usize> = mine.keys().copied().filter(|&i| i >= replicas).rev().collect();
        let terminating = mine.values().any(|p| !p["metadata"]["deletionTimestamp"].is_null());
        for &i in &extra {
            if parallel || (all_ready && !terminating) {
                if mine[&i]["metadata"]["deletionTimestamp"].is_null() {
                    actions.push(Action::DeletePod(format!("{name}-{i}")));
                }
                if !parallel {
                    break;
                }
            }
        }
        // Rolling update: from the highest ordinal down to `partition`, one pod at a time,
        // when everything is ready and nothing is being removed.
        let partition = spec["updateStrategy"]["rollingUpdate"]["partition"].as_u64().unwrap_or(0) as usize;
        if spec["updateStrategy"]["type"] != "OnDelete" && extra.is_empty() && all_ready && !terminating {
            if let Some(i) = (partition..replicas).rev().find(|i| mine.get(i).is_some_and(|p| p["metadata"]["labels"][HASH_LABEL] != hash.as_str())) {
                actions.push(Action::DeletePod(format!("{name}-{i}")));
            }
        }
    }

    let live: Vec<&&Value> = mine.values().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect();
    let ready = live.iter().filter(|p| running_and_ready(p)).count();
    let updated = live.iter().filter(|p| p["metadata"]["labels"][HASH_LABEL] == hash.as_str()).count();
    let status = json!({
        "replicas": live.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": updated,
        "updatedReplicas": updated,
        "currentRevision": hash,
        "updateRevision": hash,
        "observedGeneration": meta["generation"].as_i64().unwrap_or(1),
    });
    if status.as_object().is_some_and(|m| m.iter().any(|(k, v)| sts["status"][k] != *v)) {
        actions.push(Action::Status(status));
    }
    actions
}

pub async fn run(store: ObjectStore, cfg: ControlConfig) {
    let sts_res = resources::by_plural("apps", "statefulsets").expect("statefulsets are registered");
    let pods_res = resources::by_plural("", "pods").expect("pods are registered");
    let pvc_res = resources::by_plural("", "persistentvolumeclaims").expect("claims are registered");
    let lp = OwnerLoop::start(&store, sts_res, pods_res, cfg.resync).await;
    let claims = Informer::start(store.clone(), pvc_res).await;
    loop {
        tokio::select! {
            _ = lp.next_pass() => {}
            _ = claims.changed.notified() => {}
        }
        let all_claims = claims.objects();
        let mut written = Written::default();
        let mut claims_rev = 0;
        for (sts, pods) in lp.owners_with_children() {
            let ns = sts["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
            let name = sts["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let ns_claims: Vec<Value> = all_claims.iter().filter(|c| c["metadata"]["namespace"] == ns.as_str()).cloned().collect();
            for action in reconcile(&sts, &pods, &ns_claims) {
                let on_pods = !matches!(action, Action::Status(_));
                let result = match action {
                    Action::CreateClaim(pvc) => match store.create(pvc_res, Some(&ns), pvc).await {
                        Ok(c) => {
                            claims_rev = claims_rev.max(super::informer::revision(&c));
                            continue;
                        }
                        Err(e) => Err(e),
                    },
                    Action::CreatePod(pod) => {
                        let message = format!("create Pod {} in StatefulSet {name} successful", pod["metadata"]["name"].as_str().unwrap_or_default());
                        on_success(store.create(pods_res, Some(&ns), pod).await, &store, &sts, sts_res, "SuccessfulCreate", &message).await
                    }
                    Action::DeletePod(pod) => {
                        let message = format!("delete Pod {pod} in StatefulSet {name} successful");
                        on_success(store.delete_gracefully(pods_res, Some(&ns), &pod, None, None).await, &store, &sts, sts_res, "SuccessfulDelete", &message).await
                    }
                    Action::Status(status) => write_status(&store, sts_res, &sts, status).await,
                };
                written.record(result, on_pods, &name);
            }
        }
        claims.wait_for(claims_rev, std::time::Duration::from_secs(2)).await;
        lp.settle(&written).await;
    }
}

#[cfg(test)]
mod tests;
