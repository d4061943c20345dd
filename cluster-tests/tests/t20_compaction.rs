//! Log compaction and history retention on real clusters: a head that fell behind the
//! purged log catches up by snapshot; a watch from a compacted revision gets 410 Gone.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use cluster_tests::objects::{create_cm, CM};
use cluster_tests::{poll, Cluster};
use hyper::Method;
use serde_json::Value;



fn member<'a>(status: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    status["members"].as_array().context("no members")?.iter().find(|m| m["name"] == name).context("member missing")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_behind_the_purged_log_catches_up_by_snapshot() -> anyhow::Result<()> {
    let mut c = Cluster::start_with(3, 0, &["--snapshot-after", "20", "--snapshot-keep-logs", "5"]).await?;
    let leader = c.leader().await.context("no leader")?;
    let lagger = (0..3).find(|i| *i != leader).unwrap();
    let writer = (0..3).find(|i| *i != leader && *i != lagger).unwrap();
    let lagger_name = c.nodes[lagger].name.clone();
    let before = member(&c.status(leader).await?, &lagger_name)?["appliedIndex"].as_u64().context("no index")?;
    c.kill(lagger);

    let mut acked = BTreeMap::new();
    for n in 0..150 {
        let name = format!("snap-{n}");
        acked.insert(name.clone(), create_cm(&c, [leader, writer][n % 2], &name).await?);
    }
    // The leader must have purged log entries the lagging head never received.
    poll(Duration::from_secs(30), "the leader to purge its log past the lagging head", || async {
        let s = c.status(leader).await?;
        Ok(member(&s, &c.nodes[leader].name)?["purgedIndex"].as_u64().unwrap_or(0) > before + 1)
    })
    .await?;

    c.restart(lagger).await?;
    poll(Duration::from_secs(30), "the restarted head to hold every acknowledged write", || async {
        let list = c.client.json(Method::GET, &c.url(lagger, &format!("{CM}?resourceVersion=0")), None).await?;
        let have: BTreeMap<String, u64> = list["items"]
            .as_array()
            .context("items")?
            .iter()
            .filter_map(|i| Some((i["metadata"]["name"].as_str()?.to_string(), i["metadata"]["resourceVersion"].as_str()?.parse().ok()?)))
            .collect();
        Ok(acked.iter().all(|(k, v)| have.get(k) == Some(v)))
    })
    .await?;
    let s = c.status(lagger).await?;
    let snap = member(&s, &lagger_name)?["snapshotIndex"].as_u64().unwrap_or(0);
    assert!(snap > before, "the lagging head caught up without installing a snapshot (snapshot index {snap}, was at {before})");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_from_a_compacted_revision_is_gone() -> anyhow::Result<()> {
    let c = Cluster::start_with(1, 0, &["--watch-history", "20"]).await?;
    let first = create_cm(&c, 0, "old").await?;
    let mut last = first;
    for n in 0..60 {
        last = create_cm(&c, 0, &format!("new-{n}")).await?;
    }
    let (status, body) = c.client.call(Method::GET, &c.url(0, &format!("{CM}?watch=true&resourceVersion={first}")), None, Default::default()).await?;
    let v: Value = serde_json::from_slice(&body)?;
    assert_eq!((status.as_u16(), v["kind"].as_str(), v["reason"].as_str()), (410, Some("Status"), Some("Expired")), "{v}");
    // A watch from a retained revision still works and starts after it.
    let mut rx = cluster_tests::watch::open(&c.client, &c.url(0, &format!("{CM}?watch=true&resourceVersion={}", last - 1))).await?;
    let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await?.context("stream ended")??;
    assert_eq!((ev.name.as_str(), ev.revision), ("new-59", last));
    Ok(())
}
