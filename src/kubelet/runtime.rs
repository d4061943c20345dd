//! The container runtime as the kubelet sees it: a small trait (`ContainerRuntime`) with
//! the real implementation in `containerd.rs` and a typed fake here that records calls
//! and can be told to fail.

use std::future::Future;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use super::image::Archive;

/// What to run: one container of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerConfig {
    /// Unique runtime id (e.g. `<pod uid>-<container name>`).
    pub id: String,
    pub image: String,
    /// The snapshot the rootfs is prepared from (`LocalImage::top`), if the caller has
    /// just resolved the image; else the runtime looks it up.
    pub rootfs_parent: Option<String>,
    /// The full command line (entrypoint + args, already resolved).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub hostname: String,
    /// Join this network namespace (a path such as /var/run/netns/X); None: a new one.
    pub netns: Option<PathBuf>,
    /// Join this IPC namespace (the pod's, shared by its containers); None: a new one.
    pub ipcns: Option<PathBuf>,
    /// Bind mounts: (host path, container path, read-only).
    pub mounts: Vec<(PathBuf, String, bool)>,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
    /// CPU limit in millicores (quota) and request in millicores (shares).
    pub cpu_limit_millis: Option<i64>,
    pub cpu_request_millis: Option<i64>,
    /// cgroup path for the container (e.g. /orch/<pod uid>/<name>).
    pub cgroup: String,
    /// Where stdout and stderr go (a file the kubelet rotates and serves logs from).
    pub log_path: PathBuf,
    /// Labels kept on the container record (pod uid, container name, restart count...).
    pub labels: BTreeMap<String, String>,
    /// Containers of one group share one runtime shim process (the pod's containers, as
    /// the CRI plugin groups a sandbox's); None: a shim of its own.
    pub shim_group: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running { pid: u32 },
    Exited { code: u32 },
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub image: String,
    pub state: ContainerState,
    pub labels: BTreeMap<String, String>,
    pub created_at: Option<SystemTime>,
    pub exited_at: Option<SystemTime>,
    /// The kernel's OOM killer ended it (its memory cgroup counted an OOM kill).
    pub oom_killed: bool,
}

/// An image present and unpacked in the runtime's store, resolved once per container
/// start (every lookup is a round trip to the runtime).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalImage {
    /// The manifest digest.
    pub digest: String,
    pub config: ImageConfig,
    /// The snapshot of its top layer (containerd: the layers' chain id).
    pub top: String,
}

/// What an image says to run by default (its OCI config's `config` section).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
}

impl ImageConfig {
    pub fn from_oci(config: &serde_json::Value) -> Self {
        let strings = |v: &serde_json::Value| -> Vec<String> { v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect() };
        let c = &config["config"];
        ImageConfig {
            entrypoint: strings(&c["Entrypoint"]),
            cmd: strings(&c["Cmd"]),
            env: strings(&c["Env"]).into_iter().filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect(),
            working_dir: c["WorkingDir"].as_str().filter(|w| !w.is_empty()).map(String::from),
        }
    }

    /// The command line, as Kubernetes resolves it: `command` replaces the entrypoint (and
    /// drops the image's cmd), `args` replaces the cmd.
    pub fn argv(&self, command: &[String], args: &[String]) -> Vec<String> {
        let entry = if command.is_empty() { &self.entrypoint } else { command };
        let rest = if !args.is_empty() {
            args
        } else if command.is_empty() {
            &self.cmd
        } else {
            &[][..]
        };
        entry.iter().chain(rest).cloned().collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("image {0} is not present on this node")]
    ImageNotFound(String),
    #[error("container {0} not found")]
    NotFound(String),
    #[error("invalid image archive: {0}")]
    BadArchive(String),
    #[error("runtime: {0}")]
    Runtime(String),
}

/// An image in the runtime's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub name: String,
    pub digest: String,
    /// Manifest, config and layers as stored (compressed layers count compressed).
    pub size: i64,
}

