//! orchd: the orch daemon. One on every node; see `orchd --help`.

use clap::Parser;
use orch::daemon::{self, config::Flags};

fn main() -> anyhow::Result<()> {
    daemon::limit_malloc_arenas();
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("ORCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn,h2=warn,tower=warn,hyper=warn"));
    // hickory logs every DNS query at info: kept at warn unless ORCH_LOG names it.
    if !std::env::var("ORCH_LOG").is_ok_and(|v| v.contains("hickory")) {
        filter = filter.add_directive("hickory_server=warn".parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("ORCH_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
    let settings = Flags::parse().resolve()?;
    daemon::run(settings).await
}
