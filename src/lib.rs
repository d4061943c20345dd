//! orch: a container orchestrator with a Kubernetes-shaped API and no external store.
//! This crate holds the daemon (`orchd`), the API, and the CLI (`orchctl`); the replicated
//! store is the `orch-raft` crate. See docs/ARCHITECTURE.md for the map.

pub mod api;
pub mod auth;
pub mod changelog;
pub mod client;
pub mod clock;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod image_reference;
pub mod kubeconfig;
pub mod kubelet;
pub mod metrics;
pub mod portforward;
pub mod proxy;
pub mod remotecommand;
pub mod sched;
pub mod services;
pub mod watch_cache;
