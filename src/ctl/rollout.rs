//! `orchctl scale` and `orchctl rollout status|history|undo|pause|resume`, as kubectl has
//! them. The choice of the template to go back to is pure (`undo_target`).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hyper::Method;
use serde_json::{json, Value};

use super::{kind_of, Ctx};
use crate::control::deployment::{revision_of, HASH_LABEL};

/// `KIND/NAME`, or KIND and NAME as two words.
pub fn target(first: &str, second: Option<&str>) -> anyhow::Result<(String, String)> {
    match (first.split_once('/'), second) {
        (Some((k, n)), None) => Ok((k.to_string(), n.to_string())),
        (None, Some(n)) => Ok((first.to_string(), n.to_string())),
        _ => bail!("give the object as KIND/NAME or KIND NAME (e.g. deployment/web)"),
    }
}

async fn object(ctx: &Ctx, kind: &str, name: &str) -> anyhow::Result<(String, Value)> {
    let res = kind_of(kind)?;
    let url = ctx.url(res, Some(&ctx.namespace), Some(name));
    let obj = ctx.client.json(Method::GET, &url, None).await.with_context(|| format!("{kind}/{name}"))?;
    Ok((url, obj))
}

async fn merge(ctx: &Ctx, url: &str, patch: &Value) -> anyhow::Result<Value> {
    ctx.client.json_as(Method::PATCH, url, Some(patch), "application/merge-patch+json").await
}

pub(super) async fn scale(ctx: &Ctx, kind: &str, name: &str, replicas: u32) -> anyhow::Result<()> {
    let res = kind_of(kind)?;
    if !matches!(res.kind, "Deployment" | "ReplicaSet" | "StatefulSet") {
        bail!("{} cannot be scaled (deployments, replicasets and statefulsets can)", res.plural);
    }
    let url = ctx.url(res, Some(&ctx.namespace), Some(name));
    merge(ctx, &url, &json!({"spec": {"replicas": replicas}})).await?;
    println!("{}/{name} scaled", res.kind.to_ascii_lowercase());
    Ok(())
}

/// The ReplicaSets of deployment `d`, by revision.
async fn history(ctx: &Ctx, d: &Value) -> anyhow::Result<Vec<Value>> {
    let uid = d["metadata"]["uid"].as_str().unwrap_or_default();
    let rs = kind_of("replicasets")?;
    let list = ctx.client.json(Method::GET, &ctx.url(rs, Some(&ctx.namespace), None), None).await?;
    let mut sets: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["metadata"]["ownerReferences"].as_array().is_some_and(|r| r.iter().any(|o| o["uid"] == uid)))
        .cloned()
        .collect();
    sets.sort_by_key(revision_of);
    Ok(sets)
}

/// The revision and template `rollout undo` goes back to: `to`, or the one before the
/// newest; the template without the controller's hash label.
pub fn undo_target(sets: &[Value], to: Option<u64>) -> Result<(u64, Value), String> {
    let mut revisions: Vec<u64> = sets.iter().map(revision_of).filter(|r| *r > 0).collect();
    revisions.sort_unstable();
    let want = match to {
        Some(r) => r,
        None => *revisions.iter().rev().nth(1).ok_or("no previous revision to go back to")?,
    };
    let set = sets.iter().find(|s| revision_of(s) == want).ok_or(format!("revision {want} not found (have {revisions:?})"))?;
    let mut template = set["spec"]["template"].clone();
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH_LABEL);
    }
    Ok((want, template))
}

fn deployment_only(kind: &str) -> anyhow::Result<()> {
    if kind_of(kind)?.kind != "Deployment" {
        bail!("rollout works on deployments here");
    }
    Ok(())
}

