//! The nftables dataplane: Service VIPs and NodePorts as verdict maps in tables
//! `ip orch-proxy-NN` (services spread over `SHARDS` of them; masquerading and the
//! no-endpoints set in `ip orch-proxy`), one chain per service port picking a backend at random (or by the
//! client's address with ClientIP affinity), one chain per backend doing the DNAT. A change
//! is planned as a list of `Op`s (pure). `NftablesDataplane` pipes full syncs to `nft -f -`
//! (one atomic transaction, the interface nftables' authors support and kube-proxy's
//! nftables mode uses) and sends changes as one nf_tables netlink batch (`nft_netlink`).

use std::fmt::Write as _;
use std::process::Stdio;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::model::{Backend, Change, Protocol, Table, VirtualService};
use super::nft_netlink::{self, NftSocket};
use super::{Dataplane, DataplaneError};

/// The proxy's main table: masquerading, and rejecting connections to services without
/// endpoints.
pub const TABLE: &str = "orch-proxy";
/// Services are spread over this many tables of their own (`orch-proxy-00` ..), each with
/// its maps and nat hooks. The kernel re-validates a whole table (every chain reachable
/// from its base chains) on each commit that adds a jump or goto, so a change costs in
/// proportion to its shard, not to every service on the node. A new connection's first
/// packet passes each shard's nat hooks (a map lookup each).
pub const SHARDS: u8 = 16;
/// Packet mark asking the postrouting chain to masquerade (hairpin and NodePort traffic).
const MASQ_MARK: u32 = 0x4000;

/// Shard `i`'s table name.
pub fn shard_table(i: u8) -> String {
    format!("{TABLE}-{i:02}")
}

/// The shard a service port (`ns/name:port`) lives in; stable across restarts.
pub fn shard_of(key: &str) -> u8 {
    Sha256::digest(key.as_bytes())[0] % SHARDS
}

/// Every table, replaced atomically: the main table, then each shard with its maps and
/// base chains.
fn skeleton() -> String {
    let mut s = format!(
        "table ip {TABLE}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tset no-endpoints {{ type ipv4_addr . inet_proto . inet_service; }}\n\
         \tchain postrouting {{ type nat hook postrouting priority srcnat; policy accept; meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} masquerade; }}\n\
         \tchain filter-forward {{ type filter hook forward priority filter - 10; policy accept; ct state new ip daddr . meta l4proto . th dport @no-endpoints reject with icmp type host-unreachable; }}\n\
         \tchain filter-output {{ type filter hook output priority filter - 10; policy accept; ct state new ip daddr . meta l4proto . th dport @no-endpoints reject with icmp type host-unreachable; }}\n\
         }}\n"
    );
    for i in 0..SHARDS {
        let _ = write!(
            s,
            "table ip {t}\n\
             delete table ip {t}\n\
             table ip {t} {{\n\
             \tmap service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}\n\
             \tmap service-nodeports {{ type inet_proto . inet_service : verdict; }}\n\
             \tchain prerouting {{ type nat hook prerouting priority dstnat; policy accept; jump services; }}\n\
             \tchain output {{ type nat hook output priority -100; policy accept; jump services; }}\n\
             \tchain services {{\n\
             \t\tip daddr . meta l4proto . th dport vmap @service-ips\n\
             \t\tip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @service-nodeports\n\
             \t}}\n\
             \tchain mark-masq {{ meta mark set meta mark | {MASQ_MARK:#x}; }}\n\
             }}\n",
            t = shard_table(i)
        );
    }
    s
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Chain and set names of one service port (stable across restarts, short).
struct Names {
    svc: String,
    ext: String,
}

fn names(key: &str) -> Names {
    let h = short_hash(&[key]);
    Names { svc: format!("svc-{h}"), ext: format!("ext-{h}") }
}

/// A backend's chain; its affinity set (if any) has the same suffix, and the timeout is part
/// of the name so a changed timeout makes a new set.
fn backend_names(key: &str, vs: &VirtualService, b: &Backend) -> (String, Option<String>) {
    let h = short_hash(&[key, &b.to_string()]);
    (format!("ep-{h}"), vs.affinity_timeout.map(|t| format!("aff-{h}-{t}")))
}

/// One of the maps: the shards' verdict maps, or the main table's set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictMap {
    ServiceIps,
    NodePorts,
    NoEndpoints,
}

