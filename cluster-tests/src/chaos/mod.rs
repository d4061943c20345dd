//! A chaos run: a real cluster, the workload and watchers running, faults injected on a
//! seeded schedule, then every check (linearizability per key, lost writes, watch
//! guarantees, minority acknowledgements) and the figures (failover windows, time to a new
//! leader, throughput), written as JSON and Markdown.

pub mod nemesis;
pub mod report;
pub mod timeline;
pub mod workload;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper::Method;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;

use self::nemesis::FaultKind;
use self::workload::{Record, NAMESPACE};
use crate::check::{self, linear, Ack, Change, WatchLog};
use crate::{poll, Cluster};

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub heads: usize,
    pub clients: usize,
    pub keys: usize,
    pub watchers: usize,
    pub seed: u64,
    /// The faults, in order; the run ends when they are done or `duration` has passed.
    /// Not in the report (the long run's is a 100,000-entry rotation): `faults` lists what ran.
    #[serde(skip)]
    pub schedule: Vec<FaultKind>,
    pub duration: Duration,
    /// Extra orchd flags (fault-injection experiments).
    pub orchd_flags: Vec<String>,
}

/// The rotation a long run draws from: half leader kills, the rest pauses and partitions.
pub const LONG_ROTATION: &[FaultKind] = &[
    FaultKind::KillLeader,
    FaultKind::Pause,
    FaultKind::KillLeader,
    FaultKind::IsolateLeader,
    FaultKind::KillLeader,
    FaultKind::SplitMajority,
    FaultKind::KillLeader,
    FaultKind::Bridge,
    FaultKind::KillLeader,
    FaultKind::KillRandom,
    FaultKind::Flap,
];

#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub kind: FaultKind,
    pub start_ms: f64,
    pub end_ms: f64,
    pub targets: Vec<String>,
    /// Nodes on the minority side of a partition (they must acknowledge nothing).
    #[serde(skip)]
    pub minority: Vec<usize>,
    /// Leader kills: SIGKILL → another head reports a new leader.
    pub new_leader_ms: Option<f64>,
    /// Leader kills: SIGKILL → the first write invoked after it is acknowledged.
    pub unavailable_ms: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub operations: usize,
    pub ok: usize,
    pub failed: usize,
    pub unknown: usize,
    pub seconds: f64,
    pub linearizability_violations: Vec<String>,
    pub inconclusive_keys: Vec<String>,
    pub lost_writes: Vec<String>,
    pub watch_violations: Vec<String>,
    pub watch_events: usize,
    pub minority_acks: Vec<String>,
    pub faults: Vec<Fault>,
    /// Every operation, for the timeline picture.
    #[serde(skip)]
    pub samples: Vec<timeline::Sample>,
}

impl Outcome {
    pub fn violations(&self) -> usize {
        self.linearizability_violations.len() + self.lost_writes.len() + self.watch_violations.len() + self.minority_acks.len()
    }
}

fn ms(t0: Instant, at: Instant) -> f64 {
    at.duration_since(t0).as_secs_f64() * 1000.0
}

