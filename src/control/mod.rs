//! The control plane: loops that run only on the Raft leader. They start when this head
//! becomes leader, with an object store fenced to that term, and are stopped when the
//! term ends; a write of a deposed leader is refused by the state machine. Each
//! controller is a pure decision function plus a thin loop in its own module; loops read
//! through informers (`informer.rs`), local copies kept current by watches.

pub mod cronjob;
pub mod daemonset;
pub mod disruption;
pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod gc;
pub mod informer;
pub mod job;
pub mod kubernetes_service;
pub mod namespace;
pub mod nodelifecycle;
pub mod owners;
pub mod podcidr;
pub mod quota;
pub mod replicaset;
pub mod scheduler;
pub mod serviceaccounts;
pub mod statefulset;

use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::task::JoinSet;

use crate::api::store::ObjectStore;

/// Settings of the leader's controllers.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Pod addresses of the whole cluster; each node gets a slice of it.
    pub cluster_cidr: Ipv4Net,
    /// Prefix length of each node's slice (24: 254 pods per node).
    pub node_cidr_prefix: u8,
    /// How often level-triggered controllers look again without a change.
    pub resync: Duration,
    /// Heartbeat silence before a node is marked NotReady.
    pub node_monitor_grace: Duration,
    /// Unreachable time before a node's pods are evicted.
    pub pod_eviction_timeout: Duration,
    /// The `kubernetes` Service's ClusterIP (the first address of the service range).
    pub kubernetes_ip: std::net::Ipv4Addr,
}

/// Run the controllers whenever this head leads, until the process ends.
pub async fn run(store: ObjectStore, cfg: ControlConfig) {
    let mut leadership = store.node().leadership();
    loop {
        let term = *leadership.borrow_and_update();
        let mut tasks = JoinSet::new();
        if let Some(term) = term {
            tracing::info!(term, "leading: controllers started");
            let fenced = store.fenced(term);
            tasks.spawn(podcidr::run(fenced.clone(), cfg.clone()));
            tasks.spawn(serviceaccounts::run(fenced.clone(), cfg.clone()));
            tasks.spawn(kubernetes_service::run(fenced.clone(), cfg.clone()));
            tasks.spawn(quota::run(fenced.clone(), cfg.clone()));
            tasks.spawn(disruption::run(fenced.clone(), cfg.clone()));
            tasks.spawn(scheduler::run(fenced.clone(), cfg.clone()));
            tasks.spawn(replicaset::run(fenced.clone(), cfg.clone()));
            tasks.spawn(deployment::run(fenced.clone(), cfg.clone()));
            tasks.spawn(job::run(fenced.clone(), cfg.clone()));
            tasks.spawn(cronjob::run(fenced.clone(), cfg.clone()));
            tasks.spawn(daemonset::run(fenced.clone(), cfg.clone()));
            tasks.spawn(gc::run(fenced.clone(), cfg.clone()));
            tasks.spawn(statefulset::run(fenced.clone(), cfg.clone()));
            tasks.spawn(nodelifecycle::run(fenced.clone(), cfg.clone()));
            tasks.spawn(namespace::run(fenced.clone(), cfg.clone()));
            tasks.spawn(endpoints::run(fenced, cfg.clone()));
        }
        if leadership.changed().await.is_err() {
            return;
        }
        tasks.abort_all();
        if let Some(term) = term {
            tracing::info!(term, "no longer leading in this term: controllers stopped");
        }
    }
}
