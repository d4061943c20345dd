//! What the proxy steers, computed from Services and Endpoints: one virtual service per
//! service port (VIP, NodePort, affinity, backends), and the changes between what a
//! dataplane holds and what it should hold. Pure.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use serde_json::Value;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn parse(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// The name nftables and conntrack use.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Backend {
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// One port of one service, as the dataplane sees it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VirtualService {
    pub vip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    pub node_port: Option<u16>,
    /// ClientIP session affinity, with its timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// Sorted, without duplicates.
    pub backends: Vec<Backend>,
}

/// Every virtual service, keyed `namespace/name:port-name`.
pub type Table = BTreeMap<String, VirtualService>;

/// Kubernetes' default ClientIP affinity timeout (3 hours).
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

fn ns_name(obj: &Value) -> String {
    format!("{}/{}", obj["metadata"]["namespace"].as_str().unwrap_or(""), obj["metadata"]["name"].as_str().unwrap_or(""))
}

/// The table Services and their Endpoints ask for. Headless and ExternalName services,
/// and services without a ClusterIP yet, have no virtual service.
pub fn desired<'a>(services: impl IntoIterator<Item = &'a Value>, endpoints: impl IntoIterator<Item = &'a Value>) -> Table {
    let endpoints: BTreeMap<String, &Value> = endpoints.into_iter().map(|e| (ns_name(e), e)).collect();
    let mut table = Table::new();
    for svc in services {
        table.extend(entries_of(svc, endpoints.get(&ns_name(svc)).copied()));
    }
    table
}

/// The virtual services of one Service (`namespace/name`) given its Endpoints.
pub fn entries_of(svc: &Value, endpoints: Option<&Value>) -> Table {
    let mut table = Table::new();
    let spec = &svc["spec"];
    let Some(vip) = spec["clusterIP"].as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) else { return table };
    let key = ns_name(svc);
    let affinity_timeout = (spec["sessionAffinity"] == "ClientIP").then(|| {
        spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"].as_u64().map_or(DEFAULT_AFFINITY_TIMEOUT, |t| t.clamp(1, 86_400) as u32)
    });
    for p in spec["ports"].as_array().into_iter().flatten() {
        let (Some(port), Some(protocol)) = (p["port"].as_u64(), Protocol::parse(p["protocol"].as_str().unwrap_or("TCP"))) else { continue };
        let name = p["name"].as_str().unwrap_or("");
        let mut backends: Vec<Backend> = endpoints.map(|e| backends_of(e, name, protocol)).unwrap_or_default();
        backends.sort();
        backends.dedup();
        let node_port = p["nodePort"].as_u64().map(|n| n as u16);
        table.insert(format!("{key}:{name}"), VirtualService { vip, port: port as u16, protocol, node_port, affinity_timeout, backends });
    }
    table
}

/// The entries of `table` that belong to the Service `namespace/name` (keys `ns/name:port`).
fn entries_in<'t>(table: &'t Table, service: &str) -> impl Iterator<Item = (&'t String, &'t VirtualService)> {
    // ';' is the character after ':', so the range holds exactly the keys `service:...`.
    table.range(format!("{service}:")..format!("{service};"))
}

/// Ready addresses of an Endpoints object for the service port named `port_name`.
fn backends_of(endpoints: &Value, port_name: &str, protocol: Protocol) -> Vec<Backend> {
    let mut out = vec![];
    for subset in endpoints["subsets"].as_array().into_iter().flatten() {
        let port = subset["ports"].as_array().into_iter().flatten().find(|p| {
            p["name"].as_str().unwrap_or("") == port_name && Protocol::parse(p["protocol"].as_str().unwrap_or("TCP")) == Some(protocol)
        });
        let Some(port) = port.and_then(|p| p["port"].as_u64()) else { continue };
        for a in subset["addresses"].as_array().into_iter().flatten() {
            if let Some(ip) = a["ip"].as_str().and_then(|s| s.parse().ok()) {
                out.push(Backend { ip, port: port as u16 });
            }
        }
    }
    out
}

