//! The cluster-tests command line: benchmarks (and, later, long chaos runs) on real
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::BenchWrites { out, sequential, concurrent } => cluster_tests::bench::writes(&out, sequential, concurrent).await,
    }
}
