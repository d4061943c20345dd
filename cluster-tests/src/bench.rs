//! The write benchmark: object creates on a real 3-head cluster (fsync on), sequential and
//! with 64 concurrent clients, through the leader and through followers. Reports writes/s
//! and latency percentiles to Markdown and JSON. A benchmark, not a test: it asserts nothing.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper::Method;
use serde_json::json;

use crate::Cluster;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Run {
    pub name: String,
    pub clients: usize,
    pub writes: usize,
    pub errors: usize,
    pub seconds: f64,
    pub writes_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx].as_secs_f64() * 1000.0
}

/// `writes` creates spread over `clients` concurrent clients, each sending to `targets` in turn.
async fn run(c: &Cluster, name: &str, targets: &[usize], clients: usize, writes: usize) -> anyhow::Result<Run> {
    let next = Arc::new(AtomicUsize::new(0));
    let urls: Vec<String> = targets.iter().map(|i| c.url(*i, "/api/v1/namespaces/bench/configmaps")).collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client_no in 0..clients {
        let next = next.clone();
        let urls = urls.clone();
        let prefix = name.to_string();
        // One client (its own connections) per writer, as separate client processes would.
        let client = c.client_as(c.admin.as_ref().and_then(|a| a.client.as_ref()).map(|(a, b)| (a.as_str(), b.as_str())), None)?;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= writes {
                    break;
                }
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("{prefix}-{n}")}, "data": {"payload": "x".repeat(256)}});
                let t = Instant::now();
                match client.json(Method::POST, &urls[(n + client_no) % urls.len()], Some(&body)).await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort();
    Ok(Run {
        name: name.to_string(),
        clients,
        writes: all.len(),
        errors,
        seconds,
        writes_per_second: all.len() as f64 / seconds,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        max_ms: all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    })
}

pub async fn writes(out_dir: &Path, sequential: usize, concurrent: usize) -> anyhow::Result<()> {
    let mut c = Cluster::start(3, 0).await?;
    c.quiet = true;
    c.client
        .json(Method::POST, &c.url(0, "/api/v1/namespaces"), Some(&json!({"metadata": {"name": "bench"}})))
        .await?;
    let leader = c.leader().await.context("no leader")?;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let runs = vec![
        run(&c, "seq-leader", &[leader], 1, sequential).await?,
        run(&c, "seq-follower", &followers[..1], 1, sequential).await?,
        run(&c, "c64-leader", &[leader], 64, concurrent).await?,
        run(&c, "c64-all-heads", &[0, 1, 2], 64, concurrent).await?,
    ];
    write_report(out_dir, &runs)
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, Linux {}", kernel.trim())
}

fn write_report(out_dir: &Path, runs: &[Run]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir)?;
    let bin = crate::cluster::bin_dir();
    let profile = if bin.ends_with("release") { "release" } else { "debug (set ORCH_BIN_DIR=target/release for release figures)" };
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let json = json!({"benchmark": "raft-writes", "date": date, "machine": machine(), "orchd_build": profile,
        "cluster": "3 heads, each orchd in its own network namespace on one bridge, RocksDB log fsync'd per append batch",
        "runs": runs});
    std::fs::write(out_dir.join("raft-writes.json"), serde_json::to_string_pretty(&json)? + "\n")?;
    let mut md = format!(
        "# Raft write benchmark\n\nMeasured {date} on {} with `cargo run -p cluster-tests --release -- bench-writes` \
         (orchd build: {profile}).\n\nCluster: 3 heads, each `orchd` in its own network namespace on one bridge, \
         fsync on (a write is acknowledged after a quorum fsync'd it). Each write creates a ConfigMap \
         (~0.4 KB JSON) through `POST /api/v1/namespaces/bench/configmaps`; followers forward to the leader.\n\n\
         | run | clients | writes | errors | writes/s | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|---|\n",
        machine()
    );
    for r in runs {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} |\n",
            r.name, r.clients, r.writes, r.errors, r.writes_per_second, r.p50_ms, r.p99_ms, r.max_ms
        ));
    }
    std::fs::write(out_dir.join("raft-writes.md"), md)?;
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}
