//! orchd's runtime: decide from the data dir and flags whether to create a cluster, join
//! one or restart, then run the head role (Raft member + API) or the worker role (API
//! proxy), plus node heartbeats, until SIGTERM/SIGINT.

pub mod config;
pub mod heartbeat;
pub mod exec;
pub mod join;
pub mod logs;
pub mod node_api;
pub mod portforward;
pub mod relay;
pub mod renewal;
pub mod service_roles;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use orch_raft::{AddHead, Member, NodeConfig, RaftNode, RaftTuning, StoreOptions};
use serde_json::json;

use self::config::{NodeState, Role, Settings};
use crate::api::{self, store::ObjectStore, AppState};
use crate::auth::{self, authorizer::Authorize, listener::TlsListener, Gate, Peer};

/// Audit logs rotate at this many files.
const AUDIT_FILES: usize = 5;

fn audit_log(s: &Settings) -> anyhow::Result<Arc<auth::audit::AuditLog>> {
    let log = auth::audit::AuditLog::open(s.audit_log.clone(), s.audit_log_max_bytes, AUDIT_FILES)
        .with_context(|| format!("opening the audit log {}", s.audit_log.display()))?;
    Ok(Arc::new(log))
}
use crate::client::{ApiClient, Tls};
use crate::clock::{Clock, SystemClock};
use crate::kubelet::runtime::SharedImages;
use crate::metrics::Metrics;

/// Namespaces every cluster starts with.
pub const INITIAL_NAMESPACES: &[&str] = &["default", "kube-system"];

pub async fn run(s: Settings) -> anyhow::Result<()> {
    tokio::spawn(report_stalls());
    tokio::spawn(trim_heap());
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(&s.data_dir).with_context(|| format!("creating {}", s.data_dir.display()))?;
    let state = match NodeState::load(&s.data_dir)? {
        Some(state) => {
            if s.init || s.join.is_some() {
                tracing::info!("the data dir already holds node {:?}; ignoring --init/--join", state.name);
            }
            if state.name != s.name {
                tracing::warn!(configured = %s.name, stored = %state.name, "the data dir belongs to another name; using the stored one");
            }
            state
        }
        None if s.init && s.join.is_some() => bail!("--init and --join exclude each other"),
        None if s.init => {
            if s.role != Role::Head {
                bail!("only a head can create a cluster (--init with --role worker)");
            }
            join::create_cluster(&s)?
        }
        None => match s.join.clone() {
            Some(seed) => join::join(&s, &seed).await?,
            None => bail!(
                "{} holds no node state: pass --init to create a cluster, or --join ADDR --token TOKEN to join one",
                s.data_dir.display()
            ),
        },
    };
    tracing::info!(name = %state.name, id = state.id, role = ?state.role, api = %state.api_addr, raft = %state.raft_addr, "starting");
    renewal::renew_if_due(&s, &state).await?;
    match state.role {
        Role::Head => run_head(s, state).await,
        Role::Worker => run_worker(s, state).await,
    }
}

