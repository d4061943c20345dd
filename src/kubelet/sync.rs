//! The kubelet loop: follow the pods bound to this node (a watch cache), give each pod
//! that is due a worker of its own (`workers` decides which), which observes the runtime,
//! asks `plan` what to do, does it, and reports `status`. Thin I/O around the pure
//! decisions. When the API is unreachable nothing is stopped: running pods keep running
//! and their status catches up later.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use hyper::Method;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use serde_json::Value;
use tokio::sync::Notify;

use super::events;
use super::inputs::{self, Api};
use super::ipam::Ipam;
use super::network::{NodeNet, PodNetwork, SandboxPaths};
use super::plan::{self, Action, Attempt, Backoff, Observed, Waiting};
use super::probe;
use super::pull::{self, Puller};
use super::registry::Registry;
use super::runtime::{ContainerConfig, ContainerInfo, ContainerRuntime, RuntimeError, SharedImages};
use super::status::{self, StatusInput};
use super::workers::Workers;
use crate::api::quantity;
use crate::client::ApiClient;
use crate::watch_cache::{Changed, WatchCache};

mod probing;
mod start;
mod token;
use start::StartError;

pub const LABEL_UID: &str = "orch.dev/pod-uid";
pub const LABEL_NAMESPACE: &str = "orch.dev/pod-namespace";
pub const LABEL_POD: &str = "orch.dev/pod-name";
pub const LABEL_CONTAINER: &str = "orch.dev/container";
pub const LABEL_ATTEMPT: &str = "orch.dev/attempt";
pub const LABEL_GRACE: &str = "orch.dev/grace-seconds";
/// The image a container was created from, as `repository@digest` (its `imageID`).
pub const LABEL_IMAGE_ID: &str = "orch.dev/image-id";

/// How often the image list reported in the Node's status is refreshed.
const IMAGE_LIST_INTERVAL: Duration = Duration::from_secs(10);

/// Container starts at once on a node (every pod has its own worker; this bounds only the
/// runtime's create+start). Starting a container is mostly runc's CPU time: on the 2-core
/// benchmark machine (docs/benchmarks/pod-startup.md, 30 pods over 3 nodes) a burst
/// measured p50/p99 903/1739 ms one at a time, 1662/1816 ms with 8 at once and 831/1467 ms
/// with 2 at once (pods then synced in passes).
const PARALLEL_STARTS: usize = 2;

#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub node_name: String,
    pub node_ip: String,
    /// This node's own API (it forwards to the heads as needed).
    pub api_base: String,
    /// Its credentials (the node certificate).
    pub api_client: ApiClient,
    /// The `kubernetes` Service's ClusterIP (containers are told it).
    pub kubernetes_ip: std::net::Ipv4Addr,
    /// The cluster CA, written beside pods' tokens (`ca.crt`).
    pub ca_pem: String,
    /// Pod directories (volumes, logs, /etc files) and IP leases.
    pub data_dir: PathBuf,
    /// Pinned namespaces (a tmpfs: they cannot outlive a reboot anyway).
    pub run_dir: PathBuf,
    /// cgroup parent of every pod (`/<parent>/<pod uid>/<container>`).
    pub cgroup_parent: String,
    pub cluster_cidr: Ipv4Net,
    pub backoff: Backoff,
    pub resync: Duration,
    /// Rotate a container's log file past this size, keeping `log_files - 1` old copies.
    pub log_max_bytes: u64,
    pub log_files: usize,
}

/// What the kubelet remembers about a pod between passes (lost on restart, harmlessly).
#[derive(Default)]
struct Local {
    terminating: BTreeMap<String, SystemTime>,
    /// Per container: why it could not be started (missing image, config map...).
    waiting: BTreeMap<String, Waiting>,
    sandbox_error: Option<String>,
    /// The resourceVersion of the kubelet's last status write: the change it causes needs
    /// no sync of its own.
    written: Option<String>,
    /// The pod, for events about it (probe failures arrive with its uid only).
    pod: Option<events::PodRef>,
}

