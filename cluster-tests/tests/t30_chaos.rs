//! The short chaos run of CI: 3 heads, 5 leader kills, an isolated-leader partition and a
//! pause under a checked workload. Every checker must report nothing.

use std::time::Duration;

use cluster_tests::chaos::{self, nemesis::FaultKind, report, Config};

#[tokio::test(flavor = "multi_thread")]
async fn short_chaos_run_finds_no_violation() -> anyhow::Result<()> {
    use FaultKind::*;
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261122);
    let cfg = Config {
        heads: 3,
        clients: 16,
        keys: 16,
        watchers: 3,
        seed,
        schedule: vec![KillLeader, IsolateLeader, KillLeader, Pause, KillLeader, KillLeader, KillLeader],
        duration: Duration::from_secs(120),
        orchd_flags: vec![],
    };
    let (o, cluster) = chaos::run(&cfg).await?;
    let md = report::write(&cluster.work_dir().join("report"), "chaos", &cfg, &o)?;
    println!("{md}");
    let kills = o.faults.iter().filter(|f| f.kind == KillLeader).count();
    assert_eq!(kills, 5, "the schedule did not complete: {:?}", o.faults);
    assert!(o.ok > 100, "too little work got done to mean anything: {} ok operations", o.ok);
    assert!(o.watch_events > 0, "the watchers saw nothing");
    assert!(o.inconclusive_keys.is_empty(), "inconclusive: {:?}", o.inconclusive_keys);
    assert_eq!(o.violations(), 0, "linearizability {:?}\nlost {:?}\nwatch {:?}\nminority {:?}",
        o.linearizability_violations, o.lost_writes, o.watch_violations, o.minority_acks);
    Ok(())
}