async fn run_head(s: Settings, mut state: NodeState) -> anyhow::Result<()> {
    let tls = join::load_tls(&s.data_dir)?;
    let node_tls = tls.clone();
    let keys = crate::auth::encryption::Keyring::load(&s.data_dir.join(crate::auth::encryption::KEY_FILE))
        .context("loading the keys that seal Secrets (encryption.json in the data dir)")?;
    let codec = Arc::new(crate::auth::encryption::Codec::new(keys));
    let hook_codec = codec.clone();
    let on_head_secrets: orch_raft::HeadSecretsHook = Arc::new(move |bytes: &[u8]| {
        let ring = crate::auth::encryption::Keyring::parse(bytes).map_err(|e| e.to_string())?;
        hook_codec.replace(ring);
        Ok(())
    });
    let client = ApiClient::new(Duration::from_secs(30), &Tls::for_node(&node_tls)?);
    let member = Member { name: state.name.clone(), raft_addr: state.raft_addr.clone(), api_addr: state.api_addr.clone() };
    let node = RaftNode::start(NodeConfig {
        id: state.id,
        member: member.clone(),
        data_dir: s.data_dir.clone(),
        listen: SocketAddr::new(s.bind, s.raft_port),
        store: StoreOptions { fsync: s.fsync, history_revisions: s.watch_history },
        tuning: RaftTuning {
            heartbeat: s.heartbeat,
            election_timeout: s.election_timeout,
            snapshot_after: s.snapshot_after,
            keep_after_snapshot: s.snapshot_keep_logs,
            ..Default::default()
        },
        tls,
        head_secrets: Some(s.data_dir.join(crate::auth::encryption::KEY_FILE)),
        on_head_secrets: Some(on_head_secrets),
    })
    .await?;
    if !s.fsync {
        tracing::error!("UNSAFE: --unsafe-no-fsync is set; acknowledged writes can be lost on a crash");
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::default());
    let mut store = ObjectStore::new(node.clone(), clock.clone(), metrics.clone(), codec).with_service_ranges(s.service_ranges.clone());
    if s.stale_reads {
        tracing::error!("UNSAFE: --unsafe-stale-reads is set; reads are not linearizable");
        store.skip_read_barrier();
    }
    let authz = crate::auth::authorizer::Local::start(store.clone());
    let tokens = auth::bearer::Local::new(store.clone());
    let app = AppState { store: store.clone(), metrics, heartbeat_grace: s.node_heartbeat * 3, authz: authz.clone(), tokens: tokens.clone() };
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(s.bind, s.api_port))
        .await
        .with_context(|| format!("binding the API port {}", s.api_port))?;

    if !state.member {
        if state.seeds == [state.api_addr.clone()] {
            let founding = join::load_founding(&s.data_dir)?;
            node.initialize(member.clone(), serde_json::to_vec(&founding.ca)?, &founding.secret, &founding.worker_secret).await?;
            create_initial_namespaces(&store).await?;
            let token_path = s.data_dir.join(join::TOKEN_FILE);
            tracing::info!(token_file = %token_path.display(), "cluster created; join other nodes with the token in the token file");
        } else {
            add_self(&node, &state, member.clone(), &client).await?;
        }
        state.member = true;
        state.save(&s.data_dir)?;
    }

    let api_base = format!("https://{}", state.api_addr);
    let proxy = service_roles::start(&s, &state.name, &client, &api_base)?;
    let images = start_kubelet(&s, &state, &client, &node_tls.ca_pem);
    tokio::spawn(heartbeat::run(client.clone(), api_base, identity(&state, &s, proxy.clone(), images), s.node_heartbeat, clock));
    tokio::spawn(crate::control::run(store.clone(), control_config(&s)));
    tokio::spawn(ensure_default_policy(store.clone(), authz.clone()));
    tokio::spawn(ensure_signing_key(node.clone()));
    let router = api::router(app).merge(node_api::router(node_api(&s, &state, proxy, &client, Authorize::Local(authz.clone()))));
    tracing::info!(api = %state.api_addr, "serving the API");
    let verifier = auth::listener::client_verifier(&node_tls.ca_pem)?;
    let gate = Gate { authz: Some(authz), tokens: auth::bearer::Tokens::Local(tokens), audit: audit_log(&s)?, verifier };
    serve(listener, &node_tls, router, gate).await?;
    node.shutdown().await;
    Ok(())
}

