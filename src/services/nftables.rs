//! The nftables dataplane. Service VIPs and NodePorts live in table `ip orch-proxy` as
//! data, not as rules: for each endpoint count N in use, a map `vip-N` from `VIP . protocol
//! . port . slot` to a backend and one rule `dnat ip to ip daddr . meta l4proto . th dport .
//! numgen random mod N map @vip-N` (likewise `np-N` for NodePorts), so an endpoint change
//! is a few map elements. ClientIP affinity services need chains and live apart
//! (`nft_affinity`). A change is planned as `Step`s (pure, `Planner`); full syncs go to
//! `nft -f -` (one atomic transaction, the interface nftables' authors support), changes
//! as one nf_tables netlink batch (`nft_netlink`).
//!
//! Why data and not chains: the kernel re-validates every chain reachable in a table on
//! each commit that adds a rule with a jump, goto, NAT or vmap element (measured here on
//! Linux 6.18: 42 ms per change at 10,000 services in one table). Element updates of
//! maps without verdicts are not validated, so a change costs what it changes, whatever the
//! number of services.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::model::{Backend, Change, Protocol, Table, VirtualService};
use super::nft_affinity;
use super::nft_netlink::{self, NftSocket};
use super::{Dataplane, DataplaneError};

/// The proxy's table.
pub const TABLE: &str = "orch-proxy";
/// Packet mark asking the postrouting chain to masquerade (NodePort traffic, and hairpin
/// traffic of affinity services).
const MASQ_MARK: u32 = 0x4000;
/// Endpoint-count classes a table always has (1..=this); more are made by a full sync
/// when a service first grows past them.
const MIN_CLASSES: usize = 8;
/// Tables of earlier versions (services spread over 16 shard tables), removed by a full sync.
const LEGACY_SHARDS: u8 = 16;
const NO_ENDPOINTS: &str = "no-endpoints";
const NODEPORTS: &str = "nodeports";
const HAIRPIN: &str = "hairpin";

fn vip_map(n: usize) -> String {
    format!("vip-{n}")
}

fn nodeport_map(n: usize) -> String {
    format!("np-{n}")
}

/// One field of a set element's key, laid out as nftables stores concatenations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Ip(Ipv4Addr),
    Proto(Protocol),
    Port(u16),
    /// A backend's index (what `numgen` yields).
    Slot(u32),
}

/// What an element maps its key to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementData {
    Goto(String),
    Backend(Backend),
}

/// `vip . proto . port`.
pub fn key_of_vip(vs: &VirtualService) -> Vec<Field> {
    vec![Field::Ip(vs.vip), Field::Proto(vs.protocol), Field::Port(vs.port)]
}

/// `proto . node port`.
pub fn key_of_nodeport(protocol: Protocol, port: u16) -> Vec<Field> {
    vec![Field::Proto(protocol), Field::Port(port)]
}

/// The few rule shapes changes add (all in affinity chains).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `ip saddr IP jump mark-masq` (hairpin).
    MasqueradeFrom(Ipv4Addr),
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
    AddElement { set: String, key: Vec<Field>, data: Option<ElementData> },
    DeleteElement { set: String, key: Vec<Field> },
    DeleteChain(String),
    DeleteSet(String),
}

/// An op and the table it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub table: String,
    pub op: Op,
}