/// The node's images as the kubelet last listed them (the heartbeat reports them).
pub type SharedImages = std::sync::Arc<Mutex<Vec<ImageInfo>>>;

/// The operations the kubelet needs from a container runtime. (Their futures are `Send`:
/// every pod is synced, and every probe run, on a task of its own.)
pub trait ContainerRuntime: Send + Sync {
    /// Store images whose blobs are at hand (an archive, or a registry pull); returns
    /// their names.
    fn import(&self, images: &Archive) -> impl Future<Output = Result<Vec<String>, RuntimeError>> + Send;
    /// Load every image in an OCI image-layout archive (tar); returns their names.
    fn import_image(&self, archive: &[u8]) -> impl Future<Output = Result<Vec<String>, RuntimeError>> + Send {
        async move { self.import(&super::image::parse_archive(archive)?).await }
    }
    fn has_image(&self, name: &str) -> impl Future<Output = Result<bool, RuntimeError>> + Send {
        async move { Ok(self.image(name).await?.is_some()) }
    }
    /// Image `name` if it is present and unpacked: digest, config, top snapshot.
    fn image(&self, name: &str) -> impl Future<Output = Result<Option<LocalImage>, RuntimeError>> + Send;
    /// The manifest digest of image `name` if it is present and unpacked.
    fn image_digest(&self, name: &str) -> impl Future<Output = Result<Option<String>, RuntimeError>> + Send {
        async move { Ok(self.image(name).await?.map(|i| i.digest)) }
    }
    /// Every image present: names, manifest digest, size (for the Node's status).
    fn list_images(&self) -> impl Future<Output = Result<Vec<ImageInfo>, RuntimeError>> + Send;
    /// Create and start a container.
    fn run(&self, config: &ContainerConfig) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn info(&self, id: &str) -> impl Future<Output = Result<ContainerInfo, RuntimeError>> + Send;
    fn list(&self) -> impl Future<Output = Result<Vec<ContainerInfo>, RuntimeError>> + Send;
    /// The containers labelled `key=value`.
    fn list_labeled(&self, key: &str, value: &str) -> impl Future<Output = Result<Vec<ContainerInfo>, RuntimeError>> + Send;
    /// The values label `key` has over every container (one call: no task is asked for its
    /// state, unlike `list`).
    fn label_values(&self, key: &str) -> impl Future<Output = Result<std::collections::BTreeSet<String>, RuntimeError>> + Send;
    /// Send `signal` to the container's processes.
    fn signal(&self, id: &str, signal: u32) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Remove a stopped (or never started) container with its task and snapshot.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Start `args` as process `exec_id` inside running container `id`, with its
    /// container's environment and working directory.
    /// With `tty` the process gets a terminal: its output (both streams) comes on stdout
    /// and `stderr` is `None`.
    fn exec(&self, id: &str, exec_id: &str, args: &[String], stdin: bool, tty: bool) -> impl Future<Output = Result<ExecIo, RuntimeError>> + Send;
    /// Set the terminal size of an exec'd process started with `tty`.
    fn exec_resize(&self, id: &str, exec_id: &str, width: u32, height: u32) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Wait for an exec'd process to end, remove it, and return its exit code.
    fn exec_wait(&self, id: &str, exec_id: &str) -> impl Future<Output = Result<u32, RuntimeError>> + Send;
    /// End an exec'd process's stdin (the shim keeps the FIFO open; EOF must be asked for).
    fn exec_close_stdin(&self, id: &str, exec_id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Signal an exec'd process (to end one that overran its time).
    fn exec_signal(&self, id: &str, exec_id: &str, signal: u32) -> impl Future<Output = Result<(), RuntimeError>> + Send;
}

/// Run `args` in container `id` and collect its exit code and output (stdout then
/// stderr, at most `limit` bytes kept), killing it after `timeout`.
pub async fn exec_capture<R: ContainerRuntime + ?Sized>(
    rt: &R,
    id: &str,
    args: &[String],
    timeout: std::time::Duration,
    limit: usize,
) -> Result<(u32, Vec<u8>), RuntimeError> {
    use tokio::io::AsyncReadExt;
    let exec_id = format!("exec-{:016x}", rand::random::<u64>());
    let mut io = rt.exec(id, &exec_id, args, false, false).await?;
    let read = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let stderr = async {
            match io.stderr.as_mut() {
                Some(e) => e.read_to_end(&mut err).await,
                None => Ok(0),
            }
        };
        let (a, b) = tokio::join!(io.stdout.read_to_end(&mut out), stderr);
        a.and(b).map_err(|e| RuntimeError::Runtime(format!("reading exec output: {e}")))?;
        out.extend(err);
        out.truncate(limit);
        Ok::<_, RuntimeError>(out)
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(output) => {
            let output = output?;
            Ok((rt.exec_wait(id, &exec_id).await?, output))
        }
        Err(_) => {
            let _ = rt.exec_signal(id, &exec_id, 9).await;
            // Bounded too: a process that does not die must not hold its caller.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), rt.exec_wait(id, &exec_id)).await;
            Err(RuntimeError::Runtime(format!("command timed out after {timeout:?}")))
        }
    }
}

