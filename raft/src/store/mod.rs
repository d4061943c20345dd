//! The durable stores: one RocksDB database holding the Raft log and the state machine.
//!
//! Column families:
//! - `log`: log index (big-endian u64) → postcard `Entry`;
//! - `meta`: vote, committed log id, last purged log id, state-machine bookkeeping, the current snapshot;
//! - `kv`: key → postcard `Stored` (value + revisions);
//! - `history`: (revision, op index) → postcard `Event`, the watch history, trimmed to a window;
//! - `requests`: request id → (revision, response), the dedup table, trimmed like history.
//!
//! Log writes are fsync'd (`WriteOptions::set_sync`) before openraft is told they are
//! flushed, so nothing is acknowledged before it is on disk on a quorum. State-machine
//! writes are not synced individually: they are rebuilt from the synced log on restart,
//! and a snapshot record is written with sync (which also syncs the WAL before it).

mod log_store;
mod state_machine;

use std::path::Path;
use std::sync::Arc;

pub use log_store::LogStore;
use rocksdb::{ColumnFamilyDescriptor, Options, DB};
pub use state_machine::{HistoryError, StateMachine, StateReader};

use crate::types::StorageError;

pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_KV: &str = "kv";
pub(crate) const CF_HISTORY: &str = "history";
pub(crate) const CF_REQUESTS: &str = "requests";

/// Durability and retention settings.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// fsync log writes before acknowledging them. Turning this off is unsafe and exists only so
    /// the chaos checker can be shown to catch the resulting lost writes.
    pub fsync: bool,
    /// How many revisions of watch history to keep (older watches get "410 Gone").
    pub history_revisions: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { fsync: true, history_revisions: 100_000 }
    }
}

/// Open (or create) the database under `dir` and return its log store and state machine.
pub fn open(dir: &Path, options: StoreOptions) -> Result<(LogStore, StateMachine), StorageError> {
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    db_opts.set_keep_log_file_num(4);
    db_opts.set_max_total_wal_size(64 << 20);
    let cfs = [CF_LOG, CF_META, CF_KV, CF_HISTORY, CF_REQUESTS].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = DB::open_cf_descriptors(&db_opts, dir, cfs).map_err(|e| io_err(openraft::ErrorSubject::Store, e))?;
    let db = Arc::new(db);
    let log = LogStore::new(db.clone(), options.clone());
    let sm = StateMachine::new(db, options)?;
    Ok((log, sm))
}

/// One key of the state machine in the database under `dir`, read with the database opened
/// read-only (for a node that is not running yet: a head renewing its certificate with
/// the CA its replica holds). `None` when the database or the key does not exist.
pub fn read_key(dir: &Path, key: &str) -> Result<Option<crate::types::KeyValue>, StorageError> {
    if !dir.join("CURRENT").exists() {
        return Ok(None);
    }
    let names = [CF_LOG, CF_META, CF_KV, CF_HISTORY, CF_REQUESTS];
    let db = DB::open_cf_for_read_only(&Options::default(), dir, names, false).map_err(|e| io_err(openraft::ErrorSubject::Store, e))?;
    state_machine::read_kv(&db, key)
}

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column family is created at open")
}

pub(crate) fn io_err(subject: openraft::ErrorSubject<u64>, e: impl std::error::Error + 'static) -> StorageError {
    StorageError::from_io_error(subject, openraft::ErrorVerb::Write, std::io::Error::other(e.to_string()))
}

pub(crate) fn read_err(subject: openraft::ErrorSubject<u64>, e: impl std::error::Error + 'static) -> StorageError {
    StorageError::from_io_error(subject, openraft::ErrorVerb::Read, std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod conformance {
    //! openraft's storage conformance suite against the RocksDB stores.
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;
    use crate::types::TypeConfig;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().expect("temp dir");
            let (log, sm) = open(dir.path(), StoreOptions::default())?;
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_storage_suite() -> Result<(), StorageError> {
        Suite::test_all(Builder)
    }
}