/// Ask the cluster (through any known head) to add this head as a learner, then a voter.
async fn add_self(node: &RaftNode, state: &NodeState, member: Member, client: &ApiClient) -> anyhow::Result<()> {
    let req = AddHead { id: state.id, member };
    let mut last = String::new();
    for attempt in 0..60 {
        for addr in join::head_raft_addrs(client, &state.seeds).await {
            match node.add_head_via(&addr, &req).await {
                Ok(()) => {
                    tracing::info!("joined the Raft group as a voter");
                    return Ok(());
                }
                Err(e) => last = e,
            }
        }
        tracing::warn!(attempt, error = %last, "could not join the Raft group yet");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("could not join the Raft group: {last}")
}

/// Create the default roles and bindings that are missing (as Kubernetes' API server does
/// at every start; existing ones, maybe changed by the operator, are left as they are).
/// Retried until a quorum takes the writes.
async fn ensure_default_policy(store: ObjectStore, authz: Arc<crate::auth::authorizer::Local>) {
    let bindings: Vec<String> = crate::auth::bootstrap::cluster_role_bindings()
        .iter()
        .filter_map(|b| b["metadata"]["name"].as_str().map(String::from))
        .collect();
    let objects = crate::auth::bootstrap::cluster_roles().into_iter().map(|o| ("clusterroles", o))
        .chain(crate::auth::bootstrap::cluster_role_bindings().into_iter().map(|o| ("clusterrolebindings", o)));
    for (plural, obj) in objects {
        let res = api::resources::by_plural("rbac.authorization.k8s.io", plural).expect("the RBAC kinds are registered");
        let obj = match res.validate(obj) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "a default RBAC object is invalid");
                continue;
            }
        };
        loop {
            match store.create(res, None, obj.clone()).await {
                Ok(_) => break,
                Err(e) if e.code == 409 => break,
                Err(e) => {
                    tracing::debug!(error = %e, "creating the default policy; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    authz.mark_bootstrapped(&bindings).await;
}

/// Make the cluster's ServiceAccount signing key if no head has yet (the first write wins;
/// it lives in the replicated store beside the CA). Retried until a quorum takes it.
async fn ensure_signing_key(node: RaftNode) {
    use orch_raft::{Command, Condition, Op, Txn};
    let key = auth::tokens::KEY_SIGNING;
    loop {
        if node.reader().get(key).ok().flatten().is_some() {
            return;
        }
        let value = match auth::tokens::SigningKey::generate().map_err(|e| e.to_string()).and_then(|k| serde_json::to_vec(&k).map_err(|e| e.to_string())) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "making the service-account key");
                return;
            }
        };
        let txn = Txn { conditions: vec![Condition::ModRevision { key: key.into(), revision: 0 }], ops: vec![Op::Put { key: key.into(), value }] };
        match node.propose(Command { request_id: None, fence_term: None, txn }).await {
            Ok(_) => return,
            Err(e) => tracing::debug!(error = %e, "storing the service-account key; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn create_initial_namespaces(store: &ObjectStore) -> anyhow::Result<()> {
    let namespaces = api::resources::lookup("namespaces").expect("namespaces are registered");
    for ns in INITIAL_NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match store.create(namespaces, None, obj).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => bail!("creating namespace {ns}: {e}"),
        }
    }
    Ok(())
}

fn identity(state: &NodeState, s: &Settings, proxy: Option<crate::services::proxy::SharedStatus>, images: Option<SharedImages>) -> heartbeat::Identity {
    heartbeat::Identity {
        name: state.name.clone(),
        role: state.role,
        address: s.advertise.to_string(),
        api_addr: state.api_addr.clone(),
        resources: s.kubelet.then(|| heartbeat::Resources::of_host(s.max_pods)),
        proxy,
        images,
    }
}

async fn run_worker(s: Settings, state: NodeState) -> anyhow::Result<()> {
    let node_tls = join::load_tls(&s.data_dir)?;
    let client = ApiClient::new(Duration::from_secs(30), &Tls::for_node(&node_tls)?);
    let proxy = crate::proxy::Proxy::new(state.seeds.clone(), client.clone());
    tokio::spawn(proxy.clone().refresh_forever());
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(s.bind, s.api_port))
        .await
        .with_context(|| format!("binding the API port {}", s.api_port))?;
    let api_base = format!("https://{}", state.api_addr);
    let service_proxy = service_roles::start(&s, &state.name, &client, &api_base)?;
    let images = start_kubelet(&s, &state, &client, &node_tls.ca_pem);
    tokio::spawn(heartbeat::run(client.clone(), api_base.clone(), identity(&state, &s, service_proxy.clone(), images), s.node_heartbeat, Arc::new(SystemClock)));
    tracing::info!(api = %state.api_addr, heads = ?state.seeds, "serving the API (forwarding to heads)");
    let authz = Authorize::Remote(crate::auth::authorizer::Remote::new(client.clone(), &api_base));
    let router = crate::proxy::router(proxy).merge(node_api::router(node_api(&s, &state, service_proxy, &client, authz)));
    let tokens = auth::bearer::Tokens::Remote(auth::bearer::Remote::new(client.clone(), &api_base));
    let verifier = auth::listener::client_verifier(&node_tls.ca_pem)?;
    serve(listener, &node_tls, router, Gate { authz: None, tokens, audit: audit_log(&s)?, verifier }).await?;
    Ok(())
}

fn node_api(s: &Settings, state: &NodeState, proxy: Option<crate::services::proxy::SharedStatus>, client: &ApiClient, authz: Authorize) -> node_api::NodeApi {
    let dirs = (s.containerd_socket.clone(), s.data_dir.join("kubelet"), s.run_dir.clone());
    let api = node_api::NodeApi::new(&state.name, &format!("https://{}", state.api_addr), client, authz, dirs);
    node_api::NodeApi { proxy, ..api }
}

/// One malloc arena, not glibc's eight per core: with one, an idle worker held
/// 11.0 instead of 15.4 MiB of anonymous memory (docs/benchmarks/pod-startup.md). Called
/// before any thread starts, as arenas are made when threads first allocate.
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt only changes the allocator's tuning.
    unsafe { nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1) };
}

