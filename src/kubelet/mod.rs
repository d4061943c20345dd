//! The kubelet role (issue #4): running the pods bound to this node. The runtime trait and
//! its containerd implementation (`runtime`, `containerd`, `image`, `oci`), pod networking
//! (`netns`, `network`, `ipam`), registry pulls (`registry`, `pull`), log rotation (`logrotate`), the pure per-pod decisions (`plan`, `status`), volumes
//! (`volumes`), which pods to sync when (`workers`) and the loop that ties them to the API
//! (`sync`).

pub mod containerd;
pub mod events;
pub mod image;
pub mod inputs;
pub mod ipam;
pub mod logrotate;
pub mod netns;
pub mod network;
pub mod oci;
pub mod plan;
pub mod probe;
pub mod pull;
pub mod registry;
pub mod runtime;
pub mod status;
pub mod sync;
pub mod workers;
