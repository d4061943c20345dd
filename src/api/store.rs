//! The object store: Kubernetes object semantics (create, get, list, update, patch,
//! delete, watch) over the replicated key-value store. Decisions come from `object`
//! (pure); this layer reads, proposes compare-and-set transactions, and streams history.

use std::sync::Arc;
use std::time::Duration;

use orch_raft::{Command, Condition, EventKind, HistoryError, KeyValue, Op, Outcome, RaftNode, Txn};
use serde_json::Value;
use tokio::sync::mpsc;

use super::object::{self, FieldSelector, Selector};
use super::patch::PatchType;
use super::resources::{self, Resource};
use super::service::{self, ServiceRanges, Taken};
use super::status::ApiError;
use super::watch_hub::{Hub, Opened};
use crate::auth::encryption::Codec;
use crate::clock::Clock;
use crate::metrics::Metrics;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Confirmed with a quorum through the leader's read index (the default).
    Linearizable,
    /// Whatever this node has applied (`resourceVersion=0`, as in Kubernetes: "any version").
    Local,
}

/// The annotation on objects the leader's controllers create: the Raft term they were
/// created in (the fence makes sure they were committed in that term).
pub const CREATED_IN_TERM: &str = "orch.dev/created-in-term";

#[derive(Clone)]
pub struct ObjectStore {
    node: RaftNode,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// Fault injection only: treat every read as a local read.
    unsafe_local_reads: bool,
    /// Leader-only writers set the term they lead in: a write proposed after leadership
    /// moved on is refused by the state machine (fencing).
    fence: Option<u64>,
    /// Where Services' ClusterIPs and NodePorts are allocated from.
    services: Arc<ServiceRanges>,
    /// The one reader of the history every watch on this node follows.
    hub: Arc<Hub<Opened>>,
    /// Seals Secrets before they are proposed; opens them when read.
    codec: Arc<Codec>,
    /// `dryRun=All`: every write is checked (conditions against this replica) and answered
    /// as if applied, and nothing is proposed.
    dry_run: bool,
}

/// Which objects a list or watch wants.
#[derive(Clone, Default)]
pub struct Filter {
    pub labels: Selector,
    pub fields: FieldSelector,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches(obj)
    }
}

/// One item of a watch stream.
#[derive(Debug)]
pub enum WatchItem {
    Event { kind: &'static str, object: Value },
    Bookmark(u64),
    Error(ApiError),
}

fn decode(codec: &Codec, kv: &KeyValue) -> Result<Value, ApiError> {
    let plain = codec.open(&kv.key, &kv.value).map_err(|e| ApiError::internal(format!("stored object {}: {e}", kv.key)))?;
    serde_json::from_slice(&plain).map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))
}

fn what(res: &Resource, ns: Option<&str>, name: &str) -> String {
    match (res.namespaced, ns) {
        (true, Some(ns)) => format!("{} {ns}/{name}", res.plural),
        _ => format!("{} {name}", res.plural),
    }
}

impl ObjectStore {
    pub fn new(node: RaftNode, clock: Arc<dyn Clock>, metrics: Arc<Metrics>, codec: Arc<Codec>) -> Self {
        let hub = Arc::new(Hub::new(Opened { reader: node.reader().clone(), codec: codec.clone() }));
        ObjectStore { node, clock, metrics, unsafe_local_reads: false, fence: None, services: Arc::default(), hub, codec, dry_run: false }
    }

    /// This store, allocating Services' addresses and ports from `ranges`.
    pub fn with_service_ranges(self, ranges: ServiceRanges) -> ObjectStore {
        ObjectStore { services: Arc::new(ranges), ..self }
    }

    /// This store, with every write fenced to Raft term `term`.
    pub fn fenced(&self, term: u64) -> ObjectStore {
        ObjectStore { fence: Some(term), ..self.clone() }
    }

    /// This store for a dry run (`dryRun=All`): reads as usual, writes go through every
    /// check and come back as they would be stored, and none reaches the Raft log.
    pub fn dry_run(&self) -> ObjectStore {
        ObjectStore { dry_run: true, ..self.clone() }
    }

