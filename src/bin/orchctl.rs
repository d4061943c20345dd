//! orchctl: the orch command-line client; see `orchctl --help`.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = orch::ctl::Cli::parse();
    if let Err(e) = orch::ctl::run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