pub(super) async fn history_cmd(ctx: &Ctx, kind: &str, name: &str) -> anyhow::Result<()> {
    deployment_only(kind)?;
    let (_, d) = object(ctx, kind, name).await?;
    println!("deployment.apps/{name}\nREVISION  CHANGE-CAUSE  IMAGES");
    for s in history(ctx, &d).await? {
        let images: Vec<&str> = s["spec"]["template"]["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| c["image"].as_str()).collect();
        let cause = s["metadata"]["annotations"]["kubernetes.io/change-cause"].as_str().unwrap_or("<none>");
        println!("{:<9} {:<13} {}", revision_of(&s), cause, images.join(","));
    }
    Ok(())
}

pub(super) async fn undo(ctx: &Ctx, kind: &str, name: &str, to: Option<u64>) -> anyhow::Result<()> {
    deployment_only(kind)?;
    let (url, d) = object(ctx, kind, name).await?;
    let (revision, template) = undo_target(&history(ctx, &d).await?, to).map_err(anyhow::Error::msg)?;
    // The whole template is replaced, at the version read.
    let mut next = d.clone();
    next["spec"]["template"] = template;
    ctx.client.json(Method::PUT, &url, Some(&next)).await?;
    println!("deployment.apps/{name} rolled back to revision {revision}");
    Ok(())
}

pub(super) async fn pause(ctx: &Ctx, kind: &str, name: &str, paused: bool) -> anyhow::Result<()> {
    deployment_only(kind)?;
    let (url, _) = object(ctx, kind, name).await?;
    merge(ctx, &url, &json!({"spec": {"paused": paused}})).await?;
    println!("deployment.apps/{name} {}", if paused { "paused" } else { "resumed" });
    Ok(())
}

/// Follow the rollout until every replica runs the current template and is available.
pub(super) async fn status(ctx: &Ctx, kind: &str, name: &str, timeout: Duration) -> anyhow::Result<()> {
    deployment_only(kind)?;
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let (_, d) = object(ctx, kind, name).await?;
        let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let st = &d["status"];
        let n = |f: &str| st[f].as_i64().unwrap_or(0);
        let observed = n("observedGeneration") >= d["metadata"]["generation"].as_i64().unwrap_or(1);
        let line = if !observed {
            "Waiting for deployment spec update to be observed...".to_string()
        } else if n("updatedReplicas") < want {
            format!("Waiting for deployment {name:?} rollout to finish: {} out of {want} new replicas have been updated...", n("updatedReplicas"))
        } else if n("replicas") > n("updatedReplicas") {
            format!("Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...", n("replicas") - n("updatedReplicas"))
        } else if n("availableReplicas") < want {
            format!("Waiting for deployment {name:?} rollout to finish: {} of {want} updated replicas are available...", n("availableReplicas"))
        } else {
            println!("deployment {name:?} successfully rolled out");
            return Ok(());
        };
        if d["spec"]["paused"] == true {
            bail!("deployment {name:?} is paused; resume it to continue the rollout");
        }
        if line != last {
            println!("{line}");
            last = line;
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for the rollout of {name:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::deployment::REVISION;

    fn set(revision: &str, image: &str) -> Value {
        json!({"metadata": {"annotations": {REVISION: revision}},
            "spec": {"template": {"metadata": {"labels": {"app": "web", HASH_LABEL: "abc"}}, "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn undo_goes_to_the_previous_revision_or_the_one_named() {
        let sets = [set("1", "v1"), set("3", "v3"), set("2", "v2")];
        let (r, t) = undo_target(&sets, None).unwrap();
        assert_eq!((r, t["spec"]["containers"][0]["image"].as_str()), (2, Some("v2")));
        assert!(t["metadata"]["labels"].get(HASH_LABEL).is_none(), "the controller's label is not part of the user's template");
        assert_eq!(undo_target(&sets, Some(1)).unwrap().0, 1);
        assert!(undo_target(&sets, Some(9)).unwrap_err().contains("revision 9 not found"));
        assert!(undo_target(&[set("1", "v1")], None).unwrap_err().contains("no previous revision"));
    }

    #[test]
    fn targets_are_kind_slash_name_or_two_words() {
        assert_eq!(target("deployment/web", None).unwrap(), ("deployment".into(), "web".into()));
        assert_eq!(target("deploy", Some("web")).unwrap(), ("deploy".into(), "web".into()));
        assert!(target("web", None).is_err());
    }
}
