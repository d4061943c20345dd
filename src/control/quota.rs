//! ResourceQuota status: the leader keeps each quota's `status` (`hard`, and `used` counted
//! from the namespace) current; admission itself is the API's (`api::quota`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::ControlConfig;
use crate::api::store::{Consistency, Filter, ObjectStore};
use crate::api::{quota, quota_usage, resources};

pub async fn run(store: ObjectStore, cfg: ControlConfig) {
    let quotas = resources::by_plural("", "resourcequotas").expect("registered");
    loop {
        if let Ok((items, _)) = store.list(quotas, None, &Filter::default(), Consistency::Local).await {
            let mut by_ns: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for q in items {
                by_ns.entry(q["metadata"]["namespace"].as_str().unwrap_or_default().to_string()).or_default().push(q);
            }
            for (ns, qs) in by_ns {
                let Ok(used) = quota_usage(&store, &ns, &qs).await else { continue };
                for q in qs {
                    let status = quota::status(&q, &used);
                    if q["status"] == status {
                        continue;
                    }
                    let name = q["metadata"]["name"].as_str().unwrap_or_default().to_string();
                    let mut next = q.clone();
                    next["status"] = status;
                    if let Err(e) = store.update(quotas, Some(&ns), &name, next, None, true).await {
                        tracing::debug!(namespace = %ns, quota = %name, error = %e, "quota status not written yet");
                    }
                }
            }
        }
        tokio::time::sleep(cfg.resync.min(std::time::Duration::from_millis(1000))).await;
    }
}