/// The tables, emptied and remade (`classes` endpoint-count classes), and the tables of
/// earlier versions removed.
fn skeleton(classes: usize) -> String {
    let mut maps = String::new();
    let (mut vip_rules, mut np_rules) = (String::new(), String::new());
    for n in 1..=classes {
        let (vip, np) = (vip_map(n), nodeport_map(n));
        let _ = write!(
            maps,
            "\tmap {vip} {{ typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . tcp dport; }}\n\
             \tmap {np} {{ typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . tcp dport; }}\n"
        );
        let _ = writeln!(vip_rules, "\t\tdnat ip to ip daddr . meta l4proto . th dport . numgen random mod {n} map @{vip}");
        let _ = writeln!(np_rules, "\t\tdnat ip to meta l4proto . th dport . numgen random mod {n} map @{np}");
    }
    let mut s = String::new();
    for i in 0..LEGACY_SHARDS {
        let _ = writeln!(s, "table ip {TABLE}-{i:02}\ndelete table ip {TABLE}-{i:02}");
    }
    let _ = write!(
        s,
        "table ip {TABLE}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tset {NO_ENDPOINTS} {{ type ipv4_addr . inet_proto . inet_service; }}\n\
         \tset {NODEPORTS} {{ type inet_proto . inet_service; }}\n\
         \tset {HAIRPIN} {{ type ipv4_addr . ipv4_addr; }}\n\
         {maps}\
         \tchain services {{\n\
         {vip_rules}\
         \t\tip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport @{NODEPORTS} jump nodeports\n\
         \t}}\n\
         \tchain nodeports {{\n\
         \t\tmeta mark set meta mark | {MASQ_MARK:#x}\n\
         {np_rules}\
         \t}}\n\
         \tchain prerouting {{ type nat hook prerouting priority dstnat; policy accept; jump services; }}\n\
         \tchain output {{ type nat hook output priority -100; policy accept; jump services; }}\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tmeta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} masquerade\n\
         \t\tct status dnat ip saddr . ip daddr @{HAIRPIN} masquerade\n\
         \t}}\n\
         \tchain filter-forward {{ type filter hook forward priority filter - 10; policy accept; ct state new ip daddr . meta l4proto . th dport @{NO_ENDPOINTS} reject with icmp type host-unreachable; }}\n\
         \tchain filter-output {{ type filter hook output priority filter - 10; policy accept; ct state new ip daddr . meta l4proto . th dport @{NO_ENDPOINTS} reject with icmp type host-unreachable; }}\n\
         }}\n"
    );
    s + &nft_affinity::skeleton(MASQ_MARK)
}

/// What planning a change needs to know of the table besides the change: how many
/// endpoint-count classes it has, and how many backends use each hairpin address (a pod
/// reaching itself through a service: the reply must come back through the node, so its
/// source is masqueraded; `ip saddr . ip daddr` in `hairpin`, one element per address
/// however many services it backs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Planner {
    classes: usize,
    hairpin: HashMap<Ipv4Addr, u32>,
}

fn plain(vs: Option<&VirtualService>) -> Option<&VirtualService> {
    vs.filter(|v| v.affinity_timeout.is_none())
}

fn with_affinity(vs: Option<&VirtualService>) -> Option<&VirtualService> {
    vs.filter(|v| v.affinity_timeout.is_some())
}

/// Distinct backend addresses of a service without affinity.
fn hairpin_ips(vs: Option<&VirtualService>) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = plain(vs).map(|v| v.backends.iter().map(|b| b.ip).collect()).unwrap_or_default();
    ips.sort();
    ips.dedup();
    ips
}

/// The map elements of a service without affinity: (map, key, backend).
fn slots(vs: Option<&VirtualService>) -> Vec<(String, Vec<Field>, Backend)> {
    let Some(vs) = plain(vs) else { return vec![] };
    let n = vs.backends.len();
    let mut out = vec![];
    for (i, b) in vs.backends.iter().enumerate() {
        let mut key = key_of_vip(vs);
        key.push(Field::Slot(i as u32));
        out.push((vip_map(n), key, *b));
        if let Some(np) = vs.node_port {
            let mut key = key_of_nodeport(vs.protocol, np);
            key.push(Field::Slot(i as u32));
            out.push((nodeport_map(n), key, *b));
        }
    }
    out
}

impl Planner {
    /// The planner for a table a full sync just wrote.
    pub fn after_sync(table: &Table) -> Planner {
        let mut p = Planner { classes: classes_for(table), hairpin: HashMap::new() };
        for vs in table.values() {
            for ip in hairpin_ips(Some(vs)) {
                *p.hairpin.entry(ip).or_default() += 1;
            }
        }
        p
    }

