//! Pod networking, host-gateway style: a bridge per node (`orch0`, holding the first
//! address of the node's pod CIDR), a veth per pod from the pod's pinned network namespace
//! into the bridge, routes to other nodes' pod CIDRs via their node addresses, and
//! masquerade for traffic leaving the cluster CIDR. The `PodNetwork` trait with the
//! rtnetlink implementation (`NetlinkNetwork`) and a typed fake; `route_changes` is pure.

use std::future::Future;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};
use sha2::{Digest, Sha256};

use super::netns::{self, NsKind};

/// The per-node bridge pods attach to.
pub const BRIDGE: &str = "orch0";
/// The route protocol number orch marks its inter-node routes with (`ip route ... proto 77`),
/// so a resync touches only its own routes.
pub const ROUTE_PROTO: u8 = 77;
/// The nftables table holding orch's masquerade rule.
pub const NAT_TABLE: &str = "orch-nat";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("nft: {0}")]
    Nft(String),
}

impl From<rtnetlink::Error> for NetError {
    fn from(e: rtnetlink::Error) -> Self {
        NetError::Netlink(e.to_string())
    }
}

/// The node's side of pod networking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNet {
    /// This node's pod CIDR; the bridge holds its first address.
    pub pod_cidr: Ipv4Net,
    /// The whole cluster's pod CIDR (traffic leaving it is masqueraded).
    pub cluster_cidr: Ipv4Net,
}

impl NodeNet {
    pub fn gateway(&self) -> Ipv4Addr {
        gateway(self.pod_cidr)
    }
}

pub fn gateway(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()) + 1)
}

/// Where a pod's namespaces are pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPaths {
    pub netns: PathBuf,
    pub ipcns: PathBuf,
}

impl SandboxPaths {
    pub fn new(run_dir: &Path, uid: &str) -> Self {
        SandboxPaths { netns: run_dir.join("netns").join(uid), ipcns: run_dir.join("ipcns").join(uid) }
    }
}

/// The host end of a pod's veth: `orchv` and 10 hex digits of the pod uid's hash (Linux
/// caps interface names at 15 bytes).
pub fn host_veth(uid: &str) -> String {
    let hash = Sha256::digest(uid.as_bytes());
    format!("orchv{}", &hex(&hash)[..10])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The operations the kubelet needs for pod networking.
pub trait PodNetwork: Send + Sync {
    /// Bridge with the gateway address, forwarding on, masquerade for the cluster CIDR.
    fn ensure_node(&self, node: &NodeNet) -> impl Future<Output = Result<(), NetError>> + Send;
    /// Pin the pod's namespaces and plug it into the bridge with `ip` (idempotent).
    fn setup(&self, uid: &str, node: &NodeNet, ip: Ipv4Addr) -> impl Future<Output = Result<SandboxPaths, NetError>> + Send;
    /// Remove the pod's veth and unpin its namespaces (idempotent).
    fn teardown(&self, uid: &str) -> impl Future<Output = Result<(), NetError>> + Send;
    /// Pods with pinned namespaces on this node (to find leftovers after a restart).
    fn sandboxes(&self) -> Vec<String>;
    /// Make orch's routes exactly `want` (pod CIDR → node address).
    fn sync_routes(&self, want: &BTreeMap<Ipv4Net, Ipv4Addr>) -> impl Future<Output = Result<(), NetError>> + Send;
}

/// What to change so the current routes become the wanted ones: (to replace, to delete).
pub fn route_changes(
    want: &BTreeMap<Ipv4Net, Ipv4Addr>,
    have: &BTreeMap<Ipv4Net, Ipv4Addr>,
) -> (Vec<(Ipv4Net, Ipv4Addr)>, Vec<(Ipv4Net, Ipv4Addr)>) {
    let add = want.iter().filter(|(net, via)| have.get(net) != Some(via)).map(|(n, v)| (*n, *v)).collect();
    let del = have.iter().filter(|(net, _)| !want.contains_key(net)).map(|(n, v)| (*n, *v)).collect();
    (add, del)
}

/// rtnetlink on the node's network namespace; namespaces pinned under `run_dir`.
pub struct NetlinkNetwork {
    handle: Handle,
    run_dir: PathBuf,
}

/// A netlink connection in the namespace the calling thread is in.
pub(crate) fn connect() -> std::io::Result<(Handle, tokio::task::JoinHandle<()>)> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    Ok((handle, tokio::spawn(conn)))
}