pub async fn run(cfg: &Config) -> anyhow::Result<(Outcome, Cluster)> {
    let mut flags = vec!["--watch-history", "100000000"];
    flags.extend(cfg.orchd_flags.iter().map(String::as_str));
    let mut c = Cluster::start_with(cfg.heads, 0, &flags).await?;
    c.quiet = true;
    c.client.json(Method::POST, &c.url(0, "/api/v1/namespaces"), Some(&json!({"metadata": {"name": NAMESPACE}}))).await?;
    let start_rv: u64 = c.client.json(Method::GET, &c.url(0, &format!("/api/v1/namespaces/{NAMESPACE}/configmaps")), None).await?
        ["metadata"]["resourceVersion"].as_str().context("list rv")?.parse()?;

    let nodes: Vec<String> = (0..cfg.heads).map(|i| c.api(i)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let clients: Vec<_> = (0..cfg.clients)
        .map(|id| tokio::spawn(workload::client(c.client.clone(), id, nodes.clone(), cfg.keys, cfg.seed, t0, stop.clone())))
        .collect();
    let watchers: Vec<_> = (0..cfg.watchers)
        .map(|w| tokio::spawn(workload::watcher(c.client.clone(), format!("watch-{w}"), nodes.clone(), start_rv, cfg.seed + w as u64, stop.clone())))
        .collect();

    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut faults = Vec::new();
    for kind in cfg.schedule.iter().copied() {
        if t0.elapsed() >= cfg.duration {
            break;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(800..1600))).await;
        faults.push(inject(&mut c, cfg.heads, kind, &mut rng, t0).await?);
    }
    // Let the workload run on a healthy cluster briefly, then stop it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut records: Vec<Record> = Vec::new();
    for t in clients {
        records.extend(t.await?);
    }
    let mut logs: Vec<WatchLog> = Vec::new();
    for t in watchers {
        logs.push(t.await?);
    }
    let seconds = t0.elapsed().as_secs_f64();

    // Final linearizable reads of every key join each key's history.
    let end = t0.elapsed().as_nanos() as u64;
    for k in 0..cfg.keys {
        let key = format!("k{k}");
        let url = c.url(0, &format!("/api/v1/namespaces/{NAMESPACE}/configmaps/{key}"));
        let call = linear::Call::Read;
        let result = c.client.json(Method::GET, &url, None).await;
        let ret = match result {
            Ok(v) => linear::Ret::Value(Some((v["data"]["v"].as_str().unwrap_or_default().to_string(), v["metadata"]["resourceVersion"].as_str().unwrap_or("0").parse()?))),
            Err(e) if e.downcast_ref::<orch::client::HttpError>().is_some_and(|h| h.code == 404) => linear::Ret::Value(None),
            Err(e) => return Err(e.context("final read")),
        };
        records.push(Record { key, node: 0, op: linear::Op { start: end, end: Some(end + 1), call, ret } });
    }
    let committed = committed_history(&c, start_rv).await?;
    let outcome = analyze(records, logs, &committed, faults, seconds, t0);
    Ok((outcome, c))
}