    /// A dry run's proposal: its conditions judged against this replica (after a read
    /// barrier, as a write would see them), the outcome as applying it would give.
    async fn rehearse(&self, txn: &Txn) -> Result<(u64, Outcome), ApiError> {
        self.barrier(Consistency::Linearizable).await?;
        let reader = self.node.reader();
        for (index, c) in txn.conditions.iter().enumerate() {
            let (key, want) = match c {
                Condition::ModRevision { key, revision } => (key, Some(*revision)),
                Condition::Exists { key } => (key, None),
            };
            let current = reader.get(key)?.map_or(0, |kv| kv.mod_revision);
            let holds = match want {
                Some(r) => current == r,
                None => current != 0,
            };
            if !holds {
                return Ok((0, Outcome::ConditionFailed { index, current }));
            }
        }
        let mut prev = Vec::with_capacity(txn.ops.len());
        let mut revision = 0;
        for op in &txn.ops {
            let kv = reader.get(op.key())?;
            revision = revision.max(kv.as_ref().map_or(0, |kv| kv.mod_revision));
            prev.push(kv);
        }
        Ok((revision, Outcome::Applied { prev }))
    }

    /// Break linearizability on purpose (`--unsafe-stale-reads`), so the chaos checker
    /// can be shown to notice.
    pub fn skip_read_barrier(&mut self) {
        self.unsafe_local_reads = true;
    }

    /// An object as this node's replica holds it now (no read barrier), if it is there and
    /// readable: for decisions made on every request, such as authorization.
    pub fn local_object(&self, res: &Resource, ns: Option<&str>, name: &str) -> Option<Value> {
        let kv = self.node.reader().get(&res.key(ns, name)).ok()??;
        decode(&self.codec, &kv).ok()
    }

    /// What seals and opens Secrets in this store.
    pub fn codec(&self) -> &Arc<Codec> {
        &self.codec
    }

    pub fn node(&self) -> &RaftNode {
        &self.node
    }

    async fn barrier(&self, c: Consistency) -> Result<(), ApiError> {
        if c == Consistency::Linearizable && !self.unsafe_local_reads {
            self.node.read_barrier().await?;
        }
        Ok(())
    }

    async fn propose(&self, mut txn: Txn) -> Result<(u64, Outcome), ApiError> {
        if self.dry_run {
            return self.rehearse(&txn).await;
        }
        // Secrets are sealed here, before they reach the Raft log.
        for op in &mut txn.ops {
            if let Op::Put { key, value } = op {
                if Codec::sealed(key) {
                    *value = self.codec.seal(key, std::mem::take(value));
                }
            }
        }
        let started = std::time::Instant::now();
        let r = self.node.propose(Command { request_id: None, fence_term: self.fence, txn }).await;
        self.metrics.proposal_seconds.observe(started.elapsed().as_secs_f64());
        let r = r?;
        if let Outcome::Fenced { proposed_term, committed_term } = r.outcome {
            return Err(ApiError::unavailable(format!(
                "fenced: proposed as leader of term {proposed_term}, committed in term {committed_term}"
            )));
        }
        Ok((r.revision, r.outcome))
    }

