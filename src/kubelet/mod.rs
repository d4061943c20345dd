//! The kubelet role (in progress, issue #4): running pods' containers on this node.
//! So far: the `ContainerRuntime` trait and its fake (`runtime`), the containerd
//! implementation (`containerd`), OCI image archives (`image`) and runtime specs (`oci`).
//! Pod networking and the sync loop come next.

pub mod containerd;
pub mod image;
pub mod oci;
pub mod runtime;
