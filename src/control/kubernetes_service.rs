//! The `kubernetes` Service in `default`: how pods reach the API, as in Kubernetes. Its
//! ClusterIP is the first address of the service range (no other Service is given it), its
//! port 443 goes to the API port of the voting heads, which its Endpoints list. `service`
//! and `endpoints` (pure) say what they should be; `run` keeps them so as heads come and go.

use std::time::Duration;

use serde_json::{json, Value};

use super::ControlConfig;
use crate::api::resources;
use crate::api::store::{Consistency, ObjectStore};

pub const NAME: &str = "kubernetes";
pub const NAMESPACE: &str = "default";

pub fn service(ip: std::net::Ipv4Addr, api_port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "namespace": NAMESPACE,
        "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip.to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}]}})
}

/// The Endpoints for heads whose APIs are at `api_addrs` (`host:port`), or None if there is
/// no usable address.
pub fn endpoints(api_addrs: &[String]) -> Option<(Value, u16)> {
    let mut addrs: Vec<(String, u16)> = api_addrs
        .iter()
        .filter_map(|a| a.parse::<std::net::SocketAddr>().ok())
        .filter(|a| a.is_ipv4())
        .map(|a| (a.ip().to_string(), a.port()))
        .collect();
    addrs.sort();
    addrs.dedup();
    let port = addrs.first()?.1;
    let ips: Vec<Value> = addrs.iter().map(|(ip, _)| json!({"ip": ip})).collect();
    let ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": NAME, "namespace": NAMESPACE},
        "subsets": [{"addresses": ips, "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]});
    Some((ep, port))
}

pub async fn run(store: ObjectStore, cfg: ControlConfig) {
    let services = resources::by_plural("", "services").expect("registered");
    let eps = resources::by_plural("", "endpoints").expect("registered");
    loop {
        let status = store.node().status();
        let addrs: Vec<String> = status.voters.values().map(|m| m.api_addr.clone()).collect();
        if let Some((desired, port)) = endpoints(&addrs) {
            if let Err(e) = ensure(&store, services, NAME, service(cfg.kubernetes_ip, port), |_, _| false).await {
                tracing::debug!(error = %e, "the kubernetes Service is not there yet");
            }
            let same = |cur: &Value, want: &Value| cur["subsets"] == want["subsets"];
            if let Err(e) = ensure(&store, eps, NAME, desired, same).await {
                tracing::debug!(error = %e, "the kubernetes Endpoints are not current yet");
            }
        }
        tokio::time::sleep(cfg.resync.min(Duration::from_secs(2))).await;
    }
}

/// Create `want` if missing; replace it if `current_ok` says the stored one is not right
/// (the Service is left as the operator may have changed it, like Kubernetes' own).
async fn ensure(
    store: &ObjectStore,
    res: &'static resources::Resource,
    name: &str,
    want: Value,
    current_ok: impl Fn(&Value, &Value) -> bool,
) -> Result<(), crate::api::status::ApiError> {
    match store.get(res, Some(NAMESPACE), name, Consistency::Local).await {
        Ok(cur) if res.kind == "Service" || current_ok(&cur, &want) => Ok(()),
        Ok(cur) => {
            let mut next = want;
            next["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
            store.update(res, Some(NAMESPACE), name, next, None, false).await.map(|_| ())
        }
        Err(e) if e.code == 404 => store.create(res, Some(NAMESPACE), want).await.map(|_| ()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heads_are_the_endpoints() {
        let (ep, port) = endpoints(&["10.0.0.2:6443".into(), "10.0.0.1:6443".into(), "10.0.0.1:6443".into()]).unwrap();
        assert_eq!(port, 6443);
        assert_eq!(ep["subsets"][0]["addresses"], json!([{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]));
        assert!(endpoints(&["not-an-address".into()]).is_none());
        let svc = service("10.96.0.1".parse().unwrap(), 6443);
        assert_eq!((svc["spec"]["clusterIP"].as_str(), svc["spec"]["ports"][0]["port"].as_u64()), (Some("10.96.0.1"), Some(443)));
    }
}