/// Give memory the allocator holds but no longer uses back to the kernel, every 30 s.
/// glibc keeps freed memory in its arenas; after a burst of 30 pod starts an idle worker
/// held about 20 MB of it (docs/benchmarks/pod-startup.md).
async fn trim_heap() {
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        // SAFETY: malloc_trim only returns free pages of the allocator's own arenas.
        unsafe { nix::libc::malloc_trim(0) };
    }
}

/// Warn when the async runtime runs no timer for over a second: a task is blocking a worker
/// thread, and everything else on the node (API, DNS, heartbeats) is waiting.
async fn report_stalls() {
    let mut last = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let gap = last.elapsed();
        if gap > Duration::from_secs(1) {
            tracing::warn!(ms = gap.as_millis() as u64, "the async runtime stalled: a task blocked a worker thread");
        }
        last = std::time::Instant::now();
    }
}

fn control_config(s: &Settings) -> crate::control::ControlConfig {
    crate::control::ControlConfig {
        cluster_cidr: s.cluster_cidr,
        node_cidr_prefix: s.node_cidr_prefix,
        resync: Duration::from_secs(10),
        node_monitor_grace: s.node_monitor_grace,
        pod_eviction_timeout: s.pod_eviction_timeout,
        kubernetes_ip: crate::api::service::kubernetes_cluster_ip(&s.service_ranges),
    }
}

/// The kubelet role: connect to containerd (retrying until it is there), then run pods.
/// Returns the node's image list as the kubelet keeps it (for the heartbeat).
fn start_kubelet(s: &Settings, state: &NodeState, client: &ApiClient, ca_pem: &str) -> Option<SharedImages> {
    use crate::kubelet::{containerd::ContainerdRuntime, network::NetlinkNetwork, plan::Backoff, registry::OciRegistry, sync};
    if !s.kubelet {
        tracing::info!("--no-kubelet: this node runs no pods");
        return None;
    }
    let cfg = sync::KubeletConfig {
        node_name: state.name.clone(),
        node_ip: s.advertise.to_string(),
        api_base: format!("https://{}", state.api_addr),
        api_client: client.clone(),
        kubernetes_ip: crate::api::service::kubernetes_cluster_ip(&s.service_ranges),
        ca_pem: ca_pem.to_string(),
        data_dir: s.data_dir.join("kubelet"),
        run_dir: s.run_dir.clone(),
        cgroup_parent: s.cgroup_parent.clone(),
        cluster_cidr: s.cluster_cidr,
        backoff: Backoff { base: s.restart_backoff, ..Backoff::default() },
        resync: Duration::from_secs(2),
        log_max_bytes: s.container_log_max_bytes,
        log_files: 5,
    };
    let socket = s.containerd_socket.clone();
    let registry = OciRegistry::new(s.insecure_registries.clone());
    let images = SharedImages::default();
    let report = images.clone();
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(1);
        let runtime = loop {
            match ContainerdRuntime::connect(&socket).await {
                Ok(r) => break r,
                Err(e) => tracing::warn!(error = %e, "kubelet: containerd is not reachable yet"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        };
        let kubelet = NetlinkNetwork::new(&cfg.run_dir)
            .map_err(anyhow::Error::from)
            .and_then(|net| sync::Kubelet::new(cfg, runtime, net, registry, report).map_err(anyhow::Error::from));
        match kubelet {
            Ok(k) => {
                tracing::info!(socket = %socket.display(), "kubelet running");
                k.run().await
            }
            Err(e) => tracing::error!(error = %e, "kubelet could not start"),
        }
    });
    Some(images)
}

/// How long open connections (watches, log follows, exec sessions) may run on after
/// SIGTERM before they are cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Serve the API over HTTPS until SIGTERM/SIGINT: then stop accepting, let requests in
/// flight finish, and cut long-lived streams after `SHUTDOWN_GRACE` (they would otherwise
/// hold the process forever). Every request is authenticated first (`auth::middleware`).
async fn serve(
    listener: tokio::net::TcpListener,
    tls: &orch_raft::tls::NodeTls,
    router: axum::Router,
    gate: Gate,
) -> anyhow::Result<()> {
    let listener = TlsListener::new(listener, auth::listener::server_config(tls, gate.verifier.clone())?)?;
    let app = router.layer(axum::middleware::from_fn_with_state(gate, auth::middleware)).into_make_service_with_connect_info::<Peer>();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(true);
    });
    let stopping = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(stopping(rx.clone()));
    tokio::select! {
        r = std::future::IntoFuture::into_future(server) => r?,
        _ = async { stopping(rx).await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::info!("closing the connections still open");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutting down");
}
