//! The chaos report: figures (failover and new-leader percentiles, throughput, fault
//! counts) and every violation, as JSON and a short Markdown summary. Pure but for the
//! final file writes.

use std::path::Path;

use serde_json::json;

use super::nemesis::FaultKind;
use super::{Config, Outcome};

/// (p50, p99, max) in ms; None when there are no samples.
pub fn percentiles(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    Some((at(0.5), at(0.99), *v.last().expect("non-empty")))
}

fn fmt(p: Option<(f64, f64, f64)>) -> String {
    p.map_or("n/a".into(), |(a, b, c)| format!("{a:.0} / {b:.0} / {c:.0}"))
}

pub fn summary(cfg: &Config, o: &Outcome) -> (serde_json::Value, String) {
    let count = |pred: &dyn Fn(FaultKind) -> bool| o.faults.iter().filter(|f| pred(f.kind)).count();
    let failover = percentiles(o.faults.iter().filter_map(|f| f.unavailable_ms).collect());
    let new_leader = percentiles(o.faults.iter().filter_map(|f| f.new_leader_ms).collect());
    let kills = count(&|k| k == FaultKind::KillLeader);
    let partitions = count(&|k| k.is_partition());
    let isolated = count(&|k| k == FaultKind::IsolateLeader);
    let pauses = count(&|k| k == FaultKind::Pause);
    let flaps = count(&|k| k == FaultKind::Flap);
    let json = json!({
        "config": cfg,
        "seconds": o.seconds,
        "operations": o.operations, "ok": o.ok, "failed": o.failed, "unknown": o.unknown,
        "operations_per_second": o.operations as f64 / o.seconds.max(1e-9),
        "faults": {"leader_kills": kills, "partitions": partitions, "isolated_leader": isolated, "pauses": pauses, "flapping": flaps, "all": o.faults},
        "failover_ms": failover.map(|(a, b, c)| json!({"p50": a, "p99": b, "max": c})),
        "new_leader_ms": new_leader.map(|(a, b, c)| json!({"p50": a, "p99": b, "max": c})),
        "watch_events": o.watch_events,
        "violations": {
            "linearizability": o.linearizability_violations,
            "inconclusive_keys": o.inconclusive_keys,
            "lost_writes": o.lost_writes,
            "watch": o.watch_violations,
            "minority_acks": o.minority_acks,
        },
    });
    let md = format!(
        "# Chaos run (seed {seed})\n\n\
         {heads} heads, {clients} clients on {keys} keys, {watchers} watchers, {secs:.0} s.\n\
         Replay: `cargo run -p cluster-tests --release -- chaos --heads {heads} --seed {seed}`.\n\n\
         | figure | value |\n|---|---|\n\
         | operations (ok / failed / unknown) | {ops} ({ok} / {failed} / {unknown}) |\n\
         | operations/s | {opss:.0} |\n\
         | leader kills / partitions (isolated leader, flapping) / pauses | {kills} / {partitions} ({isolated}, {flaps}) / {pauses} |\n\
         | failover, SIGKILL → first acknowledged write, p50 / p99 / max ms | {failover} |\n\
         | SIGKILL → new leader reported, p50 / p99 / max ms | {new_leader} |\n\
         | watch events checked | {watch} |\n\
         | linearizability violations | {lin} (inconclusive keys: {inc}) |\n\
         | lost acknowledged writes | {lost} |\n\
         | watch violations | {wv} |\n\
         | acknowledgements from a minority side | {minority} |\n",
        seed = cfg.seed, heads = cfg.heads, clients = cfg.clients, keys = cfg.keys, watchers = cfg.watchers, secs = o.seconds,
        ops = o.operations, ok = o.ok, failed = o.failed, unknown = o.unknown, opss = o.operations as f64 / o.seconds.max(1e-9),
        failover = fmt(failover), new_leader = fmt(new_leader), watch = o.watch_events,
        lin = o.linearizability_violations.len(), inc = o.inconclusive_keys.len(), lost = o.lost_writes.len(),
        wv = o.watch_violations.len(), minority = o.minority_acks.len(),
    );
    (json, md)
}

pub fn write(dir: &Path, name: &str, cfg: &Config, o: &Outcome) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    let (json, md) = summary(cfg, o);
    std::fs::write(dir.join(format!("{name}.json")), serde_json::to_string_pretty(&json)? + "\n")?;
    let title = format!("orch chaos run, seed {}: {} heads, op latency vs faults", cfg.seed, cfg.heads);
    let picture = super::timeline::svg(&title, &o.samples, &o.faults, o.seconds);
    super::timeline::write_png(&picture, &dir.join(format!("{name}.png")))?;
    let md = md + &format!("\n![timeline]({name}.png)\n");
    std::fs::write(dir.join(format!("{name}.md")), &md)?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentiles(v), Some((50.0, 99.0, 100.0)));
        assert_eq!(percentiles(vec![]), None);
        assert_eq!(percentiles(vec![7.0]), Some((7.0, 7.0, 7.0)));
    }
}