/// One step from what a dataplane holds to what it should hold.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Change {
    /// Add a virtual service, or replace `old` with `new`.
    Upsert { key: String, old: Option<VirtualService>, new: VirtualService },
    Remove { key: String, old: VirtualService },
}

/// The changes that turn `applied` into `desired`: only what differs, so the cost of an
/// update follows the size of the change, not the number of services.
pub fn changes(applied: &Table, desired: &Table) -> Vec<Change> {
    let mut out = vec![];
    for (key, old) in applied {
        if !desired.contains_key(key) {
            out.push(Change::Remove { key: key.clone(), old: old.clone() });
        }
    }
    for (key, new) in desired {
        let old = applied.get(key);
        if old != Some(new) {
            out.push(Change::Upsert { key: key.clone(), old: old.cloned(), new: new.clone() });
        }
    }
    out
}

/// The changes that turn the entries of one Service (`namespace/name`) in `applied` into
/// `entries` (that Service's virtual services now, empty when it is gone): the cost
/// follows the size of that Service, not the number of services.
pub fn changes_for(applied: &Table, service: &str, entries: &Table) -> Vec<Change> {
    let mut out = vec![];
    for (key, old) in entries_in(applied, service) {
        if !entries.contains_key(key) {
            out.push(Change::Remove { key: key.clone(), old: old.clone() });
        }
    }
    for (key, new) in entries {
        let old = applied.get(key);
        if old != Some(new) {
            out.push(Change::Upsert { key: key.clone(), old: old.cloned(), new: new.clone() });
        }
    }
    out
}

/// Apply changes to a table (what a dataplane holds after applying them).
pub fn apply(table: &mut Table, changes: &[Change]) {
    for c in changes {
        match c {
            Change::Upsert { key, new, .. } => {
                table.insert(key.clone(), new.clone());
            }
            Change::Remove { key, .. } => {
                table.remove(key);
            }
        }
    }
}

