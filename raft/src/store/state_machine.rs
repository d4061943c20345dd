//! openraft's `RaftStateMachine` over RocksDB, plus the read side (`StateReader`): point
//! reads, prefix ranges, and the watch history.
//!
//! Apply delegates every decision to `fsm::apply_command` and only persists its result.

use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, OptionalSend, RaftSnapshotBuilder};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{cf, io_err, read_err, StoreOptions, CF_HISTORY, CF_KV, CF_META, CF_REQUESTS};
use crate::fsm::{apply_command, Write};
use crate::types::{
    codec, Entry, Event, KeyValue, LogId, Response, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

const KEY_APPLIED: &[u8] = b"sm_applied";
const KEY_MEMBERSHIP: &[u8] = b"sm_membership";
const KEY_HISTORY_START: &[u8] = b"history_start";
const KEY_SNAPSHOT: &[u8] = b"snapshot";

/// A value as stored in the `kv` column family (the key is the RocksDB key).
#[derive(Serialize, Deserialize)]
struct Stored {
    value: Vec<u8>,
    create_revision: u64,
    mod_revision: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The contents of a snapshot: every key-value pair.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    pairs: Vec<KeyValue>,
}

fn history_key(revision: u64, op: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&revision.to_be_bytes());
    k[8..].copy_from_slice(&op.to_be_bytes());
    k
}

/// Watches resuming below the retained history get this (HTTP 410 Gone upstream).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistoryError {
    #[error("revision {requested} has been compacted; the oldest retained revision is {oldest}")]
    Compacted { requested: u64, oldest: u64 },
    #[error("storage: {0}")]
    Storage(String),
}

/// Read access to the applied state, shared by the API and watchers.
#[derive(Clone)]
pub struct StateReader {
    db: Arc<DB>,
    applied: watch::Receiver<u64>,
}

impl StateReader {
    /// The highest applied log index: the store's current revision.
    pub fn revision(&self) -> u64 {
        *self.applied.borrow()
    }

    /// A receiver that changes whenever the applied revision advances.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Wait until the applied revision reaches `revision`.
    pub async fn wait_for(&self, revision: u64) -> u64 {
        let mut rx = self.applied.clone();
        let got = rx.wait_for(|r| *r >= revision).await.map(|r| *r);
        got.unwrap_or_else(|_| self.revision())
    }

    pub fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        read_kv(&self.db, key)
    }

    /// All pairs whose key starts with `prefix`, in key order, and the revision they were read at.
    pub fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, u64), StorageError> {
        let snap = self.db.snapshot();
        let revision = match snap.get_cf(cf(&self.db, CF_META), KEY_APPLIED).map_err(|e| read_err(ErrorSubject::Store, e))? {
            Some(raw) => decode::<Option<LogId>>(&raw)?.map_or(0, |l| l.index),
            None => 0,
        };
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&snap);
        let iter =
            self.db.iterator_cf_opt(cf(&self.db, CF_KV), opts, IteratorMode::From(prefix.as_bytes(), Direction::Forward));
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(|e| read_err(ErrorSubject::Store, e))?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            out.push(to_kv(&k, &v)?);
        }
        Ok((out, revision))
    }

    /// Events with revision > `after`, in order, at most `limit` revisions' worth (whole revisions).
    pub fn history(&self, after: u64, limit: usize) -> Result<Vec<Event>, HistoryError> {
        let storage = |e: &dyn std::fmt::Display| HistoryError::Storage(e.to_string());
        let start = match self.db.get_cf(cf(&self.db, CF_META), KEY_HISTORY_START).map_err(|e| storage(&e))? {
            Some(raw) => codec::decode::<u64>(&raw).map_err(|e| storage(&e))?,
            None => 1,
        };
        if after + 1 < start {
            return Err(HistoryError::Compacted { requested: after, oldest: start.saturating_sub(1) });
        }
        let from = history_key(after + 1, 0);
        let iter = self.db.iterator_cf(cf(&self.db, CF_HISTORY), IteratorMode::From(&from, Direction::Forward));
        let mut out: Vec<Event> = Vec::new();
        let mut revisions = 0;
        for item in iter {
            let (_, v) = item.map_err(|e| storage(&e))?;
            let event: Event = codec::decode(&v).map_err(|e| storage(&e))?;
            if out.last().is_none_or(|last| last.revision != event.revision) {
                if revisions == limit {
                    break;
                }
                revisions += 1;
            }
            out.push(event);
        }
        Ok(out)
    }
}

fn decode<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, StorageError> {
    codec::decode(raw).map_err(|e| read_err(ErrorSubject::Store, e))
}