pub(crate) async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_enodev() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn libc_enodev() -> i32 {
    nix::Error::ENODEV as i32
}

async fn add_address(handle: &Handle, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
    handle.address().add(index, ip.into(), prefix).replace().execute().await?;
    Ok(())
}

impl NetlinkNetwork {
    pub fn new(run_dir: &Path) -> Result<Self, NetError> {
        let (handle, _conn) = connect()?;
        Ok(NetlinkNetwork { handle, run_dir: run_dir.to_path_buf() })
    }

    async fn routes(&self) -> Result<BTreeMap<Ipv4Net, Ipv4Addr>, NetError> {
        let mut out = BTreeMap::new();
        let mut routes = self.handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
        while let Some(r) = routes.try_next().await? {
            if r.header.protocol != RouteProtocol::Other(ROUTE_PROTO) {
                continue;
            }
            let mut dst = None;
            let mut via = None;
            for a in &r.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = Some(*d),
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => via = Some(*g),
                    _ => {}
                }
            }
            if let (Some(d), Some(g)) = (dst, via) {
                if let Ok(net) = Ipv4Net::new(d, r.header.destination_prefix_length) {
                    out.insert(net, g);
                }
            }
        }
        Ok(out)
    }

    fn route(net: Ipv4Net, via: Ipv4Addr) -> rtnetlink::packet_route::route::RouteMessage {
        RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(net.network(), net.prefix_len())
            .gateway(via)
            .protocol(RouteProtocol::Other(ROUTE_PROTO))
            .build()
    }
}

