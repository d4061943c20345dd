//! Every namespace has a ServiceAccount `default` (Kubernetes' serviceaccounts controller):
//! `missing` (pure) names the active namespaces without one; `run` creates them, and again if
//! one is deleted.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::ControlConfig;
use crate::api::resources;
use crate::api::store::{Consistency, Filter, ObjectStore};

pub const DEFAULT: &str = "default";

/// Active namespaces that have no ServiceAccount `default`.
pub fn missing(namespaces: &[Value], service_accounts: &[Value]) -> Vec<String> {
    let have: BTreeSet<&str> = service_accounts
        .iter()
        .filter(|sa| sa["metadata"]["name"] == DEFAULT)
        .filter_map(|sa| sa["metadata"]["namespace"].as_str())
        .collect();
    namespaces
        .iter()
        .filter(|ns| ns["metadata"]["deletionTimestamp"].is_null() && ns["status"]["phase"] != "Terminating")
        .filter_map(|ns| ns["metadata"]["name"].as_str())
        .filter(|name| !have.contains(name))
        .map(String::from)
        .collect()
}

pub async fn run(store: ObjectStore, cfg: ControlConfig) {
    let namespaces = resources::by_plural("", "namespaces").expect("registered");
    let sas = resources::by_plural("", "serviceaccounts").expect("registered");
    loop {
        let lists = (
            store.list(namespaces, None, &Filter::default(), Consistency::Local).await,
            store.list(sas, None, &Filter::default(), Consistency::Local).await,
        );
        if let (Ok((ns, _)), Ok((accounts, _))) = lists {
            for name in missing(&ns, &accounts) {
                let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT, "namespace": name}});
                match store.create(sas, Some(&name), sa).await {
                    Ok(_) => tracing::info!(namespace = %name, "created its default ServiceAccount"),
                    Err(e) => tracing::debug!(namespace = %name, error = %e, "default ServiceAccount not created yet"),
                }
            }
        }
        tokio::time::sleep(cfg.resync.min(std::time::Duration::from_millis(500))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_namespaces_without_a_default_account() {
        let ns = |name: &str, terminating: bool| {
            let mut v = json!({"metadata": {"name": name}, "status": {"phase": "Active"}});
            if terminating {
                v["status"]["phase"] = "Terminating".into();
            }
            v
        };
        let sa = |ns: &str, name: &str| json!({"metadata": {"name": name, "namespace": ns}});
        let namespaces = [ns("a", false), ns("b", false), ns("c", true)];
        assert_eq!(missing(&namespaces, &[sa("a", "default"), sa("b", "builder")]), vec!["b".to_string()]);
        assert!(missing(&namespaces, &[sa("a", "default"), sa("b", "default")]).is_empty());
    }
}
