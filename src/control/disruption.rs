//! PodDisruptionBudget status: the leader recomputes each budget's status
//! (`api::disruption::status`) when budgets or pods change, and at least every resync, so
//! that evictions judge against a current count and evicted pods leave `disruptedPods`
//! once they are gone.

use std::time::Duration;

use super::informer::Informer;
use super::ControlConfig;
use crate::api::store::ObjectStore;
use crate::api::{disruption, resources};

pub async fn run(store: ObjectStore, cfg: ControlConfig) {
    let budgets_res = resources::by_plural("policy", "poddisruptionbudgets").expect("registered");
    let pods_res = resources::by_plural("", "pods").expect("registered");
    let (budgets, pods) = tokio::join!(Informer::start(store.clone(), budgets_res), Informer::start(store.clone(), pods_res));
    loop {
        let changed = futures::future::select(Box::pin(budgets.changed.notified()), Box::pin(pods.changed.notified()));
        for pdb in budgets.objects() {
            let ns = pdb["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
            let in_ns = pods.in_namespace(&ns, |_| true);
            let status = disruption::status(&pdb, &in_ns, chrono::Utc::now());
            if pdb["status"] == status {
                continue;
            }
            let name = pdb["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let rv = pdb["metadata"]["resourceVersion"].as_str().and_then(|r| r.parse().ok());
            let mut next = pdb.clone();
            next["status"] = status;
            // Conditioned on the budget as read: an eviction that charged it meanwhile wins,
            // and the next pass counts again.
            if let Err(e) = store.update(budgets_res, Some(&ns), &name, next, rv, true).await {
                tracing::debug!(namespace = %ns, budget = %name, error = %e, "disruption budget status not written yet");
            }
        }
        let _ = tokio::time::timeout(cfg.resync.min(Duration::from_secs(5)), changed).await;
    }
}