/// nftables through its CLI: one atomic ruleset file per change. The netlink encoding of
/// nftables is large and version-specific; `nft -f` is the interface its authors support.
pub fn nft(script: &str) -> Result<(), NetError> {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Nft(format!("running nft: {e}")))?;
    child.stdin.take().expect("piped stdin").write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(NetError::Nft(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(())
}

/// The bridge's MAC: fixed, locally administered, from the gateway address (`0a:58:` + the
/// IPv4 octets, as OVN-Kubernetes does). A bridge without a set address takes the lowest
/// MAC of its ports and changes it as pods come and go; pods' ARP entries for the gateway
/// then point at an address nobody answers to until they expire, and DNS queries to the
/// node (on the gateway address) are lost for tens of seconds.
pub fn bridge_mac(gateway: Ipv4Addr) -> [u8; 6] {
    let o = gateway.octets();
    [0x0a, 0x58, o[0], o[1], o[2], o[3]]
}

/// The masquerade ruleset: replace orch's NAT table atomically.
pub fn masquerade_rules(cluster: Ipv4Net) -> String {
    format!(
        "table ip {NAT_TABLE}\ndelete table ip {NAT_TABLE}\ntable ip {NAT_TABLE} {{\n  chain postrouting {{\n    \
         type nat hook postrouting priority srcnat; policy accept;\n    \
         ip saddr {cluster} ip daddr != {cluster} masquerade\n  }}\n}}\n"
    )
}

impl PodNetwork for NetlinkNetwork {
    async fn ensure_node(&self, node: &NodeNet) -> Result<(), NetError> {
        let index = match link_index(&self.handle, BRIDGE).await? {
            Some(i) => i,
            None => {
                self.handle.link().add(LinkBridge::new(BRIDGE).build()).execute().await?;
                link_index(&self.handle, BRIDGE).await?.ok_or_else(|| NetError::Netlink("bridge vanished".into()))?
            }
        };
        add_address(&self.handle, index, node.gateway(), node.pod_cidr.prefix_len()).await?;
        let mac = bridge_mac(node.gateway()).to_vec();
        self.handle.link().set(LinkUnspec::new_with_index(index).address(mac).up().build()).execute().await?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
        nft(&masquerade_rules(node.cluster_cidr))
    }

    async fn setup(&self, uid: &str, node: &NodeNet, ip: Ipv4Addr) -> Result<SandboxPaths, NetError> {
        let paths = SandboxPaths::new(&self.run_dir, uid);
        netns::pin(NsKind::Net, &paths.netns)?;
        netns::pin(NsKind::Ipc, &paths.ipcns)?;
        let host = host_veth(uid);
        if let Some(old) = link_index(&self.handle, &host).await? {
            // A half-done earlier attempt: start over (the pod side goes with its peer).
            self.handle.link().del(old).execute().await?;
        }
        let peer = format!("orchp{}", &host[5..]);
        self.handle.link().add(LinkVeth::new(&host, &peer).build()).execute().await?;
        let peer_index = link_index(&self.handle, &peer).await?.ok_or_else(|| NetError::Netlink(format!("{peer} vanished")))?;
        let ns = std::fs::File::open(&paths.netns)?;
        use std::os::fd::AsRawFd;
        self.handle.link().set(LinkUnspec::new_with_index(peer_index).setns_by_fd(ns.as_raw_fd()).build()).execute().await?;
        let host_index = link_index(&self.handle, &host).await?.ok_or_else(|| NetError::Netlink(format!("{host} vanished")))?;
        let bridge = link_index(&self.handle, BRIDGE).await?.ok_or_else(|| NetError::Netlink("no bridge".into()))?;
        self.handle.link().set(LinkUnspec::new_with_index(host_index).controller(bridge).up().build()).execute().await?;
        // Hairpin: a pod reaching itself through a Service VIP is DNAT'd back to the port
        // its packet came in on; the bridge sends it there only with hairpin mode on.
        self.handle.link().set_port(LinkBridgePort::new(host_index).hairpin(true).build()).execute().await?;

        // Inside the pod: eth0 with the pod IP, lo up, default route via the bridge.
        let runtime = tokio::runtime::Handle::current();
        let (pod, conn) = netns::in_netns(&paths.netns, move || {
            let _entered = runtime.enter();
            connect()
        })?;
        let inside = async {
            let index = link_index(&pod, &peer).await?.ok_or_else(|| NetError::Netlink(format!("{peer} not in the pod")))?;
            pod.link().set(LinkUnspec::new_with_index(index).name("eth0".to_string()).build()).execute().await?;
            add_address(&pod, index, ip, node.pod_cidr.prefix_len()).await?;
            pod.link().set(LinkUnspec::new_with_index(index).up().build()).execute().await?;
            if let Some(lo) = link_index(&pod, "lo").await? {
                pod.link().set(LinkUnspec::new_with_index(lo).up().build()).execute().await?;
            }
            let default = RouteMessageBuilder::<Ipv4Addr>::new().gateway(node.gateway()).build();
            pod.route().add(default).replace().execute().await?;
            Ok::<_, NetError>(())
        }
        .await;
        conn.abort();
        inside?;
        Ok(paths)
    }

    async fn teardown(&self, uid: &str) -> Result<(), NetError> {
        if let Some(index) = link_index(&self.handle, &host_veth(uid)).await? {
            self.handle.link().del(index).execute().await?;
        }
        let paths = SandboxPaths::new(&self.run_dir, uid);
        netns::unpin(&paths.netns)?;
        netns::unpin(&paths.ipcns)?;
        Ok(())
    }

    fn sandboxes(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.run_dir.join("netns")) else { return vec![] };
        dir.flatten().filter_map(|e| e.file_name().into_string().ok()).collect()
    }

    async fn sync_routes(&self, want: &BTreeMap<Ipv4Net, Ipv4Addr>) -> Result<(), NetError> {
        let (add, del) = route_changes(want, &self.routes().await?);
        for (net, via) in del {
            self.handle.route().del(Self::route(net, via)).execute().await?;
        }
        for (net, via) in add {
            self.handle.route().add(Self::route(net, via)).replace().execute().await?;
        }
        Ok(())
    }
}

