//! `ContainerRuntime` over containerd's gRPC API (containerd-client), in a containerd
//! namespace of orch's own. containerd 1.6 has no Transfer service, so images are
//! imported the long way: blobs into the content store, an image record, then each layer
//! applied onto an overlayfs snapshot named by its chain id.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use containerd_client::services::v1::snapshots::{CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest};
use containerd_client::services::v1::{
    container::Runtime, ApplyRequest, Container, CreateContainerRequest, CreateImageRequest, CreateNamespaceRequest,
    CreateTaskRequest, DeleteContainerRequest, DeleteTaskRequest, GetContainerRequest, GetImageRequest, GetRequest,
    Image, InfoRequest, KillRequest, ListContainersRequest, Namespace, StartRequest, WriteAction, WriteContentRequest,
};
use containerd_client::types::Descriptor;
use containerd_client::Client;
use containerd_client::tonic::{Code, Request, Status};

use super::image::{chain_ids, Archive};
use super::oci;
use super::runtime::{ContainerConfig, ContainerInfo, ExecIo, ImageConfig, ImageInfo, LocalImage, ContainerRuntime, ContainerState, RuntimeError};

/// The containerd namespace orch's containers and images live in.
pub const NAMESPACE: &str = "orch";
const SNAPSHOTTER: &str = "overlayfs";
const RUNTIME: &str = "io.containerd.runc.v2";
const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

#[derive(Clone)]
pub struct ContainerdRuntime {
    client: std::sync::Arc<Client>,
    /// Image configs by manifest digest.
    configs: std::sync::Arc<std::sync::Mutex<HashMap<String, serde_json::Value>>>,
    /// Image sizes by manifest digest.
    sizes: std::sync::Arc<std::sync::Mutex<HashMap<String, i64>>>,
    /// Where exec'd processes' FIFOs live: beside containerd's socket (as containerd keeps
    /// its own FIFOs under its run directory), so each node's are its own.
    fifo_root: PathBuf,
}

fn req<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("containerd-namespace", NAMESPACE.parse().expect("a valid header value"));
    r
}

fn rt(e: Status) -> RuntimeError {
    RuntimeError::Runtime(format!("{:?}: {}", e.code(), e.message()))
}

fn descriptor(d: &super::image::Descriptor) -> Descriptor {
    Descriptor { media_type: d.media_type.clone(), digest: d.digest.clone(), size: d.size, annotations: Default::default() }
}

impl ContainerdRuntime {
    /// Connect to containerd's socket and make sure orch's namespace exists.
    pub async fn connect(socket: &Path) -> Result<Self, RuntimeError> {
        let client = tokio::time::timeout(Duration::from_secs(10), Client::from_path(socket))
            .await
            .map_err(|_| RuntimeError::Runtime(format!("timed out connecting to containerd at {}", socket.display())))?
            .map_err(|e| RuntimeError::Runtime(format!("connecting to containerd at {}: {e}", socket.display())))?;
        let ns = Namespace { name: NAMESPACE.into(), labels: Default::default() };
        match client.namespaces().create(req(CreateNamespaceRequest { namespace: Some(ns) })).await {
            Ok(_) => {}
            Err(e) if e.code() == Code::AlreadyExists => {}
            Err(e) => return Err(rt(e)),
        }
        let fifo_root = socket.parent().unwrap_or(Path::new("/run")).join("orch-exec");
        Ok(ContainerdRuntime { client: std::sync::Arc::new(client), configs: Default::default(), sizes: Default::default(), fifo_root })
    }