impl VerdictMap {
    pub fn name(self) -> &'static str {
        match self {
            VerdictMap::ServiceIps => "service-ips",
            VerdictMap::NodePorts => "service-nodeports",
            VerdictMap::NoEndpoints => "no-endpoints",
        }
    }
}

/// A map element's key: `vip . proto . port`, or `proto . node port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementKey {
    Vip { ip: std::net::Ipv4Addr, protocol: Protocol, port: u16 },
    NodePort { protocol: Protocol, port: u16 },
}

/// The few rule shapes the proxy writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `ip saddr IP jump mark-masq` (hairpin).
    MasqueradeFrom(std::net::Ipv4Addr),
    /// `jump mark-masq`.
    Masquerade,
    /// `update @SET { ip saddr }` (remember the client for affinity).
    RememberClient { set: String },
    /// `meta l4proto P dnat to IP:PORT`.
    Dnat { protocol: Protocol, backend: Backend },
    /// `ip saddr @SET goto CHAIN` (a remembered client goes back to its backend).
    StickyGoto { set: String, chain: String },
    /// `numgen random mod M == 0 goto CHAIN`.
    RandomGoto { modulus: u32, chain: String },
    /// `goto CHAIN`.
    Goto(String),
}

/// One step of a change, in one table (a `Step`). A plan is a list of steps, rendered as
/// nft syntax (`script`) or as nf_tables netlink messages (`nft_netlink`); either way one
/// transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A set of client addresses with a timeout (ClientIP affinity).
    AddAffinitySet { name: String, timeout_s: u32 },
    AddChain(String),
    FlushChain(String),
    AddRule { chain: String, rule: Rule },
    /// Add `key : goto chain` to `map` (just `key` to the no-endpoints set).
    AddElement { map: VerdictMap, key: ElementKey, chain: Option<String> },
    DeleteElement { map: VerdictMap, key: ElementKey },
    DeleteChain(String),
    DeleteSet(String),
}

/// An op and the table it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub table: String,
    pub op: Op,
}

fn vip_key(vs: &VirtualService) -> ElementKey {
    ElementKey::Vip { ip: vs.vip, protocol: vs.protocol, port: vs.port }
}

/// The steps that apply `changes` to tables holding their `old` sides.
pub fn plan(changes: &[Change]) -> Vec<Step> {
    let mut steps = vec![];
    for c in changes {
        let key = match c {
            Change::Upsert { key, .. } | Change::Remove { key, .. } => key,
        };
        let mut ops = Ops { shard: shard_table(shard_of(key)), steps: &mut steps };
        match c {
            Change::Upsert { key, old, new } => upsert(&mut ops, key, old.as_ref(), new),
            Change::Remove { key, old } => {
                remove_elements(&mut ops, old);
                remove_chains(&mut ops, key, old, &[]);
            }
        }
    }
    steps
}

/// Steps being planned for one service port: its own objects go to its shard, the
/// no-endpoints set is the main table's.
struct Ops<'a> {
    shard: String,
    steps: &'a mut Vec<Step>,
}

impl Ops<'_> {
    fn push(&mut self, op: Op) {
        let main = matches!(&op, Op::AddElement { map: VerdictMap::NoEndpoints, .. } | Op::DeleteElement { map: VerdictMap::NoEndpoints, .. });
        let table = if main { TABLE.to_string() } else { self.shard.clone() };
        self.steps.push(Step { table, op });
    }

    fn extend(&mut self, ops: impl IntoIterator<Item = Op>) {
        for op in ops {
            self.push(op);
        }
    }
}

