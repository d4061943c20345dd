//! cluster-tests: real orch clusters for tests and chaos runs. `net` makes the test hosts
//! (network namespaces on a bridge), `cluster` runs `orchd` processes on them, and
//! `watch` reads watch streams. Everything here does I/O; it needs root.

pub mod bench;
pub mod bench_pods;
pub mod bench_services;
pub mod chaos;
pub mod check;
pub mod cluster;
pub mod containerd;
pub mod kubectl;
pub mod net;
pub mod nsd;
pub mod objects;
pub mod pods;
pub mod python;
pub mod registry;
pub mod watch;

pub use cluster::{poll, Cluster, Role};
