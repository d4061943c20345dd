//! A running Raft member: opens the stores, runs openraft and the gRPC server, proposes
//! commands (forwarding them to the leader), serves linearizable read barriers, adds
//! heads, and reports status. This is the crate's main entry point; it does I/O.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::store::{self, StateReader, StoreOptions};
use crate::tls::NodeTls;
use crate::transport::client::{Channels, NetworkFactory};
use crate::transport::{pb, server};
use crate::types::{codec, Command, Member, NodeId, Op, Raft, Response, Txn};

/// Keys under this prefix are the cluster's own (CA, join secret); never user objects.
pub const INTERNAL_PREFIX: &str = "/orch/";
pub const KEY_CA: &str = "/orch/cluster/ca";
pub const KEY_JOIN_SECRET: &str = "/orch/cluster/join-secret";
/// The secret of the worker token (joins workers only).
pub const KEY_WORKER_JOIN_SECRET: &str = "/orch/cluster/worker-join-secret";

/// Raft timing and log retention.
#[derive(Clone, Debug)]
pub struct RaftTuning {
    pub heartbeat: Duration,
    pub election_timeout: (Duration, Duration),
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_after: u64,
    /// Entries kept in the log behind a snapshot, so lagging followers catch up by log.
    pub keep_after_snapshot: u64,
    /// How long a proposal or read barrier may wait for a leader before failing.
    pub request_timeout: Duration,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat: Duration::from_millis(50),
            election_timeout: (Duration::from_millis(250), Duration::from_millis(500)),
            snapshot_after: 10_000,
            keep_after_snapshot: 1_000,
            request_timeout: Duration::from_secs(5),
        }
    }
}

pub struct NodeConfig {
    pub id: NodeId,
    pub member: Member,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub store: StoreOptions,
    pub tuning: RaftTuning,
    pub tls: NodeTls,
    /// A file whose bytes this head hands to joining heads (opaque here: orch keeps the
    /// keys that seal Secrets in it, which must not reach the Raft log).
    pub head_secrets: Option<PathBuf>,
    /// Called with new head secrets another head installs (`install_head_secrets`) before
    /// they are written to `head_secrets`; an error refuses them.
    pub on_head_secrets: Option<HeadSecretsHook>,
}

/// Checks and takes in new head secrets (orchd parses its keys and swaps them in).
pub type HeadSecretsHook = Arc<dyn Fn(&[u8]) -> Result<(), String> + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize, PartialEq, Eq)]
pub enum ProposeError {
    #[error("no Raft leader is reachable")]
    NoLeader,
    #[error("this member is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("the outcome is unknown: {0}")]
    Unknown(String),
    #[error("raft: {0}")]
    Fatal(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddHead {
    pub id: NodeId,
    pub member: Member,
}

/// One member's view of Raft.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberStatus {
    pub id: NodeId,
    pub name: String,
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: u64,
    pub applied_index: u64,
    /// On the leader: the highest index stored on a quorum. Elsewhere: the applied index.
    pub commit_index: u64,
    /// Last log index covered by this member's snapshot, and the last index purged from its log.
    pub snapshot_index: u64,
    pub purged_index: u64,
    pub voters: BTreeMap<NodeId, Member>,
    pub learners: BTreeMap<NodeId, Member>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("storage: {0}")]
    Storage(#[from] crate::types::StorageError),
    #[error("raft: {0}")]
    Raft(String),
}

/// A handle to the running member; cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    raft: Raft,
    reader: StateReader,
    channels: Channels,
    tuning: RaftTuning,
    head_secrets: Option<PathBuf>,
    on_head_secrets: Option<HeadSecretsHook>,
    shutdown: watch::Sender<bool>,
}