    async fn has_blob(&self, digest: &str) -> Result<bool, RuntimeError> {
        match self.client.content().info(req(InfoRequest { digest: digest.into() })).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Code::NotFound => Ok(false),
            Err(e) => Err(rt(e)),
        }
    }

    /// Write one blob into the content store (WRITE then COMMIT on one stream).
    async fn write_blob(&self, digest: &str, data: &[u8], labels: HashMap<String, String>) -> Result<(), RuntimeError> {
        if self.has_blob(digest).await? {
            return Ok(());
        }
        let reference = format!("orch-import-{digest}");
        let total = data.len() as i64;
        let mut msgs = Vec::new();
        for (i, chunk) in data.chunks(1 << 20).enumerate() {
            msgs.push(WriteContentRequest {
                action: WriteAction::Write as i32,
                r#ref: reference.clone(),
                total,
                expected: digest.into(),
                offset: (i << 20) as i64,
                data: chunk.to_vec(),
                labels: Default::default(),
            });
        }
        msgs.push(WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: reference,
            total,
            expected: digest.into(),
            offset: total,
            data: vec![],
            labels,
        });
        let mut responses = self.client.content().write(req(tokio_stream::iter(msgs))).await.map_err(rt)?.into_inner();
        loop {
            match responses.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(e) if e.code() == Code::AlreadyExists => return Ok(()),
                Err(e) => return Err(rt(e)),
            }
        }
    }

    async fn snapshot_exists(&self, key: &str) -> Result<bool, RuntimeError> {
        let r = StatSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key: key.into() };
        match self.client.snapshots().stat(req(r)).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Code::NotFound => Ok(false),
            Err(e) => Err(rt(e)),
        }
    }

    /// Apply the image's layers onto snapshots named by chain id; returns the top one.
    async fn unpack(&self, layers: &[super::image::Descriptor], diff_ids: &[String]) -> Result<String, RuntimeError> {
        let chain = chain_ids(diff_ids);
        let mut parent = String::new();
        for (layer, id) in layers.iter().zip(&chain) {
            if !self.snapshot_exists(id).await? {
                let key = format!("orch-extract-{}-{id}", rand::random::<u32>());
                let prepared = self
                    .client
                    .snapshots()
                    .prepare(req(PrepareSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key: key.clone(), parent: parent.clone(), labels: Default::default() }))
                    .await
                    .map_err(rt)?
                    .into_inner();
                let applied = self
                    .client
                    .diff()
                    .apply(req(ApplyRequest { diff: Some(descriptor(layer)), mounts: prepared.mounts, payloads: Default::default(), sync_fs: false }))
                    .await;
                if let Err(e) = applied {
                    let _ = self.client.snapshots().remove(req(RemoveSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key })).await;
                    return Err(rt(e));
                }
                let commit = CommitSnapshotRequest { snapshotter: SNAPSHOTTER.into(), name: id.clone(), key, labels: Default::default() };
                match self.client.snapshots().commit(req(commit)).await {
                    Ok(_) => {}
                    Err(e) if e.code() == Code::AlreadyExists => {}
                    Err(e) => return Err(rt(e)),
                }
            }
            parent = id.clone();
        }
        Ok(parent)
    }

    /// What image record `name` points at (its manifest), if there is one.
    async fn image_target(&self, name: &str) -> Result<Option<Descriptor>, RuntimeError> {
        match self.client.images().get(req(GetImageRequest { name: name.into() })).await {
            Ok(r) => Ok(r.into_inner().image.and_then(|i| i.target)),
            Err(e) if e.code() == Code::NotFound => Ok(None),
            Err(e) => Err(rt(e)),
        }
    }

    /// A manifest from the content store, parsed.
    async fn manifest(&self, name: &str, digest: &str) -> Result<serde_json::Value, RuntimeError> {
        serde_json::from_slice(&self.read_blob(digest).await?).map_err(|e| RuntimeError::Runtime(format!("manifest of {name}: {e}")))
    }

    /// The config document (OCI image config) of the image whose manifest is `target`.
    async fn image_config_json(&self, name: &str, target: &Descriptor) -> Result<serde_json::Value, RuntimeError> {
        // Content is addressed by digest, so a config read once per manifest stays true.
        if let Some(config) = self.configs.lock().expect("config cache lock").get(&target.digest) {
            return Ok(config.clone());
        }
        let manifest = self.manifest(name, &target.digest).await?;
        let config_digest = manifest["config"]["digest"].as_str().unwrap_or_default().to_string();
        let config: serde_json::Value =
            serde_json::from_slice(&self.read_blob(&config_digest).await?).map_err(|e| RuntimeError::Runtime(format!("config of {name}: {e}")))?;
        self.configs.lock().expect("config cache lock").insert(target.digest.clone(), config.clone());
        Ok(config)
    }

    async fn read_blob(&self, digest: &str) -> Result<Vec<u8>, RuntimeError> {
        use containerd_client::services::v1::ReadContentRequest;
        let mut stream = self
            .client
            .content()
            .read(req(ReadContentRequest { digest: digest.into(), offset: 0, size: 0 }))
            .await
            .map_err(rt)?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(rt)? {
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    async fn list_filtered(&self, filters: Vec<String>) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let all = self.client.containers().list(req(ListContainersRequest { filters })).await.map_err(rt)?.into_inner().containers;
        let mut out = Vec::with_capacity(all.len());
        for c in all {
            out.push(self.describe(c).await?);
        }
        Ok(out)
    }

    /// The task's state and, once it exited, when.
    async fn task_state(&self, id: &str) -> Result<(ContainerState, Option<SystemTime>), RuntimeError> {
        match self.client.tasks().get(req(GetRequest { container_id: id.into(), exec_id: String::new() })).await {
            Ok(r) => Ok(process_state(&r.into_inner().process.unwrap_or_default())),
            Err(e) if e.code() == Code::NotFound => Ok((ContainerState::Created, None)),
            Err(e) => Err(rt(e)),
        }
    }

    async fn describe(&self, c: Container) -> Result<ContainerInfo, RuntimeError> {
        let (state, exited_at) = self.task_state(&c.id).await?;
        Ok(describe_as(c, state, exited_at))
    }
}

