//! orchd's configuration: command-line flags, an optional YAML config file (flags win),
//! and the node state persisted in the data dir, so a restart needs only `--data-dir`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Head-eligible: a Raft voter that serves the API from its own replica.
    Head,
    /// Runs workloads; not a Raft member. Its API forwards to the heads.
    Worker,
}

/// orchd: the orch daemon, one on every node.
#[derive(Parser, Debug, Default, Clone, Deserialize)]
#[command(version, about)]
#[serde(rename_all = "kebab-case", default)]
pub struct Flags {
    /// YAML file with any of these settings (keys as the long flag names); flags win.
    #[arg(long, env = "ORCHD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Node name (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Where the Raft log, state machine, certificates and node state live.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The address other nodes and clients reach this node at.
    #[arg(long)]
    pub advertise: Option<IpAddr>,
    /// The address to bind (default: the advertise address).
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// HTTPS API port.
    #[arg(long)]
    pub api_port: Option<u16>,
    /// The audit log (default: audit.log in the data dir).
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// Rotate the audit log past this size (5 files are kept).
    #[arg(long)]
    pub audit_log_max_bytes: Option<u64>,
    /// Extra names or addresses for the API's serving certificate (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub tls_san: Vec<String>,
    /// Renew this node's certificate when it starts with fewer days than this left of it.
    #[arg(long)]
    pub renew_certificate_within_days: Option<u64>,
    /// Node-to-node gRPC (mutual TLS) port.
    #[arg(long)]
    pub raft_port: Option<u16>,
    #[arg(long, value_enum)]
    pub role: Option<Role>,
    /// Create a new cluster with this node as its first head.
    #[arg(long)]
    #[serde(default)]
    pub init: bool,
    /// Join the cluster whose head serves the API at ADDR (host:port).
    #[arg(long, value_name = "ADDR")]
    pub join: Option<String>,
    /// The join token printed by the first head (`ORCH1::<ca-hash>::<secret>`).
    #[arg(long, env = "ORCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Raft election timeout range in milliseconds, as MIN-MAX.
    #[arg(long)]
    pub election_timeout_ms: Option<String>,
    /// Take a snapshot after this many log entries.
    #[arg(long)]
    pub snapshot_after: Option<u64>,
    /// Log entries kept behind a snapshot (so lagging heads catch up by log, not snapshot).
    #[arg(long)]
    pub snapshot_keep_logs: Option<u64>,
    /// Revisions of watch history kept; watches from older revisions get 410 Gone.
    #[arg(long)]
    pub watch_history: Option<u64>,
    /// Node heartbeat (Node status) interval in seconds.
    #[arg(long)]
    pub node_heartbeat_s: Option<u64>,
    /// Seconds without a heartbeat before the leader marks a node NotReady (Ready=Unknown,
    /// unreachable taints); counted from the leader's takeover at the earliest.
    #[arg(long)]
    pub node_monitor_grace_s: Option<u64>,
    /// Seconds a node stays unreachable before its pods are evicted (replaced elsewhere;
    /// StatefulSet pods wait until the Node object is deleted).
    #[arg(long)]
    pub pod_eviction_timeout_s: Option<u64>,
    /// Pod addresses of the whole cluster (the leader gives each node a slice).
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// Prefix length of each node's pod CIDR slice.
    #[arg(long)]
    pub node_cidr_prefix: Option<u8>,
    /// Do not run pods on this node (no kubelet role).
    #[arg(long)]
    #[serde(default)]
    pub no_kubelet: bool,
    /// Most pods this node runs (its `pods` capacity).
    #[arg(long)]
    pub max_pods: Option<u64>,
    /// Rotate a container's log file past this many bytes (5 files kept per container run).
    #[arg(long)]
    pub container_log_max_bytes: Option<u64>,
    /// containerd's gRPC socket.
    #[arg(long)]
    pub containerd_socket: Option<PathBuf>,
    /// Where pods' namespaces are pinned (a tmpfs).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// cgroup parent of all pods.
    #[arg(long)]
    pub cgroup_parent: Option<String>,
    /// Registries pulled from over plain HTTP, as HOST[:PORT],... (all others over HTTPS).
    #[arg(long)]
    pub insecure_registries: Option<String>,
    /// First container restart (and image pull) back-off in milliseconds (doubles per
    /// failure, up to 5 minutes).
    #[arg(long)]
    pub restart_backoff_ms: Option<u64>,
    /// Addresses Services' ClusterIPs come from (the same on every head).
    #[arg(long)]
    pub service_cidr: Option<String>,
    /// NodePorts come from this range, as MIN-MAX.
    #[arg(long)]
    pub service_node_port_range: Option<String>,
    /// How Service traffic is steered: `auto` (IPVS where the kernel has it, nftables
    /// otherwise), `ipvs` or `nftables`.
    #[arg(long)]
    pub proxy_mode: Option<String>,
    /// Full rewrite of the proxy's rules at this interval, in seconds (changes apply at once).
    #[arg(long)]
    pub proxy_resync_s: Option<u64>,
    /// TTL of cluster DNS answers, in seconds.
    #[arg(long)]
    pub dns_ttl_s: Option<u32>,
    /// Where cluster DNS forwards other names, as IP[:PORT],... (default: the servers in
    /// /etc/resolv.conf).
    #[arg(long)]
    pub dns_upstream: Option<String>,
    /// UNSAFE, for fault-injection experiments only: acknowledge writes without fsync.
    #[arg(long, hide = true)]
    #[serde(default)]
    pub unsafe_no_fsync: bool,
    /// UNSAFE, for fault-injection experiments only: serve reads from the local replica
    /// without a read index (a partitioned ex-leader then serves stale data).
    #[arg(long, hide = true)]
    #[serde(default)]
    pub unsafe_stale_reads: bool,
}

