//! The Endpoints controller: for every Service with a selector, an Endpoints object of the
//! same name listing the ready pods that match (named target ports resolved per pod;
//! not-ready pods under `notReadyAddresses`, terminating ones left out so they leave the
//! rotation before their containers stop). `reconcile_one` is pure; `run` applies it to the
//! services a change touches (all of them on a resync) and writes the differences
//! (concurrently: openraft batches concurrent proposals into one append).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::informer::{revision, Informer};
use crate::changelog::Changed;
use super::ControlConfig;
use crate::api::resources;
use crate::api::store::ObjectStore;

/// Label on Endpoints this controller owns (only those are deleted with their service).
pub const MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
const CONTROLLER: &str = "endpoint-controller";

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create(Value),
    /// Replace at the resourceVersion the pass saw.
    Update(Value),
    Delete { namespace: String, name: String },
}

fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"].as_object().map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()).unwrap_or_default()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// The pod's port for a service port's targetPort (a number, or a container port's name).
fn target_port(pod: &Value, target: &Value, port: u64) -> Option<u64> {
    match target {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => match s.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => pod["spec"]["containers"].as_array()?.iter().flat_map(|c| c["ports"].as_array().into_iter().flatten()).find(|p| p["name"] == s.as_str())?["containerPort"].as_u64(),
        },
        _ => Some(port),
    }
}

/// The subsets a service's endpoints should have, given the pods of its namespace.
pub fn subsets(svc: &Value, pods: &[Value]) -> Value {
    let spec = &svc["spec"];
    let selector: BTreeMap<String, String> =
        spec["selector"].as_object().map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()).unwrap_or_default();
    let publish_not_ready = spec["publishNotReadyAddresses"] == true;
    let svc_name = svc["metadata"]["name"].as_str().unwrap_or("");
    // Addresses grouped by the exact port list they serve, as Kubernetes does.
    let mut groups: BTreeMap<String, (Value, Vec<(String, Value)>, Vec<(String, Value)>)> = BTreeMap::new();
    for pod in pods {
        let pl = labels(pod);
        if !selector.iter().all(|(k, v)| pl.get(k) == Some(v)) {
            continue;
        }
        let Some(ip) = pod["status"]["podIP"].as_str().filter(|s| !s.is_empty()) else { continue };
        if !pod["metadata"]["deletionTimestamp"].is_null() || matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
            continue;
        }
        let ports: Vec<Value> = spec["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let port = target_port(pod, &p["targetPort"], p["port"].as_u64()?)?;
                let mut e = json!({"port": port, "protocol": p["protocol"].as_str().unwrap_or("TCP")});
                if let Some(name) = p["name"].as_str().filter(|n| !n.is_empty()) {
                    e["name"] = json!(name);
                }
                Some(e)
            })
            .collect();
        let m = &pod["metadata"];
        let mut address = json!({"ip": ip, "targetRef": {"kind": "Pod", "namespace": m["namespace"], "name": m["name"], "uid": m["uid"]}});
        if let Some(node) = pod["spec"]["nodeName"].as_str() {
            address["nodeName"] = json!(node);
        }
        if let (Some(host), Some(sub)) = (pod["spec"]["hostname"].as_str(), pod["spec"]["subdomain"].as_str()) {
            if sub == svc_name {
                address["hostname"] = json!(host);
            }
        }
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let entry = groups.entry(key).or_insert_with(|| (Value::Array(ports), vec![], vec![]));
        if publish_not_ready || is_ready(pod) {
            entry.1.push((ip.to_string(), address));
        } else {
            entry.2.push((ip.to_string(), address));
        }
    }
    let subsets: Vec<Value> = groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(|a, b| a.0.cmp(&b.0));
            not_ready.sort_by(|a, b| a.0.cmp(&b.0));
            let mut s = Map::new();
            if !ready.is_empty() {
                s.insert("addresses".into(), Value::Array(ready.into_iter().map(|a| a.1).collect()));
            }
            if !not_ready.is_empty() {
                s.insert("notReadyAddresses".into(), Value::Array(not_ready.into_iter().map(|a| a.1).collect()));
            }
            if ports.as_array().is_some_and(|p| !p.is_empty()) {
                s.insert("ports".into(), ports);
            }
            Value::Object(s)
        })
        .collect();
    Value::Array(subsets)
}

