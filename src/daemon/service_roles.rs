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
use crate::watch_cache::WatchCache;
use crate::services::nftables::NftablesDataplane;
use crate::services::proxy::{self, Proxy, SharedStatus};
use crate::services::{dns_server, ipvs, ProxyMode};

/// Start the proxy and DNS roles (on nodes running pods); returns the proxy's status for
/// the heartbeat to report.
pub fn start(s: &Settings, node_name: &str, client: &ApiClient, api_base: &str) -> anyhow::Result<Option<SharedStatus>> {
    if !s.kubelet {
        return Ok(None);
    }
    let use_ipvs = match (s.proxy_mode, ipvs::kernel_has_ipvs()) {
        (ProxyMode::Ipvs, false) => anyhow::bail!("--proxy-mode ipvs: the kernel has no IPVS generic-netlink family (CONFIG_IP_VS)"),
        (ProxyMode::Ipvs, true) | (ProxyMode::Auto, true) => true,
        (ProxyMode::Auto, false) => {
            tracing::info!("the kernel has no IPVS: the proxy uses nftables");
            false
        }
        (ProxyMode::Nftables, _) => false,
    };
    // Replies of a pod reached through a VIP by a pod on the same bridge must pass through
    // conntrack to be translated back: bridged IPv4 traffic has to see the ip hooks.
    if let Err(e) = std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1") {
        tracing::warn!(error = %e, "cannot enable bridge-nf-call-iptables (br_netfilter): pods may not reach services served on their own node");
    }
    let services = WatchCache::start(client.clone(), api_base.to_string(), "/api/v1/services");
    let endpoints = WatchCache::start(client.clone(), api_base.to_string(), "/api/v1/endpoints");
    let status = SharedStatus::default();
    let (svc, eps, resync, st, clock) = (services.clone(), endpoints.clone(), s.proxy_resync, status.clone(), Arc::new(SystemClock));
    if use_ipvs {
        let node_ips = match s.advertise {
            IpAddr::V4(ip) => vec![ip],
            IpAddr::V6(_) => vec![],
        };
        let dataplane = ipvs::IpvsDataplane::new(node_ips).map_err(|e| anyhow::anyhow!("IPVS: {e}"))?;
        tracing::info!("the proxy uses IPVS");
        tokio::spawn(proxy::run(Proxy::new(dataplane), svc, eps, resync, st, clock));
    } else {
        tokio::spawn(proxy::run(Proxy::new(NftablesDataplane::new()), svc, eps, resync, st, clock));
    }

    let cfg = dns_server::DnsConfig { ttl: s.dns_ttl, service_cidr: s.service_ranges.cidr, upstream: s.dns_upstream.clone() };
    let (base, name, client) = (api_base.to_string(), node_name.to_string(), client.clone());
    tokio::spawn(async move {
        let gateway = pod_gateway(&client, &base, &name).await;
        dns_server::run(IpAddr::V4(gateway), cfg, services, endpoints).await;
    });
    Ok(Some(status))
}

/// This node's pod gateway (the first address of its pod CIDR), once the leader assigned one.
async fn pod_gateway(client: &ApiClient, api_base: &str, node: &str) -> std::net::Ipv4Addr {
    let client = client.with_timeout(Duration::from_secs(5));
    loop {
        if let Ok(n) = client.json(Method::GET, &format!("{api_base}/api/v1/nodes/{node}"), None).await {
            if let Some(cidr) = n["spec"]["podCIDR"].as_str().and_then(|c| c.parse::<ipnet::Ipv4Net>().ok()) {
                return crate::kubelet::network::gateway(cidr);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
