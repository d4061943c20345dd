//! A real orch cluster for tests: N heads and M workers, each an `orchd` process in its
//! own network namespace with its own data dir. Nodes can be killed (SIGKILL), stopped
//! (SIGTERM), paused (SIGSTOP/SIGCONT) and restarted from their data dir. Dropping the
//! cluster kills its processes (by PID) and removes its namespaces and links. The tests
//! talk to it as its administrator does: HTTPS with the admin kubeconfig the first head
//! wrote (`Cluster::kubeconfig`, `Cluster::client`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use orch::client::{ApiClient, Tls};
use orch::kubeconfig::{Credentials, Kubeconfig};
use serde_json::Value;

use crate::containerd::Containerd;
use crate::net::TestNet;

pub const API_PORT: u16 = 6443;
pub const RAFT_PORT: u16 = 7443;

/// Where the `orchd` and `orchctl` binaries are: `$ORCH_BIN_DIR`, else the workspace's
/// target/debug (built by `cargo build --bins`, which `.ci/run` does first).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ORCH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug")
}

fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir().join(name);
    if !path.exists() {
        bail!("{} not found: run `cargo build --bins` first (or set ORCH_BIN_DIR)", path.display());
    }
    Ok(path)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Head,
    Worker,
}

pub struct Node {
    pub name: String,
    pub role: Role,
    pub ip: std::net::Ipv4Addr,
    pub data_dir: PathBuf,
    process: Option<Child>,
}

impl Node {
    pub fn api(&self) -> String {
        format!("{}:{API_PORT}", self.ip)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }
}

/// How to start a cluster beyond its size.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Give every node a containerd of its own and run the kubelet role (else `--no-kubelet`).
    pub containerd: bool,
    /// Extra orchd flags for every node (e.g. faster heartbeats); `{gateway}` in them
    /// stands for the test network's root-namespace address (see `Cluster::gateway`).
    pub extra: Vec<String>,
}

/// Replaced by the test network's gateway address in `Options::extra`.
pub const GATEWAY: &str = "{gateway}";

pub struct Cluster {
    // Dropped in order: processes first (Drop impl), then the network, then the dirs.
    pub nodes: Vec<Node>,
    /// Per node, its containerd (with `Options::containerd`).
    pub containerds: Vec<Containerd>,
    net: TestNet,
    dir: tempfile::TempDir,
    /// The head token (joins heads and workers) and the worker token (workers only).
    pub token: String,
    pub worker_token: String,
    /// The administrator's credentials (from the first head's admin kubeconfig).
    pub admin: Option<Credentials>,
    /// Extra orchd flags for every node (e.g. faster heartbeats).
    extra: Vec<String>,
    pub client: ApiClient,
    /// Don't print the nodes' log tails on drop (tests print them; benchmarks need not).
    pub quiet: bool,
}

impl Cluster {
    /// Start `heads` heads (the first creates the cluster) and `workers` workers, and wait
    /// until every head is a voter and every node serves the API.
    pub async fn start(heads: usize, workers: usize) -> anyhow::Result<Cluster> {
        Self::start_with(heads, workers, &[]).await
    }

    pub async fn start_with(heads: usize, workers: usize, extra: &[&str]) -> anyhow::Result<Cluster> {
        Self::start_opts(heads, workers, Options { extra: extra.iter().map(|s| s.to_string()).collect(), ..Default::default() }).await
    }