    /// The steps that apply `changes` to the table, or None when a service has more
    /// endpoints than the table has classes (a full sync makes them).
    pub fn plan(&mut self, changes: &[Change]) -> Option<Vec<Step>> {
        let too_big = |c: &Change| matches!(c, Change::Upsert { new, .. } if plain(Some(new)).is_some_and(|v| v.backends.len() > self.classes));
        if changes.iter().any(too_big) {
            return None;
        }
        let mut steps = vec![];
        for c in changes {
            let (key, old, new) = match c {
                Change::Upsert { key, old, new } => (key, old.as_ref(), Some(new)),
                Change::Remove { key, old } => (key, Some(old), None),
            };
            self.plan_one(&mut steps, key, old, new);
        }
        Some(steps)
    }

    fn plan_one(&mut self, steps: &mut Vec<Step>, key: &str, old: Option<&VirtualService>, new: Option<&VirtualService>) {
        let main = |op: Op| Step { table: TABLE.to_string(), op };
        let hairpin_key = |ip: Ipv4Addr| vec![Field::Ip(ip), Field::Ip(ip)];
        let nodeport = |vs: Option<&VirtualService>| plain(vs).filter(|v| !v.backends.is_empty()).and_then(|v| Some(key_of_nodeport(v.protocol, v.node_port?)));
        let (old_np, new_np) = (nodeport(old), nodeport(new));
        let (old_slots, new_slots) = (slots(old), slots(new));
        let (old_ips, new_ips) = (hairpin_ips(old), hairpin_ips(new));

        // What goes away first: a service may move between the tables under the same VIP.
        if let Some(old) = old.filter(|o| o.backends.is_empty()) {
            steps.push(main(Op::DeleteElement { set: NO_ENDPOINTS.into(), key: key_of_vip(old) }));
        }
        if let Some(np) = old_np.clone().filter(|np| new_np.as_ref() != Some(np)) {
            steps.push(main(Op::DeleteElement { set: NODEPORTS.into(), key: np }));
        }
        for (map, k, _) in old_slots.iter().filter(|s| !new_slots.contains(s)) {
            steps.push(main(Op::DeleteElement { set: map.clone(), key: k.clone() }));
        }
        if let (Some(o), None) = (with_affinity(old), with_affinity(new)) {
            nft_affinity::remove(steps, key, o);
        }
        for ip in old_ips.iter().filter(|ip| !new_ips.contains(ip)) {
            let count = self.hairpin.entry(*ip).or_default();
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.hairpin.remove(ip);
                steps.push(main(Op::DeleteElement { set: HAIRPIN.into(), key: hairpin_key(*ip) }));
            }
        }

        // Then what comes.
        for ip in new_ips.iter().filter(|ip| !old_ips.contains(ip)) {
            let count = self.hairpin.entry(*ip).or_default();
            *count += 1;
            if *count == 1 {
                steps.push(main(Op::AddElement { set: HAIRPIN.into(), key: hairpin_key(*ip), data: None }));
            }
        }
        for (map, k, b) in new_slots.iter().filter(|s| !old_slots.contains(s)) {
            steps.push(main(Op::AddElement { set: map.clone(), key: k.clone(), data: Some(ElementData::Backend(*b)) }));
        }
        if let Some(np) = new_np.filter(|np| old_np.as_ref() != Some(np)) {
            steps.push(main(Op::AddElement { set: NODEPORTS.into(), key: np, data: None }));
        }
        if let Some(n) = with_affinity(new) {
            nft_affinity::upsert(steps, key, with_affinity(old), n);
        }
        if let Some(new) = new.filter(|n| n.backends.is_empty()) {
            steps.push(main(Op::AddElement { set: NO_ENDPOINTS.into(), key: key_of_vip(new), data: None }));
        }
    }
}

/// How many endpoint-count classes a table for `table` has.
fn classes_for(table: &Table) -> usize {
    table.values().filter(|v| v.affinity_timeout.is_none()).map(|v| v.backends.len()).max().unwrap_or(0).max(MIN_CLASSES)
}