/// A task's state from its process as containerd reports it, and when it exited.
fn process_state(p: &containerd_client::types::v1::Process) -> (ContainerState, Option<SystemTime>) {
    match p.status {
        1 => (ContainerState::Created, None),
        2 | 4 | 5 => (ContainerState::Running { pid: p.pid }, None),
        3 => (ContainerState::Exited { code: p.exit_status }, p.exited_at.and_then(time)),
        _ => (ContainerState::Unknown, None),
    }
}

fn describe_as(c: Container, state: ContainerState, exited_at: Option<SystemTime>) -> ContainerInfo {
    let labels: BTreeMap<String, String> = c.labels.into_iter().collect();
    let oom_killed = matches!(state, ContainerState::Exited { .. }) && labels.get(CGROUP_LABEL).is_some_and(|cg| oom_kills(cg) > 0);
    ContainerInfo { id: c.id, image: c.image, state, labels, created_at: c.created_at.and_then(time), exited_at, oom_killed }
}

/// The label holding a container's cgroup path (to read its OOM count after it exits).
pub const CGROUP_LABEL: &str = "orch.dev/cgroup";

fn time(t: prost_types::Timestamp) -> Option<SystemTime> {
    (t.seconds > 0).then(|| SystemTime::UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos.max(0) as u32))
}

/// OOM kills counted by a cgroup v1 memory controller (`oom_kill` in memory.oom_control);
/// the cgroup lives until the task is deleted, so an exited container can still be asked.
fn oom_kills(cgroup: &str) -> u64 {
    let path = format!("/sys/fs/cgroup/memory/{}/memory.oom_control", cgroup.trim_start_matches('/'));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse().ok())))
        .unwrap_or(0)
}

fn log_uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