/// Settings after merging flags, file and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    pub data_dir: PathBuf,
    pub advertise: IpAddr,
    pub bind: IpAddr,
    pub api_port: u16,
    pub raft_port: u16,
    /// Extra names (DNS or IP) in this node's serving certificate.
    pub tls_san: Vec<String>,
    /// A node certificate with less than this left is renewed at start.
    pub renew_certificate_within: Duration,
    pub audit_log: PathBuf,
    pub audit_log_max_bytes: u64,
    pub role: Role,
    pub init: bool,
    pub join: Option<String>,
    pub token: Option<String>,
    pub heartbeat: Duration,
    pub election_timeout: (Duration, Duration),
    pub snapshot_after: u64,
    pub snapshot_keep_logs: u64,
    pub watch_history: u64,
    pub node_heartbeat: Duration,
    pub node_monitor_grace: Duration,
    pub pod_eviction_timeout: Duration,
    pub fsync: bool,
    pub stale_reads: bool,
    pub cluster_cidr: ipnet::Ipv4Net,
    pub node_cidr_prefix: u8,
    pub kubelet: bool,
    pub max_pods: u64,
    pub container_log_max_bytes: u64,
    pub containerd_socket: PathBuf,
    pub run_dir: PathBuf,
    pub cgroup_parent: String,
    pub restart_backoff: Duration,
    pub insecure_registries: Vec<String>,
    pub service_ranges: crate::api::service::ServiceRanges,
    pub proxy_mode: crate::services::ProxyMode,
    pub proxy_resync: Duration,
    pub dns_ttl: u32,
    pub dns_upstream: Vec<SocketAddr>,
}

impl Settings {
    pub fn api_addr(&self) -> String {
        SocketAddr::new(self.advertise, self.api_port).to_string()
    }

    pub fn raft_addr(&self) -> String {
        SocketAddr::new(self.advertise, self.raft_port).to_string()
    }

    /// The names and addresses this node's certificate is valid for: its name, its
    /// advertise address, loopback, the in-cluster names of the API (`kubernetes...` and
    /// the `kubernetes` Service's ClusterIP) and the operator's `--tls-san`s.
    pub fn certificate_names(&self) -> (Vec<IpAddr>, Vec<String>) {
        let mut ips = vec![self.advertise, IpAddr::from([127, 0, 0, 1]), IpAddr::V4(crate::api::service::kubernetes_cluster_ip(&self.service_ranges))];
        let mut dns: Vec<String> = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for san in &self.tls_san {
            match san.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => dns.push(san.clone()),
            }
        }
        ips.dedup();
        (ips, dns)
    }
}