fn key(obj: &Value) -> (String, String) {
    (obj["metadata"]["namespace"].as_str().unwrap_or("").to_string(), obj["metadata"]["name"].as_str().unwrap_or("").to_string())
}

/// A service's selector when it has Endpoints managed for it (a non-empty selector, not
/// ExternalName).
fn selector(svc: &Value) -> Option<&Map<String, Value>> {
    svc["spec"]["selector"].as_object().filter(|m| !m.is_empty() && svc["spec"]["type"] != "ExternalName")
}

fn selects(selector: &Map<String, Value>, pod: &Value) -> bool {
    let labels = &pod["metadata"]["labels"];
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn managed(e: &Value) -> bool {
    labels(e).get(MANAGED_BY).map(String::as_str) == Some(CONTROLLER)
}

/// What brings one service's Endpoints in line, given the service (`None`: gone), the pods
/// of its namespace and its current Endpoints.
pub fn reconcile_one(k: &(String, String), svc: Option<&Value>, pods: &[Value], existing: Option<&Value>) -> Option<Action> {
    let Some(svc) = svc.filter(|s| selector(s).is_some()) else {
        return existing.filter(|e| managed(e)).map(|_| Action::Delete { namespace: k.0.clone(), name: k.1.clone() });
    };
    let subsets = subsets(svc, pods);
    match existing {
        Some(cur) => {
            let current = if cur["subsets"].is_null() { json!([]) } else { cur["subsets"].clone() };
            (current != subsets || !managed(cur)).then(|| {
                let mut next = cur.clone();
                next["subsets"] = subsets;
                next["metadata"]["labels"][MANAGED_BY] = json!(CONTROLLER);
                Action::Update(next)
            })
        }
        None => Some(Action::Create(json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": k.1, "namespace": k.0, "labels": {MANAGED_BY: CONTROLLER}},
            "subsets": subsets,
        }))),
    }
}

/// Everything that makes the Endpoints match the services and pods (what a full resync
/// writes): one `reconcile_one` per service or Endpoints object.
pub fn reconcile(services: &[Value], pods: &[Value], endpoints: &[Value]) -> Vec<Action> {
    let existing: BTreeMap<(String, String), &Value> = endpoints.iter().map(|e| (key(e), e)).collect();
    let services: BTreeMap<(String, String), &Value> = services.iter().map(|s| (key(s), s)).collect();
    let mut by_ns: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for p in pods {
        by_ns.entry(p["metadata"]["namespace"].as_str().unwrap_or("")).or_default().push(p.clone());
    }
    let keys: BTreeSet<&(String, String)> = services.keys().chain(existing.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let pods = by_ns.get(k.0.as_str()).map(Vec::as_slice).unwrap_or(&[]);
            reconcile_one(k, services.get(k).copied(), pods, existing.get(k).copied())
        })
        .collect()
}

fn split(key: &str) -> (String, String) {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    (ns.to_string(), name.to_string())
}

/// The services to look at after a change: the changed services and Endpoints themselves,
/// and for each changed pod the services of its namespace that select it now or listed it
/// last time (`listed`: pod key → service keys, kept by `run`).
fn affected(services: &Informer, pods: &Informer, svc_keys: BTreeSet<String>, ep_keys: BTreeSet<String>, pod_keys: &BTreeSet<String>, listed: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = svc_keys.into_iter().chain(ep_keys).collect();
    for pk in pod_keys {
        out.extend(listed.get(pk).into_iter().flatten().cloned());
        let Some(pod) = pods.get(pk) else { continue };
        let (ns, _) = split(pk);
        let selecting = services.in_namespace(&ns, |s| selector(s).is_some_and(|sel| selects(sel, &pod)));
        out.extend(selecting.iter().map(|s| format!("{}/{}", key(s).0, key(s).1)));
    }
    out
}

/// Record which pods `action`'s Endpoints list for service `svc_key`.
fn remember(listed: &mut BTreeMap<String, BTreeSet<String>>, svc_key: &str, action: &Action) {
    let (Action::Create(e) | Action::Update(e)) = action else { return };
    for subset in e["subsets"].as_array().into_iter().flatten() {
        for a in ["addresses", "notReadyAddresses"].iter().flat_map(|f| subset[*f].as_array().into_iter().flatten()) {
            let r = &a["targetRef"];
            if let (Some(ns), Some(name)) = (r["namespace"].as_str(), r["name"].as_str()) {
                listed.entry(format!("{ns}/{name}")).or_default().insert(svc_key.to_string());
            }
        }
    }
}

