//! The Endpoints controller: for every Service with a selector, an Endpoints object of the
//! same name listing the ready pods that match (named target ports resolved per pod;
//! not-ready pods under `notReadyAddresses`, terminating ones left out so they leave the
//! rotation before their containers stop). `reconcile` is pure; `run` writes the
//! differences (concurrently: openraft batches concurrent proposals into one append).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::informer::{revision, Informer};
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

/// What to write so every selector service has its Endpoints and no managed Endpoints
/// outlives its service.
pub fn reconcile(services: &[Value], pods: &[Value], endpoints: &[Value]) -> Vec<Action> {
    let existing: BTreeMap<(String, String), &Value> = endpoints.iter().map(|e| (key(e), e)).collect();
    let mut by_ns: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for p in pods {
        by_ns.entry(p["metadata"]["namespace"].as_str().unwrap_or("")).or_default().push(p.clone());
    }
    let mut actions = vec![];
    let mut wanted = std::collections::BTreeSet::new();
    for svc in services {
        let selector_set = svc["spec"]["selector"].as_object().is_some_and(|m| !m.is_empty());
        if !selector_set || svc["spec"]["type"] == "ExternalName" {
            continue;
        }
        let k = key(svc);
        wanted.insert(k.clone());
        let subsets = subsets(svc, by_ns.get(k.0.as_str()).map(Vec::as_slice).unwrap_or(&[]));
        match existing.get(&k) {
            Some(cur) => {
                let managed = labels(cur).get(MANAGED_BY).map(String::as_str) == Some(CONTROLLER);
                let current = if cur["subsets"].is_null() { json!([]) } else { cur["subsets"].clone() };
                if current != subsets || !managed {
                    let mut next = (*cur).clone();
                    next["subsets"] = subsets;
                    next["metadata"]["labels"][MANAGED_BY] = json!(CONTROLLER);
                    actions.push(Action::Update(next));
                }
            }
            None => actions.push(Action::Create(json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": k.1, "namespace": k.0, "labels": {MANAGED_BY: CONTROLLER}},
                "subsets": subsets,
            }))),
        }
    }
    for (k, e) in &existing {
        if !wanted.contains(k) && labels(e).get(MANAGED_BY).map(String::as_str) == Some(CONTROLLER) {
            actions.push(Action::Delete { namespace: k.0.clone(), name: k.1.clone() });
        }
    }
    actions
}

pub async fn run(store: ObjectStore, cfg: ControlConfig) {
    let res = |plural| resources::by_plural("", plural).expect("core kinds are registered");
    let (svc_res, pod_res, ep_res) = (res("services"), res("pods"), res("endpoints"));
    let services = Informer::start(store.clone(), svc_res);
    let pods = Informer::start(store.clone(), pod_res);
    let endpoints = Informer::start(store.clone(), ep_res);
    loop {
        tokio::select! {
            _ = services.changed.notified() => {}
            _ = pods.changed.notified() => {}
            _ = endpoints.changed.notified() => {}
            _ = tokio::time::sleep(cfg.resync) => {}
        }
        let actions = reconcile(&services.objects(), &pods.objects(), &endpoints.objects());
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
                r.map_err(|e| tracing::debug!(error = %e, ?a, "endpoints not written; next pass")).map(|o| revision(&o)).unwrap_or(0)
            }
        });
        let newest = futures::future::join_all(writes).await.into_iter().max().unwrap_or(0);
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