impl Flags {
    /// Merge `self` over the config file (if any) over defaults.
    pub fn resolve(self) -> anyhow::Result<Settings> {
        let file: Flags = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                serde_norway::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => Flags::default(),
        };
        let name = self.name.or(file.name).or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_string()));
        let name = name.filter(|n| !n.is_empty()).context("--name is required (no host name found)")?;
        let advertise = self.advertise.or(file.advertise).unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let election = self.election_timeout_ms.or(file.election_timeout_ms).unwrap_or_else(|| "250-500".into());
        let (lo, hi) = election.split_once('-').context("--election-timeout-ms must be MIN-MAX")?;
        let (lo, hi): (u64, u64) = (lo.trim().parse()?, hi.trim().parse()?);
        if lo >= hi {
            bail!("--election-timeout-ms: MIN must be below MAX");
        }
        let heartbeat = self.heartbeat_ms.or(file.heartbeat_ms).unwrap_or(50);
        if heartbeat * 2 > lo {
            bail!("--heartbeat-ms ({heartbeat}) must be at most half the election timeout minimum ({lo})");
        }
        let cidr = self.cluster_cidr.or(file.cluster_cidr).unwrap_or_else(|| "10.244.0.0/16".into());
        let cluster_cidr: ipnet::Ipv4Net = cidr.parse().with_context(|| format!("--cluster-cidr {cidr:?} is not an IPv4 CIDR"))?;
        let node_cidr_prefix = self.node_cidr_prefix.or(file.node_cidr_prefix).unwrap_or(24);
        if node_cidr_prefix < cluster_cidr.prefix_len() || node_cidr_prefix > 30 {
            bail!("--node-cidr-prefix {node_cidr_prefix} must lie between the cluster CIDR's prefix ({}) and 30", cluster_cidr.prefix_len());
        }
        let cidr = self.service_cidr.or(file.service_cidr).unwrap_or_else(|| "10.96.0.0/16".into());
        let service_cidr: ipnet::Ipv4Net = cidr.parse().with_context(|| format!("--service-cidr {cidr:?} is not an IPv4 CIDR"))?;
        if service_cidr.prefix_len() > 28 {
            bail!("--service-cidr {cidr} is too small (at most /28)");
        }
        let range = self.service_node_port_range.or(file.service_node_port_range).unwrap_or_else(|| "30000-32767".into());
        let (np_lo, np_hi) = range.split_once('-').context("--service-node-port-range must be MIN-MAX")?;
        let (np_lo, np_hi): (u16, u16) = (np_lo.trim().parse()?, np_hi.trim().parse()?);
        if np_lo == 0 || np_lo > np_hi {
            bail!("--service-node-port-range {range}: MIN must be at least 1 and at most MAX");
        }
        let upstream = self.dns_upstream.or(file.dns_upstream).unwrap_or_default();
        let dns_upstream = upstream
            .split(',')
            .filter(|u| !u.trim().is_empty())
            .map(|u| {
                let u = u.trim();
                u.parse::<SocketAddr>().or_else(|_| u.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .with_context(|| format!("--dns-upstream: {u:?} is not IP[:PORT]"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mode = self.proxy_mode.or(file.proxy_mode).unwrap_or_else(|| "auto".into());
        let data_dir = std::path::absolute(self.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("/var/lib/orch")))?;
        Ok(Settings {
            service_ranges: crate::api::service::ServiceRanges { cidr: service_cidr.trunc(), node_ports: np_lo..=np_hi },
            proxy_mode: mode.parse().map_err(|e: String| anyhow::anyhow!("--proxy-mode: {e}"))?,
            proxy_resync: Duration::from_secs(self.proxy_resync_s.or(file.proxy_resync_s).unwrap_or(300).max(1)),
            dns_upstream,
            dns_ttl: self.dns_ttl_s.or(file.dns_ttl_s).unwrap_or(5),
            cluster_cidr: cluster_cidr.trunc(),
            node_cidr_prefix,
            kubelet: !(self.no_kubelet || file.no_kubelet),
            max_pods: self.max_pods.or(file.max_pods).unwrap_or(110),
            container_log_max_bytes: self.container_log_max_bytes.or(file.container_log_max_bytes).unwrap_or(10 << 20),
            containerd_socket: self.containerd_socket.or(file.containerd_socket).unwrap_or_else(crate::kubelet::containerd::default_socket),
            run_dir: std::path::absolute(self.run_dir.or(file.run_dir).unwrap_or_else(|| PathBuf::from("/run/orch")))?,
            cgroup_parent: self.cgroup_parent.or(file.cgroup_parent).unwrap_or_else(|| "orch".into()),
            restart_backoff: Duration::from_millis(self.restart_backoff_ms.or(file.restart_backoff_ms).unwrap_or(10_000)),
            insecure_registries: self
                .insecure_registries
                .or(file.insecure_registries)
                .unwrap_or_default()
                .split(',')
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty())
                .collect(),
            name,
            // Absolute: paths under it are handed to containerd and runc, which resolve
            // relative ones against their own working directories.
            audit_log: match self.audit_log.or(file.audit_log) {
                Some(p) => std::path::absolute(p)?,
                None => data_dir.join("audit.log"),
            },
            data_dir,
            advertise,
            bind: self.bind.or(file.bind).unwrap_or(advertise),
            api_port: self.api_port.or(file.api_port).unwrap_or(6443),
            tls_san: if self.tls_san.is_empty() { file.tls_san } else { self.tls_san },
            renew_certificate_within: Duration::from_secs(86_400 * self.renew_certificate_within_days.or(file.renew_certificate_within_days).unwrap_or(90)),
            audit_log_max_bytes: self.audit_log_max_bytes.or(file.audit_log_max_bytes).unwrap_or(100 << 20).max(4096),
            raft_port: self.raft_port.or(file.raft_port).unwrap_or(7443),
            role: self.role.or(file.role).unwrap_or(Role::Head),
            init: self.init || file.init,
            join: self.join.or(file.join),
            token: self.token.or(file.token),
            heartbeat: Duration::from_millis(heartbeat),
            election_timeout: (Duration::from_millis(lo), Duration::from_millis(hi)),
            snapshot_after: self.snapshot_after.or(file.snapshot_after).unwrap_or(10_000),
            snapshot_keep_logs: self.snapshot_keep_logs.or(file.snapshot_keep_logs).unwrap_or(1_000),
            watch_history: self.watch_history.or(file.watch_history).unwrap_or(100_000).max(1),
            node_heartbeat: Duration::from_secs(self.node_heartbeat_s.or(file.node_heartbeat_s).unwrap_or(10)),
            node_monitor_grace: Duration::from_secs(self.node_monitor_grace_s.or(file.node_monitor_grace_s).unwrap_or(40).max(1)),
            pod_eviction_timeout: Duration::from_secs(self.pod_eviction_timeout_s.or(file.pod_eviction_timeout_s).unwrap_or(300)),
            fsync: !(self.unsafe_no_fsync || file.unsafe_no_fsync),
            stale_reads: self.unsafe_stale_reads || file.unsafe_stale_reads,
        })
    }
}

/// What a node remembers about itself across restarts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeState {
    pub name: String,
    pub id: u64,
    pub role: Role,
    pub cluster_id: String,
    pub api_addr: String,
    pub raft_addr: String,
    /// API addresses of heads to reach (workers use them; heads as join seeds).
    pub seeds: Vec<String>,
    /// A head that joined is added to the Raft group once; false until that succeeded.
    pub member: bool,
}

