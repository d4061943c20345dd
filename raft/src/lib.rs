//! orch-raft: orch's replicated store. openraft over RocksDB (log and state machine,
//! fsync'd), a tonic transport with mutual TLS, and the cluster PKI. It knows nothing
//! of Kubernetes: it stores revisioned keys, and `orch` builds objects on top.

pub mod fsm;
pub mod node;
pub mod store;
pub mod tls;
pub mod transport;
pub mod types;
pub mod watchdog;

pub use node::{write_private, AddHead, HeadSecretsHook, MemberStatus, NodeConfig, ProposeError, RaftNode, RaftTuning};
pub use store::{HistoryError, StateReader, StoreOptions};
pub use types::{Command, Condition, Event, EventKind, KeyValue, Member, NodeId, Op, Outcome, Response, Txn};