/// A finished probe run: pod uid, container id, which probe, its spec, outcome, when.
type ProbeResult = (String, String, probe::Kind, probe::ProbeSpec, Result<String, String>, SystemTime);

/// What only the loop touches between passes.
struct LoopState {
    /// The pods bound to this node, and every node (pod CIDRs, addresses for routes).
    pods: WatchCache,
    nodes: WatchCache,
    pods_seen: u64,
    nodes_seen: u64,
    last_full: Option<std::time::Instant>,
    /// When the image list was last read, and the puller's count of pulls then.
    images_listed: Option<(std::time::Instant, u64)>,
    routes: BTreeMap<Ipv4Net, Ipv4Addr>,
    /// The pods' copy stopped following the API (said once, until it follows again).
    api_lost: bool,
}

pub struct Kubelet<R, N, G> {
    cfg: KubeletConfig,
    api: Api,
    events: events::Recorder,
    runtime: Arc<R>,
    puller: Puller<G>,
    /// The runtime's images, listed at most every `IMAGE_LIST_INTERVAL` for the heartbeat.
    images: SharedImages,
    net: N,
    ipam: Ipam,
    node_net: Mutex<Option<NodeNet>>,
    local: Mutex<BTreeMap<String, Local>>,
    wake: Arc<Notify>,
    workers: Mutex<Workers>,
    /// Container starts running at once (mostly runc's CPU time).
    starts: tokio::sync::Semaphore,
    /// Probe tallies per (container runtime id, probe); runs in flight; their results.
    probes: Mutex<BTreeMap<(String, probe::Kind), probe::ProbeState>>,
    probing: Mutex<BTreeSet<(String, probe::Kind)>>,
    probe_tx: tokio::sync::mpsc::UnboundedSender<ProbeResult>,
    probe_rx: Mutex<tokio::sync::mpsc::UnboundedReceiver<ProbeResult>>,
}

/// The runtime id of one attempt of a container. containerd ids are at most 76 bytes: the
/// first 12 hex digits of the pod uid, the container name (cut to 55), the attempt.
pub fn container_id(uid: &str, name: &str, attempt: u32) -> String {
    let short: String = uid.chars().filter(char::is_ascii_hexdigit).take(12).collect();
    let name: String = name.chars().take(55).collect();
    format!("{short}-{name}-{attempt}")
}

/// A pod's containers as the runtime has them: every attempt, by container name.
type Observation = BTreeMap<String, Vec<Attempt>>;

fn group_by_pod(containers: Vec<ContainerInfo>) -> BTreeMap<String, Observation> {
    let mut out: BTreeMap<String, Observation> = BTreeMap::new();
    for c in containers {
        let (Some(uid), Some(name)) = (c.labels.get(LABEL_UID), c.labels.get(LABEL_CONTAINER)) else { continue };
        let attempt = c.labels.get(LABEL_ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0);
        let image_id = c.labels.get(LABEL_IMAGE_ID).cloned().unwrap_or_default();
        let a = Attempt { id: c.id.clone(), attempt, state: c.state, started_at: c.created_at, exited_at: c.exited_at, oom_killed: c.oom_killed, image_id };
        out.entry(uid.clone()).or_default().entry(name.clone()).or_default().push(a);
    }
    for attempts in out.values_mut().flat_map(|p| p.values_mut()) {
        attempts.sort_by_key(|a| a.attempt);
    }
    out
}