/// `steps` in nft syntax.
pub fn script(steps: &[Step]) -> String {
    let mut s = String::new();
    for Step { table: t, op } in steps {
        let _ = match op {
            Op::AddAffinitySet { name, timeout_s } => {
                writeln!(s, "add set ip {t} {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout_s}s; }}")
            }
            Op::AddChain(c) => writeln!(s, "add chain ip {t} {c}"),
            Op::FlushChain(c) => writeln!(s, "flush chain ip {t} {c}"),
            Op::AddRule { chain, rule } => {
                let r = match rule {
                    Rule::MasqueradeFrom(ip) => format!("ip saddr {ip} jump mark-masq"),
                    Rule::Masquerade => "jump mark-masq".to_string(),
                    Rule::RememberClient { set } => format!("update @{set} {{ ip saddr }}"),
                    Rule::Dnat { protocol, backend } => format!("meta l4proto {} dnat to {}:{}", protocol.name(), backend.ip, backend.port),
                    Rule::StickyGoto { set, chain } => format!("ip saddr @{set} goto {chain}"),
                    Rule::RandomGoto { modulus, chain } => format!("numgen random mod {modulus} == 0 goto {chain}"),
                    Rule::Goto(c) => format!("goto {c}"),
                };
                writeln!(s, "add rule ip {t} {chain} {r}")
            }
            Op::AddElement { map, key, chain: Some(chain) } => writeln!(s, "add element ip {t} {} {{ {} : goto {chain} }}", map.name(), key_text(key)),
            Op::AddElement { map, key, chain: None } => writeln!(s, "add element ip {t} {} {{ {} }}", map.name(), key_text(key)),
            Op::DeleteElement { map, key } => writeln!(s, "delete element ip {t} {} {{ {} }}", map.name(), key_text(key)),
            Op::DeleteChain(c) => writeln!(s, "delete chain ip {t} {c}"),
            Op::DeleteSet(set) => writeln!(s, "delete set ip {t} {set}"),
        };
    }
    s
}

fn key_text(key: &ElementKey) -> String {
    match key {
        ElementKey::Vip { ip, protocol, port } => format!("{ip} . {} . {port}", protocol.name()),
        ElementKey::NodePort { protocol, port } => format!("{} . {port}", protocol.name()),
    }
}

/// The script that applies `changes` to a table holding their `old` sides.
pub fn change_script(changes: &[Change]) -> String {
    script(&plan(changes))
}

/// The whole table for `table`, from scratch.
pub fn full_script(table: &Table) -> String {
    let mut steps = vec![];
    for (key, vs) in table {
        upsert(&mut Ops { shard: shard_table(shard_of(key)), steps: &mut steps }, key, None, vs);
    }
    skeleton() + &script(&steps)
}