    pub async fn start_opts(heads: usize, workers: usize, opts: Options) -> anyhow::Result<Cluster> {
        let mut c = Cluster {
            nodes: Vec::new(),
            containerds: Vec::new(),
            net: TestNet::new()?,
            dir: tempfile::Builder::new().prefix("orch-cluster-").tempdir()?,
            token: String::new(),
            worker_token: String::new(),
            admin: None,
            extra: opts.extra.clone(),
            client: ApiClient::plain(Duration::from_secs(10)),
            quiet: false,
        };
        for i in 0..heads + workers {
            let role = if i < heads { Role::Head } else { Role::Worker };
            let ip = c.net.add_host(i)?;
            let name = match role {
                Role::Head => format!("head-{i}"),
                Role::Worker => format!("worker-{}", i - heads),
            };
            let data_dir = c.dir.path().join(&name);
            c.nodes.push(Node { name, role, ip, data_dir, process: None });
        }
        if opts.containerd {
            for i in 0..c.nodes.len() {
                let ctrd = Containerd::start(&c.dir.path().join(format!("{}-containerd", c.nodes[i].name)))?;
                c.containerds.push(ctrd);
            }
        } else {
            c.extra.push("--no-kubelet".into());
        }
        c.spawn(0, &["--init"])?;
        c.load_admin().await?;
        c.wait_ready(0).await?;
        c.token = std::fs::read_to_string(c.nodes[0].data_dir.join("token"))?.trim().to_string();
        c.worker_token = std::fs::read_to_string(c.nodes[0].data_dir.join("worker-token"))?.trim().to_string();
        for i in 1..c.nodes.len() {
            let seed = c.nodes[0].api();
            let (role, token) = match c.nodes[i].role {
                Role::Head => ("head", c.token.clone()),
                Role::Worker => ("worker", c.worker_token.clone()),
            };
            c.spawn(i, &["--join", &seed, "--token", &token, "--role", role])?;
            c.wait_ready(i).await?;
        }
        c.wait_voters(heads).await?;
        Ok(c)
    }

    /// Start one more worker (with a containerd if the cluster has them) and join it: a
    /// node that was not there when the cluster started. Returns its index.
    pub async fn add_worker(&mut self) -> anyhow::Result<usize> {
        let i = self.nodes.len();
        let ip = self.net.add_host(i)?;
        let name = format!("worker-{}", self.nodes.iter().filter(|n| n.role == Role::Worker).count());
        let data_dir = self.dir.path().join(&name);
        self.nodes.push(Node { name, role: Role::Worker, ip, data_dir, process: None });
        if !self.containerds.is_empty() {
            let ctrd = Containerd::start(&self.dir.path().join(format!("{}-containerd", self.nodes[i].name)))?;
            self.containerds.push(ctrd);
        }
        let (seed, token) = (self.nodes[0].api(), self.worker_token.clone());
        self.spawn(i, &["--join", &seed, "--token", &token, "--role", "worker"])?;
        self.wait_ready(i).await?;
        Ok(i)
    }