/// Apply one fault, hold it, heal, and measure what it cost.
async fn inject(c: &mut Cluster, heads: usize, kind: FaultKind, rng: &mut StdRng, t0: Instant) -> anyhow::Result<Fault> {
    let leader = wait_leader(c).await?;
    let start = Instant::now();
    let mut fault = Fault { kind, start_ms: ms(t0, start), end_ms: 0.0, targets: vec![], minority: vec![], new_leader_ms: None, unavailable_ms: None };
    match kind {
        FaultKind::KillLeader | FaultKind::KillRandom => {
            let victim = if kind == FaultKind::KillLeader { leader } else { rng.random_range(0..heads) };
            fault.targets.push(c.nodes[victim].name.clone());
            c.kill(victim);
            let killed = Instant::now();
            if victim == leader {
                let found = poll(Duration::from_secs(10), "a new leader", || async {
                    Ok(c.leader().await.is_some_and(|l| l != victim))
                })
                .await;
                if found.is_ok() {
                    fault.new_leader_ms = Some(killed.elapsed().as_secs_f64() * 1000.0);
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
            c.restart(victim).await?;
        }
        FaultKind::Pause => {
            let victim = rng.random_range(0..heads);
            fault.targets.push(c.nodes[victim].name.clone());
            c.pause(victim);
            // Longer than the election timeout (at most 800 ms).
            tokio::time::sleep(Duration::from_millis(rng.random_range(1200..2000))).await;
            c.resume(victim);
        }
        FaultKind::Flap => {
            let victim = rng.random_range(0..heads);
            fault.targets.push(c.nodes[victim].name.clone());
            let others: Vec<usize> = (0..heads).filter(|i| *i != victim).collect();
            for _ in 0..rng.random_range(4..8) {
                nemesis::partition(c, heads, &[vec![victim], others.clone()])?;
                tokio::time::sleep(Duration::from_millis(rng.random_range(150..600))).await;
                for i in 0..heads {
                    nemesis::heal(c, i)?;
                }
                tokio::time::sleep(Duration::from_millis(rng.random_range(150..600))).await;
            }
        }
        _ => {
            let groups = nemesis::groups_for(kind, heads, leader, rng);
            let quorum = heads / 2 + 1;
            fault.minority = groups.iter().filter(|g| g.len() < quorum).flatten().copied().collect();
            fault.targets = groups.iter().map(|g| g.iter().map(|i| c.nodes[*i].name.clone()).collect::<Vec<_>>().join("+")).collect();
            nemesis::partition(c, heads, &groups)?;
            // The partition holds from here (rules installed) until healing starts.
            fault.start_ms = ms(t0, Instant::now());
            tokio::time::sleep(Duration::from_millis(rng.random_range(2000..3000))).await;
            fault.end_ms = ms(t0, Instant::now());
            for i in 0..heads {
                nemesis::heal(c, i)?;
            }
        }
    }
    if fault.end_ms == 0.0 {
        fault.end_ms = ms(t0, Instant::now());
    }
    for i in 0..heads {
        c.wait_ready(i).await?;
    }
    Ok(fault)
}

async fn wait_leader(c: &Cluster) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = c.leader().await {
            return Ok(l);
        }
        anyhow::ensure!(Instant::now() < deadline, "no leader for 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every committed change to the chaos ConfigMaps since `from`, read as a watch.
async fn committed_history(c: &Cluster, from: u64) -> anyhow::Result<Vec<Change>> {
    let url = c.url(0, &format!("/api/v1/namespaces/{NAMESPACE}/configmaps?watch=true&resourceVersion={from}&timeoutSeconds=3"));
    let mut rx = crate::watch::open(&c.client, &url).await?;
    let mut out = Vec::new();
    while let Some(ev) = rx.recv().await {
        let ev = ev?;
        out.push(Change { rv: ev.revision, key: ev.name, kind: ev.kind });
    }
    Ok(out)
}

fn analyze(records: Vec<Record>, logs: Vec<WatchLog>, committed: &[Change], mut faults: Vec<Fault>, seconds: f64, _t0: Instant) -> Outcome {
    use linear::Ret;
    let mut o = Outcome { operations: records.len(), seconds, ..Default::default() };
    let mut by_key: BTreeMap<String, Vec<linear::Op>> = BTreeMap::new();
    let mut acks = Vec::new();
    for r in &records {
        o.samples.push(timeline::Sample {
            start_ms: r.op.start as f64 / 1e6,
            latency_ms: r.op.end.map(|e| (e - r.op.start) as f64 / 1e6),
            write: r.op.call != linear::Call::Read,
            ok: !matches!(r.op.ret, Ret::AlreadyExists | Ret::Conflict | Ret::NotFound | Ret::Unknown),
        });
        match &r.op.ret {
            Ret::Unknown => o.unknown += 1,
            Ret::AlreadyExists | Ret::Conflict | Ret::NotFound => o.failed += 1,
            _ => o.ok += 1,
        }
        let ack = |rv: u64, kind: &str| Ack { rv, key: r.key.clone(), kind: kind.into() };
        match r.op.ret {
            Ret::Created { rv } => acks.push(ack(rv, "ADDED")),
            Ret::Updated { rv } => acks.push(ack(rv, "MODIFIED")),
            Ret::Deleted { rv } => acks.push(ack(rv, "DELETED")),
            _ => {}
        }
        by_key.entry(r.key.clone()).or_default().push(r.op.clone());
    }
    for (key, history) in &by_key {
        match linear::check(history, 50_000_000) {
            linear::Verdict::Linearizable => {}
            linear::Verdict::Inconclusive => o.inconclusive_keys.push(key.clone()),
            linear::Verdict::Violation { linearized, stuck_at } => o
                .linearizability_violations
                .push(format!("{key}: not linearizable ({linearized} ops ordered; none could be followed by {stuck_at:?})")),
        }
    }
    o.lost_writes = check::lost_writes(&acks, committed);
    for w in &logs {
        o.watch_events += w.events.len();
        o.watch_violations.extend(check::watch_violations(w, committed));
    }
    for f in faults.iter_mut() {
        let (from, to) = ((f.start_ms * 1e6) as u64, (f.end_ms * 1e6) as u64);
        if matches!(f.kind, FaultKind::KillLeader) {
            let first_ack = records
                .iter()
                .filter(|r| r.op.start >= from && matches!(r.op.ret, Ret::Created { .. } | Ret::Updated { .. } | Ret::Deleted { .. }))
                .filter_map(|r| r.op.end)
                .min();
            f.unavailable_ms = first_ack.map(|e| (e - from) as f64 / 1e6);
        }
        for r in records.iter().filter(|r| f.minority.contains(&r.node) && r.op.start >= from && r.op.end.is_some_and(|e| e <= to)) {
            if matches!(r.op.ret, Ret::Created { .. } | Ret::Updated { .. } | Ret::Deleted { .. } | Ret::Value(_)) {
                o.minority_acks.push(format!("{:?} at {:.0} ms: node {} answered {:?} {:?}", f.kind, f.start_ms, r.node, r.op.call, r.op.ret));
            }
        }
    }
    o.faults = faults;
    o
}