fn upsert(ops: &mut Ops, key: &str, old: Option<&VirtualService>, new: &VirtualService) {
    let n = names(key);
    let rule = |chain: &str, rule: Rule| Op::AddRule { chain: chain.to_string(), rule };
    // Backend chains first: the service chain refers to them.
    for b in &new.backends {
        let (ep, aff) = backend_names(key, new, b);
        if let Some(aff) = &aff {
            ops.push(Op::AddAffinitySet { name: aff.clone(), timeout_s: new.affinity_timeout.unwrap_or(0) });
        }
        ops.extend([Op::AddChain(ep.clone()), Op::FlushChain(ep.clone())]);
        // Hairpin: a pod reaching itself through the service must see the reply come back
        // through the node, so its source is masqueraded.
        ops.push(rule(&ep, Rule::MasqueradeFrom(b.ip)));
        if let Some(aff) = &aff {
            ops.push(rule(&ep, Rule::RememberClient { set: aff.clone() }));
        }
        ops.push(rule(&ep, Rule::Dnat { protocol: new.protocol, backend: *b }));
    }
    ops.extend([Op::AddChain(n.svc.clone()), Op::FlushChain(n.svc.clone())]);
    for b in &new.backends {
        if let (ep, Some(aff)) = backend_names(key, new, b) {
            ops.push(rule(&n.svc, Rule::StickyGoto { set: aff, chain: ep }));
        }
    }
    // A uniform random pick, one rule per backend: rule i takes 1/(N-i) of what reaches it.
    // (A `numgen ... vmap { ... }` would make an anonymous map per service, and the kernel
    // names those by scanning every set of the table: a 10,000-service load took 42 s.)
    let count = new.backends.len();
    for (i, b) in new.backends.iter().enumerate() {
        let ep = backend_names(key, new, b).0;
        if i + 1 < count {
            ops.push(rule(&n.svc, Rule::RandomGoto { modulus: (count - i) as u32, chain: ep }));
        } else {
            ops.push(rule(&n.svc, Rule::Goto(ep)));
        }
    }
    if new.node_port.is_some() {
        ops.extend([Op::AddChain(n.ext.clone()), Op::FlushChain(n.ext.clone())]);
        ops.extend([rule(&n.ext, Rule::Masquerade), rule(&n.ext, Rule::Goto(n.svc.clone()))]);
    }
    if let Some(old) = old {
        remove_elements(ops, old);
    }
    if new.backends.is_empty() {
        ops.push(Op::AddElement { map: VerdictMap::NoEndpoints, key: vip_key(new), chain: None });
    } else {
        ops.push(Op::AddElement { map: VerdictMap::ServiceIps, key: vip_key(new), chain: Some(n.svc.clone()) });
        if let Some(np) = new.node_port {
            ops.push(Op::AddElement { map: VerdictMap::NodePorts, key: ElementKey::NodePort { protocol: new.protocol, port: np }, chain: Some(n.ext.clone()) });
        }
    }
    if let Some(old) = old {
        remove_chains(ops, key, old, std::slice::from_ref(new));
    }
}

fn remove_elements(ops: &mut Ops, old: &VirtualService) {
    if old.backends.is_empty() {
        ops.push(Op::DeleteElement { map: VerdictMap::NoEndpoints, key: vip_key(old) });
    } else {
        ops.push(Op::DeleteElement { map: VerdictMap::ServiceIps, key: vip_key(old) });
        if let Some(np) = old.node_port {
            ops.push(Op::DeleteElement { map: VerdictMap::NodePorts, key: ElementKey::NodePort { protocol: old.protocol, port: np } });
        }
    }
}

/// Delete the chains and sets of `old` that `keep` (the replacement, if any) does not use.
fn remove_chains(ops: &mut Ops, key: &str, old: &VirtualService, keep: &[VirtualService]) {
    let n = names(key);
    let replaced = keep.first();
    if old.node_port.is_some() && replaced.is_none_or(|k| k.node_port.is_none()) {
        ops.push(Op::DeleteChain(n.ext.clone()));
    }
    if replaced.is_none() {
        ops.push(Op::DeleteChain(n.svc.clone()));
    }
    for b in &old.backends {
        let (ep, aff) = backend_names(key, old, b);
        let kept = replaced.map(|k| (k.backends.contains(b), backend_names(key, k, b).1));
        if !kept.as_ref().is_some_and(|(has, _)| *has) {
            ops.push(Op::DeleteChain(ep));
        }
        if let Some(aff) = aff {
            if kept.as_ref().is_none_or(|(has, new_aff)| !has || new_aff.as_deref() != Some(aff.as_str())) {
                ops.push(Op::DeleteSet(aff));
            }
        }
    }
}

/// nftables in the namespace orchd runs in (or in a named one, for tests): full syncs
/// with `nft -f`, changes as netlink batches (`nft_netlink`; see there why).
pub struct NftablesDataplane {
    command: Vec<String>,
    netns: Option<String>,
    socket: Option<NftSocket>,
}

impl NftablesDataplane {
    pub fn new() -> Self {
        NftablesDataplane { command: vec!["nft".into()], netns: None, socket: None }
    }

    /// Work in network namespace `netns` (`ip netns` name): nft through `ip netns exec`,
    /// the netlink socket opened there.
    pub fn in_netns(netns: &str) -> Self {
        let command = ["ip", "netns", "exec", netns, "nft"].map(String::from).to_vec();
        NftablesDataplane { command, netns: Some(netns.to_string()), socket: None }
    }