    fn spawn(&mut self, i: usize, args: &[&str]) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        std::fs::create_dir_all(&node.data_dir)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(node.data_dir.with_extension("log"))?;
        let ip = node.ip.to_string();
        // nsenter joins only the node's network namespace: orchd stays in the host's mount
        // namespace, so the pod namespaces it pins are visible to containerd and runc.
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.net.netns(i)))
            .arg("--")
            .arg(bin("orchd")?)
            .args(["--name", &node.name, "--advertise", &ip, "--data-dir"])
            .arg(&node.data_dir)
            .args(["--api-port", &API_PORT.to_string(), "--raft-port", &RAFT_PORT.to_string(), "--node-heartbeat-s", "2"])
            .args(self.extra.iter().map(|a| a.replace(GATEWAY, &self.net.gateway().to_string())))
            .args(self.kubelet_flags(i))
            .args(args)
            .env("ORCH_LOG", "info,openraft=warn")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // nsenter execs orchd, so this PID is orchd's own.
        let child = cmd.spawn().context("starting orchd")?;
        self.nodes[i].process = Some(child);
        Ok(())
    }

    /// Per-node kubelet settings: its containerd, run dir and cgroup parent.
    fn kubelet_flags(&self, i: usize) -> Vec<String> {
        let Some(ctrd) = self.containerds.get(i) else { return vec![] };
        vec![
            "--containerd-socket".into(),
            ctrd.socket().display().to_string(),
            "--run-dir".into(),
            self.dir.path().join(format!("{}-run", self.nodes[i].name)).display().to_string(),
            "--cgroup-parent".into(),
            self.cgroup_parent(i),
        ]
    }

    /// The cgroup all of node `i`'s pods live under (unique per cluster and node).
    pub fn cgroup_parent(&self, i: usize) -> String {
        let unique = self.dir.path().file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{unique}-{}", self.nodes[i].name)
    }

    /// Start a stopped or killed node's process again from its data dir (no join flags
    /// needed), without waiting for it: heads restarted together need each other.
    pub fn start_process(&mut self, i: usize) -> anyhow::Result<()> {
        if self.nodes[i].is_running() {
            bail!("{} is still running", self.nodes[i].name);
        }
        self.spawn(i, &[])
    }

    /// Start a stopped or killed node again and wait until it serves.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.restart_with(i, &[]).await
    }

    /// `restart` with flags of its own added for this start.
    pub async fn restart_with(&mut self, i: usize, args: &[&str]) -> anyhow::Result<()> {
        if self.nodes[i].is_running() {
            bail!("{} is still running", self.nodes[i].name);
        }
        self.spawn(i, args)?;
        self.wait_ready(i).await
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].process.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    /// SIGTERM and wait for a clean exit (SIGKILL after 10 s).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].process.take() {
            signal(p.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = p.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    pub fn pause(&self, i: usize) {
        if let Some(pid) = self.nodes[i].pid() {
            signal(pid, "STOP");
        }
    }

    pub fn resume(&self, i: usize) {
        if let Some(pid) = self.nodes[i].pid() {
            signal(pid, "CONT");
        }
    }

    pub fn api(&self, i: usize) -> String {
        self.nodes[i].api()
    }

    /// The network namespace node `i` runs in.
    /// The root namespace's address on the test network: where services the tests run
    /// outside the cluster (a registry) listen for its nodes.
    pub fn gateway(&self) -> std::net::Ipv4Addr {
        self.net.gateway()
    }

    pub fn netns(&self, i: usize) -> String {
        self.net.netns(i)
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("https://{}{path}", self.api(i))
    }

    /// The admin kubeconfig the first head wrote at `--init`.
    pub fn kubeconfig(&self) -> PathBuf {
        self.nodes[0].data_dir.join("admin.kubeconfig")
    }

    /// Wait for the first head to write the admin kubeconfig, then talk as the admin.
    async fn load_admin(&mut self) -> anyhow::Result<()> {
        let path = self.kubeconfig();
        poll(Duration::from_secs(30), "the admin kubeconfig", || async { Ok(path.exists()) })
            .await
            .with_context(|| format!("log:\n{}", self.log_tail(0)))?;
        let creds = Kubeconfig::load(Some(&path))?.credentials(None)?;
        self.client = ApiClient::new(Duration::from_secs(10), &Tls::from_credentials(&creds)?);
        self.admin = Some(creds);
        Ok(())
    }

    /// A new user of the cluster, made as an administrator makes one: `orchctl kubeconfig
    /// user` (the cluster signs the user's CSR). Returns its kubeconfig's path and a client.
    pub fn add_user(&self, user: &str, group: Option<&str>) -> anyhow::Result<(PathBuf, ApiClient)> {
        let path = self.dir.path().join(format!("{user}.kubeconfig"));
        let mut cmd = self.orchctl_command(0)?;
        cmd.args(["kubeconfig", "user", user, "--days", "1", "-o"]).arg(&path);
        if let Some(g) = group {
            cmd.args(["--group", g]);
        }
        let out = cmd.output()?;
        if !out.status.success() {
            bail!("orchctl kubeconfig user {user}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let creds = Kubeconfig::load(Some(&path))?.credentials(None)?;
        Ok((path, ApiClient::new(Duration::from_secs(10), &Tls::from_credentials(&creds)?)))
    }

    /// A client of the cluster with these credentials (another user's, or none).
    pub fn client_as(&self, client: Option<(&str, &str)>, token: Option<&str>) -> anyhow::Result<ApiClient> {
        let ca = &self.admin.as_ref().context("the cluster has no CA yet")?.ca_pem;
        Ok(ApiClient::new(Duration::from_secs(10), &Tls::new(ca, client, token)?))
    }

    /// Poll until node `i` answers /healthz (and, for heads, /readyz: a quorum read works).
    pub async fn wait_ready(&self, i: usize) -> anyhow::Result<()> {
        let path = if self.nodes[i].role == Role::Head { "/readyz" } else { "/healthz" };
        let url = self.url(i, path);
        let quick = self.client.with_timeout(Duration::from_secs(2));
        poll(Duration::from_secs(60), &format!("{} ready", self.nodes[i].name), || async {
            Ok(quick.text(&url).await.is_ok())
        })
        .await
        .with_context(|| format!("log:\n{}", self.log_tail(i)))
    }

    async fn wait_voters(&self, heads: usize) -> anyhow::Result<()> {
        poll(Duration::from_secs(60), &format!("{heads} voters"), || async {
            let voters = self.status(0).await.map(|s| {
                s["members"].as_array().map_or(0, |m| m.iter().filter(|m| m["suffrage"] == "voter" && m["reachable"] == true).count())
            });
            Ok(voters.unwrap_or(0) == heads)
        })
        .await
    }

    /// `/orch/v1/cluster/status` as node `i` reports it.
    pub async fn status(&self, i: usize) -> anyhow::Result<Value> {
        self.client.json(hyper::Method::GET, &self.url(i, "/orch/v1/cluster/status"), None).await
    }

    /// Index of the running head that currently leads (as the heads report it).
    pub async fn leader(&self) -> Option<usize> {
        for (i, n) in self.nodes.iter().enumerate() {
            if n.role != Role::Head || !n.is_running() {
                continue;
            }
            if let Ok(status) = self.status(i).await {
                let leader_name = status["members"]
                    .as_array()?
                    .iter()
                    .find(|m| m["leader"] == true && m["reachable"] == true)
                    .and_then(|m| m["name"].as_str().map(str::to_string));
                if let Some(name) = leader_name {
                    return self.nodes.iter().position(|n| n.name == name && n.is_running());
                }
            }
        }
        None
    }

    /// Run orchctl against node `i`; returns (success, stdout, stderr).
    pub fn orchctl(&self, i: usize, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
        let out = self.orchctl_command(i)?.args(args).output()?;
        Ok((out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into()))
    }

    /// An orchctl command line against node `i`, as the administrator.
    pub fn orchctl_command(&self, i: usize) -> anyhow::Result<Command> {
        let mut cmd = Command::new(bin("orchctl")?);
        cmd.arg("--kubeconfig").arg(self.kubeconfig()).args(["--server", &self.api(i)]).env_remove("KUBECONFIG");
        Ok(cmd)
    }

    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.nodes[i].data_dir.with_extension("log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn work_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Test output is shown only for failing tests: leave the nodes' last words there.
        for i in (0..self.nodes.len()).filter(|_| !self.quiet) {
            eprintln!("----- {} log tail -----\n{}", self.nodes[i].name, self.log_tail(i));
        }
        for i in 0..self.nodes.len() {
            // A paused process must be resumed to die promptly on SIGKILL's wait.
            self.resume(i);
            self.kill(i);
        }
        for ctrd in &mut self.containerds {
            ctrd.shutdown();
        }
        // Pinned pod namespaces and anything else mounted under the cluster's directory.
        crate::containerd::unmount_under(self.dir.path());
        for i in 0..self.containerds.len() {
            crate::containerd::remove_cgroups(&self.cgroup_parent(i));
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status();
}

/// Poll `check` every 50 ms until it returns a value, and return it; panic after `limit`
/// with `what` and the description of the last state `check` gave.
pub async fn until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (Option<T>, String)>,
{
    let deadline = Instant::now() + limit;
    loop {
        let (done, state) = check().await;
        if let Some(v) = done {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not after {limit:?}; last: {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Poll `check` every 50 ms until it returns true, or fail after `limit`.
pub async fn poll<F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    let mut last_err = None;
    while Instant::now() < deadline {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match last_err {
        Some(e) => bail!("timed out after {limit:?} waiting for {what}: {e:#}"),
        None => bail!("timed out after {limit:?} waiting for {what}"),
    }
}