fn to_kv(key: &[u8], raw: &[u8]) -> Result<KeyValue, StorageError> {
    let s: Stored = decode(raw)?;
    let key = String::from_utf8(key.to_vec()).map_err(|e| read_err(ErrorSubject::Store, e))?;
    Ok(KeyValue { key, value: s.value, create_revision: s.create_revision, mod_revision: s.mod_revision })
}

pub(crate) fn read_kv(db: &DB, key: &str) -> Result<Option<KeyValue>, StorageError> {
    let raw = db.get_cf(cf(db, CF_KV), key.as_bytes()).map_err(|e| read_err(ErrorSubject::Store, e))?;
    raw.map(|r| to_kv(key.as_bytes(), &r)).transpose()
}

/// The Raft state machine. Owned by openraft; readers use `StateReader`.
pub struct StateMachine {
    db: Arc<DB>,
    options: StoreOptions,
    applied_tx: watch::Sender<u64>,
    applied_rx: watch::Receiver<u64>,
}

impl StateMachine {
    pub(crate) fn new(db: Arc<DB>, options: StoreOptions) -> Result<Self, StorageError> {
        let applied = match db.get_cf(cf(&db, CF_META), KEY_APPLIED).map_err(|e| read_err(ErrorSubject::Store, e))? {
            Some(raw) => decode::<Option<LogId>>(&raw)?.map_or(0, |l| l.index),
            None => 0,
        };
        let (applied_tx, applied_rx) = watch::channel(applied);
        Ok(StateMachine { db, options, applied_tx, applied_rx })
    }

    pub fn reader(&self) -> StateReader {
        StateReader { db: self.db.clone(), applied: self.applied_rx.clone() }
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let raw = self.db.get_cf(cf(&self.db, CF_META), key).map_err(|e| read_err(ErrorSubject::Store, e))?;
        raw.map(|r| decode(&r)).transpose()
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync && self.options.fsync);
        self.db.write_opt(batch, &opts).map_err(|e| io_err(ErrorSubject::StateMachine, e))
    }

    /// Drop history and dedup entries older than the retention window (checked every
    /// window/4 revisions, at most every 1024; depends only on the revision, so every
    /// replica trims alike).
    fn trim_history(&self, batch: &mut WriteBatch, revision: u64) -> Result<(), StorageError> {
        let every = (self.options.history_revisions / 4).clamp(1, 1024);
        if revision % every != 0 || revision <= self.options.history_revisions {
            return Ok(());
        }
        let keep_from = revision - self.options.history_revisions;
        batch.delete_range_cf(cf(&self.db, CF_HISTORY), history_key(0, 0), history_key(keep_from, 0));
        batch.put_cf(cf(&self.db, CF_META), KEY_HISTORY_START, codec::encode(&keep_from));
        let requests = cf(&self.db, CF_REQUESTS);
        for item in self.db.iterator_cf(requests, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| read_err(ErrorSubject::Store, e))?;
            let (rev, _): (u64, Response) = decode(&v)?;
            if rev < keep_from {
                batch.delete_cf(requests, k);
            }
        }
        Ok(())
    }

    fn seen_request(&self, id: u128) -> Result<Option<Response>, StorageError> {
        let raw = self.db.get_cf(cf(&self.db, CF_REQUESTS), id.to_be_bytes()).map_err(|e| read_err(ErrorSubject::Store, e))?;
        Ok(raw.map(|r| decode::<(u64, Response)>(&r)).transpose()?.map(|(_, resp)| resp))
    }

    fn apply_entry(&mut self, entry: &Entry) -> Result<Response, StorageError> {
        let revision = entry.log_id.index;
        let mut batch = WriteBatch::default();
        let response = match &entry.payload {
            EntryPayload::Blank => Response { revision, outcome: Default::default() },
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                batch.put_cf(cf(&self.db, CF_META), KEY_MEMBERSHIP, codec::encode(&stored));
                Response { revision, outcome: Default::default() }
            }
            EntryPayload::Normal(cmd) => match cmd.request_id.map(|id| self.seen_request(id)).transpose()?.flatten() {
                Some(first) => first,
                None => {
                let db = self.db.clone();
                let mut read = |key: &str| read_kv(&db, key);
                let applied = apply_command(&mut read, revision, entry.log_id.leader_id.term, cmd)?;
                let kv = cf(&self.db, CF_KV);
                for w in &applied.writes {
                    match w {
                        Write::Put(p) => {
                            let stored =
                                Stored { value: p.value.clone(), create_revision: p.create_revision, mod_revision: p.mod_revision };
                            batch.put_cf(kv, p.key.as_bytes(), codec::encode(&stored));
                        }
                        Write::Delete(k) => batch.delete_cf(kv, k.as_bytes()),
                    }
                }
                let history = cf(&self.db, CF_HISTORY);
                for (i, ev) in applied.events.iter().enumerate() {
                    batch.put_cf(history, history_key(revision, i as u32), codec::encode(ev));
                }
                if let Some(id) = cmd.request_id {
                    batch.put_cf(cf(&self.db, CF_REQUESTS), id.to_be_bytes(), codec::encode(&(revision, &applied.response)));
                }
                applied.response
                }
            },
        };
        self.trim_history(&mut batch, revision)?;
        batch.put_cf(cf(&self.db, CF_META), KEY_APPLIED, codec::encode(&Some(entry.log_id)));
        self.write(batch, false)?;
        Ok(response)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.meta::<Option<LogId>>(KEY_APPLIED)?.flatten();
        let membership = self.meta::<StoredMembership>(KEY_MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut last = None;
        for entry in entries {
            out.push(self.apply_entry(&entry)?);
            last = Some(entry.log_id.index);
        }
        if let Some(index) = last {
            self.applied_tx.send_replace(index);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { db: self.db.clone(), options: self.options.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<std::io::Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(std::io::Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<std::io::Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let contents: SnapshotData =
            codec::decode(&data).map_err(|e| read_err(ErrorSubject::Snapshot(Some(meta.signature())), e))?;
        let mut batch = WriteBatch::default();
        let (kv, history, m) = (cf(&self.db, CF_KV), cf(&self.db, CF_HISTORY), cf(&self.db, CF_META));
        batch.delete_range_cf(kv, b"".as_slice(), [0xffu8; 64].as_slice());
        batch.delete_range_cf(history, history_key(0, 0), history_key(u64::MAX, u32::MAX));
        batch.delete_range_cf(cf(&self.db, CF_REQUESTS), [0u8; 16].as_slice(), [0xffu8; 17].as_slice());
        for p in &contents.pairs {
            let stored = Stored { value: p.value.clone(), create_revision: p.create_revision, mod_revision: p.mod_revision };
            batch.put_cf(kv, p.key.as_bytes(), codec::encode(&stored));
        }
        let index = meta.last_log_id.map_or(0, |l| l.index);
        batch.put_cf(m, KEY_APPLIED, codec::encode(&meta.last_log_id));
        batch.put_cf(m, KEY_MEMBERSHIP, codec::encode(&meta.last_membership));
        batch.put_cf(m, KEY_HISTORY_START, codec::encode(&(index + 1)));
        batch.put_cf(m, KEY_SNAPSHOT, codec::encode(&StoredSnapshot { meta: meta.clone(), data }));
        self.write(batch, true)?;
        self.applied_tx.send_replace(index);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.meta::<StoredSnapshot>(KEY_SNAPSHOT)?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(std::io::Cursor::new(s.data)),
        }))
    }
}