fn min_time(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl<R: ContainerRuntime + 'static, N: PodNetwork + 'static, G: Registry + 'static> Kubelet<R, N, G> {
    pub fn new(cfg: KubeletConfig, runtime: R, net: N, registry: G, images: SharedImages) -> std::io::Result<Self> {
        let ipam = Ipam::new(&cfg.data_dir)?;
        let puller = Puller::new(registry, cfg.backoff);
        let api = Api { client: cfg.api_client.with_timeout(Duration::from_secs(10)), base: cfg.api_base.clone() };
        let (probe_tx, probe_rx) = tokio::sync::mpsc::unbounded_channel();
        let events = events::Recorder::start(api.clone(), cfg.node_name.clone());
        Ok(Kubelet {
            cfg,
            api,
            events,
            runtime: Arc::new(runtime),
            puller,
            images,
            net,
            ipam,
            node_net: Mutex::new(None),
            local: Mutex::new(BTreeMap::new()),
            wake: Arc::new(Notify::new()),
            workers: Mutex::new(Workers::default()),
            starts: tokio::sync::Semaphore::new(PARALLEL_STARTS),
            probes: Mutex::new(BTreeMap::new()),
            probing: Mutex::new(BTreeSet::new()),
            probe_tx,
            probe_rx: Mutex::new(probe_rx),
        })
    }

    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    fn local(&self) -> MutexGuard<'_, BTreeMap<String, Local>> {
        self.local.lock().expect("kubelet state lock")
    }

    fn workers(&self) -> MutexGuard<'_, Workers> {
        self.workers.lock().expect("kubelet workers lock")
    }

    fn probes(&self) -> MutexGuard<'_, BTreeMap<(String, probe::Kind), probe::ProbeState>> {
        self.probes.lock().expect("probe state lock")
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.cfg.data_dir.join("pods").join(uid)
    }

    /// Where an attempt's stdout and stderr go.
    pub fn log_path(data_dir: &Path, uid: &str, container: &str, attempt: u32) -> PathBuf {
        data_dir.join("pods").join(uid).join("logs").join(container).join(format!("{attempt}.log"))
    }

    /// Run forever: a pass on every change of this node's pods, when a worker asks, and at
    /// least every `resync` (a full pass over every pod).
    pub async fn run(self) {
        let node = &self.cfg.node_name;
        let mut st = LoopState {
            pods: WatchCache::start(self.api.client.clone(), self.api.base.clone(), format!("/api/v1/pods?fieldSelector=spec.nodeName={node}")),
            nodes: WatchCache::start(self.api.client.clone(), self.api.base.clone(), "/api/v1/nodes"),
            pods_seen: 0,
            nodes_seen: 0,
            last_full: None,
            images_listed: None,
            routes: BTreeMap::new(),
            api_lost: false,
        };
        // Node changes (mostly heartbeats) do not wake the loop: they are read at the next
        // pass, a pod's change or the full pass every `resync`.
        let mut pods_changed = st.pods.subscribe();
        let this = Arc::new(self);
        loop {
            let next = match this.pass(&mut st).await {
                Ok(wake) => wake.and_then(|w| w.duration_since(SystemTime::now()).ok()).unwrap_or(this.cfg.resync).min(this.cfg.resync),
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet pass failed; running pods are left as they are");
                    this.cfg.resync
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(next) => {}
                _ = this.wake.notified() => {}
                _ = pods_changed.changed() => {}
            }
        }
    }

    /// One pass: the node's network, images and probe results; then a worker for every
    /// pod that is due (all of them on a full pass) and for whatever is left on the node
    /// of pods the API no longer has. Returns when to look again at the latest.
    async fn pass(self: &Arc<Self>, st: &mut LoopState) -> anyhow::Result<Option<SystemTime>> {
        if !st.pods.synced() || !st.nodes.synced() {
            // Nothing is known yet: acting now would take every pod for an orphan.
            return Ok(None);
        }
        if st.pods.live() == st.api_lost {
            st.api_lost = !st.api_lost;
            match st.api_lost {
                true => tracing::warn!("kubelet: the API is unreachable; pods run on as last seen"),
                false => tracing::info!("kubelet: the API is reachable again"),
            }
        }
        let (seq, changed) = st.pods.changes_since(st.pods_seen);
        st.pods_seen = seq;
        let full = changed == Changed::Everything || st.last_full.is_none_or(|t| t.elapsed() >= self.cfg.resync);
        let (seq, nodes_changed) = st.nodes.changes_since(st.nodes_seen);
        st.nodes_seen = seq;
        if full || nodes_changed != Changed::Keys(BTreeSet::new()) {
            if let Err(e) = self.sync_node(st).await {
                tracing::warn!(error = %e, "node network");
            }
        }
        // Listed again after an interval, or at once after a pull.
        let pulled = self.puller.pulled();
        if st.images_listed.is_none_or(|(t, n)| t.elapsed() >= IMAGE_LIST_INTERVAL || n != pulled) {
            match self.runtime.list_images().await {
                Ok(list) => *self.images.lock().expect("images lock") = list,
                Err(e) => tracing::warn!(error = %e, "listing images"),
            }
            st.images_listed = Some((std::time::Instant::now(), pulled));
        }
        self.record_probe_results();

        let keys = match changed {
            Changed::Keys(keys) => keys,
            Changed::Everything => BTreeSet::new(),
        };
        // On a full pass one listing of the node's containers (two runtime calls, however
        // many pods) serves every worker, the search for leftovers, probes and log
        // rotation. A pod whose worker ran while it was taken lists its own containers
        // instead: that worker may just have started one.
        let listing = match full {
            true => {
                let busy = self.workers().busy();
                Some((busy, self.runtime.list().await?))
            }
            false => None,
        };
        let mut seen_by_pod = listing.as_ref().map(|(_, all)| group_by_pod(all.clone())).unwrap_or_default();
        let now = SystemTime::now();
        let mut known = BTreeSet::new();
        // Every pod is looked at in place; only those due are copied out for a worker.
        let mut due = Vec::new();
        st.pods.visit(|key, obj| {
            let Some(uid) = obj["metadata"]["uid"].as_str() else { return };
            known.insert(uid.to_string());
            let changed = keys.contains(key) && !self.own_write(uid, obj);
            if self.workers().start(uid, full || changed, now) {
                due.push(obj.clone());
            }
        });
        for obj in due {
            let uid = obj["metadata"]["uid"].as_str().unwrap_or_default().to_string();
            let seen = listing.as_ref().filter(|(busy, _)| !busy.contains(&uid)).map(|_| seen_by_pod.remove(&uid).unwrap_or_default());
            match serde_json::from_value::<Pod>(obj) {
                Ok(pod) => self.spawn_worker(uid, Some((pod, seen))),
                Err(e) => {
                    tracing::warn!(%uid, error = %e, "a pod the kubelet cannot read");
                    self.workers().done(&uid, false, None);
                }
            }
        }
        // Whatever is on the node for a pod the API no longer has: stop and remove it.
        // Looked for on full passes, when a pod left, and while one is being cleaned up.
        let left = keys.iter().any(|k| st.pods.get(k).is_none());
        if full || left || self.workers().pending_outside(&known, now) {
            let mut orphans = match &listing {
                Some((_, all)) => all.iter().filter_map(|c| c.labels.get(LABEL_UID).cloned()).collect(),
                None => self.runtime.label_values(LABEL_UID).await?,
            };
            orphans.extend(self.net.sandboxes());
            orphans.extend(self.ipam.leases().into_iter().map(|(_, uid)| uid));
            for uid in orphans.difference(&known) {
                if self.workers().start(uid, true, now) {
                    self.spawn_worker(uid.clone(), None);
                }
            }
            known.extend(orphans);
            // Orphans cleaned up completely are forgotten.
            self.workers().retain(&known);
        }
        if full {
            st.last_full = Some(std::time::Instant::now());
            {
                let workers = self.workers();
                self.local().retain(|uid, _| known.contains(uid) || workers.is_busy(uid));
            }
            let all = listing.map(|(_, all)| all).unwrap_or_default();
            let running: Vec<ContainerInfo> = all.into_iter().filter(|c| matches!(c.state, super::runtime::ContainerState::Running { .. })).collect();
            let ids: BTreeSet<&str> = running.iter().map(|c| c.id.as_str()).collect();
            self.probes().retain(|(id, _), _| ids.contains(id.as_str()));
            self.rotate_logs(&running);
        }
        Ok(self.workers().next_wake())
    }

    /// Sync one pod (with its containers if just listed) or clean up after one the API no
    /// longer has, on a task of its own.
    fn spawn_worker(self: &Arc<Self>, uid: String, pod: Option<(Pod, Option<Observation>)>) {
        let this = self.clone();
        tokio::spawn(async move {
            // The sync runs on an inner task so that a panic in it still ends the pod's
            // worker (`done`) instead of leaving the pod busy forever.
            let sync = {
                let (this, uid) = (this.clone(), uid.clone());
                tokio::spawn(async move {
                    match pod {
                        Some((pod, seen)) => this.sync_pod(&pod, &uid, seen).await,
                        None => this.sync_orphan(&uid).await,
                    }
                })
            };
            let (acted, wake_at) = sync.await.unwrap_or_else(|e| {
                tracing::error!(uid, error = %e, "a pod sync panicked; the pod is synced again at the next full pass");
                (false, None)
            });
            if this.workers().done(&uid, acted, wake_at) {
                this.wake.notify_one();
            }
        });
    }

    /// Whether the pod as seen is exactly as the kubelet's own last status write left it.
    fn own_write(&self, uid: &str, obj: &Value) -> bool {
        let rv = obj["metadata"]["resourceVersion"].as_str();
        rv.is_some() && self.local().get(uid).and_then(|l| l.written.as_deref()) == rv
    }

    fn node_net(&self) -> Option<NodeNet> {
        self.node_net.lock().expect("node net lock").clone()
    }

    /// Rotate the log files of running containers that grew past the limit.
    fn rotate_logs(&self, running: &[ContainerInfo]) {
        for c in running {
            let (Some(uid), Some(name)) = (c.labels.get(LABEL_UID), c.labels.get(LABEL_CONTAINER)) else { continue };
            let attempt = c.labels.get(LABEL_ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0);
            let path = Self::log_path(&self.cfg.data_dir, uid, name, attempt);
            if let Err(e) = super::logrotate::rotate_if_needed(&path, self.cfg.log_max_bytes, self.cfg.log_files.saturating_sub(1)) {
                tracing::warn!(path = %path.display(), error = %e, "rotating a container log");
            }
        }
    }

    /// The node's pod CIDR (bridge) and routes to every other node's pod CIDR, read in
    /// place from the cache (a Node's status is mostly its image list).
    async fn sync_node(&self, st: &mut LoopState) -> anyhow::Result<()> {
        let mut own = None;
        let mut routes = BTreeMap::new();
        st.nodes.visit(|_, n| {
            let Some(cidr) = n["spec"]["podCIDR"].as_str().and_then(|c| c.parse::<Ipv4Net>().ok()) else { return };
            if n["metadata"]["name"].as_str() == Some(self.cfg.node_name.as_str()) {
                own = Some(cidr);
                return;
            }
            let addresses = n["status"]["addresses"].as_array().into_iter().flatten();
            let ip = addresses.filter(|a| a["type"] == "InternalIP").find_map(|a| a["address"].as_str()?.parse::<Ipv4Addr>().ok());
            if let Some(ip) = ip {
                routes.insert(cidr, ip);
            }
        });
        if let Some(cidr) = own {
            let want = NodeNet { pod_cidr: cidr, cluster_cidr: self.cfg.cluster_cidr };
            if self.node_net().as_ref() != Some(&want) {
                self.net.ensure_node(&want).await?;
                tracing::info!(pod_cidr = %cidr, "pod network ready");
                *self.node_net.lock().expect("node net lock") = Some(want);
            }
        }
        if routes != st.routes {
            self.net.sync_routes(&routes).await?;
            st.routes = routes;
        }
        Ok(())
    }

    /// Written once the sandbox is complete (network plugged, /etc files written).
    fn sandbox_marker(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join("sandbox-ready")
    }

    /// Anything of a sandbox exists (to tear down, even if it was never completed).
    fn sandbox_present(&self, uid: &str) -> bool {
        self.net.sandboxes().iter().any(|s| s == uid) || self.lease(uid).is_some() || self.pod_dir(uid).exists()
    }

    fn sandbox_ready(&self, uid: &str) -> bool {
        self.sandbox_marker(uid).exists() && self.net.sandboxes().iter().any(|s| s == uid)
    }

    fn lease(&self, uid: &str) -> Option<Ipv4Addr> {
        self.ipam.lease_of(uid)
    }

    /// The pod's containers, every attempt, as the runtime has them now.
    async fn containers_of(&self, uid: &str) -> Result<Observation, RuntimeError> {
        Ok(group_by_pod(self.runtime.list_labeled(LABEL_UID, uid).await?).remove(uid).unwrap_or_default())
    }

    /// Observe, plan, act and report one pod; returns whether it acted, and when it wants
    /// to be looked at again.
    async fn sync_pod(&self, pod: &Pod, uid: &str, seen: Option<Observation>) -> (bool, Option<SystemTime>) {
        let listed = match seen {
            Some(containers) => Ok(containers),
            None => self.containers_of(uid).await,
        };
        let containers = match listed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(pod = %pod_name(pod), error = %e, "listing the pod's containers");
                return (false, None);
            }
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let grace = pod.metadata.deletion_grace_period_seconds.or(spec.termination_grace_period_seconds).unwrap_or(30).max(0);
        let sandbox = if deleting { self.sandbox_present(uid) } else { self.sandbox_ready(uid) };
        let (unhealthy, readiness, probe_wake) = if deleting { Default::default() } else { self.probe_pod(uid, &spec, &containers) };
        let observed = Observed { containers, sandbox, unhealthy };
        let terminating = self.local().entry(uid.to_string()).or_default().terminating.clone();
        let now = SystemTime::now();
        let p = plan::plan(&plan::Input {
            spec: &spec,
            deleting,
            grace: Duration::from_secs(grace as u64),
            observed: &observed,
            terminating: &terminating,
            now,
            backoff: self.cfg.backoff,
        });
        let me = pod_ref(pod);
        self.local().entry(uid.to_string()).or_default().pod = Some(me.clone());
        for (name, _) in p.waiting.iter().filter(|(_, w)| w.reason == "CrashLoopBackOff") {
            let message = format!("Back-off restarting failed container {name} in pod {}_{}({uid})", me.name, me.namespace);
            self.events.note(&me, events::Note::warning("BackOff", message, Some(name)));
        }
        // Looked at again right away after progress; after a failure, at the next full pass.
        let idle = p.actions.is_empty();
        let acted = self.execute_all(Some(pod), uid, &spec, p.actions).await;
        if !deleting {
            self.refresh_token(pod, uid).await;
            // Without actions the containers are as this pass saw them: no need to ask again.
            self.report_status(pod, uid, &spec, &p.waiting, &readiness, idle.then_some(observed.containers)).await;
        }
        (acted, min_time(p.wake_at, probe_wake))
    }

    /// Stop and remove what is left on the node of a pod the API no longer has.
    async fn sync_orphan(&self, uid: &str) -> (bool, Option<SystemTime>) {
        let listed = match self.runtime.list_labeled(LABEL_UID, uid).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(uid, error = %e, "listing a deleted pod's containers");
                return (false, None);
            }
        };
        // The longest grace period its containers were started with.
        let grace = listed.iter().filter_map(|c| c.labels.get(LABEL_GRACE).and_then(|g| g.parse::<u64>().ok())).max().unwrap_or(0);
        let containers = group_by_pod(listed).remove(uid).unwrap_or_default();
        let observed = Observed { containers, sandbox: self.sandbox_present(uid), unhealthy: vec![] };
        let terminating = self.local().entry(uid.to_string()).or_default().terminating.clone();
        let spec = PodSpec::default();
        let p = plan::plan(&plan::Input {
            spec: &spec,
            deleting: true,
            grace: Duration::from_secs(grace),
            observed: &observed,
            terminating: &terminating,
            now: SystemTime::now(),
            backoff: self.cfg.backoff,
        });
        (self.execute_all(None, uid, &spec, p.actions).await, p.wake_at)
    }

    /// Execute `actions` in order, stopping at the first that fails (the rest depend on
    /// it; the pod is looked at again). Returns whether any took effect.
    async fn execute_all(&self, pod: Option<&Pod>, uid: &str, spec: &PodSpec, actions: Vec<Action>) -> bool {
        let mut acted = false;
        for action in actions {
            match self.execute(pod, uid, spec, action).await {
                Ok(()) => acted = true,
                Err(e) => {
                    tracing::warn!(uid, pod = pod.map(pod_name), error = %e, "kubelet action failed");
                    break;
                }
            }
        }
        acted
    }

    async fn execute(&self, pod: Option<&Pod>, uid: &str, spec: &PodSpec, action: Action) -> anyhow::Result<()> {
        if !matches!(action, Action::Start { .. } | Action::Sandbox) {
            tracing::info!(uid, ?action, "kubelet");
        }
        match action {
            Action::Sandbox => {
                let pod = pod.expect("only pods from the API get a sandbox");
                let result = self.sandbox(pod, uid).await;
                self.local().entry(uid.into()).or_default().sandbox_error = result.as_ref().err().map(|e| e.to_string());
                result?;
            }
            Action::Start { container, init, attempt } => {
                let pod = pod.expect("only pods from the API start containers");
                let c = spec.init_containers.iter().flatten().chain(&spec.containers).find(|c| c.name == container).cloned();
                let c = c.ok_or_else(|| anyhow::anyhow!("container {container} is not in the spec"))?;
                let result = self.start(pod, uid, &c, init, attempt).await;
                self.note_start(pod, &c, &result);
                let mut all = self.local();
                let local = all.entry(uid.into()).or_default();
                match &result {
                    Ok(()) => {
                        local.waiting.remove(&container);
                    }
                    Err(e) => {
                        let reason = match e {
                            StartError::Image(e) => e.reason(),
                            StartError::Config(_) => "CreateContainerConfigError",
                            StartError::Runtime(_) => "CreateContainerError",
                        };
                        local.waiting.insert(container.clone(), Waiting { reason, message: e.to_string() });
                    }
                }
                drop(all);
                result?;
            }
            Action::Term { id } => {
                if let (Some(pod), Some(name)) = (pod, events::Recorder::container_of(&id, container_names(spec))) {
                    self.events.note(&pod_ref(pod), events::Note::normal("Killing", format!("Stopping container {name}"), Some(name)));
                }
                self.signal(&id, 15).await?;
                self.local().entry(uid.into()).or_default().terminating.insert(id, SystemTime::now());
            }
            Action::Kill { id } => self.signal(&id, 9).await?,
            Action::Remove { id } => match self.runtime.remove(&id).await {
                Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            },
            Action::TeardownSandbox => {
                let _ = std::fs::remove_file(self.sandbox_marker(uid));
                self.net.teardown(uid).await?;
                self.ipam.release(uid)?;
                remove_cgroups(&self.cfg.cgroup_parent, uid);
            }
            Action::Finished => {
                let dir = self.pod_dir(uid);
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)?;
                }
                remove_cgroups(&self.cfg.cgroup_parent, uid);
                self.local().remove(uid);
                if let Some(pod) = pod {
                    let url = format!("{}/api/v1/namespaces/{}/pods/{}?gracePeriodSeconds=0", self.api.base, namespace(pod), pod_name(pod));
                    match self.api.client.json(Method::DELETE, &url, None).await {
                        Ok(_) => tracing::info!(pod = %pod_name(pod), "pod stopped and removed"),
                        Err(e) if e.downcast_ref::<crate::client::HttpError>().is_some_and(|h| h.code == 404) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }

    async fn signal(&self, id: &str, sig: u32) -> anyhow::Result<()> {
        match self.runtime.signal(id, sig).await {
            Ok(()) | Err(RuntimeError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Write the pod's status if it changed. `seen`: the pod's containers as observed, if no
    /// action changed them since; else they are listed again.
    async fn report_status(
        &self,
        pod: &Pod,
        uid: &str,
        spec: &PodSpec,
        plan_waiting: &BTreeMap<String, Waiting>,
        readiness: &BTreeMap<String, bool>,
        seen: Option<Observation>,
    ) {
        let containers = match seen {
            Some(c) => c,
            None => match self.runtime.list_labeled(LABEL_UID, uid).await {
                Ok(list) => group_by_pod(list).remove(uid).unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(error = %e, "listing containers for status");
                    return;
                }
            },
        };
        let observed = Observed { containers, sandbox: self.sandbox_ready(uid), unhealthy: vec![] };
        let (mut waiting, sandbox_error) = {
            let mut all = self.local();
            let local = all.entry(uid.to_string()).or_default();
            (local.waiting.clone(), local.sandbox_error.clone())
        };
        waiting.extend(plan_waiting.clone());
        let previous = serde_json::to_value(&pod.status).unwrap_or(Value::Null);
        let now = status::rfc3339(SystemTime::now());
        let new = status::pod_status(&StatusInput {
            spec,
            observed: &observed,
            waiting: &waiting,
            readiness,
            pod_ip: self.lease(uid).map(|ip| ip.to_string()),
            host_ip: &self.cfg.node_ip,
            previous: &previous,
            sandbox_error,
            now: &now,
        });
        if same_status(&previous, &new) {
            return;
        }
        let mut obj = serde_json::to_value(pod).unwrap_or(Value::Null);
        obj["status"] = new;
        let url = format!("{}/api/v1/namespaces/{}/pods/{}/status", self.api.base, namespace(pod), pod_name(pod));
        match self.api.client.json(Method::PUT, &url, Some(&obj)).await {
            Ok(written) => {
                let rv = written["metadata"]["resourceVersion"].as_str().map(String::from);
                self.local().entry(uid.to_string()).or_default().written = rv;
            }
            // A conflict means the pod changed meanwhile: the next pass reports again.
            Err(e) => tracing::debug!(pod = %pod_name(pod), error = %e, "status update"),
        }
    }
}

/// Statuses compare equal when they differ only in fields the API adds (none today) —
/// compared as JSON so an unchanged pod is never rewritten.
fn same_status(old: &Value, new: &Value) -> bool {
    old == new
}

fn pod_ref(pod: &Pod) -> events::PodRef {
    events::PodRef {
        namespace: namespace(pod).to_string(),
        name: pod_name(pod).to_string(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

fn container_names(spec: &PodSpec) -> impl Iterator<Item = &str> {
    spec.init_containers.iter().flatten().chain(&spec.containers).map(|c| c.name.as_str())
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

fn hostname(pod: &Pod) -> String {
    let h = pod.spec.as_ref().and_then(|s| s.hostname.clone()).unwrap_or_else(|| pod_name(pod).to_string());
    h.chars().take(63).collect()
}

/// runc removes each container's cgroup, not the pod's parent in every controller.
fn remove_cgroups(parent: &str, uid: &str) {
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    for c in controllers.flatten() {
        let dir = c.path().join(parent.trim_matches('/')).join(uid);
        if dir.is_dir() {
            if let Err(e) = std::fs::remove_dir(&dir) {
                tracing::debug!(dir = %dir.display(), error = %e, "removing a pod cgroup");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_fit_containerd_limits() {
        let id = container_id("0b5e4c1a-7f7e-4d5e-9a51-2f4c7c1d9e00", &"x".repeat(63), 12);
        assert!(id.len() <= 76, "{} bytes", id.len());
        assert!(id.starts_with("0b5e4c1a7f7e-"));
        assert_ne!(container_id("u", "a", 0), container_id("u", "a", 1));
    }

    #[test]
    fn attempts_are_grouped_per_pod_and_ordered() {
        let info = |id: &str, uid: &str, name: &str, attempt: u32| ContainerInfo {
            id: id.into(),
            image: "i".into(),
            state: super::super::runtime::ContainerState::Created,
            labels: BTreeMap::from([
                (LABEL_UID.to_string(), uid.to_string()),
                (LABEL_CONTAINER.to_string(), name.to_string()),
                (LABEL_ATTEMPT.to_string(), attempt.to_string()),
            ]),
            created_at: None,
            exited_at: None,
            oom_killed: false,
        };
        let g = group_by_pod(vec![info("b", "u1", "app", 1), info("a", "u1", "app", 0), info("c", "u2", "x", 0)]);
        assert_eq!(g["u1"]["app"].iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(g.len(), 2);
    }
}
