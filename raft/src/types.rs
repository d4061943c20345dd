//! The replicated command and response types, and openraft's type configuration.
//!
//! The store is a revisioned key-value map in the style of etcd: every committed
//! command is one transaction whose revision is its Raft log index. Commands only
//! grow: existing variants are never renumbered (postcard encodes variant indexes).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Raft member id. Chosen by the operator-facing layer (derived from the node name).
pub type NodeId = u64;

/// What the cluster knows of a Raft member: where to reach it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// host:port of the node-to-node gRPC endpoint (mutual TLS).
    pub raft_addr: String,
    /// host:port of the HTTP API.
    pub api_addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.raft_addr)
    }
}

/// One replicated command.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Command {
    /// A client-chosen unique id. A command whose id was already applied (within the
    /// dedup window) is not applied again: its first response is returned. This makes
    /// retrying a proposal whose outcome is unknown (leader change, broken connection) safe.
    pub request_id: Option<u128>,
    /// When set, the command is a leader's decision: it applies only if it is
    /// committed in the same term it was proposed in (fencing of deposed leaders).
    pub fence_term: Option<u64>,
    pub txn: Txn,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "txn({} conditions, {} ops)", self.txn.conditions.len(), self.txn.ops.len())
    }
}

/// All conditions must hold for the operations to apply; otherwise nothing changes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub conditions: Vec<Condition>,
    pub ops: Vec<Op>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The key's last modification revision equals this; 0 means "the key is absent".
    ModRevision { key: String, revision: u64 },
    /// The key exists (any revision).
    Exists { key: String },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// A stored value with its revisions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
}

/// The result of applying one command.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// The log index of the command: the revision its writes carry.
    pub revision: u64,
    pub outcome: Outcome,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub enum Outcome {
    /// The operations applied; `prev` holds each op's key value before it (None if absent).
    Applied { prev: Vec<Option<KeyValue>> },
    /// Condition `index` did not hold; `current` is that key's mod revision (0 if absent).
    ConditionFailed { index: usize, current: u64 },
    /// The command was fenced by a term and committed in a later term.
    Fenced { proposed_term: u64, committed_term: u64 },
    /// Membership change or blank entry: nothing for the client.
    #[default]
    Internal,
}

/// One change, as a watcher sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub revision: u64,
    pub kind: EventKind,
    pub key: String,
    /// For a put: the new value. For a delete: the value that was deleted.
    pub value: Vec<u8>,
    pub create_revision: u64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put { created: bool },
    Delete,
}

openraft::declare_raft_types!(
    /// openraft's type configuration for orch.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;

/// The binary encoding used in the log, the state machine and on the wire.
/// postcard: compact, maintained, serde-driven (bincode is unmaintained).
pub mod codec {
    use serde::{de::DeserializeOwned, Serialize};

    pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
        postcard::to_allocvec(value).expect("postcard encoding into a Vec cannot fail")
    }

    pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}
