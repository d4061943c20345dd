//! The pod start benchmark: on a real 3-node cluster (one head, two workers, a containerd
//! each, the image already present), the time from a pod's create request being
//! acknowledged to its container reported running, for pods created one at a time and
//! for a burst created at once (seen through a watch); and the resident memory of idle
//! orchd processes.
//! A benchmark, not a test: it asserts nothing and writes pod-startup.{md,json}.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::cluster::{Cluster, Options, Role};
use crate::pods::{self, all_running, container, pod};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Latencies {
    pub name: String,
    pub pods: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Rss {
    pub node: String,
    pub role: String,
    pub rss_kib: u64,
    /// Of which heap and other anonymous memory, and pages of mapped files (the binary).
    pub anon_kib: u64,
    pub file_kib: u64,
}

/// A run's wall time (first create to last pod running) and the CPU time the whole
/// machine spent meanwhile: every process (orchd, containerd, shims, runc) and the kernel;
/// of which the orchd processes', and containerd's with its shims and runc.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CpuUse {
    pub wall_ms: f64,
    pub cpu_ms: f64,
    /// cpu / wall: how many of the machine's cores the run kept busy on average.
    pub cores_busy: f64,
    pub orchd_ms: f64,
    /// None where containerd's CPU time could not be measured (no cgroup for it).
    pub containerd_ms: Option<f64>,
}

/// CPU time used so far: the machine, the cluster's orchd processes, its containerds.
struct Meter {
    at: Instant,
    machine: Duration,
    orchd: Duration,
    containerd: Option<Duration>,
}

impl Meter {
    fn read(c: &Cluster) -> Meter {
        let orchd = c.nodes.iter().filter_map(|n| n.pid()).map(process_cpu).sum();
        let containerd = c.containerds.iter().map(|d| d.cpu_time()).sum();
        Meter { at: Instant::now(), machine: cpu_busy(), orchd, containerd }
    }

    fn since(&self, earlier: &Meter) -> CpuUse {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let (wall_ms, cpu_ms) = (ms(self.at - earlier.at), ms(self.machine.saturating_sub(earlier.machine)));
        CpuUse {
            wall_ms,
            cpu_ms,
            cores_busy: if wall_ms > 0.0 { cpu_ms / wall_ms } else { 0.0 },
            orchd_ms: ms(self.orchd.saturating_sub(earlier.orchd)),
            containerd_ms: self.containerd.zip(earlier.containerd).map(|(a, b)| ms(a.saturating_sub(b))),
        }
    }
}

impl CpuUse {
    /// Several runs taken as one.
    fn total(runs: &[CpuUse]) -> CpuUse {
        let wall_ms = runs.iter().map(|r| r.wall_ms).sum();
        let cpu_ms = runs.iter().map(|r| r.cpu_ms).sum();
        CpuUse {
            wall_ms,
            cpu_ms,
            cores_busy: if wall_ms > 0.0 { cpu_ms / wall_ms } else { 0.0 },
            orchd_ms: runs.iter().map(|r| r.orchd_ms).sum(),
            containerd_ms: runs.iter().map(|r| r.containerd_ms).sum(),
        }
    }
}

/// A process's CPU time (user + system, all its threads) from /proc/PID/stat.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) close with ')'; utime and stime are
    // the 14th and 15th fields, the 12th and 13th after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<u64>().ok()).sum();
    Duration::from_secs_f64(ticks as f64 / USER_HZ)
}

/// The unit of /proc/stat (USER_HZ): 100 on every architecture Linux supports today.
const USER_HZ: f64 = 100.0;

/// CPU time the machine has spent busy since boot, all cores: /proc/stat's `cpu` line less
/// idle and iowait (10 ms resolution).
pub fn cpu_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is counted in user).
    let busy: u64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    Duration::from_secs_f64(busy as f64 / USER_HZ)
}

pub fn summarize(name: &str, mut d: Vec<Duration>) -> Latencies {
    d.sort();
    let pct = |p: f64| d.get(((d.len() as f64 * p).ceil() as usize).clamp(1, d.len().max(1)) - 1).map_or(0.0, |x| x.as_secs_f64() * 1000.0);
    Latencies { name: name.into(), pods: d.len(), p50_ms: pct(0.5), p99_ms: pct(0.99), max_ms: pct(1.0) }
}