impl NodeState {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("node.json")
    }

    pub fn load(data_dir: &Path) -> anyhow::Result<Option<NodeState>> {
        match std::fs::read(Self::path(data_dir)) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).context("node.json is corrupt")?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("reading node.json"),
        }
    }

    pub fn save(&self, data_dir: &Path) -> anyhow::Result<()> {
        write_private(&Self::path(data_dir), &serde_json::to_vec_pretty(self)?)
    }
}

/// Raft node id from the node name: stable, so a node keeps its id across restarts and
/// a name cannot join twice under two ids.
pub fn node_id(name: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) >> 1
}

/// Write a file readable only by its owner, atomically (write, fsync, rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    Ok(orch_raft::write_private(path, bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("orchd.yaml");
        std::fs::write(&file, "name: from-file\napi-port: 7000\nrole: worker\n").unwrap();
        let flags = Flags { config: Some(file), api_port: Some(8000), ..Default::default() };
        let s = flags.resolve().unwrap();
        assert_eq!((s.name.as_str(), s.api_port, s.role, s.raft_port), ("from-file", 8000, Role::Worker, 7443));
        assert!(s.fsync);
    }

    #[test]
    fn bad_timing_is_refused() {
        let f = Flags { name: Some("n".into()), election_timeout_ms: Some("500-400".into()), ..Default::default() };
        assert!(f.resolve().is_err());
        let f = Flags { name: Some("n".into()), heartbeat_ms: Some(300), ..Default::default() };
        assert!(f.resolve().unwrap_err().to_string().contains("half"));
    }

    #[test]
    fn node_ids_are_stable_and_distinct() {
        assert_eq!(node_id("a"), node_id("a"));
        assert_ne!(node_id("a"), node_id("b"));
    }
}