/// The pipes of a process started inside a running container. Reading stdout and stderr
/// to their end means the process and its output are done; then `exec_wait`.
pub struct ExecIo {
    pub stdin: Option<tokio::net::unix::pipe::Sender>,
    pub stdout: tokio::net::unix::pipe::Receiver,
    /// None for a process with a terminal (its output is all on stdout).
    pub stderr: Option<tokio::net::unix::pipe::Receiver>,
}

/// A recorded call to the fake runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Import(usize),
    /// An image looked up by name.
    Image(String),
    Run(String),
    Exec(String, Vec<String>),
    Signal(String, u32),
    Remove(String),
}

/// Test double: keeps containers in memory, records calls, fails on demand.
#[derive(Default)]
pub struct FakeRuntime {
    /// Image names and their manifest digests.
    pub images: Mutex<Vec<(String, String)>>,
    pub containers: Mutex<BTreeMap<String, ContainerInfo>>,
    pub calls: Mutex<Vec<Call>>,
    /// When set, `run` fails with this message.
    pub fail_run: Mutex<Option<String>>,
    /// Exit code every exec'd process ends with.
    pub exec_exit: Mutex<u32>,
}

impl FakeRuntime {
    /// Make container `id` exit with `code` (as if its process ended).
    pub fn exit(&self, id: &str, code: u32) {
        if let Some(c) = self.containers.lock().expect("fake lock").get_mut(id) {
            c.state = ContainerState::Exited { code };
            c.exited_at = Some(SystemTime::now());
        }
    }
}

impl ContainerRuntime for FakeRuntime {
    async fn import(&self, images: &Archive) -> Result<Vec<String>, RuntimeError> {
        self.calls.lock().expect("fake lock").push(Call::Import(images.images.len()));
        let mut stored = self.images.lock().expect("fake lock");
        for i in &images.images {
            stored.retain(|(n, _)| *n != i.name);
            stored.push((i.name.clone(), i.target.digest.clone()));
        }
        Ok(images.images.iter().map(|i| i.name.clone()).collect())
    }

    async fn image(&self, name: &str) -> Result<Option<LocalImage>, RuntimeError> {
        self.calls.lock().expect("fake lock").push(Call::Image(name.into()));
        let digest = self.images.lock().expect("fake lock").iter().find(|(n, _)| n == name).map(|(_, d)| d.clone());
        Ok(digest.map(|digest| LocalImage { top: format!("top-{digest}"), digest, config: ImageConfig { cmd: vec!["sh".into()], ..Default::default() } }))
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        Ok(self.images.lock().expect("fake lock").iter().map(|(name, digest)| ImageInfo { name: name.clone(), digest: digest.clone(), size: 0 }).collect())
    }