    /// Apply `steps` through the netlink socket (opened on first use).
    fn send(&mut self, steps: &[Step]) -> Result<(), DataplaneError> {
        if self.socket.is_none() {
            self.socket = Some(match &self.netns {
                Some(ns) => NftSocket::open_in(ns)?,
                None => NftSocket::open()?,
            });
        }
        self.socket.as_mut().expect("opened above").apply(steps)
    }

    /// Apply one nft script as a single transaction.
    pub async fn run_script(&self, script: &str) -> Result<(), DataplaneError> {
        let mut child = tokio::process::Command::new(&self.command[0])
            .args(&self.command[1..])
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| DataplaneError(format!("running nft: {e}")))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(script.as_bytes()).await.map_err(|e| DataplaneError(format!("writing to nft: {e}")))?;
        drop(stdin);
        let out = child.wait_with_output().await.map_err(|e| DataplaneError(format!("nft: {e}")))?;
        if !out.status.success() {
            return Err(DataplaneError(format!("nft -f failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        Ok(())
    }

    /// Remove the table (when the proxy role ends for good, and in tests).
    pub async fn remove(&self) -> Result<(), DataplaneError> {
        let mut script = String::new();
        for t in std::iter::once(TABLE.to_string()).chain((0..SHARDS).map(shard_table)) {
            let _ = writeln!(script, "table ip {t}\ndelete table ip {t}");
        }
        self.run_script(&script).await
    }
}

impl Default for NftablesDataplane {
    fn default() -> Self {
        Self::new()
    }
}

impl Dataplane for NftablesDataplane {
    fn mode(&self) -> &'static str {
        "nftables"
    }

    async fn sync(&mut self, table: &Table) -> Result<(), DataplaneError> {
        self.run_script(&full_script(table)).await
    }

    async fn apply(&mut self, changes: &[Change]) -> Result<(), DataplaneError> {
        let steps = plan(changes);
        if steps.is_empty() {
            return Ok(());
        }
        if nft_netlink::batch(&steps, 0).len() > nft_netlink::MAX_BATCH {
            return self.run_script(&script(&steps)).await;
        }
        self.send(&steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(backends: &[&str], node_port: Option<u16>, affinity: Option<u32>) -> VirtualService {
        VirtualService {
            vip: "10.96.0.10".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
            node_port,
            affinity_timeout: affinity,
            backends: backends.iter().map(|ip| Backend { ip: ip.parse().unwrap(), port: 8080 }).collect(),
        }
    }

    /// The script for `changes` (all of one service port), its shard's name as `SHARD`.
    fn shard_script(changes: &[Change]) -> String {
        let (Change::Upsert { key, .. } | Change::Remove { key, .. }) = &changes[0];
        change_script(changes).replace(&format!("ip {} ", shard_table(shard_of(key))), "ip SHARD ")
    }

    fn lines(s: &str) -> Vec<&str> {
        s.lines().collect()
    }

    #[test]
    fn a_new_service_gets_backend_chains_a_random_pick_and_its_map_elements() {
        let s = shard_script(&[Change::Upsert { key: "default/web:".into(), old: None, new: vs(&["10.244.0.2", "10.244.1.3"], Some(30080), None) }]);
        let n = names("default/web:");
        let (ep0, _) = backend_names("default/web:", &vs(&[], None, None), &Backend { ip: "10.244.0.2".parse().unwrap(), port: 8080 });
        assert!(s.contains(&format!("add rule ip SHARD {ep0} ip saddr 10.244.0.2 jump mark-masq\n")), "{s}");
        assert!(s.contains(&format!("add rule ip SHARD {ep0} meta l4proto tcp dnat to 10.244.0.2:8080\n")));
        assert!(s.contains(&format!("numgen random mod 2 == 0 goto {ep0}\n")), "{s}");
        assert!(s.contains(&format!("add rule ip SHARD {} goto ep-", n.svc)));
        assert!(s.contains(&format!("add element ip SHARD service-ips {{ 10.96.0.10 . tcp . 80 : goto {} }}", n.svc)));
        assert!(s.contains(&format!("add element ip SHARD service-nodeports {{ tcp . 30080 : goto {} }}", n.ext)));
        // Chains are defined before the rules and elements that jump to them.
        let pos = |needle: &str| s.find(needle).unwrap();
        assert!(pos(&format!("add chain ip SHARD {ep0}")) < pos("numgen"));
        assert!(pos(&format!("add chain ip SHARD {}", n.ext)) < pos("service-nodeports"));
        assert!(!s.contains("delete"));
    }

    #[test]
    fn an_endpoint_change_touches_only_that_service_and_deletes_what_left() {
        let old = vs(&["10.244.0.2", "10.244.1.3"], None, None);
        let new = vs(&["10.244.1.3", "10.244.2.4"], None, None);
        let s = shard_script(&[Change::Upsert { key: "default/web:".into(), old: Some(old.clone()), new }]);
        let (gone, _) = backend_names("default/web:", &old, &old.backends[0]);
        let l = lines(&s);
        assert_eq!(l.iter().filter(|l| l.starts_with("delete chain")).collect::<Vec<_>>(), vec![&format!("delete chain ip SHARD {gone}").as_str()]);
        // The old element goes before the new one is added, and the gone chain only after
        // the service chain stopped jumping to it.
        let pos = |needle: &str| s.find(needle).unwrap();
        assert!(pos("delete element ip SHARD service-ips") < pos("add element ip SHARD service-ips"));
        assert!(pos("numgen") < pos(&format!("delete chain ip SHARD {gone}")));
    }

    #[test]
    fn services_without_endpoints_reject_and_removal_cleans_up() {
        let empty = vs(&[], Some(30080), Some(60));
        let s = shard_script(&[Change::Upsert { key: "k".into(), old: None, new: empty.clone() }]);
        assert!(s.contains("add element ip orch-proxy no-endpoints { 10.96.0.10 . tcp . 80 }"));
        assert!(!s.contains("service-ips"));
        let sticky = vs(&["10.244.0.9"], Some(30080), Some(60));
        let s = shard_script(&[Change::Upsert { key: "k".into(), old: Some(empty), new: sticky.clone() }]);
        assert!(s.contains("delete element ip orch-proxy no-endpoints { 10.96.0.10 . tcp . 80 }"));
        let (ep, aff) = backend_names("k", &sticky, &sticky.backends[0]);
        let aff = aff.unwrap();
        assert!(aff.ends_with("-60"));
        assert!(s.contains(&format!("add set ip SHARD {aff} {{ type ipv4_addr; flags dynamic,timeout; timeout 60s; }}")));
        assert!(s.contains(&format!("ip saddr @{aff} goto {ep}")));
        let s = shard_script(&[Change::Remove { key: "k".into(), old: sticky }]);
        let n = names("k");
        for want in [
            "delete element ip SHARD service-ips { 10.96.0.10 . tcp . 80 }".to_string(),
            "delete element ip SHARD service-nodeports { tcp . 30080 }".to_string(),
            format!("delete chain ip SHARD {}", n.ext),
            format!("delete chain ip SHARD {}", n.svc),
            format!("delete chain ip SHARD {ep}"),
            format!("delete set ip SHARD {aff}"),
        ] {
            assert!(lines(&s).contains(&want.as_str()), "missing {want:?} in\n{s}");
        }
    }

    #[test]
    fn a_full_sync_replaces_every_table_atomically() {
        let table = Table::from([("default/web:".to_string(), vs(&["10.244.0.2"], None, None))]);
        let s = full_script(&table);
        assert!(s.starts_with("table ip orch-proxy\ndelete table ip orch-proxy\ntable ip orch-proxy {"));
        assert!(s.contains(&format!("add element ip {} service-ips", shard_table(shard_of("default/web:")))));
        for i in 0..SHARDS {
            let t = shard_table(i);
            assert!(s.contains(&format!("delete table ip {t}\ntable ip {t} {{\n\tmap service-ips")), "shard {i} remade");
        }
    }
}