/// Builds a snapshot from a consistent RocksDB snapshot of the state machine.
pub struct SnapshotBuilder {
    db: Arc<DB>,
    options: StoreOptions,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let snap = self.db.snapshot();
        let meta_cf = cf(&self.db, CF_META);
        let get = |key: &[u8]| snap.get_cf(meta_cf, key).map_err(|e| read_err(ErrorSubject::Store, e));
        let last_applied: Option<LogId> = get(KEY_APPLIED)?.map(|r| decode(&r)).transpose()?.flatten();
        let membership: StoredMembership = get(KEY_MEMBERSHIP)?.map(|r| decode(&r)).transpose()?.unwrap_or_default();
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&snap);
        let mut pairs = Vec::new();
        for item in self.db.iterator_cf_opt(cf(&self.db, CF_KV), opts, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| read_err(ErrorSubject::Store, e))?;
            pairs.push(to_kv(&k, &v)?);
        }
        let data = codec::encode(&SnapshotData { pairs });
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, data.len()),
            None => format!("empty-{}", data.len()),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        let mut batch = WriteBatch::default();
        batch.put_cf(meta_cf, KEY_SNAPSHOT, codec::encode(&StoredSnapshot { meta: meta.clone(), data: data.clone() }));
        let mut wo = WriteOptions::default();
        // A synced write also syncs every earlier (unsynced) state-machine write in the WAL,
        // so the state the snapshot covers is durable before openraft purges its log.
        wo.set_sync(self.options.fsync);
        self.db.write_opt(batch, &wo).map_err(|e| io_err(ErrorSubject::Snapshot(None), e))?;
        Ok(Snapshot { meta, snapshot: Box::new(std::io::Cursor::new(data)) })
    }
}
