//! The Services benchmark, on a real 3-node cluster (one head, two workers, the proxy and
//! DNS roles on each, nftables in every node's namespace):
//! - rule propagation: the time from an acknowledged Endpoints change to every node's
//!   proxy reporting rules computed from that revision (`/orch/v1/proxy`, polled every
//!   2 ms), at 1,000 and at 10,000 services, with the proxy's own step time;
//! - DNS: dnsperf queries/s for the services' names against a node's cluster DNS, and
//!   against NSD serving the same names from a zone file in the same namespace.
//!
//! A benchmark, not a test: it asserts nothing and writes services.{md,json}.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use hyper::Method;
use serde_json::{json, Value};

use crate::bench_pods::{summarize, Latencies};
use crate::cluster::{Cluster, Options};
use crate::nsd::Nsd;

fn service(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i:05}"), "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}})
}

/// Endpoints for service `i` (no selector: written by hand), backends `10.244.a.b`.
fn endpoints(i: usize, generation: usize) -> Value {
    let ip = |k: usize| format!("10.244.{}.{}", (i + k) % 200, 2 + (generation + k) % 250);
    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": format!("svc-{i:05}"), "namespace": "default"},
        "subsets": [{"addresses": [{"ip": ip(0)}, {"ip": ip(1)}], "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]})
}

/// POST `body` to `url`; a timed-out attempt is retried, and a retry that finds the object
/// already there (409: the first attempt did land) reads it back. Returns its resourceVersion.
async fn create(c: &Cluster, url: &str, body: &Value) -> anyhow::Result<u64> {
    let rv = |v: &Value| v["metadata"]["resourceVersion"].as_str().and_then(|r| r.parse().ok()).unwrap_or(0);
    let name = body["metadata"]["name"].as_str().context("metadata.name")?;
    for attempt in 0..5 {
        match c.client.json(Method::POST, url, Some(body)).await {
            Ok(v) => return Ok(rv(&v)),
            Err(e) if attempt > 0 && e.downcast_ref::<orch::client::HttpError>().is_some_and(|h| h.code == 409) => {
                return Ok(rv(&c.client.json(Method::GET, &format!("{url}/{name}"), None).await?));
            }
            Err(e) if e.to_string().contains("timed out") => eprintln!("bench: {name}: {e}; retrying"),
            Err(e) => return Err(e),
        }
    }
    anyhow::bail!("{url}: {name}: 5 attempts timed out")
}

/// Create services `range` with their Endpoints, 32 requests in flight; returns the last
/// revision. Prints progress every 1,000 services.
async fn populate(c: &Cluster, range: std::ops::Range<usize>) -> anyhow::Result<u64> {
    let svc_url = c.url(0, "/api/v1/namespaces/default/services");
    let ep_url = c.url(0, "/api/v1/namespaces/default/endpoints");
    let started = Instant::now();
    let results: Vec<anyhow::Result<u64>> = futures::stream::iter(range)
        .map(|i| {
            let (svc_url, ep_url) = (&svc_url, &ep_url);
            async move {
                create(c, svc_url, &service(i)).await?;
                let rv = create(c, ep_url, &endpoints(i, 0)).await?;
                if (i + 1) % 1000 == 0 {
                    eprintln!("bench: {} services created, {:.0} s", i + 1, started.elapsed().as_secs_f64());
                }
                Ok(rv)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut last = 0;
    for r in results {
        last = last.max(r?);
    }
    Ok(last)
}

async fn proxy_status(c: &Cluster, i: usize) -> anyhow::Result<Value> {
    c.client.json(Method::GET, &c.url(i, "/orch/v1/proxy"), None).await
}

/// Wait until every node's proxy reflects Endpoints revision `rev`; returns how long it took
/// and each node's last step time.
async fn converged(c: &Cluster, rev: u64, started: Instant, limit: Duration) -> anyhow::Result<(Duration, Vec<u64>)> {
    let mut pending: Vec<usize> = (0..c.nodes.len()).collect();
    let mut steps = vec![0; c.nodes.len()];
    while !pending.is_empty() {
        anyhow::ensure!(started.elapsed() < limit, "proxies not at revision {rev} after {limit:?}: nodes {pending:?}");
        let mut still = vec![];
        for &i in &pending {
            let s = proxy_status(c, i).await?;
            if s["endpointsRevision"].as_u64().unwrap_or(0) >= rev && s["lastError"].is_null() {
                steps[i] = s["lastStepMicros"].as_u64().unwrap_or(0);
            } else {
                still.push(i);
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Ok((started.elapsed(), steps))
}

#[derive(Debug, Clone, serde::Serialize)]
struct Propagation {
    services: usize,
    latency: Latencies,
    proxy_step_p50_ms: f64,
    proxy_step_p99_ms: f64,
}

/// `changes` Endpoints updates, one at a time, each timed until every proxy has it.
async fn propagation(c: &Cluster, services: usize, changes: usize) -> anyhow::Result<Propagation> {
    let mut times = vec![];
    let mut steps = vec![];
    for k in 0..changes {
        let i = (k * 7919) % services;
        let url = c.url(0, &format!("/api/v1/namespaces/default/endpoints/svc-{i:05}"));
        let started = Instant::now();
        let e = c.client.json(Method::PUT, &url, Some(&endpoints(i, k + 1))).await?;
        let rev: u64 = e["metadata"]["resourceVersion"].as_str().and_then(|r| r.parse().ok()).context("resourceVersion")?;
        let (took, node_steps) = converged(c, rev, started, Duration::from_secs(30)).await?;
        times.push(took);
        steps.extend(node_steps.into_iter().map(Duration::from_micros));
    }
    let s = summarize("steps", steps);
    Ok(Propagation { services, latency: summarize(&format!("{services} services"), times), proxy_step_p50_ms: s.p50_ms, proxy_step_p99_ms: s.p99_ms })
}

#[derive(Debug, Clone, serde::Serialize)]
struct DnsRun {
    server: String,
    queries_per_s: f64,
    lost: u64,
    avg_latency_ms: f64,
}

/// dnsperf for `secs` seconds against `server:port` from node 0's namespace.
fn dnsperf(c: &Cluster, name: &str, server: &str, port: u16, queries: &Path, secs: u32) -> anyhow::Result<DnsRun> {
    let out = Command::new("ip")
        .args(["netns", "exec", &c.netns(0), "dnsperf", "-s", server, "-p", &port.to_string(), "-d"])
        .arg(queries)
        .args(["-l", &secs.to_string(), "-c", "4", "-q", "200"])
        .output()
        .context("dnsperf (Debian package dnsperf)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |label: &str| text.lines().find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()));
    let qps: f64 = field("Queries per second:").context(format!("dnsperf output: {text}"))?.parse()?;
    let lost = field("Queries lost:").and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok())).unwrap_or(0);
    let avg = field("Average Latency (s):").and_then(|v| v.split_whitespace().next().and_then(|n| n.parse::<f64>().ok())).unwrap_or(0.0);
    Ok(DnsRun { server: name.into(), queries_per_s: qps, lost, avg_latency_ms: avg * 1000.0 })
}

pub async fn bench(out: &Path, services: usize, changes: usize) -> anyhow::Result<()> {
    let mut c = Cluster::start_opts(1, 2, Options { containerd: true, ..Default::default() }).await?;
    c.quiet = true;
    let small = (services / 10).max(1);
    let mut runs = vec![];
    let mut last = populate(&c, 0..small).await?;
    converged(&c, last, Instant::now(), Duration::from_secs(120)).await?;
    runs.push(propagation(&c, small, changes).await?);
    last = last.max(populate(&c, small..services).await?);
    let t = Instant::now();
    converged(&c, last, t, Duration::from_secs(600)).await?;
    runs.push(propagation(&c, services, changes).await?);

    // DNS: the services' names, asked of node 0's cluster DNS and of NSD.
    let node0 = c.client.json(Method::GET, &c.url(0, &format!("/api/v1/nodes/{}", c.nodes[0].name)), None).await?;
    let cidr: ipnet::Ipv4Net = node0["spec"]["podCIDR"].as_str().context("podCIDR")?.parse()?;
    let gateway = std::net::Ipv4Addr::from(u32::from(cidr.network()) + 1).to_string();
    let list = c.client.json(Method::GET, &c.url(0, "/api/v1/namespaces/default/services"), None).await?;
    let records: Vec<(String, String)> = list["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|s| Some((format!("{}.default.svc.cluster.local.", s["metadata"]["name"].as_str()?), s["spec"]["clusterIP"].as_str()?.to_string())))
        .collect();
    let dir = tempfile::Builder::new().prefix("orch-bench-dns-").tempdir()?;
    let queries = dir.path().join("queries.txt");
    std::fs::write(&queries, records.iter().map(|(n, _)| format!("{n} A\n")).collect::<String>())?;
    let zone: String = records.iter().map(|(name, ip)| format!("{} IN A {ip}\n", name.trim_end_matches(".cluster.local."))).collect();
    let _nsd = Nsd::start(&c.netns(0), dir.path(), &c.nodes[0].ip.to_string(), 5353, "cluster.local", &zone)?;
    let dns = vec![
        dnsperf(&c, "orch cluster DNS (hickory, node 0)", &gateway, 53, &queries, 10)?,
        dnsperf(&c, "NSD 4 (same names, zone file)", &c.nodes[0].ip.to_string(), 5353, &queries, 10)?,
    ];
    write_report(out, &runs, &dns)
}

fn write_report(out: &Path, runs: &[Propagation], dns: &[DnsRun]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let json = json!({"propagation": runs, "dns": dns, "build": if cfg!(debug_assertions) { "debug" } else { "release" }});
    std::fs::write(out.join("services.json"), serde_json::to_string_pretty(&json)?)?;
    let mut md = String::from(
        "# Services: rule propagation and DNS\n\n\
         `cluster-tests bench-services` on a real 3-node cluster (1 head, 2 workers; orchd processes in network \
         namespaces on one 2-core machine, the proxy in nftables mode). Propagation: from an acknowledged \
         Endpoints update (one at a time) to every node's proxy reporting rules computed from that revision \
         (`GET /orch/v1/proxy`, polled every 2 ms). Proxy step: a node's time to recompute the changed \
         service's entries and apply them as one nf_tables netlink batch (backends are elements of maps, so \
         the kernel validates no chains on commit). Goal: p99 ≤ 200 ms at 10,000 services.\n\n\
         | services | changes | p50 ms | p99 ms | max ms | proxy step p50 ms | proxy step p99 ms |\n|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        md.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            r.services, r.latency.pods, r.latency.p50_ms, r.latency.p99_ms, r.latency.max_ms, r.proxy_step_p50_ms, r.proxy_step_p99_ms
        ));
    }
    md.push_str("\nDNS: dnsperf (10 s, 4 clients, 200 queries in flight) asking A records of every service name, in node 0's namespace, against node 0's cluster DNS and against NSD serving the same names from a zone file on the same node.\n\n| server | queries/s | lost | avg latency ms |\n|---|---:|---:|---:|\n");
    for d in dns {
        md.push_str(&format!("| {} | {:.0} | {} | {:.2} |\n", d.server, d.queries_per_s, d.lost, d.avg_latency_ms));
    }
    std::fs::write(out.join("services.md"), md)?;
    println!("{}", std::fs::read_to_string(out.join("services.md"))?);
    Ok(())
}