/// UDP backends that left a service: their conntrack entries must go, or clients keep
/// sending to a backend that is gone.
pub fn stale_udp(changes: &[Change]) -> Vec<(Ipv4Addr, Backend)> {
    let mut out = vec![];
    for c in changes {
        let (old, new) = match c {
            Change::Upsert { old: Some(old), new, .. } => (old, Some(new)),
            Change::Remove { old, .. } => (old, None),
            Change::Upsert { old: None, .. } => continue,
        };
        if old.protocol != Protocol::Udp {
            continue;
        }
        for b in &old.backends {
            if new.is_none_or(|n| n.vip != old.vip || !n.backends.contains(b)) {
                out.push((old.vip, *b));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn svc(name: &str, spec: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec})
    }

    fn eps(name: &str, subsets: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"}, "subsets": subsets})
    }

    #[test]
    fn one_virtual_service_per_port_with_its_ready_backends() {
        let services = [
            svc("web", json!({"clusterIP": "10.96.0.10", "type": "NodePort", "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP"}]})),
            svc("headless", json!({"clusterIP": "None", "ports": [{"port": 80}]})),
            svc("sticky", json!({"clusterIP": "10.96.0.11", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]})),
        ];
        let endpoints = [eps("web", json!([
            {"addresses": [{"ip": "10.244.1.3"}, {"ip": "10.244.0.2"}], "notReadyAddresses": [{"ip": "10.244.2.9"}],
             "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}]}]))];
        let t = desired(&services, &endpoints);
        assert_eq!(t.keys().collect::<Vec<_>>(), vec!["default/sticky:", "default/web:dns", "default/web:http"]);
        let http = &t["default/web:http"];
        assert_eq!(http.node_port, Some(30080));
        let b: Vec<String> = http.backends.iter().map(ToString::to_string).collect();
        assert_eq!(b, vec!["10.244.0.2:8080", "10.244.1.3:8080"]);
        assert_eq!(t["default/web:dns"].backends[0].port, 5353);
        assert_eq!(t["default/web:dns"].protocol, Protocol::Udp);
        assert!(t["default/sticky:"].backends.is_empty());
        assert_eq!(t["default/sticky:"].affinity_timeout, Some(10_800));
    }

    #[test]
    fn changes_carry_only_what_differs_and_replay_to_the_target() {
        let a = desired(&[svc("a", json!({"clusterIP": "10.96.0.1", "ports": [{"port": 80}]}))], &[]);
        let mut b = a.clone();
        b.get_mut("default/a:").unwrap().backends.push(Backend { ip: "10.244.0.5".parse().unwrap(), port: 80 });
        b.insert("default/b:".into(), VirtualService { vip: "10.96.0.2".parse().unwrap(), ..a["default/a:"].clone() });
        let c = changes(&a, &b);
        assert_eq!(c.len(), 2);
        assert!(matches!(&c[0], Change::Upsert { key, old: Some(_), .. } if key == "default/a:"));
        let mut replayed = a.clone();
        apply(&mut replayed, &c);
        assert_eq!(replayed, b);
        assert!(changes(&b, &b).is_empty());
        let removed = changes(&b, &a);
        assert_eq!(removed.len(), 2);
        assert!(matches!(&removed[0], Change::Remove { key, .. } if key == "default/b:"));
    }

    #[test]
    fn changes_for_one_service_see_only_its_entries() {
        let a = svc("a", json!({"clusterIP": "10.96.0.1", "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}));
        // "a-b" sorts between "a:" keys' neighbours; it must not be taken for a port of "a".
        let ab = svc("a-b", json!({"clusterIP": "10.96.0.2", "ports": [{"port": 80}]}));
        let ax = svc("a", json!({"clusterIP": "10.96.0.1", "ports": [{"name": "http", "port": 8080}]}));
        let applied = desired(&[a.clone(), ab.clone()], &[]);
        let after = desired(&[ax.clone(), ab], &[]);
        let c = changes_for(&applied, "default/a", &entries_of(&ax, None));
        assert_eq!(c, changes(&applied, &after));
        assert_eq!(c.len(), 2);
        let gone = changes_for(&applied, "default/a", &Table::new());
        assert_eq!(gone.iter().filter(|c| matches!(c, Change::Remove { .. })).count(), 2);
        assert!(changes_for(&applied, "default/a-b", &entries_of(&svc("a-b", json!({"clusterIP": "10.96.0.2", "ports": [{"port": 80}]})), None)).is_empty());
    }

    #[test]
    fn departed_udp_backends_are_reported_for_conntrack_cleanup() {
        let vs = |backends: &[(&str, u16)]| VirtualService {
            vip: "10.96.0.53".parse().unwrap(),
            port: 53,
            protocol: Protocol::Udp,
            node_port: None,
            affinity_timeout: None,
            backends: backends.iter().map(|(ip, port)| Backend { ip: ip.parse().unwrap(), port: *port }).collect(),
        };
        let c = vec![Change::Upsert { key: "k".into(), old: Some(vs(&[("10.0.0.1", 53), ("10.0.0.2", 53)])), new: vs(&[("10.0.0.2", 53)]) }];
        assert_eq!(stale_udp(&c), vec![("10.96.0.53".parse().unwrap(), Backend { ip: "10.0.0.1".parse().unwrap(), port: 53 })]);
        let tcp = VirtualService { protocol: Protocol::Tcp, ..vs(&[("10.0.0.1", 80)]) };
        assert!(stale_udp(&[Change::Remove { key: "t".into(), old: tcp }]).is_empty());
        assert_eq!(stale_udp(&[Change::Remove { key: "u".into(), old: vs(&[("10.0.0.3", 53)]) }]).len(), 1);
    }
}