fn field_text(f: &Field) -> String {
    match f {
        Field::Ip(ip) => ip.to_string(),
        Field::Proto(p) => p.name().to_string(),
        Field::Port(p) => p.to_string(),
        Field::Slot(s) => s.to_string(),
    }
}

fn key_text(key: &[Field]) -> String {
    key.iter().map(field_text).collect::<Vec<_>>().join(" . ")
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
            Op::AddElement { set, key, data } => {
                let data = match data {
                    None => String::new(),
                    Some(ElementData::Goto(chain)) => format!(" : goto {chain}"),
                    Some(ElementData::Backend(b)) => format!(" : {} . {}", b.ip, b.port),
                };
                writeln!(s, "add element ip {t} {set} {{ {}{data} }}", key_text(key))
            }
            Op::DeleteElement { set, key } => writeln!(s, "delete element ip {t} {set} {{ {} }}", key_text(key)),
            Op::DeleteChain(c) => writeln!(s, "delete chain ip {t} {c}"),
            Op::DeleteSet(set) => writeln!(s, "delete set ip {t} {set}"),
        };
    }
    s
}

/// The whole ruleset for `table`, from scratch, and the planner for what it leaves.
pub fn full_script(table: &Table) -> (String, Planner) {
    let mut planner = Planner { classes: classes_for(table), hairpin: HashMap::new() };
    let mut steps = vec![];
    for (key, vs) in table {
        planner.plan_one(&mut steps, key, None, Some(vs));
    }
    debug_assert_eq!(planner, Planner::after_sync(table));
    (skeleton(planner.classes) + &script(&steps), planner)
}

/// nftables in the namespace orchd runs in (or in a named one, for tests): full syncs
/// with `nft -f`, changes as netlink batches (`nft_netlink`; see there why).
pub struct NftablesDataplane {
    command: Vec<String>,
    netns: Option<String>,
    socket: Option<NftSocket>,
    /// What the table holds beyond what the changes say; None before the first full sync.
    planner: Option<Planner>,
}

impl NftablesDataplane {
    pub fn new() -> Self {
        NftablesDataplane { command: vec!["nft".into()], netns: None, socket: None, planner: None }
    }