impl RaftNode {
    /// Open the stores in `data_dir`, start openraft and serve gRPC on `listen`.
    pub async fn start(cfg: NodeConfig) -> Result<RaftNode, StartError> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| StartError::Raft(e.to_string()))?;
        let (log, sm) = store::open(&cfg.data_dir.join("raft"), cfg.store.clone())?;
        let reader = sm.reader();
        let config = Config {
            cluster_name: "orch".into(),
            heartbeat_interval: cfg.tuning.heartbeat.as_millis() as u64,
            election_timeout_min: cfg.tuning.election_timeout.0.as_millis() as u64,
            election_timeout_max: cfg.tuning.election_timeout.1.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.tuning.snapshot_after),
            max_in_snapshot_log_to_keep: cfg.tuning.keep_after_snapshot,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(|e| StartError::Raft(e.to_string()))?);
        let channels = Channels::new(cfg.tls.client_config());
        let raft = Raft::new(cfg.id, config, NetworkFactory::new(channels.clone()), log, sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let node = RaftNode { inner: Arc::new(Inner { id: cfg.id, raft, reader, channels, tuning: cfg.tuning, head_secrets: cfg.head_secrets, on_head_secrets: cfg.on_head_secrets, shutdown }) };
        server::spawn(node.clone(), cfg.listen, cfg.tls.server_config(), shutdown_rx.clone())
            .await
            .map_err(|e| StartError::Raft(format!("serving gRPC on {}: {e}", cfg.listen)))?;
        // openraft's leader lease is the maximum election timeout.
        tokio::spawn(crate::watchdog::run(node.clone(), node.inner.tuning.election_timeout.1, shutdown_rx));
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The bytes handed to joining heads (see `NodeConfig::head_secrets`).
    pub fn head_secrets(&self) -> std::io::Result<Vec<u8>> {
        match &self.inner.head_secrets {
            Some(path) => std::fs::read(path),
            None => Ok(Vec::new()),
        }
    }

    /// Take in new head secrets: the hook checks and applies them, then the file is written.
    pub fn accept_head_secrets(&self, bytes: &[u8]) -> Result<(), String> {
        let (Some(path), Some(hook)) = (&self.inner.head_secrets, &self.inner.on_head_secrets) else {
            return Err("this head keeps no head secrets".into());
        };
        hook(bytes)?;
        write_private(path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// Install new head secrets on `member` (a head).
    pub async fn install_head_secrets(&self, member: &Member, bytes: &[u8]) -> Result<(), String> {
        if member.raft_addr == self.member_addr() {
            return self.accept_head_secrets(bytes);
        }
        let channel = self.channels().get(&member.raft_addr).map_err(|e| e.to_string())?;
        let mut client = pb::cluster_client::ClusterClient::new(channel);
        let mut req = tonic::Request::new(pb::Blob { data: bytes.to_vec() });
        req.set_timeout(Duration::from_secs(5));
        client.install_head_secrets(req).await.map(|_| ()).map_err(|s| format!("{}: {}", member.name, s.message()))
    }

    fn member_addr(&self) -> String {
        let m = self.raft().metrics().borrow().clone();
        m.membership_config.membership().get_node(&self.id()).map(|n| n.raft_addr.clone()).unwrap_or_default()
    }

    pub fn reader(&self) -> &StateReader {
        &self.inner.reader
    }

    pub fn channels(&self) -> &Channels {
        &self.inner.channels
    }

    /// Make this node the single voter of a new cluster (a no-op if already initialized),
    /// wait until it leads, and store the cluster CA and join secret.
    pub async fn initialize(&self, member: Member, ca_json: Vec<u8>, join_secret: &str, worker_secret: &str) -> Result<(), ProposeError> {
        let raft = self.raft();
        if !raft.is_initialized().await.map_err(|e| ProposeError::Fatal(e.to_string()))? {
            raft.initialize(BTreeMap::from([(self.id(), member)])).await.map_err(|e| ProposeError::Fatal(e.to_string()))?;
        }
        let txn = Txn {
            conditions: vec![],
            ops: vec![
                Op::Put { key: KEY_CA.into(), value: ca_json },
                Op::Put { key: KEY_JOIN_SECRET.into(), value: join_secret.as_bytes().to_vec() },
                Op::Put { key: KEY_WORKER_JOIN_SECRET.into(), value: worker_secret.as_bytes().to_vec() },
            ],
        };
        self.propose(Command { request_id: None, fence_term: None, txn }).await.map(|_| ())
    }

    fn leader(&self) -> Option<(NodeId, Option<Member>)> {
        let m = self.raft().metrics().borrow().clone();
        let leader = m.current_leader?;
        let member = m.membership_config.membership().get_node(&leader).cloned();
        Some((leader, member))
    }

    /// Commit `cmd` through the leader and return its result. Retries while there is no
    /// leader or the leader changes, up to the request timeout; a request id is added if
    /// missing, so a retry of a command that did commit is answered, not applied twice.
    pub async fn propose(&self, mut cmd: Command) -> Result<Response, ProposeError> {
        cmd.request_id.get_or_insert_with(rand::random::<u128>);
        let deadline = Instant::now() + self.inner.tuning.request_timeout;
        loop {
            let err = match self.propose_once(&cmd).await {
                Ok(r) => return Ok(r),
                Err(e @ ProposeError::Fatal(_)) => return Err(e),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(err);
            }
            tracing::debug!(error = %err, "retrying proposal");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    async fn propose_once(&self, cmd: &Command) -> Result<Response, ProposeError> {
        match self.leader() {
            None => Err(ProposeError::NoLeader),
            Some((id, _)) if id == self.id() => self.propose_local(cmd.clone()).await,
            Some((_, None)) => Err(ProposeError::NoLeader),
            Some((_, Some(member))) => {
                let channel = self.channels().get(&member.raft_addr).map_err(|e| ProposeError::Unknown(e.to_string()))?;
                let mut client = pb::cluster_client::ClusterClient::new(channel);
                let reply = client
                    .propose(pb::Blob { data: codec::encode(cmd) })
                    .await
                    .map_err(|s| ProposeError::Unknown(s.message().to_string()))?;
                codec::decode::<Result<Response, ProposeError>>(&reply.into_inner().data)
                    .map_err(|e| ProposeError::Unknown(e.to_string()))?
            }
        }
    }

    /// Propose on this member, which must be the leader; never forwards.
    pub(crate) async fn propose_local(&self, cmd: Command) -> Result<Response, ProposeError> {
        match self.raft().client_write(cmd).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader { leader: f.leader_id })
            }
            Err(e) => Err(ProposeError::Fatal(e.to_string())),
        }
    }

    /// The leader's read index: confirmed by a quorum heartbeat, so a read at or after it is
    /// linearizable. Only on the leader.
    pub(crate) async fn read_index_local(&self) -> Result<u64, ProposeError> {
        match self.raft().get_read_log_id().await {
            Ok((read, applied)) => Ok(read.max(applied).map_or(0, |l| l.index)),
            Err(RaftError::APIError(e)) => match e {
                openraft::error::CheckIsLeaderError::ForwardToLeader(f) => Err(ProposeError::NotLeader { leader: f.leader_id }),
                other => Err(ProposeError::Unknown(other.to_string())),
            },
            Err(e) => Err(ProposeError::Fatal(e.to_string())),
        }
    }

    /// Wait until a read on this member is linearizable; returns the revision to read at.
    /// On a follower this asks the leader for its read index (one round trip) and waits
    /// for the local state machine to apply up to it.
    pub async fn read_barrier(&self) -> Result<u64, ProposeError> {
        let deadline = Instant::now() + self.inner.tuning.request_timeout;
        let index = loop {
            let attempt = match self.leader() {
                None | Some((_, None)) => Err(ProposeError::NoLeader),
                Some((id, _)) if id == self.id() => self.read_index_local().await,
                Some((_, Some(member))) => self.remote_read_index(&member).await,
            };
            match attempt {
                Ok(i) => break i,
                Err(e @ ProposeError::Fatal(_)) => return Err(e),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(30)).await,
            }
        };
        let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        tokio::time::timeout(remaining, self.reader().wait_for(index))
            .await
            .map_err(|_| ProposeError::Unknown(format!("timed out applying up to read index {index}")))
    }

    async fn remote_read_index(&self, leader: &Member) -> Result<u64, ProposeError> {
        let channel = self.channels().get(&leader.raft_addr).map_err(|e| ProposeError::Unknown(e.to_string()))?;
        let mut client = pb::cluster_client::ClusterClient::new(channel);
        let mut req = tonic::Request::new(pb::Empty {});
        req.set_timeout(Duration::from_secs(2));
        let reply = client.read_index(req).await.map_err(|s| ProposeError::Unknown(s.message().to_string()))?;
        codec::decode::<Result<u64, ProposeError>>(&reply.into_inner().data).map_err(|e| ProposeError::Unknown(e.to_string()))?
    }

    /// Add a head: as a learner until it has caught up, then as a voter. Forwards to the
    /// leader; idempotent.
    pub async fn add_head(&self, req: AddHead) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let result = match self.leader() {
                Some((id, _)) if id == self.id() => return self.add_head_local(req).await,
                Some((_, Some(member))) => self.remote_add_head(&member, &req).await,
                _ => Err("no leader".to_string()),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "retrying add_head");
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
            }
        }
    }

    async fn remote_add_head(&self, leader: &Member, req: &AddHead) -> Result<(), String> {
        self.add_head_via(&leader.raft_addr, req).await
    }

    /// Ask the head at `raft_addr` (any head: it forwards to the leader) to add a head.
    /// Used by a joining head, which does not know the leader yet.
    pub async fn add_head_via(&self, raft_addr: &str, req: &AddHead) -> Result<(), String> {
        let channel = self.channels().get(raft_addr).map_err(|e| e.to_string())?;
        let mut client = pb::cluster_client::ClusterClient::new(channel);
        let reply = client.add_head(pb::Blob { data: codec::encode(req) }).await.map_err(|s| s.message().to_string())?;
        codec::decode::<Result<(), String>>(&reply.into_inner().data).map_err(|e| e.to_string())?
    }

    pub(crate) async fn add_head_local(&self, req: AddHead) -> Result<(), String> {
        let raft = self.raft();
        let membership = raft.metrics().borrow().membership_config.clone();
        if membership.membership().voter_ids().any(|v| v == req.id) {
            return Ok(());
        }
        raft.add_learner(req.id, req.member.clone(), true).await.map_err(|e| e.to_string())?;
        raft.change_membership(ChangeMembers::AddVoterIds([req.id].into()), false).await.map_err(|e| e.to_string())?;
        tracing::info!(id = req.id, member = %req.member, "head promoted to voter");
        Ok(())
    }

    /// This member's view of Raft.
    pub fn status(&self) -> MemberStatus {
        let m = self.raft().metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeMap<_, _> =
            membership.voter_ids().filter_map(|id| membership.get_node(&id).map(|n| (id, n.clone()))).collect();
        let learners: BTreeMap<_, _> = membership.learner_ids().filter_map(|id| membership.get_node(&id).map(|n| (id, n.clone()))).collect();
        let applied = m.last_applied.map_or(0, |l| l.index);
        let commit_index = match (&m.replication, m.state) {
            (Some(repl), ServerState::Leader) => {
                let mut matched: Vec<u64> =
                    voters.keys().map(|id| repl.get(id).copied().flatten().map_or(0, |l| l.index)).collect();
                matched.sort_unstable_by(|a, b| b.cmp(a));
                matched.get(matched.len() / 2).copied().unwrap_or(applied).max(applied)
            }
            _ => applied,
        };
        let name = membership.get_node(&m.id).map(|n| n.name.clone()).unwrap_or_default();
        MemberStatus {
            id: m.id,
            name,
            state: format!("{:?}", m.state),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: applied,
            commit_index,
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
            voters,
            learners,
        }
    }

    /// This member's leadership as it changes: `Some(term)` while it leads in `term`,
    /// `None` otherwise. Leader-only work started on `Some(t)` must propose with
    /// `fence_term: Some(t)`, so nothing it proposes commits once another leader took over.
    pub fn leadership(&self) -> watch::Receiver<Option<u64>> {
        let mut metrics = self.raft().metrics();
        let leading = |m: &openraft::RaftMetrics<NodeId, Member>| {
            (m.state == ServerState::Leader && m.current_leader == Some(m.id)).then_some(m.current_term)
        };
        let (tx, rx) = watch::channel(leading(&metrics.borrow()));
        tokio::spawn(async move {
            while metrics.changed().await.is_ok() {
                let now = leading(&metrics.borrow_and_update());
                tx.send_if_modified(|v| std::mem::replace(v, now) != now);
                if tx.is_closed() {
                    return;
                }
            }
        });
        rx
    }

    /// Ask another member for its status (for `cluster status`).
    pub async fn peer_status(&self, member: &Member) -> Result<MemberStatus, String> {
        let channel = self.channels().get(&member.raft_addr).map_err(|e| e.to_string())?;
        let mut client = pb::cluster_client::ClusterClient::new(channel);
        let mut req = tonic::Request::new(pb::Empty {});
        req.set_timeout(Duration::from_millis(800));
        let reply = client.status(req).await.map_err(|s| s.message().to_string())?;
        codec::decode(&reply.into_inner().data).map_err(|e| e.to_string())
    }

    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        if let Err(e) = self.raft().shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// Write `bytes` to `path` readable by its owner only, replacing it atomically.
/// A key of the replicated store as this head's replica holds it, read while the node is
/// not running (see `store::read_key`).
pub fn read_stored(data_dir: &std::path::Path, key: &str) -> Result<Option<crate::types::KeyValue>, crate::types::StorageError> {
    store::read_key(&data_dir.join("raft"), key)
}

pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