impl ContainerRuntime for ContainerdRuntime {
    async fn exec(&self, id: &str, exec_id: &str, args: &[String], stdin: bool, tty: bool) -> Result<ExecIo, RuntimeError> {
        use containerd_client::services::v1::ExecProcessRequest;
        let container = match self.client.containers().get(req(GetContainerRequest { id: id.into() })).await {
            Ok(r) => r.into_inner().container.ok_or_else(|| RuntimeError::NotFound(id.into()))?,
            Err(e) if e.code() == Code::NotFound => return Err(RuntimeError::NotFound(id.into())),
            Err(e) => return Err(rt(e)),
        };
        let spec: serde_json::Value = serde_json::from_slice(&container.spec.map(|s| s.value).unwrap_or_default())
            .map_err(|e| RuntimeError::Runtime(format!("spec of {id}: {e}")))?;
        let mut process = spec["process"].clone();
        process["args"] = serde_json::json!(args);
        process["terminal"] = tty.into();
        if tty {
            // As container runtimes do for terminals: a TERM unless the container sets one.
            let env = process["env"].as_array_mut();
            if let Some(env) = env.filter(|e| !e.iter().any(|v| v.as_str().is_some_and(|v| v.starts_with("TERM=")))) {
                env.push("TERM=xterm".into());
            }
        }
        let dir = self.fifo_root.join(exec_id);
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::Runtime(format!("exec fifos: {e}")))?;
        // However this ends, cancelled too (a probe's timeout drops it): no FIFO left behind,
        // no thread left waiting to open one.
        let fifos = Fifos(dir.clone());
        // With a terminal the shim copies the console to stdout alone: no stderr FIFO.
        for name in ["stdin", "stdout", "stderr"].into_iter().filter(|n| !(tty && *n == "stderr")) {
            nix::unistd::mkfifo(&dir.join(name), nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| RuntimeError::Runtime(format!("mkfifo: {e}")))?;
        }
        let stdout = tokio::spawn(open_fifo(dir.join("stdout"), false));
        let stderr = (!tty).then(|| tokio::spawn(open_fifo(dir.join("stderr"), false)));
        let stdin_file = stdin.then(|| tokio::spawn(open_fifo(dir.join("stdin"), true)));
        let path = |n: &str| dir.join(n).display().to_string();
        let request = ExecProcessRequest {
            container_id: id.into(),
            stdin: if stdin { path("stdin") } else { String::new() },
            stdout: path("stdout"),
            stderr: if tty { String::new() } else { path("stderr") },
            terminal: tty,
            spec: Some(prost_types::Any { type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(), value: serde_json::to_vec(&process).unwrap_or_default() }),
            exec_id: exec_id.into(),
        };
        let started = async {
            self.client.tasks().exec(req(request)).await.map_err(rt)?;
            self.client.tasks().start(req(StartRequest { container_id: id.into(), exec_id: exec_id.into() })).await.map_err(rt)?;
            Ok::<_, RuntimeError>(())
        }
        .await;
        if let Err(e) = started {
            release_fifos(&dir);
            return Err(e);
        }
        let fifo = |r: Result<std::io::Result<std::fs::File>, tokio::task::JoinError>| {
            r.map_err(|e| RuntimeError::Runtime(e.to_string()))?.map_err(|e| RuntimeError::Runtime(format!("exec fifo: {e}")))
        };
        let receiver = |f: std::fs::File| tokio::net::unix::pipe::Receiver::from_file(f).map_err(|e| RuntimeError::Runtime(e.to_string()));
        let opened = async {
            let stdout = receiver(fifo(stdout.await)?)?;
            let stderr = match stderr {
                Some(f) => Some(receiver(fifo(f.await)?)?),
                None => None,
            };
            let stdin = match stdin_file {
                Some(f) => Some(tokio::net::unix::pipe::Sender::from_file(fifo(f.await)?).map_err(|e| RuntimeError::Runtime(e.to_string()))?),
                None => None,
            };
            Ok::<_, RuntimeError>(ExecIo { stdin, stdout, stderr })
        };
        // The shim opens its ends when the process starts; if it never does, opening both
        // ends ourselves frees the threads waiting on them.
        let io = match tokio::time::timeout(FIFO_OPEN_LIMIT, opened).await {
            Ok(io) => io,
            Err(_) => {
                release_fifos(&dir);
                let _ = self.exec_signal(id, exec_id, 9).await;
                Err(RuntimeError::Runtime(format!("exec {exec_id}: the shim did not open its stdio within {FIFO_OPEN_LIMIT:?}")))
            }
        };
        // Every end is open (or given up): the names can go.
        drop(fifos);
        io
    }

    async fn exec_wait(&self, id: &str, exec_id: &str) -> Result<u32, RuntimeError> {
        use containerd_client::services::v1::{DeleteProcessRequest, WaitRequest};
        let code = self.client.tasks().wait(req(WaitRequest { container_id: id.into(), exec_id: exec_id.into() })).await.map_err(rt)?.into_inner().exit_status;
        match self.client.tasks().delete_process(req(DeleteProcessRequest { container_id: id.into(), exec_id: exec_id.into() })).await {
            Ok(_) => {}
            Err(e) if e.code() == Code::NotFound => {}
            Err(e) => return Err(rt(e)),
        }
        Ok(code)
    }

    async fn exec_resize(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<(), RuntimeError> {
        use containerd_client::services::v1::ResizePtyRequest;
        let r = ResizePtyRequest { container_id: id.into(), exec_id: exec_id.into(), width, height };
        self.client.tasks().resize_pty(req(r)).await.map_err(rt)?;
        Ok(())
    }

    async fn exec_close_stdin(&self, id: &str, exec_id: &str) -> Result<(), RuntimeError> {
        use containerd_client::services::v1::CloseIoRequest;
        self.client.tasks().close_io(req(CloseIoRequest { container_id: id.into(), exec_id: exec_id.into(), stdin: true })).await.map_err(rt)?;
        Ok(())
    }

    async fn exec_signal(&self, id: &str, exec_id: &str, signal: u32) -> Result<(), RuntimeError> {
        let kill = KillRequest { container_id: id.into(), exec_id: exec_id.into(), signal, all: false };
        match self.client.tasks().kill(req(kill)).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Code::NotFound => Err(RuntimeError::NotFound(id.into())),
            Err(e) => Err(rt(e)),
        }
    }

    async fn import(&self, parsed: &Archive) -> Result<Vec<String>, RuntimeError> {
        let mut names = Vec::new();
        for img in &parsed.images {
            let top = chain_ids(&img.diff_ids).last().cloned().unwrap_or_default();
            for layer in &img.layers {
                self.write_blob(&layer.digest, &parsed.blobs[&layer.digest], HashMap::new()).await?;
            }
            // Garbage-collection references, so containerd keeps what the image needs.
            let config_labels = HashMap::from([(format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"), top.clone())]);
            self.write_blob(&img.config.digest, &parsed.blobs[&img.config.digest], config_labels).await?;
            let mut manifest_labels = HashMap::from([("containerd.io/gc.ref.content.config".to_string(), img.config.digest.clone())]);
            for (i, layer) in img.layers.iter().enumerate() {
                manifest_labels.insert(format!("containerd.io/gc.ref.content.l.{i}"), layer.digest.clone());
            }
            self.write_blob(&img.target.digest, &parsed.blobs[&img.target.digest], manifest_labels).await?;
            self.unpack(&img.layers, &img.diff_ids).await?;
            let image = Image { name: img.name.clone(), labels: Default::default(), target: Some(descriptor(&img.target)), created_at: None, updated_at: None };
            let created = self.client.images().create(req(CreateImageRequest { image: Some(image.clone()), source_date_epoch: None })).await;
            match created {
                Ok(_) => {}
                Err(e) if e.code() == Code::AlreadyExists => {
                    use containerd_client::services::v1::UpdateImageRequest;
                    self.client.images().update(req(UpdateImageRequest { image: Some(image), update_mask: None, source_date_epoch: None })).await.map_err(rt)?;
                }
                Err(e) => return Err(rt(e)),
            }
            names.push(img.name.clone());
        }
        Ok(names)
    }

    async fn image(&self, name: &str) -> Result<Option<LocalImage>, RuntimeError> {
        let Some(target) = self.image_target(name).await? else { return Ok(None) };
        let config = self.image_config_json(name, &target).await?;
        let diff_ids: Vec<String> =
            config["rootfs"]["diff_ids"].as_array().into_iter().flatten().filter_map(|d| d.as_str().map(String::from)).collect();
        let top = chain_ids(&diff_ids).pop().ok_or_else(|| RuntimeError::Runtime(format!("{name} has no layers")))?;
        if !self.snapshot_exists(&top).await? {
            return Ok(None);
        }
        Ok(Some(LocalImage { digest: target.digest, config: ImageConfig::from_oci(&config), top }))
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        use containerd_client::services::v1::ListImagesRequest;
        let images = self.client.images().list(req(ListImagesRequest { filters: vec![] })).await.map_err(rt)?.into_inner().images;
        let mut out = Vec::with_capacity(images.len());
        for image in images {
            let Some(target) = image.target else { continue };
            let cached = self.sizes.lock().expect("size cache lock").get(&target.digest).copied();
            let size = match cached {
                Some(size) => size,
                None => {
                    let m = self.manifest(&image.name, &target.digest).await?;
                    let parts = m["layers"].as_array().into_iter().flatten().chain([&m["config"]]);
                    let size = target.size + parts.filter_map(|d| d["size"].as_i64()).sum::<i64>();
                    self.sizes.lock().expect("size cache lock").insert(target.digest.clone(), size);
                    size
                }
            };
            out.push(ImageInfo { name: image.name, digest: target.digest, size });
        }
        Ok(out)
    }

    async fn run(&self, c: &ContainerConfig) -> Result<(), RuntimeError> {
        let top = match &c.rootfs_parent {
            Some(top) => top.clone(),
            None => self.image(&c.image).await?.ok_or_else(|| RuntimeError::ImageNotFound(c.image.clone()))?.top,
        };
        if let Some(dir) = c.log_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| RuntimeError::Runtime(format!("log dir: {e}")))?;
        }
        let spec = serde_json::to_vec(&oci::spec(c)).map_err(|e| RuntimeError::Runtime(e.to_string()))?;
        let mut labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
        labels.insert(CGROUP_LABEL.into(), c.cgroup.clone());
        let container = Container {
            id: c.id.clone(),
            labels,
            image: c.image.clone(),
            runtime: Some(Runtime { name: RUNTIME.into(), options: None }),
            spec: Some(prost_types::Any { type_url: SPEC_TYPE.into(), value: spec }),
            snapshotter: SNAPSHOTTER.into(),
            snapshot_key: c.id.clone(),
            ..Default::default()
        };
        let mounts = self
            .client
            .snapshots()
            .prepare(req(PrepareSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key: c.id.clone(), parent: top, labels: Default::default() }))
            .await
            .map_err(rt)?
            .into_inner()
            .mounts;
        if let Err(e) = self.client.containers().create(req(CreateContainerRequest { container: Some(container) })).await {
            let _ = self.client.snapshots().remove(req(RemoveSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key: c.id.clone() })).await;
            return Err(rt(e));
        }
        let task = CreateTaskRequest {
            container_id: c.id.clone(),
            rootfs: mounts,
            stdout: log_uri(&c.log_path),
            stderr: log_uri(&c.log_path),
            ..Default::default()
        };
        let started = async {
            self.client.tasks().create(req(task)).await.map_err(rt)?;
            self.client.tasks().start(req(StartRequest { container_id: c.id.clone(), exec_id: String::new() })).await.map_err(rt)?;
            Ok(())
        }
        .await;
        if started.is_err() {
            // Leave nothing half-made: a container without a task would look "created"
            // forever; removed, the next attempt starts clean.
            if let Err(e) = self.remove(&c.id).await {
                tracing::warn!(id = %c.id, error = %e, "removing a container that failed to start");
            }
        }
        started
    }

    async fn info(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let container = match self.client.containers().get(req(GetContainerRequest { id: id.into() })).await {
            Ok(r) => r.into_inner().container.ok_or_else(|| RuntimeError::NotFound(id.into()))?,
            Err(e) if e.code() == Code::NotFound => return Err(RuntimeError::NotFound(id.into())),
            Err(e) => return Err(rt(e)),
        };
        self.describe(container).await
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        // Two calls for the whole node, however many containers: the containers, then every
        // task's state (containerd asks each shim; a container without a task is created).
        use containerd_client::services::v1::ListTasksRequest;
        let all = self.client.containers().list(req(ListContainersRequest { filters: vec![] })).await.map_err(rt)?.into_inner().containers;
        let tasks = self.client.tasks().list(req(ListTasksRequest { filter: String::new() })).await.map_err(rt)?.into_inner().tasks;
        // A task's process is named by its container's id (`id`; `container_id` is unset
        // in containerd 1.6's answer).
        let owner = |p: &containerd_client::types::v1::Process| if p.container_id.is_empty() { p.id.clone() } else { p.container_id.clone() };
        let states: HashMap<String, (ContainerState, Option<SystemTime>)> = tasks.iter().map(|p| (owner(p), process_state(p))).collect();
        Ok(all
            .into_iter()
            .map(|c| {
                let (state, exited_at) = states.get(&c.id).copied().unwrap_or((ContainerState::Created, None));
                describe_as(c, state, exited_at)
            })
            .collect())
    }

    async fn list_labeled(&self, key: &str, value: &str) -> Result<Vec<ContainerInfo>, RuntimeError> {
        // containerd's filter syntax: labels."key"==value (quoted: our keys hold dots and slashes).
        self.list_filtered(vec![format!("labels.\"{key}\"=={value}")]).await
    }

    async fn label_values(&self, key: &str) -> Result<std::collections::BTreeSet<String>, RuntimeError> {
        let all = self.client.containers().list(req(ListContainersRequest { filters: vec![] })).await.map_err(rt)?.into_inner().containers;
        Ok(all.into_iter().filter_map(|mut c| c.labels.remove(key)).collect())
    }

    async fn signal(&self, id: &str, signal: u32) -> Result<(), RuntimeError> {
        match self.client.tasks().kill(req(KillRequest { container_id: id.into(), exec_id: String::new(), signal, all: true })).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Code::NotFound => Err(RuntimeError::NotFound(id.into())),
            Err(e) => Err(rt(e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        match self.client.tasks().delete(req(DeleteTaskRequest { container_id: id.into() })).await {
            Ok(_) => {}
            Err(e) if e.code() == Code::NotFound => {}
            Err(e) => return Err(rt(e)),
        }
        match self.client.containers().delete(req(DeleteContainerRequest { id: id.into() })).await {
            Ok(_) => {}
            Err(e) if e.code() == Code::NotFound => return Err(RuntimeError::NotFound(id.into())),
            Err(e) => return Err(rt(e)),
        }
        let snap = RemoveSnapshotRequest { snapshotter: SNAPSHOTTER.into(), key: id.into() };
        match self.client.snapshots().remove(req(snap)).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Code::NotFound => Ok(()),
            Err(e) => Err(rt(e)),
        }
    }
}

/// How long an exec'd process's stdio may take to be opened by the shim.
const FIFO_OPEN_LIMIT: Duration = Duration::from_secs(10);

/// Open one end of a FIFO, waiting (on a blocking thread) for the shim to open the other.
async fn open_fifo(path: PathBuf, write: bool) -> std::io::Result<std::fs::File> {
    tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().read(!write).write(write).open(path))
        .await
        .map_err(std::io::Error::other)?
}

/// An exec's FIFO directory, released (see `release_fifos`) when dropped.
struct Fifos(PathBuf);

impl Drop for Fifos {
    fn drop(&mut self) {
        release_fifos(&self.0);
    }
}

/// Release opens still waiting on FIFOs nobody will open (opening both ends ourselves), and
/// remove them. Harmless for FIFOs whose ends are already open.
fn release_fifos(dir: &Path) {
    for name in ["stdin", "stdout", "stderr"] {
        let _ = std::fs::OpenOptions::new().read(true).write(true).open(dir.join(name));
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Where a containerd for orch listens by default.
pub fn default_socket() -> PathBuf {
    PathBuf::from("/run/containerd/containerd.sock")
}
