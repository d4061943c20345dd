//! Namespace deletion: a namespace marked terminating (`DELETE` sets its deletionTimestamp
//! and phase Terminating; the API then refuses new objects in it) is emptied, every object of
//! every namespaced kind deleted (pods gracefully, through their kubelets), and removed once
//! a linearizable look finds nothing left. `plan` is pure.

use serde_json::Value;

use super::informer::{self, Informer};
use super::ControlConfig;
use crate::api::resources::{self, Resource, RESOURCES};
use crate::api::store::{Consistency, Filter, ObjectStore};

/// What to do next for a terminating namespace, given what it still holds.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Delete these (indices into the contents; those not yet being deleted).
    Delete(Vec<usize>),
    /// Everything left is already being deleted (pods stopping): look again later.
    Wait(usize),
    /// Empty: remove the namespace.
    Finalize,
}

pub fn plan(contents: &[(&'static Resource, Value)]) -> Step {
    if contents.is_empty() {
        return Step::Finalize;
    }
    let fresh: Vec<usize> = (0..contents.len()).filter(|i| contents[*i].1["metadata"]["deletionTimestamp"].is_null()).collect();
    if fresh.is_empty() {
        Step::Wait(contents.len())
    } else {
        Step::Delete(fresh)
    }
}

/// Every object in namespace `ns`, read linearizably.
async fn contents(store: &ObjectStore, ns: &str) -> Result<Vec<(&'static Resource, Value)>, crate::api::status::ApiError> {
    let mut out = Vec::new();
    for res in RESOURCES.iter().filter(|r| r.namespaced) {
        let (items, _) = store.list(res, Some(ns), &Filter::default(), Consistency::Linearizable).await?;
        out.extend(items.into_iter().map(|o| (res, o)));
    }
    Ok(out)
}

/// One pass over a terminating namespace; true when it is gone.
async fn empty(store: &ObjectStore, namespaces: &'static Resource, ns: &Value) -> bool {
    let name = ns["metadata"]["name"].as_str().unwrap_or_default();
    let held = match contents(store, name).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(namespace = name, error = %e, "listing a terminating namespace; next pass");
            return false;
        }
    };
    match plan(&held) {
        Step::Delete(fresh) => {
            for (res, obj) in fresh.into_iter().map(|i| &held[i]) {
                let obj_name = obj["metadata"]["name"].as_str().unwrap_or_default();
                if let Err(e) = store.delete_gracefully(res, Some(name), obj_name, None, None).await {
                    tracing::debug!(namespace = name, kind = res.kind, name = obj_name, error = %e, "not deleted; next pass");
                }
            }
            false
        }
        Step::Wait(n) => {
            tracing::debug!(namespace = name, remaining = n, "waiting for the namespace's objects to go");
            false
        }
        Step::Finalize => match store.delete(namespaces, None, name, Some(informer::revision(ns))).await {
            Ok(_) => {
                tracing::info!(namespace = name, "namespace deleted: it is empty");
                true
            }
            Err(e) => {
                tracing::debug!(namespace = name, error = %e, "namespace not removed; next pass");
                false
            }
        },
    }
}

pub async fn run(store: ObjectStore, cfg: ControlConfig) {
    let res = resources::by_plural("", "namespaces").expect("namespaces are registered");
    let namespaces = Informer::start(store.clone(), res).await;
    loop {
        let terminating: Vec<Value> = namespaces.objects().into_iter().filter(|n| !n["metadata"]["deletionTimestamp"].is_null()).collect();
        let mut pending = false;
        for ns in &terminating {
            pending |= !empty(&store, res, ns).await;
        }
        // While a namespace waits for its pods to stop, look again soon.
        let wait = if pending { std::time::Duration::from_secs(1) } else { cfg.resync };
        tokio::select! {
            _ = namespaces.changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_namespace_is_emptied_then_removed() {
        let pods = resources::by_plural("", "pods").unwrap();
        let cms = resources::by_plural("", "configmaps").unwrap();
        let live = (pods, json!({"metadata": {"name": "a"}}));
        let stopping = (pods, json!({"metadata": {"name": "b", "deletionTimestamp": "2026-01-01T00:00:00Z"}}));
        let cm = (cms, json!({"metadata": {"name": "c"}}));
        let all = vec![live, stopping.clone(), cm];
        assert_eq!(plan(&all), Step::Delete(vec![0, 2]));
        let left = vec![stopping];
        assert_eq!(plan(&left), Step::Wait(1));
        assert_eq!(plan(&[]), Step::Finalize);
    }
}
