//! Starting the Service roles of a pod-running node: the proxy (its dataplane chosen by
//! `--proxy-mode` and what the kernel offers) and cluster DNS on the node's pod gateway
//! address, both fed by watch caches of Services and Endpoints through the node's API.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;

use super::config::Settings;
use crate::client::ApiClient;
use crate::clock::SystemClock;
use crate::services::cache::WatchCache;
use crate::services::nftables::NftablesDataplane;
use crate::services::proxy::{self, Proxy, SharedStatus};
use crate::services::{dns_server, ProxyMode};

/// Whether the kernel offers IPVS (the `ip_vs` module exposes /proc/net/ip_vs).
pub fn kernel_has_ipvs() -> bool {
    std::path::Path::new("/proc/net/ip_vs").exists()
}

/// Start the proxy and DNS roles (on nodes running pods); returns the proxy's status for
/// the heartbeat to report.
pub fn start(s: &Settings, node_name: &str, api_base: &str) -> anyhow::Result<Option<SharedStatus>> {
    if !s.kubelet {
        return Ok(None);
    }
    match (s.proxy_mode, kernel_has_ipvs()) {
        (ProxyMode::Ipvs, _) => anyhow::bail!("--proxy-mode ipvs: orch's IPVS dataplane is not available yet; use nftables or auto"),
        (ProxyMode::Auto, true) => tracing::warn!("the kernel has IPVS, but orch's IPVS dataplane is not available yet: using nftables"),
        (ProxyMode::Auto, false) => tracing::info!("the kernel has no IPVS: the proxy uses nftables"),
        (ProxyMode::Nftables, _) => {}
    }
    // Replies of a pod reached through a VIP by a pod on the same bridge must pass through
    // conntrack to be translated back: bridged IPv4 traffic has to see the ip hooks.
    if let Err(e) = std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1") {
        tracing::warn!(error = %e, "cannot enable bridge-nf-call-iptables (br_netfilter): pods may not reach services served on their own node");
    }
    let services = WatchCache::start(api_base.to_string(), "/api/v1/services");
    let endpoints = WatchCache::start(api_base.to_string(), "/api/v1/endpoints");
    let status = SharedStatus::default();
    tokio::spawn(proxy::run(Proxy::new(NftablesDataplane::new()), services.clone(), endpoints.clone(), s.proxy_resync, status.clone(), Arc::new(SystemClock)));

    let cfg = dns_server::DnsConfig { ttl: s.dns_ttl, service_cidr: s.service_ranges.cidr, upstream: s.dns_upstream.clone() };
    let (base, name) = (api_base.to_string(), node_name.to_string());
    tokio::spawn(async move {
        let gateway = pod_gateway(&base, &name).await;
        dns_server::run(IpAddr::V4(gateway), cfg, services, endpoints).await;
    });
    Ok(Some(status))
}

/// This node's pod gateway (the first address of its pod CIDR), once the leader assigned one.
async fn pod_gateway(api_base: &str, node: &str) -> std::net::Ipv4Addr {
    let client = ApiClient::new(Duration::from_secs(5));
    loop {
        if let Ok(n) = client.json(Method::GET, &format!("{api_base}/api/v1/nodes/{node}"), None).await {
            if let Some(cidr) = n["spec"]["podCIDR"].as_str().and_then(|c| c.parse::<ipnet::Ipv4Net>().ok()) {
                return crate::kubelet::network::gateway(cidr);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
