//! The cluster-tests command line: benchmarks and long chaos runs on real
//! clusters. `cargo run -p cluster-tests --release -- --help`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Benchmarks on real orch clusters (network namespaces; needs root)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Object writes/s and latency on a 3-head cluster, sequential and 64 concurrent clients.
    BenchWrites {
        /// Where to write raft-writes.{md,json}.
        #[arg(long, default_value = "docs/benchmarks")]
        out: PathBuf,
        #[arg(long, default_value_t = 500)]
        sequential: usize,
        #[arg(long, default_value_t = 5000)]
        concurrent: usize,
    },
    /// Pod start latency (create → running) on 3 nodes with containerd, and idle orchd memory.
    BenchPods {
        /// Where to write pod-startup.{md,json}.
        #[arg(long, default_value = "docs/benchmarks")]
        out: PathBuf,
        #[arg(long, default_value_t = 30)]
        pods: usize,
        /// Bursts to measure, one after another on the same cluster (each a row).
        #[arg(long, default_value_t = 1)]
        bursts: usize,
        /// Copy the nodes' logs into OUT/logs (per-container start timings are logged).
        #[arg(long)]
        keep_logs: bool,
    },
    /// Service rule propagation at 1/10 and all of SERVICES services, and DNS queries/s next to NSD.
    BenchServices {
        /// Where to write services.{md,json}.
        #[arg(long, default_value = "docs/benchmarks")]
        out: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        services: usize,
        /// Endpoints changes timed at each size.
        #[arg(long, default_value_t = 200)]
        changes: usize,
    },
    /// A long chaos run: leader kills, pauses and partitions under a checked workload.
    Chaos {
        #[arg(long, default_value_t = 5)]
        heads: usize,
        /// How long to inject faults, e.g. 10m, 90s.
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Seed of the fault schedule (default: from the clock; printed for replay).
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long, default_value_t = 32)]
        keys: usize,
        #[arg(long, default_value_t = 3)]
        watchers: usize,
        /// Extra orchd flags, e.g. --orchd-flag=--unsafe-stale-reads (fault-injection experiments).
        #[arg(long = "orchd-flag", allow_hyphen_values = true)]
        orchd_flags: Vec<String>,
        #[arg(long, default_value = "docs/benchmarks")]
        out: PathBuf,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("bad duration unit in {s:?} (s, m or h)")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    // On Ctrl-C or SIGTERM the run is dropped, and with it the cluster, whose Drop kills
    // the nodes and removes their namespaces, mounts and cgroups.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = run(command) => r,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; cluster removed"),
        _ = term.recv() => anyhow::bail!("terminated; cluster removed"),
    }
}

async fn run(command: Cmd) -> anyhow::Result<()> {
    match command {
        Cmd::BenchWrites { out, sequential, concurrent } => cluster_tests::bench::writes(&out, sequential, concurrent).await,
        Cmd::BenchPods { out, pods, bursts, keep_logs } => cluster_tests::bench_pods::bench(&out, pods, bursts, keep_logs).await,
        Cmd::BenchServices { out, services, changes } => cluster_tests::bench_services::bench(&out, services, changes).await,
        Cmd::Chaos { heads, duration, seed, clients, keys, watchers, orchd_flags, out } => {
            use cluster_tests::chaos::{self, report, Config, LONG_ROTATION};
            let seed = seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
            println!("chaos: seed {seed}");
            let schedule = LONG_ROTATION.iter().copied().cycle().take(100_000).collect();
            let cfg = Config { heads, clients, keys, watchers, seed, schedule, duration, orchd_flags };
            let (outcome, _cluster) = chaos::run(&cfg).await?;
            let md = report::write(&out, "chaos", &cfg, &outcome)?;
            println!("{md}");
            for v in outcome.linearizability_violations.iter().chain(&outcome.lost_writes).chain(&outcome.watch_violations).chain(&outcome.minority_acks) {
                println!("VIOLATION: {v}");
            }
            anyhow::ensure!(outcome.violations() == 0, "{} violations", outcome.violations());
            Ok(())
        }
    }
}