    /// Work in network namespace `netns` (`ip netns` name): nft through `ip netns exec`,
    /// the netlink socket opened there.
    pub fn in_netns(netns: &str) -> Self {
        let command = ["ip", "netns", "exec", netns, "nft"].map(String::from).to_vec();
        NftablesDataplane { command, netns: Some(netns.to_string()), socket: None, planner: None }
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

    /// Remove the tables (when the proxy role ends for good, and in tests).
    pub async fn remove(&self) -> Result<(), DataplaneError> {
        let mut script = String::new();
        for t in [TABLE.to_string(), nft_affinity::TABLE.to_string()] {
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
        self.planner = None;
        let (script, planner) = full_script(table);
        self.run_script(&script).await?;
        self.planner = Some(planner);
        Ok(())
    }

    async fn apply(&mut self, changes: &[Change], all: &Table) -> Result<(), DataplaneError> {
        // On failure the planner is gone and the next call must be a full sync.
        let mut planner = self.planner.take().ok_or_else(|| DataplaneError("no full sync yet".into()))?;
        let Some(steps) = planner.plan(changes) else {
            // A service grew past the table's endpoint-count classes.
            return self.sync(all).await;
        };
        if nft_netlink::batch(&steps, 0).len() > nft_netlink::MAX_BATCH {
            self.run_script(&script(&steps)).await?;
        } else {
            self.send(&steps)?;
        }
        self.planner = Some(planner);
        Ok(())
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

    fn upsert(key: &str, old: Option<&VirtualService>, new: &VirtualService) -> Change {
        Change::Upsert { key: key.into(), old: old.cloned(), new: new.clone() }
    }

    fn lines(s: &str) -> Vec<&str> {
        s.lines().collect()
    }

    #[test]
    fn a_new_service_is_map_elements_only() {
        let mut p = Planner::after_sync(&Table::new());
        let s = script(&p.plan(&[upsert("default/web:", None, &vs(&["10.244.0.2", "10.244.1.3"], Some(30080), None))]).unwrap());
        assert_eq!(
            lines(&s),
            vec![
                "add element ip orch-proxy hairpin { 10.244.0.2 . 10.244.0.2 }",
                "add element ip orch-proxy hairpin { 10.244.1.3 . 10.244.1.3 }",
                "add element ip orch-proxy vip-2 { 10.96.0.10 . tcp . 80 . 0 : 10.244.0.2 . 8080 }",
                "add element ip orch-proxy np-2 { tcp . 30080 . 0 : 10.244.0.2 . 8080 }",
                "add element ip orch-proxy vip-2 { 10.96.0.10 . tcp . 80 . 1 : 10.244.1.3 . 8080 }",
                "add element ip orch-proxy np-2 { tcp . 30080 . 1 : 10.244.1.3 . 8080 }",
                "add element ip orch-proxy nodeports { tcp . 30080 }",
            ]
        );
    }

    #[test]
    fn an_endpoint_change_replaces_only_the_slots_that_changed_deletes_first() {
        let old = vs(&["10.244.0.2", "10.244.1.3", "10.244.2.4"], None, None);
        let new = vs(&["10.244.0.2", "10.244.1.3", "10.244.2.5"], None, None);
        let mut p = Planner::after_sync(&Table::from([("default/web:".to_string(), old.clone())]));
        let s = script(&p.plan(&[upsert("default/web:", Some(&old), &new)]).unwrap());
        assert_eq!(
            lines(&s),
            vec![
                "delete element ip orch-proxy vip-3 { 10.96.0.10 . tcp . 80 . 2 }",
                "delete element ip orch-proxy hairpin { 10.244.2.4 . 10.244.2.4 }",
                "add element ip orch-proxy hairpin { 10.244.2.5 . 10.244.2.5 }",
                "add element ip orch-proxy vip-3 { 10.96.0.10 . tcp . 80 . 2 : 10.244.2.5 . 8080 }",
            ]
        );
        // A count change moves the service to another class.
        let fewer = vs(&["10.244.0.2", "10.244.1.3"], None, None);
        let s = script(&p.plan(&[upsert("default/web:", Some(&new), &fewer)]).unwrap());
        assert_eq!(lines(&s).iter().filter(|l| l.starts_with("delete element ip orch-proxy vip-3")).count(), 3, "{s}");
        assert_eq!(lines(&s).iter().filter(|l| l.starts_with("add element ip orch-proxy vip-2")).count(), 2, "{s}");
    }

    #[test]
    fn a_hairpin_address_stays_while_any_service_has_it() {
        let a = vs(&["10.244.0.2"], None, None);
        let b = VirtualService { vip: "10.96.0.11".parse().unwrap(), ..a.clone() };
        let mut p = Planner::after_sync(&Table::new());
        let s = script(&p.plan(&[upsert("ns/a:", None, &a), upsert("ns/b:", None, &b)]).unwrap());
        assert_eq!(s.matches("hairpin").count(), 1, "{s}");
        let s = script(&p.plan(&[Change::Remove { key: "ns/a:".into(), old: a }]).unwrap());
        assert!(!s.contains("hairpin"), "{s}");
        let s = script(&p.plan(&[Change::Remove { key: "ns/b:".into(), old: b }]).unwrap());
        assert!(s.contains("delete element ip orch-proxy hairpin { 10.244.0.2 . 10.244.0.2 }"), "{s}");
        assert_eq!(p, Planner::after_sync(&Table::new()));
    }

    #[test]
    fn services_without_endpoints_reject_until_they_have_some() {
        let mut p = Planner::after_sync(&Table::new());
        let empty = vs(&[], Some(30080), None);
        let s = script(&p.plan(&[upsert("k", None, &empty)]).unwrap());
        assert_eq!(lines(&s), vec!["add element ip orch-proxy no-endpoints { 10.96.0.10 . tcp . 80 }"]);
        let s = script(&p.plan(&[upsert("k", Some(&empty), &vs(&["10.244.0.9"], Some(30080), None))]).unwrap());
        assert_eq!(lines(&s)[0], "delete element ip orch-proxy no-endpoints { 10.96.0.10 . tcp . 80 }");
        assert!(s.contains("add element ip orch-proxy nodeports { tcp . 30080 }"));
    }

    #[test]
    fn a_service_outgrowing_the_classes_needs_a_full_sync_that_makes_its_class() {
        let mut p = Planner::after_sync(&Table::new());
        let ips: Vec<String> = (0..MIN_CLASSES + 1).map(|i| format!("10.244.0.{}", i + 1)).collect();
        let big = vs(&ips.iter().map(String::as_str).collect::<Vec<_>>(), None, None);
        let before = p.clone();
        assert_eq!(p.plan(&[upsert("k", None, &big)]), None);
        assert_eq!(p, before, "nothing planned, nothing counted");
        let (full, after) = full_script(&Table::from([("k".to_string(), big.clone())]));
        let n = MIN_CLASSES + 1;
        assert!(full.contains(&format!("numgen random mod {n} map @vip-{n}\n")), "{full}");
        assert!(full.contains(&format!("add element ip orch-proxy vip-{n} {{ 10.96.0.10 . tcp . 80 . {} : ", n - 1)));
        let mut after = after;
        assert!(after.plan(&[upsert("k", Some(&big), &big)]).is_some());
    }

    #[test]
    fn switching_affinity_moves_a_service_between_tables() {
        let plain = vs(&["10.244.0.2"], None, None);
        let sticky = vs(&["10.244.0.2"], None, Some(60));
        let mut p = Planner::after_sync(&Table::from([("k".to_string(), plain.clone())]));
        let s = script(&p.plan(&[upsert("k", Some(&plain), &sticky)]).unwrap());
        let pos = |needle: &str| s.find(needle).unwrap_or_else(|| panic!("{needle} in\n{s}"));
        assert!(pos("delete element ip orch-proxy vip-1 { 10.96.0.10 . tcp . 80 . 0 }") < pos("add element ip orch-proxy-affinity service-ips"));
        assert!(s.contains("delete element ip orch-proxy hairpin"), "affinity services masquerade hairpins in their own chains");
        let s = script(&p.plan(&[upsert("k", Some(&sticky), &plain)]).unwrap());
        assert!(pos_of(&s, "delete element ip orch-proxy-affinity service-ips") < pos_of(&s, "add element ip orch-proxy vip-1"));
        assert!(s.contains("delete chain ip orch-proxy-affinity svc-"));
    }

    fn pos_of(s: &str, needle: &str) -> usize {
        s.find(needle).unwrap_or_else(|| panic!("{needle} in\n{s}"))
    }

    #[test]
    fn a_full_sync_replaces_both_tables_and_removes_the_old_shards() {
        let table = Table::from([("default/web:".to_string(), vs(&["10.244.0.2"], None, None)), ("default/sticky:".to_string(), vs(&["10.244.0.3"], None, Some(60)))]);
        let (s, _) = full_script(&table);
        assert!(s.starts_with("table ip orch-proxy-00\ndelete table ip orch-proxy-00\n"));
        assert!(s.contains("table ip orch-proxy\ndelete table ip orch-proxy\ntable ip orch-proxy {"));
        assert!(s.contains("table ip orch-proxy-affinity\ndelete table ip orch-proxy-affinity\n"));
        for n in 1..=MIN_CLASSES {
            assert!(s.contains(&format!("\t\tdnat ip to ip daddr . meta l4proto . th dport . numgen random mod {n} map @vip-{n}\n")));
        }
        assert!(s.contains("add element ip orch-proxy vip-1 { 10.96.0.10 . tcp . 80 . 0 : 10.244.0.2 . 8080 }"));
        assert!(s.contains("add element ip orch-proxy-affinity service-ips { 10.96.0.10 . tcp . 80 : goto svc-"));
    }
}