/// Create `names` (spread over the nodes, through node 0), then wait for each to run;
/// returns per pod the time from its acknowledged create to the watch event showing it
/// running. A watch, not polling: listing every pod every few milliseconds took CPU from
/// the nodes being measured.
/// Returns the pods' latencies, and the run's wall and CPU time.
async fn start(c: &Cluster, names: &[String]) -> anyhow::Result<(Vec<Duration>, CpuUse)> {
    let list = c.client.json(hyper::Method::GET, &c.url(0, "/api/v1/namespaces/default/pods"), None).await?;
    let from = list["metadata"]["resourceVersion"].as_str().context("list resourceVersion")?.to_string();
    let mut events = crate::watch::open(&c.client, &c.url(0, &format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={from}"))).await?;
    let (tx, mut running) = tokio::sync::mpsc::unbounded_channel();
    let watcher = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let Ok(seen) = event else { break };
            if all_running(&seen.object) && tx.send((seen.name, Instant::now())).is_err() {
                break;
            }
        }
    });
    let mut created = std::collections::HashMap::new();
    let before = Meter::read(c);
    for (i, name) in names.iter().enumerate() {
        let node = &c.nodes[i % c.nodes.len()].name;
        pods::create(c, 0, &pod(name, node, "Always", json!([container("app", "exec sleep 3600")]))).await?;
        created.insert(name.clone(), Instant::now());
    }
    let mut done = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !created.is_empty() {
        let (name, at) = tokio::time::timeout_at(deadline, running.recv())
            .await
            .map_err(|_| anyhow::anyhow!("pods not running after 120 s: {:?}", created.keys().collect::<Vec<_>>()))?
            .context("the pod watch ended")?;
        if let Some(t) = created.remove(&name) {
            done.push(at.saturating_duration_since(t));
        }
    }
    let used = Meter::read(c).since(&before);
    watcher.abort();
    Ok((done, used))
}

/// Delete `names`, wait until the API has none left, then until the machine is quiet: the
/// kernel tears network namespaces down on a work queue after their last process is gone,
/// which would otherwise run during the next measurement.
async fn delete_all(c: &Cluster, names: &[String]) -> anyhow::Result<()> {
    for n in names {
        c.client.json(hyper::Method::DELETE, &c.url(0, &format!("/api/v1/namespaces/default/pods/{n}")), None).await?;
    }
    crate::cluster::poll(Duration::from_secs(120), "pods deleted", || async {
        let list = c.client.json(hyper::Method::GET, &c.url(0, "/api/v1/namespaces/default/pods"), None).await?;
        Ok(list["items"].as_array().is_some_and(Vec::is_empty))
    })
    .await?;
    settle().await;
    Ok(())
}

/// Wait (at most 30 s) for a second in which the machine's cores were less than 10% busy.
async fn settle() {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let before = cpu_busy();
        tokio::time::sleep(Duration::from_secs(1)).await;
        if cpu_busy().saturating_sub(before).as_secs_f64() < 0.1 * cores() as f64 {
            return;
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A `/proc/PID/status` field in KiB (0 if the process is gone).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix(field).and_then(|v| v.trim_start_matches(':').trim().trim_end_matches("kB").trim().parse().ok())))
        .unwrap_or(0)
}

fn rss(n: &crate::cluster::Node) -> Rss {
    let kib = |field| n.pid().map_or(0, |pid| status_kib(pid, field));
    Rss {
        node: n.name.clone(),
        role: if n.role == Role::Head { "head".into() } else { "worker".into() },
        rss_kib: kib("VmRSS"),
        anon_kib: kib("RssAnon"),
        file_kib: kib("RssFile"),
    }
}

pub async fn bench(out: &Path, pods_per_run: usize, bursts: usize, keep_logs: bool) -> anyhow::Result<()> {
    anyhow::ensure!(bursts >= 1 && pods_per_run >= 1, "--bursts and --pods must be at least 1 (got {bursts} and {pods_per_run})");
    let mut c = Cluster::start_opts(1, 2, Options { containerd: true, ..Default::default() }).await?;
    c.quiet = true;
    pods::load_busybox(&c, 0)?;
    let names = |prefix: &str| (0..pods_per_run).map(|i| format!("{prefix}-{i:02}")).collect::<Vec<_>>();

    // Warm-up: the first container on a node pays for the image's first snapshot mount.
    let warm = names("warm");
    start(&c, &warm[..c.nodes.len()]).await?;
    delete_all(&c, &warm[..c.nodes.len()]).await?;

    let seq = names("seq");
    let (mut sequential, mut seq_cpu) = (Vec::new(), Vec::new());
    for n in &seq {
        let (times, used) = start(&c, std::slice::from_ref(n)).await?;
        sequential.extend(times);
        seq_cpu.push(used);
    }
    delete_all(&c, &seq).await?;
    let mut runs = vec![summarize("one at a time", sequential)];
    let mut cpu = vec![CpuUse::total(&seq_cpu)];
    let mut steady = CpuUse::default();
    for b in 0..bursts {
        let burst = names(&format!("burst{b}"));
        let (burst_times, burst_cpu) = start(&c, &burst).await?;
        if b + 1 == bursts {
            // The pods running and nothing changing: what keeping them costs (the kubelets'
            // passes every 2 s, heartbeats), measured over a fixed window.
            let before = Meter::read(&c);
            tokio::time::sleep(STEADY_WINDOW).await;
            steady = Meter::read(&c).since(&before);
        }
        delete_all(&c, &burst).await?;
        let name = if bursts == 1 { format!("burst of {pods_per_run}") } else { format!("burst of {pods_per_run} ({} of {bursts})", b + 1) };
        runs.push(summarize(&name, burst_times));
        cpu.push(burst_cpu);
    }

    // Idle: no pods, heartbeats only, for a few heartbeat intervals.
    tokio::time::sleep(Duration::from_secs(40)).await;
    let rss: Vec<Rss> = c.nodes.iter().map(rss).collect();
    if keep_logs {
        let dir = out.join("logs");
        std::fs::create_dir_all(&dir)?;
        for n in &c.nodes {
            std::fs::copy(n.data_dir.with_extension("log"), dir.join(format!("{}.log", n.name)))?;
        }
    }
    write_report(out, &runs, &cpu, &steady, &rss)
}