/// Follow services, pods and Endpoints; after each change reconcile only the services it
/// touches, and everything on start, after an informer relists, and every `cfg.resync`.
pub async fn run(store: ObjectStore, cfg: ControlConfig) {
    let res = |plural| resources::by_plural("", plural).expect("core kinds are registered");
    let (svc_res, pod_res, ep_res) = (res("services"), res("pods"), res("endpoints"));
    let services = Informer::start(store.clone(), svc_res).await;
    let pods = Informer::start(store.clone(), pod_res).await;
    let endpoints = Informer::start(store.clone(), ep_res).await;
    let (mut svc_seen, mut pod_seen, mut ep_seen) = (0, 0, 0);
    let mut listed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut full = true;
    // Services whose write failed (a conflict, a lost leadership): looked at again soon.
    let mut retry: BTreeSet<String> = BTreeSet::new();
    loop {
        let again = if retry.is_empty() { cfg.resync } else { Duration::from_millis(200).min(cfg.resync) };
        tokio::select! {
            _ = services.changed.notified() => {}
            _ = pods.changed.notified() => {}
            _ = endpoints.changed.notified() => {}
            _ = tokio::time::sleep(again) => full = retry.is_empty(),
        }
        let (s_seq, s_changed) = services.changes_since(svc_seen);
        let (p_seq, p_changed) = pods.changes_since(pod_seen);
        let (e_seq, e_changed) = endpoints.changes_since(ep_seen);
        (svc_seen, pod_seen, ep_seen) = (s_seq, p_seq, e_seq);
        let mut actions = vec![];
        match (s_changed, p_changed, e_changed) {
            (Changed::Keys(s), Changed::Keys(p), Changed::Keys(e)) if !full => {
                let mut keys = affected(&services, &pods, s, e, &p, &listed);
                keys.append(&mut retry);
                for k in keys {
                    let (ns, name) = split(&k);
                    let svc = services.get(&k);
                    let sel = svc.as_ref().and_then(|s| selector(s).cloned());
                    let ns_pods = sel.map(|sel| pods.in_namespace(&ns, |p| selects(&sel, p))).unwrap_or_default();
                    if let Some(a) = reconcile_one(&(ns, name), svc.as_ref(), &ns_pods, endpoints.get(&k).as_ref()) {
                        remember(&mut listed, &k, &a);
                        actions.push(a);
                    }
                }
            }
            _ => {
                full = false;
                retry.clear();
                let current = endpoints.objects();
                listed.clear();
                for e in &current {
                    let (ns, name) = key(e);
                    remember(&mut listed, &format!("{ns}/{name}"), &Action::Update(e.clone()));
                }
                actions = reconcile(&services.objects(), &pods.objects(), &current);
                for a in &actions {
                    if let Action::Create(e) | Action::Update(e) = a {
                        let (ns, name) = key(e);
                        remember(&mut listed, &format!("{ns}/{name}"), a);
                    }
                }
            }
        }
        let writes = actions.into_iter().map(|a| {
            let store = &store;
            async move {
                let r = match &a {
                    Action::Create(e) => store.create(ep_res, e["metadata"]["namespace"].as_str(), e.clone()).await,
                    Action::Update(e) => {
                        let (ns, name) = key(e);
                        let rv = revision(e);
                        store.update(ep_res, Some(&ns), &name, e.clone(), Some(rv), false).await
                    }
                    Action::Delete { namespace, name } => store.delete(ep_res, Some(namespace), name, None).await,
                };
                r.map(|o| revision(&o)).map_err(|e| {
                    tracing::debug!(error = %e, ?a, "endpoints not written; trying again");
                    match &a {
                        Action::Create(e) | Action::Update(e) => format!("{}/{}", key(e).0, key(e).1),
                        Action::Delete { namespace, name } => format!("{namespace}/{name}"),
                    }
                })
            }
        });
        let mut newest = 0;
        for r in futures::future::join_all(writes).await {
            match r {
                Ok(rev) => newest = newest.max(rev),
                Err(k) => _ = retry.insert(k),
            }
        }
        endpoints.wait_for(newest, Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn pod(name: &str, ip: &str, ready: bool, extra: Value) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        crate::api::object::merge_patch(&mut p, &extra);
        p
    }

    #[test]
    fn ready_pods_are_addresses_with_resolved_named_ports() {
        let s = svc(json!({"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]}));
        let pods = [
            pod("b", "10.244.1.2", true, json!({})),
            pod("a", "10.244.0.9", true, json!({})),
            pod("slow", "10.244.0.7", false, json!({})),
            pod("leaving", "10.244.0.8", true, json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}})),
            pod("other", "10.244.0.6", true, json!({"metadata": {"labels": {"app": "db"}}})),
            pod("pending", "", false, json!({})),
        ];
        let got = subsets(&s, &pods);
        let ips = |field: &str| got[0][field].as_array().unwrap().iter().map(|a| a["ip"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(ips("addresses"), vec!["10.244.0.9", "10.244.1.2"]);
        assert_eq!(ips("notReadyAddresses"), vec!["10.244.0.7"]);
        assert_eq!(got[0]["ports"], json!([{"name": "web", "port": 8080, "protocol": "TCP"}]));
        assert_eq!(got[0]["addresses"][0]["targetRef"]["name"], "a");
        assert_eq!(got[0]["addresses"][0]["nodeName"], "n1");
    }

    #[test]
    fn pods_without_the_named_port_serve_nothing_for_it_and_hostnames_follow_the_subdomain() {
        let s = svc(json!({"selector": {"app": "web"}, "clusterIP": "None", "ports": [{"port": 80, "targetPort": "http"}]}));
        let pods = [
            pod("web-0", "10.244.0.2", true, json!({"spec": {"hostname": "web-0", "subdomain": "web"}})),
            pod("odd", "10.244.0.3", true, json!({"spec": {"containers": [{"name": "c"}]}})),
        ];
        let got = subsets(&s, &pods);
        assert_eq!(got.as_array().unwrap().len(), 2, "{got}");
        let with_port = got.as_array().unwrap().iter().find(|s| s.get("ports").is_some()).unwrap();
        assert_eq!(with_port["addresses"][0]["hostname"], "web-0");
        assert_eq!(with_port["ports"][0]["port"], 8080);
    }

    #[test]
    fn reconcile_creates_updates_and_deletes_only_what_it_manages() {
        let s = svc(json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}));
        let no_selector = json!({"metadata": {"name": "manual", "namespace": "default"}, "spec": {"ports": [{"port": 5432}]}});
        let pods = [pod("a", "10.244.0.9", true, json!({}))];
        let actions = reconcile(&[s.clone(), no_selector.clone()], &pods, &[]);
        assert_eq!(actions.len(), 1);
        let Action::Create(created) = &actions[0] else { panic!("{actions:?}") };
        assert_eq!(created["metadata"]["labels"][MANAGED_BY], CONTROLLER);
        assert_eq!(created["subsets"][0]["addresses"][0]["ip"], "10.244.0.9");

        // Up to date: nothing; a pod goes unready: an update of that object only.
        let mut current = created.clone();
        current["metadata"]["resourceVersion"] = json!("7");
        let manual = json!({"metadata": {"name": "manual", "namespace": "default"}, "subsets": [{"addresses": [{"ip": "192.0.2.1"}]}]});
        assert!(reconcile(&[s.clone(), no_selector.clone()], &pods, &[current.clone(), manual.clone()]).is_empty());
        let unready = [pod("a", "10.244.0.9", false, json!({}))];
        let actions = reconcile(&[s.clone(), no_selector.clone()], &unready, &[current.clone(), manual.clone()]);
        let [Action::Update(u)] = &actions[..] else { panic!("{actions:?}") };
        assert_eq!(u["metadata"]["resourceVersion"], "7");
        assert!(u["subsets"][0].get("addresses").is_none());

        // The service goes: its managed Endpoints go too; hand-made ones stay.
        let actions = reconcile(&[no_selector], &pods, &[current, manual]);
        assert_eq!(actions, vec![Action::Delete { namespace: "default".into(), name: "web".into() }]);
    }
}