    async fn run(&self, config: &ContainerConfig) -> Result<(), RuntimeError> {
        self.calls.lock().expect("fake lock").push(Call::Run(config.id.clone()));
        if let Some(msg) = self.fail_run.lock().expect("fake lock").clone() {
            return Err(RuntimeError::Runtime(msg));
        }
        if !self.has_image(&config.image).await? {
            return Err(RuntimeError::ImageNotFound(config.image.clone()));
        }
        let info = ContainerInfo {
            id: config.id.clone(),
            image: config.image.clone(),
            state: ContainerState::Running { pid: 1 },
            labels: config.labels.clone(),
            created_at: Some(SystemTime::now()),
            exited_at: None,
            oom_killed: false,
        };
        self.containers.lock().expect("fake lock").insert(config.id.clone(), info);
        Ok(())
    }

    async fn info(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        self.containers.lock().expect("fake lock").get(id).cloned().ok_or_else(|| RuntimeError::NotFound(id.into()))
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        Ok(self.containers.lock().expect("fake lock").values().cloned().collect())
    }

    async fn list_labeled(&self, key: &str, value: &str) -> Result<Vec<ContainerInfo>, RuntimeError> {
        Ok(self.containers.lock().expect("fake lock").values().filter(|c| c.labels.get(key).map(String::as_str) == Some(value)).cloned().collect())
    }

    async fn label_values(&self, key: &str) -> Result<std::collections::BTreeSet<String>, RuntimeError> {
        Ok(self.containers.lock().expect("fake lock").values().filter_map(|c| c.labels.get(key).cloned()).collect())
    }

    async fn signal(&self, id: &str, signal: u32) -> Result<(), RuntimeError> {
        self.calls.lock().expect("fake lock").push(Call::Signal(id.into(), signal));
        let mut all = self.containers.lock().expect("fake lock");
        let c = all.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.into()))?;
        if matches!(signal, 9 | 15) {
            c.state = ContainerState::Exited { code: 128 + signal };
            c.exited_at = Some(SystemTime::now());
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.calls.lock().expect("fake lock").push(Call::Remove(id.into()));
        self.containers.lock().expect("fake lock").remove(id).map(|_| ()).ok_or_else(|| RuntimeError::NotFound(id.into()))
    }

    /// The process "prints" nothing and ends at once with `exec_exit`.
    async fn exec(&self, id: &str, _exec_id: &str, args: &[String], _stdin: bool, tty: bool) -> Result<ExecIo, RuntimeError> {
        self.calls.lock().expect("fake lock").push(Call::Exec(id.into(), args.to_vec()));
        self.info(id).await?;
        let pipe = || tokio::net::unix::pipe::pipe().map_err(|e| RuntimeError::Runtime(e.to_string()));
        let (_, stdout) = pipe()?;
        let stderr = if tty { None } else { Some(pipe()?.1) };
        Ok(ExecIo { stdin: None, stdout, stderr })
    }

    async fn exec_resize(&self, _id: &str, _exec_id: &str, _width: u32, _height: u32) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn exec_wait(&self, _id: &str, _exec_id: &str) -> Result<u32, RuntimeError> {
        Ok(*self.exec_exit.lock().expect("fake lock"))
    }

    async fn exec_signal(&self, _id: &str, _exec_id: &str, _signal: u32) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn exec_close_stdin(&self, _id: &str, _exec_id: &str) -> Result<(), RuntimeError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_and_args_resolve_like_kubernetes() {
        let image = ImageConfig::from_oci(&serde_json::json!({"config": {"Entrypoint": ["/ep"], "Cmd": ["a"], "Env": ["PATH=/bin"]}}));
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(image.argv(&[], &[]), s(&["/ep", "a"]));
        assert_eq!(image.argv(&[], &s(&["b"])), s(&["/ep", "b"]));
        assert_eq!(image.argv(&s(&["/c"]), &[]), s(&["/c"]));
        assert_eq!(image.argv(&s(&["/c"]), &s(&["x"])), s(&["/c", "x"]));
        assert_eq!(image.env, vec![("PATH".to_string(), "/bin".to_string())]);
    }
}