/// How long the steady state (a burst's pods running, nothing changing) is measured.
const STEADY_WINDOW: Duration = Duration::from_secs(10);

fn write_report(out: &Path, runs: &[Latencies], cpu: &[CpuUse], steady: &CpuUse, rss: &[Rss]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    // The orchd measured (its build profile is in the path: target/{debug,release,dist}).
    let orchd = crate::cluster::bin_dir().join("orchd");
    let orchd = std::fs::canonicalize(&orchd).unwrap_or(orchd).display().to_string();
    let json = json!({"runs": runs, "cpu": cpu, "steady": steady, "idle_rss": rss, "orchd": orchd, "cores": cores()});
    std::fs::write(out.join("pod-startup.json"), serde_json::to_string_pretty(&json)?)?;
    let mut md = String::from(
        "# Pod start latency and idle memory\n\n\
         `cluster-tests bench-pods` on a real 3-node cluster (1 head, 2 workers; orchd processes in network \
         namespaces, a containerd 1.6 + runc each, the busybox image already loaded). Latency: from the \
         acknowledged create of a pod bound to a node to its container reported running in the pod's \
         status (the event of a watch opened before the creates). Goal: p99 ≤ 1 s. Each run starts once \
         the previous run's pods are gone and the machine has been quiet for a second (the kernel removes \
         deleted pods' network namespaces in the background).\n\n",
    );
    md.push_str(&format!(
        "orchd measured: `{orchd}` (1 KiB = 1024 bytes; 32 MB = 30.5 MiB). CPU: the whole machine's busy time ({} cores) \
         from the first create to the last pod running, all processes and the kernel; of it per pod, the \
         orchd processes' and containerd's with its shims and runc (a cgroup of its own).\n\n\
         | run | pods | p50 ms | p99 ms | max ms | wall ms | CPU ms | CPU ms per pod | cores busy | orchd ms per pod | containerd ms per pod |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        cores()
    ));
    for (r, c) in runs.iter().zip(cpu) {
        let per_pod = |ms: f64| format!("{:.0}", ms / r.pods.max(1) as f64);
        let containerd = c.containerd_ms.map_or("-".to_string(), per_pod);
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {:.2} | {} | {containerd} |\n",
            r.name, r.pods, r.p50_ms, r.p99_ms, r.max_ms, c.wall_ms, c.cpu_ms, per_pod(c.cpu_ms), c.cores_busy, per_pod(c.orchd_ms)
        ));
    }
    let per_s = |ms: f64| ms / (steady.wall_ms / 1000.0).max(f64::EPSILON);
    md.push_str(&format!(
        "\nThe last burst's pods running and nothing changing, over {} s: the machine {:.0} ms of CPU per second, \
         the orchd processes {:.0} ms/s, containerd with its shims {}.\n",
        STEADY_WINDOW.as_secs(),
        per_s(steady.cpu_ms),
        per_s(steady.orchd_ms),
        steady.containerd_ms.map_or("not measured".to_string(), |ms| format!("{:.0} ms/s", per_s(ms)))
    ));
    md.push_str("\nResident memory (VmRSS) of idle orchd processes, 40 s after the last pod was deleted. Goal: ≤ 32 MB for a worker.\n\n| node | role | RSS MiB | anonymous MiB | file-backed MiB |\n|---|---|---:|---:|---:|\n");
    let mib = |k: u64| k as f64 / 1024.0;
    for r in rss {
        md.push_str(&format!("| {} | {} | {:.1} | {:.1} | {:.1} |\n", r.node, r.role, mib(r.rss_kib), mib(r.anon_kib), mib(r.file_kib)));
    }
    std::fs::write(out.join("pod-startup.md"), md)?;
    println!("{}", std::fs::read_to_string(out.join("pod-startup.md"))?);
    Ok(())
}
