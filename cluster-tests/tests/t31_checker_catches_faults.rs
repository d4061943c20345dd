//! The checker catches a deliberately broken build: with `--unsafe-stale-reads`, a leader
//! cut off in a minority keeps serving reads from its own replica, and the linearizability
//! checker must reject the resulting history. The same steps on a correct build: the cut-off
//! node refuses the read.

use std::time::{Duration, Instant};

use anyhow::Context;
use cluster_tests::chaos::nemesis;
use cluster_tests::check::linear::{self, Call, Op, Ret, Verdict};
use cluster_tests::{poll, Cluster};
use hyper::Method;
use serde_json::{json, Value};

use cluster_tests::objects::CM;

fn rv(v: &Value) -> anyhow::Result<u64> {
    Ok(v["metadata"]["resourceVersion"].as_str().context("rv")?.parse()?)
}

/// Create k=v1, isolate the leader, update k=v2 through the majority, read k through the
/// isolated ex-leader. Returns the recorded history.
async fn scenario(flags: &[&str]) -> anyhow::Result<Vec<Op>> {
    let c = Cluster::start_with(3, 0, flags).await?;
    let t0 = Instant::now();
    let now = || t0.elapsed().as_nanos() as u64;
    let mut history = Vec::new();

    let start = now();
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "k"}, "data": {"v": "v1"}});
    let created = c.client.json(Method::POST, &c.url(0, CM), Some(&body)).await?;
    history.push(Op { start, end: Some(now()), call: Call::Create { value: "v1".into() }, ret: Ret::Created { rv: rv(&created)? } });

    let leader = c.leader().await.context("no leader")?;
    let majority: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    nemesis::partition(&c, 3, &[vec![leader], majority.clone()])?;
    poll(Duration::from_secs(20), "a new leader in the majority", || async {
        let s = c.status(majority[0]).await?;
        let members = s["members"].as_array().cloned().unwrap_or_default();
        Ok(members.iter().any(|m| m["leader"] == true && m["name"] != c.nodes[leader].name.as_str()))
    })
    .await?;

    let start = now();
    let update = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "k", "resourceVersion": rv(&created)?.to_string()}, "data": {"v": "v2"}});
    let updated = c.client.json(Method::PUT, &c.url(majority[0], &format!("{CM}/k")), Some(&update)).await?;
    history.push(Op { start, end: Some(now()), call: Call::Cas { expect: rv(&created)?, value: "v2".into() }, ret: Ret::Updated { rv: rv(&updated)? } });

    let start = now();
    let read = c.client.json(Method::GET, &c.url(leader, &format!("{CM}/k")), None).await;
    let ret = match &read {
        Ok(v) => Ret::Value(Some((v["data"]["v"].as_str().unwrap_or_default().to_string(), rv(v)?))),
        Err(_) => Ret::Unknown,
    };
    let end = (ret != Ret::Unknown).then(now);
    history.push(Op { start, end, call: Call::Read, ret });
    Ok(history)
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_reads_from_an_isolated_ex_leader_are_caught() -> anyhow::Result<()> {
    let history = scenario(&["--unsafe-stale-reads"]).await?;
    assert_eq!(history[2].ret, Ret::Value(Some(("v1".into(), match history[0].ret { Ret::Created { rv } => rv, _ => 0 }))),
        "the broken build did not serve the stale value: {history:?}");
    assert!(matches!(linear::check(&history, 1_000_000), Verdict::Violation { .. }), "the checker missed a stale read: {history:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_correct_build_refuses_reads_on_the_isolated_ex_leader() -> anyhow::Result<()> {
    let history = scenario(&[]).await?;
    assert_eq!(history[2].ret, Ret::Unknown, "the isolated ex-leader answered a read: {history:?}");
    assert_eq!(linear::check(&history, 1_000_000), Verdict::Linearizable);
    Ok(())
}