/// A recorded call to the fake network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetCall {
    EnsureNode(Ipv4Net),
    Setup(String, Ipv4Addr),
    Teardown(String),
    Routes(Vec<(Ipv4Net, Ipv4Addr)>),
}

/// Test double: remembers sandboxes, records calls, fails `setup` on demand.
#[derive(Default)]
pub struct FakeNetwork {
    pub calls: Mutex<Vec<NetCall>>,
    pub pods: Mutex<BTreeMap<String, Ipv4Addr>>,
    pub fail_setup: Mutex<Option<String>>,
}

impl PodNetwork for FakeNetwork {
    async fn ensure_node(&self, node: &NodeNet) -> Result<(), NetError> {
        self.calls.lock().expect("fake lock").push(NetCall::EnsureNode(node.pod_cidr));
        Ok(())
    }

    async fn setup(&self, uid: &str, _node: &NodeNet, ip: Ipv4Addr) -> Result<SandboxPaths, NetError> {
        self.calls.lock().expect("fake lock").push(NetCall::Setup(uid.into(), ip));
        if let Some(msg) = self.fail_setup.lock().expect("fake lock").clone() {
            return Err(NetError::Netlink(msg));
        }
        self.pods.lock().expect("fake lock").insert(uid.into(), ip);
        Ok(SandboxPaths::new(Path::new("/fake"), uid))
    }

    async fn teardown(&self, uid: &str) -> Result<(), NetError> {
        self.calls.lock().expect("fake lock").push(NetCall::Teardown(uid.into()));
        self.pods.lock().expect("fake lock").remove(uid);
        Ok(())
    }

    fn sandboxes(&self) -> Vec<String> {
        self.pods.lock().expect("fake lock").keys().cloned().collect()
    }

    async fn sync_routes(&self, want: &BTreeMap<Ipv4Net, Ipv4Addr>) -> Result<(), NetError> {
        self.calls.lock().expect("fake lock").push(NetCall::Routes(want.iter().map(|(n, v)| (*n, *v)).collect()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn route_changes_replace_moved_and_delete_gone() {
        let want = BTreeMap::from([(net("10.244.1.0/24"), Ipv4Addr::new(10, 0, 0, 2)), (net("10.244.2.0/24"), Ipv4Addr::new(10, 0, 0, 3))]);
        let have = BTreeMap::from([(net("10.244.1.0/24"), Ipv4Addr::new(10, 0, 0, 9)), (net("10.244.3.0/24"), Ipv4Addr::new(10, 0, 0, 4))]);
        let (add, del) = route_changes(&want, &have);
        assert_eq!(add, vec![(net("10.244.1.0/24"), Ipv4Addr::new(10, 0, 0, 2)), (net("10.244.2.0/24"), Ipv4Addr::new(10, 0, 0, 3))]);
        assert_eq!(del, vec![(net("10.244.3.0/24"), Ipv4Addr::new(10, 0, 0, 4))]);
        assert_eq!(route_changes(&want, &want), (vec![], vec![]));
    }

    #[test]
    fn the_bridge_mac_is_fixed_local_and_unicast() {
        let mac = bridge_mac("10.244.3.1".parse().unwrap());
        assert_eq!(mac, [0x0a, 0x58, 10, 244, 3, 1]);
        assert_eq!(mac[0] & 0b11, 0b10, "locally administered, unicast");
    }

    #[test]
    fn names_fit_linux_limits_and_gateway_is_first_address() {
        let v = host_veth("0b5e4c1a-7f7e-4d5e-9a51-2f4c7c1d9e00");
        assert_eq!(v.len(), 15);
        assert_ne!(v, host_veth("another"));
        assert_eq!(gateway(net("10.244.3.0/24")), Ipv4Addr::new(10, 244, 3, 1));
        assert!(masquerade_rules(net("10.244.0.0/16")).contains("ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade"));
    }
}