    fn current(&self, key: &str) -> Result<Option<(Value, u64)>, ApiError> {
        match self.node.reader().get(key)? {
            Some(kv) => Ok(Some((decode(&self.codec, &kv)?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    pub async fn get(&self, res: &Resource, ns: Option<&str>, name: &str, c: Consistency) -> Result<Value, ApiError> {
        self.barrier(c).await?;
        match self.current(&res.key(ns, name))? {
            Some((obj, rev)) => Ok(object::with_revision(obj, rev)),
            None => Err(ApiError::not_found(what(res, ns, name))),
        }
    }

    /// Matching objects and the revision the list is consistent at.
    pub async fn list(&self, res: &Resource, ns: Option<&str>, filter: &Filter, c: Consistency) -> Result<(Vec<Value>, u64), ApiError> {
        self.barrier(c).await?;
        let (kvs, revision) = self.node.reader().range(&res.ns_prefix(ns))?;
        let mut items = Vec::with_capacity(kvs.len());
        for kv in &kvs {
            let obj = decode(&self.codec, kv)?;
            if filter.matches(&obj) {
                items.push(object::with_revision(obj, kv.mod_revision));
            }
        }
        Ok((items, revision))
    }

    pub async fn create(&self, res: &Resource, ns: Option<&str>, mut obj: Value) -> Result<Value, ApiError> {
        let name = object::name_of(&obj).ok_or_else(|| ApiError::invalid("metadata.name is required"))?.to_string();
        if res.group == "rbac.authorization.k8s.io" {
            object::validate_path_segment_name(&name).map_err(ApiError::invalid)?;
        } else {
            object::validate_name(&name, res.kind == "Namespace").map_err(ApiError::invalid)?;
        }
        // Every create, a controller's too, gets Kubernetes' defaults and rules (the API
        // handler has type-checked what a client sent).
        obj = res.finish(obj).map_err(ApiError::invalid)?;
        let uid = uuid::Uuid::new_v4().to_string();
        object::prepare_create(&mut obj, &uid, &self.clock.now_rfc3339());
        if let Some(term) = self.fence {
            // Made by a controller of the leader of this term (the fence guarantees it was
            // committed in that term): which leader created what stays visible.
            obj["metadata"]["annotations"][CREATED_IN_TERM] = term.to_string().into();
        }
        let key = res.key(ns, &name);
        // A Service's allocations are claimed in the same transaction; losing a race for
        // an IP or port (a failed claim condition) picks again, from the object as sent.
        let sent = obj;
        for _attempt in 0..8 {
            let mut obj = sent.clone();
            let mut conditions = vec![Condition::ModRevision { key: key.clone(), revision: 0 }];
            if let (true, Some(ns)) = (res.namespaced, ns) {
                // The namespace must exist and not be terminating, as read (a change to it
                // since fails the condition and the create reads it again).
                let ns_key = resources::namespace_key(ns);
                match self.current(&ns_key)? {
                    Some((namespace, _)) if !namespace["metadata"]["deletionTimestamp"].is_null() => {
                        return Err(ApiError::forbidden(format!("unable to create new content in namespace {ns} because it is being terminated")));
                    }
                    Some((_, rev)) => conditions.push(Condition::ModRevision { key: ns_key, revision: rev }),
                    None => conditions.push(Condition::Exists { key: ns_key }),
                }
            }
            let first_claim = conditions.len();
            let mut ops = vec![];
            if let (true, Some(ns)) = (res.namespaced, ns) {
                for (key, revision, charged) in self.charge_quotas(res, ns, &obj).await? {
                    conditions.push(Condition::ModRevision { key: key.clone(), revision });
                    ops.push(Op::Put { key, value: serde_json::to_vec(&charged).map_err(|e| ApiError::internal(e.to_string()))? });
                }
            }
            if res.kind == "Service" {
                let taken = self.taken()?;
                service::prepare(&mut obj, None, &self.services, &taken, rand::random()).map_err(|e| ApiError::invalid(e.0))?;
                for k in service::held(&obj) {
                    conditions.push(Condition::ModRevision { key: k.clone(), revision: 0 });
                    ops.push(Op::Put { key: k, value: format!("{}/{name}", ns.unwrap_or_default()).into_bytes() });
                }
            }
            let value = serde_json::to_vec(&obj).map_err(|e| ApiError::internal(e.to_string()))?;
            ops.insert(0, Op::Put { key: key.clone(), value });
            return match self.propose(Txn { conditions, ops }).await? {
                (rev, Outcome::Applied { .. }) => Ok(object::with_revision(obj, rev)),
                (_, Outcome::ConditionFailed { index: 0, .. }) => Err(ApiError::already_exists(what(res, ns, &name))),
                // A claim or a quota changed since it was read: once this replica has
                // applied the change, look again.
                (rev, Outcome::ConditionFailed { index, .. }) if index >= first_claim => {
                    self.applied(rev).await;
                    continue;
                }
                // The namespace changed since it was read: look again.
                (_, Outcome::ConditionFailed { current, .. }) if current != 0 => continue,
                (_, Outcome::ConditionFailed { .. }) => Err(ApiError::not_found(format!("namespace {}", ns.unwrap_or_default()))),
                (_, other) => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
            };
        }
        Err(ApiError::conflict(format!("{} lost every race for an address, a port or its namespace's quota; try again", what(res, ns, &name))))
    }

    /// ResourceQuota admission of a create in `ns`: refused (403, worded as Kubernetes words
    /// it) if it takes the namespace past any quota. Otherwise every quota limiting what the
    /// object uses comes back charged with it (`status.used`), with the revision it was read
    /// at: the create writes them in its own transaction on the condition that they have not
    /// changed. Creates under one quota thereby commit one after another, each checked
    /// against a usage that holds the ones before it (the quotas are read before the usage,
    /// so a usage older than a quota's revision cannot pass the condition).
    async fn charge_quotas(&self, res: &Resource, ns: &str, obj: &Value) -> Result<Vec<(String, u64, Value)>, ApiError> {
        let quotas = resources::by_plural("", "resourcequotas").expect("registered");
        let (items, _) = self.list(quotas, Some(ns), &Filter::default(), Consistency::Local).await?;
        if items.is_empty() {
            return Ok(vec![]);
        }
        let mut used = super::quota_usage(self, ns, &items).await?;
        let demand = super::quota::demand(res.plural, res.group, obj);
        let name = object::name_of(obj).unwrap_or_default();
        super::quota::check(&items, &used, &demand).map_err(|why| ApiError::forbidden(format!("{} {name:?} is forbidden: {why}", res.plural)))?;
        for (k, v) in &demand {
            *used.entry(k.clone()).or_default() += v;
        }
        let mut charged = vec![];
        for mut q in items.into_iter().filter(|q| super::quota::limits_any(q, &demand)) {
            let revision = object::str_field(&q, "resourceVersion").map(parse_rv).transpose()?.unwrap_or(0);
            let qname = object::name_of(&q).unwrap_or_default().to_string();
            q["status"] = super::quota::status(&q, &used);
            object::meta_mut(&mut q).remove("resourceVersion");
            charged.push((quotas.key(Some(ns), &qname), revision, q));
        }
        Ok(charged)
    }

    /// Wait (a little, at most) until this replica has applied `revision`.
    async fn applied(&self, revision: u64) {
        let mut applied = self.node.reader().subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(2), applied.wait_for(|r| *r >= revision)).await;
    }

    /// ClusterIPs and NodePorts held by any service (as this node has applied them: a
    /// stale view only costs a retry, as claims are conditions of the write).
    fn taken(&self) -> Result<Taken, ApiError> {
        let (kvs, _) = self.node.reader().range(service::IP_PREFIX.trim_end_matches("serviceips/"))?;
        Ok(Taken::from_keys(kvs.iter().map(|kv| kv.key.as_str())))
    }

    /// Replace an object. With `expected` (the client's resourceVersion) a stale version is
    /// a 409 Conflict; without it, the update applies to whatever is current (retrying
    /// internal conflicts), as in Kubernetes. `status_only` replaces just `.status`.
    pub async fn update(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        new: Value,
        expected: Option<u64>,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        self.modify(res, ns, name, expected, |current| {
            if status_only {
                let mut merged = current.clone();
                merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
                Ok(merged)
            } else {
                Ok(new.clone())
            }
        }, false)
        .await
    }

    /// A JSON merge patch (RFC 7386), applied to the current object under compare-and-set.
    pub async fn patch(&self, res: &Resource, ns: Option<&str>, name: &str, patch: Value, status_only: bool) -> Result<Value, ApiError> {
        self.patch_as(res, ns, name, patch, PatchType::Merge, status_only).await
    }

    /// `patch_as`, with the patched object's unknown fields judged by `mode` (refused when
    /// Strict, else returned as warnings).
    #[allow(clippy::too_many_arguments)]
    pub async fn patch_checked(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        patch: Value,
        kind: PatchType,
        status_only: bool,
        mode: super::fields::Mode,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let warnings = std::sync::Mutex::new(Vec::new());
        let expected = object::str_field(&patch, "resourceVersion").map(parse_rv).transpose()?;
        let obj = self
            .modify(res, ns, name, expected, |current| {
                let merged = kind.apply(res.kind, current, &patch)?;
                if mode != super::fields::Mode::Ignore {
                    let found = super::fields::unknown(&merged, &res.typed(&merged).map_err(ApiError::invalid)?);
                    *warnings.lock().expect("warnings lock") = super::fields::judge(res, mode, &found)?;
                }
                Ok(if status_only { status_of(current, &merged) } else { merged })
            }, false)
            .await?;
        Ok((obj, warnings.into_inner().expect("warnings lock")))
    }

    /// A patch of the given type, applied to the current object under compare-and-set.
    pub async fn patch_as(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        patch: Value,
        kind: PatchType,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        Ok(self.patch_checked(res, ns, name, patch, kind, status_only, super::fields::Mode::Ignore).await?.0)
    }

    /// Read, change, compare-and-set (retrying internal conflicts). With `marks_deletion` the
    /// change may set the server-owned deletion fields (graceful deletion).
    async fn modify(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        expected: Option<u64>,
        change: impl Fn(&Value) -> Result<Value, ApiError>,
        marks_deletion: bool,
    ) -> Result<Value, ApiError> {
        let key = res.key(ns, name);
        for _attempt in 0..8 {
            self.barrier(Consistency::Linearizable).await?;
            let (current, rev) = self.current(&key)?.ok_or_else(|| ApiError::not_found(what(res, ns, name)))?;
            if let Some(want) = expected {
                if want != rev {
                    return Err(stale(res, ns, name));
                }
            }
            let mut next = res.validate(change(&current)?).map_err(ApiError::invalid)?;
            if object::name_of(&next) != Some(name) {
                return Err(ApiError::bad_request(format!("metadata.name must be {name:?}, as in the request path")));
            }
            let errs = super::validation::check_update(res.kind, &current, &next);
            if !errs.is_empty() {
                return Err(ApiError::invalid(super::validation::message(res.kind, res.group, name, &errs)));
            }
            let marks: Vec<(String, Value)> = if marks_deletion {
                ["deletionTimestamp", "deletionGracePeriodSeconds"]
                    .iter()
                    .filter_map(|f| next["metadata"].get(*f).map(|v| (f.to_string(), v.clone())))
                    .collect()
            } else {
                vec![]
            };
            object::prepare_update(&mut next, &current);
            for (field, v) in marks {
                next["metadata"][field] = v;
            }
            let mut conditions = vec![Condition::ModRevision { key: key.clone(), revision: rev }];
            let mut ops = vec![];
            if res.kind == "Service" {
                service::prepare(&mut next, Some(&current), &self.services, &self.taken()?, rand::random()).map_err(|e| ApiError::invalid(e.0))?;
                let (before, after) = (service::held(&current), service::held(&next));
                for k in after.difference(&before) {
                    conditions.push(Condition::ModRevision { key: k.clone(), revision: 0 });
                    ops.push(Op::Put { key: k.clone(), value: format!("{}/{name}", ns.unwrap_or_default()).into_bytes() });
                }
                ops.extend(before.difference(&after).map(|k| Op::Delete { key: k.clone() }));
            }
            let value = serde_json::to_vec(&next).map_err(|e| ApiError::internal(e.to_string()))?;
            ops.insert(0, Op::Put { key: key.clone(), value });
            match self.propose(Txn { conditions, ops }).await? {
                (new_rev, Outcome::Applied { .. }) => return Ok(object::with_revision(next, new_rev)),
                (_, Outcome::ConditionFailed { index: 1.., .. }) => continue,
                (_, Outcome::ConditionFailed { current: 0, .. }) => return Err(ApiError::not_found(what(res, ns, name))),
                (_, Outcome::ConditionFailed { .. }) if expected.is_some() => return Err(stale(res, ns, name)),
                (_, Outcome::ConditionFailed { .. }) => continue,
                (_, other) => return Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
            }
        }
        Err(ApiError::conflict(format!("{} is changing too fast; try again", what(res, ns, name))))
    }

    /// Write several objects of `res` in one proposal: each `(current, next)` pair replaces
    /// `current` (as read, with its resourceVersion) by `next`, only if it is still at that
    /// revision. All or nothing: `Ok(None)` when any of them had changed since (the caller
    /// may fall back to one at a time). Not for Services (their IPs are claimed per write).
    pub async fn update_all(&self, res: &Resource, items: &[(Value, Value)]) -> Result<Option<Vec<Value>>, ApiError> {
        if res.kind == "Service" {
            return Err(ApiError::internal("update_all does not claim Service addresses"));
        }
        let (mut conditions, mut ops, mut written) = (Vec::new(), Vec::new(), Vec::new());
        for (current, next) in items {
            let name = object::name_of(current).ok_or_else(|| ApiError::invalid("an object without a name"))?;
            let ns = current["metadata"]["namespace"].as_str();
            let rev = object::str_field(current, "resourceVersion").map(parse_rv).transpose()?.ok_or_else(|| ApiError::invalid("an object without a resourceVersion"))?;
            let mut next = res.validate(next.clone()).map_err(ApiError::invalid)?;
            object::prepare_update(&mut next, current);
            let key = res.key(ns, name);
            conditions.push(Condition::ModRevision { key: key.clone(), revision: rev });
            ops.push(Op::Put { key, value: serde_json::to_vec(&next).map_err(|e| ApiError::internal(e.to_string()))? });
            written.push(next);
        }
        if ops.is_empty() {
            return Ok(Some(vec![]));
        }
        match self.propose(Txn { conditions, ops }).await? {
            (rev, Outcome::Applied { .. }) => Ok(Some(written.into_iter().map(|o| object::with_revision(o, rev)).collect())),
            (_, Outcome::ConditionFailed { .. }) => Ok(None),
            (_, other) => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Mark a namespace as terminating (deletionTimestamp, the `kubernetes` finalizer, phase
    /// Terminating): nothing new may be created in it, and the namespace controller deletes
    /// what it holds, then the namespace.
    pub async fn terminate_namespace(&self, res: &Resource, name: &str, expected: Option<u64>) -> Result<Value, ApiError> {
        self.mark(res, None, name, expected, |next| {
            next["spec"]["finalizers"] = serde_json::json!(["kubernetes"]);
            next["status"]["phase"] = "Terminating".into();
        })
        .await
    }

    /// Mark an object as being deleted (deletionTimestamp now), so its controller stops
    /// acting for it while its dependents are orphaned or deleted first.
    pub async fn mark_deleting(&self, res: &Resource, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.mark(res, ns, name, None, |_| {}).await
    }

    /// Set the deletion mark (deletionTimestamp now, unless already set) and `also`.
    async fn mark(&self, res: &Resource, ns: Option<&str>, name: &str, expected: Option<u64>, also: impl Fn(&mut Value)) -> Result<Value, ApiError> {
        let now = self.clock.now_rfc3339();
        let mark = |cur: &Value| {
            let mut next = cur.clone();
            if next["metadata"]["deletionTimestamp"].is_null() {
                next["metadata"]["deletionTimestamp"] = Value::String(now.clone());
                next["metadata"]["deletionGracePeriodSeconds"] = Value::from(0);
            }
            also(&mut next);
            Ok(next)
        };
        self.modify(res, ns, name, expected, mark, true).await
    }

    /// DELETE as the API serves it: a pod bound to a node is only marked (deletionTimestamp,
    /// deletionGracePeriodSeconds) so its kubelet can stop it gracefully and then remove it;
    /// everything else, and a pod deleted with grace 0, is removed at once.
    pub async fn delete_gracefully(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        expected: Option<u64>,
        grace: Option<i64>,
    ) -> Result<Value, ApiError> {
        if res.kind == "Pod" {
            if let Some((current, _)) = self.current(&res.key(ns, name))? {
                let now = self.clock.now_rfc3339();
                if object::pod_deletion(&current, grace, &now).is_some() {
                    let mark = |cur: &Value| Ok(object::pod_deletion(cur, grace, &now).unwrap_or_else(|| cur.clone()));
                    return self.modify(res, ns, name, expected, mark, true).await;
                }
            }
        }
        self.delete(res, ns, name, expected).await
    }

    /// Delete an object, optionally only at `expected` resourceVersion; returns its last state.
    pub async fn delete(&self, res: &Resource, ns: Option<&str>, name: &str, expected: Option<u64>) -> Result<Value, ApiError> {
        let key = res.key(ns, name);
        for _attempt in 0..8 {
            let mut conditions = match expected {
                Some(rev) => vec![Condition::ModRevision { key: key.clone(), revision: rev }],
                None => vec![Condition::Exists { key: key.clone() }],
            };
            let mut ops = vec![Op::Delete { key: key.clone() }];
            let mut pinned = false;
            if res.kind == "Service" {
                // Release the service's IP and ports with it, as of the version read.
                if let Some((current, rev)) = self.current(&key)? {
                    conditions = vec![Condition::ModRevision { key: key.clone(), revision: expected.unwrap_or(rev) }];
                    ops.extend(service::held(&current).into_iter().map(|key| Op::Delete { key }));
                    pinned = expected.is_none();
                }
            }
            return match self.propose(Txn { conditions, ops }).await? {
                (rev, Outcome::Applied { prev }) => match prev.into_iter().next().flatten() {
                    Some(kv) => Ok(object::with_revision(decode(&self.codec, &kv)?, rev)),
                    None => Err(ApiError::not_found(what(res, ns, name))),
                },
                (_, Outcome::ConditionFailed { current: 0, .. }) => Err(ApiError::not_found(what(res, ns, name))),
                (_, Outcome::ConditionFailed { .. }) if pinned => continue,
                (_, Outcome::ConditionFailed { .. }) => Err(stale(res, ns, name)),
                (_, other) => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
            };
        }
        Err(ApiError::conflict(format!("{} is changing too fast; try again", what(res, ns, name))))
    }

    /// Stream changes to objects of `res` in `ns` after revision `from`, in revision order,
    /// with no gaps. `from = None` starts with the current objects as ADDED events (then,
    /// with `bookmarks`, a bookmark at the revision they were listed at).
    pub async fn watch(
        &self,
        res: &'static Resource,
        ns: Option<String>,
        filter: Filter,
        from: Option<u64>,
        bookmarks: bool,
    ) -> Result<mpsc::Receiver<WatchItem>, ApiError> {
        let (tx, rx) = mpsc::channel(256);
        let (after, initial) = match from {
            Some(rev) => {
                if let Err(HistoryError::Compacted { requested, oldest }) = self.node.reader().history(rev, 0) {
                    return Err(ApiError::gone(format!("too old resource version: {requested} (oldest retained: {oldest})")));
                }
                (rev, None)
            }
            None => {
                let (items, rev) = self.list(res, ns.as_deref(), &filter, Consistency::Linearizable).await?;
                (rev, Some(items))
            }
        };
        let prefix = res.ns_prefix(ns.as_deref());
        let mut follower = self.hub.follow(after);
        tokio::spawn(async move {
            // The current objects first (sent here, not before returning: the receiver
            // reads only once it has the channel, and there may be more than it holds),
            // then a bookmark at the list's revision marking their end.
            if let Some(items) = initial {
                for object in items {
                    if tx.send(WatchItem::Event { kind: "ADDED", object }).await.is_err() {
                        return;
                    }
                }
                if bookmarks && tx.send(WatchItem::Bookmark(after)).await.is_err() {
                    return;
                }
            }
            let mut last_sent = tokio::time::Instant::now();
            loop {
                let changes = tokio::select! {
                    changes = follower.next() => changes,
                    _ = tx.closed() => return,
                };
                let changes = match changes {
                    Ok(changes) => changes,
                    Err(HistoryError::Compacted { requested, oldest }) => {
                        let msg = format!("too old resource version: {requested} (oldest retained: {oldest})");
                        let _ = tx.send(WatchItem::Error(ApiError::gone(msg))).await;
                        return;
                    }
                    Err(HistoryError::Storage(e)) => {
                        let _ = tx.send(WatchItem::Error(ApiError::internal(e))).await;
                        return;
                    }
                };
                for change in changes {
                    let ev = &change.event;
                    if !ev.key.starts_with(&prefix) {
                        continue;
                    }
                    let Some(obj) = change.object() else { continue };
                    if !filter.matches(obj) {
                        continue;
                    }
                    let kind = match ev.kind {
                        EventKind::Put { created: true } => "ADDED",
                        EventKind::Put { created: false } => "MODIFIED",
                        EventKind::Delete => "DELETED",
                    };
                    let object = object::with_revision(obj.clone(), ev.revision);
                    if tx.send(WatchItem::Event { kind, object }).await.is_err() {
                        return;
                    }
                    last_sent = tokio::time::Instant::now();
                }
                // Nothing for this watch for a while (other kinds may be changing): say
                // how far it is.
                if bookmarks && last_sent.elapsed() >= Duration::from_secs(5) {
                    last_sent = tokio::time::Instant::now();
                    if tx.send(WatchItem::Bookmark(follower.after())).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

fn stale(res: &Resource, ns: Option<&str>, name: &str) -> ApiError {
    ApiError::conflict(format!(
        "Operation cannot be fulfilled on {}: the object has been modified; please apply your changes to the latest version and try again",
        what(res, ns, name)
    ))
}

pub fn parse_rv(s: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}: expected a number")))
}

/// `current` with only its `.status` taken from `patched` (a patch of `/status`).
fn status_of(current: &Value, patched: &Value) -> Value {
    let mut only = current.clone();
    only["status"] = patched.get("status").cloned().unwrap_or(Value::Null);
    only
}
