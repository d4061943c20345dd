//! Service defaults, validation and allocation of ClusterIPs and NodePorts. Pure: the
//! store passes what is taken and writes the claims as keys in the same compare-and-set
//! transaction as the Service, so two services can never hold one IP or port (the same
//! scheme as Kubernetes' IPAddress objects).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use ipnet::Ipv4Net;
use serde_json::{json, Value};

/// Keys holding an allocated ClusterIP (`…/10.96.0.10`) or NodePort (`…/30080`); their value
/// is the `namespace/name` of the service.
pub const IP_PREFIX: &str = "/registry/ranges/serviceips/";
pub const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// Where ClusterIPs and NodePorts come from (the same on every head).
#[derive(Clone, Debug)]
pub struct ServiceRanges {
    pub cidr: Ipv4Net,
    pub node_ports: RangeInclusive<u16>,
}

/// The ClusterIP of the `kubernetes` Service: the first address of the service range, as in
/// Kubernetes.
pub fn kubernetes_cluster_ip(ranges: &ServiceRanges) -> std::net::Ipv4Addr {
    let base = u32::from(ranges.cidr.network());
    std::net::Ipv4Addr::from(base + 1)
}

impl Default for ServiceRanges {
    fn default() -> Self {
        ServiceRanges { cidr: "10.96.0.0/16".parse().expect("literal"), node_ports: 30000..=32767 }
    }
}

/// IPs and ports held by any service.
#[derive(Default, Debug)]
pub struct Taken {
    pub ips: BTreeSet<Ipv4Addr>,
    pub ports: BTreeSet<u16>,
}

impl Taken {
    /// Read back from allocation keys.
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Taken {
        let mut t = Taken::default();
        for k in keys {
            if let Some(ip) = k.strip_prefix(IP_PREFIX).and_then(|s| s.parse().ok()) {
                t.ips.insert(ip);
            } else if let Some(port) = k.strip_prefix(PORT_PREFIX).and_then(|s| s.parse().ok()) {
                t.ports.insert(port);
            }
        }
        t
    }
}

/// The allocation keys a stored service holds.
pub fn held(svc: &Value) -> BTreeSet<String> {
    let spec = &svc["spec"];
    let mut keys = BTreeSet::new();
    if let Some(ip) = spec["clusterIP"].as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) {
        keys.insert(format!("{IP_PREFIX}{ip}"));
    }
    for p in spec["ports"].as_array().into_iter().flatten() {
        if let Some(n) = p["nodePort"].as_u64() {
            keys.insert(format!("{PORT_PREFIX}{n}"));
        }
    }
    keys
}

/// Why a service was refused; `requested` errors are the user's own choice colliding
/// (retrying cannot help), the others are invalid input.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub String);

fn refuse<T>(msg: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(msg.into()))
}

/// Fill defaults, check the spec, keep what an update may not change, and allocate a
/// ClusterIP and NodePorts where needed. `seed` picks where the search for a free IP or
/// port starts (random in Kubernetes; passed in so the result is reproducible).
pub fn prepare(svc: &mut Value, current: Option<&Value>, ranges: &ServiceRanges, taken: &Taken, seed: u64) -> Result<(), Refused> {
    if !svc["spec"].is_object() {
        svc["spec"] = json!({});
    }
    let cur_spec = current.map(|c| &c["spec"]);
    let spec = svc["spec"].as_object_mut().expect("spec is an object");
    let ty = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty.as_str()) {
        return refuse(format!("spec.type: unsupported value {ty:?}: supported values: \"ClusterIP\", \"NodePort\", \"LoadBalancer\", \"ExternalName\""));
    }
    spec.insert("type".into(), json!(ty));
    let affinity = spec.get("sessionAffinity").and_then(Value::as_str).unwrap_or("None").to_string();
    if !["None", "ClientIP"].contains(&affinity.as_str()) {
        return refuse(format!("spec.sessionAffinity: unsupported value {affinity:?}: supported values: \"ClientIP\", \"None\""));
    }
    spec.insert("sessionAffinity".into(), json!(affinity));
    if ty == "ExternalName" {
        if spec.get("externalName").and_then(Value::as_str).unwrap_or("").is_empty() {
            return refuse("spec.externalName: Required value");
        }
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
        return Ok(());
    }

    // Ports: defaults, validity, uniqueness.
    let mut ports = spec.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut seen = BTreeSet::new();
    for (i, p) in ports.iter_mut().enumerate() {
        let port = p["port"].as_u64().unwrap_or(0);
        if !(1..=65535).contains(&port) {
            return refuse(format!("spec.ports[{i}].port: Invalid value: {port}: must be between 1 and 65535, inclusive"));
        }
        let proto = p["protocol"].as_str().unwrap_or("TCP").to_string();
        if !["TCP", "UDP"].contains(&proto.as_str()) {
            return refuse(format!("spec.ports[{i}].protocol: Unsupported value: {proto:?}: supported values: \"TCP\", \"UDP\""));
        }
        p["protocol"] = json!(proto);
        if p.get("targetPort").is_none_or(Value::is_null) {
            p["targetPort"] = json!(port);
        }
        if !seen.insert((port, proto.clone())) {
            return refuse(format!("spec.ports[{i}]: Duplicate value: {port}/{proto}"));
        }
    }
    if ports.len() > 1 {
        let mut names = BTreeSet::new();
        for (i, p) in ports.iter().enumerate() {
            let name = p["name"].as_str().unwrap_or("");
            if name.is_empty() {
                return refuse(format!("spec.ports[{i}].name: Required value: a name is needed when a service has more than one port"));
            }
            if !names.insert(name.to_string()) {
                return refuse(format!("spec.ports[{i}].name: Duplicate value: {name:?}"));
            }
        }
    }

    // ClusterIP: immutable once set; "None" makes the service headless.
    let requested = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
    let existing = cur_spec.and_then(|s| s["clusterIP"].as_str()).unwrap_or("").to_string();
    let ip = match (requested.as_str(), existing.as_str()) {
        ("", e) if !e.is_empty() => e.to_string(),
        (r, e) if !e.is_empty() && r != e => {
            return refuse(format!("spec.clusterIP: Invalid value: {r:?}: field is immutable (it is {e:?})"));
        }
        ("None", _) => {
            if ty != "ClusterIP" {
                return refuse(format!("spec.clusterIP: Invalid value: \"None\": may not be set for type {ty}"));
            }
            "None".to_string()
        }
        ("", _) => match free_ip(ranges, taken, seed) {
            Some(ip) => ip.to_string(),
            None => return refuse(format!("Internal error: no ClusterIP is free in {}", ranges.cidr)),
        },
        (r, e) => {
            let ip: Ipv4Addr = r.parse().map_err(|_| Refused(format!("spec.clusterIP: Invalid value: {r:?}: must be a valid IPv4 address")))?;
            if !usable(ranges, ip) {
                return refuse(format!("spec.clusterIP: Invalid value: {r:?}: provided IP is not in the valid range; the range of service IPs is {}", ranges.cidr));
            }
            if e != r && taken.ips.contains(&ip) {
                return refuse(format!("spec.clusterIP: Invalid value: {r:?}: provided IP is already allocated"));
            }
            r.to_string()
        }
    };
    spec.insert("clusterIP".into(), json!(ip));
    spec.insert("clusterIPs".into(), json!([ip]));

    // NodePorts: kept across updates for the same port, allocated where missing.
    let wants_node_ports = ty == "NodePort" || ty == "LoadBalancer";
    let cur_ports: Vec<Value> = cur_spec.and_then(|s| s["ports"].as_array()).cloned().unwrap_or_default();
    let mine: BTreeSet<u16> = cur_ports.iter().filter_map(|p| p["nodePort"].as_u64()).map(|n| n as u16).collect();
    let mut used: BTreeSet<u16> = BTreeSet::new();
    for (i, p) in ports.iter_mut().enumerate() {
        if !wants_node_ports {
            if p.get("nodePort").is_some_and(|n| !n.is_null()) {
                return refuse(format!("spec.ports[{i}].nodePort: Forbidden: may not be used when `type` is '{ty}'"));
            }
            continue;
        }
        let requested = p["nodePort"].as_u64().filter(|&n| n != 0);
        let port = match requested {
            Some(n) => {
                let n = u16::try_from(n).ok().filter(|n| ranges.node_ports.contains(n)).ok_or_else(|| {
                    Refused(format!("spec.ports[{i}].nodePort: Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {}-{}", ranges.node_ports.start(), ranges.node_ports.end()))
                })?;
                if (taken.ports.contains(&n) && !mine.contains(&n)) || used.contains(&n) {
                    return refuse(format!("spec.ports[{i}].nodePort: Invalid value: {n}: provided port is already allocated"));
                }
                n
            }
            None => {
                let same = cur_ports.iter().find(|c| c["port"] == p["port"] && c["protocol"].as_str().unwrap_or("TCP") == p["protocol"]);
                match same.and_then(|c| c["nodePort"].as_u64()).map(|n| n as u16).filter(|n| !used.contains(n)) {
                    Some(n) => n,
                    None => free_port(ranges, taken, &used, seed.wrapping_add(i as u64))
                        .ok_or_else(|| Refused("Internal error: no NodePort is free".to_string()))?,
                }
            }
        };
        used.insert(port);
        p["nodePort"] = json!(port);
    }
    spec.insert("ports".into(), Value::Array(ports));
    Ok(())
}

/// An address a service may get: inside the range, not its network or broadcast address.
fn usable(ranges: &ServiceRanges, ip: Ipv4Addr) -> bool {
    ranges.cidr.contains(&ip) && ip != ranges.cidr.network() && ip != ranges.cidr.broadcast()
}

fn free_ip(ranges: &ServiceRanges, taken: &Taken, seed: u64) -> Option<Ipv4Addr> {
    let base = u32::from(ranges.cidr.network());
    let size = u64::from(u32::from(ranges.cidr.broadcast()) - base) + 1;
    if size < 4 {
        return None;
    }
    // Offsets 2..size-1 exclude the network and broadcast addresses and the first address,
    // which is the `kubernetes` Service's (it asks for it by name).
    let usable = size - 3;
    (0..usable)
        .map(|i| Ipv4Addr::from(base + 2 + ((seed.wrapping_add(i)) % usable) as u32))
        .find(|ip| !taken.ips.contains(ip))
}

fn free_port(ranges: &ServiceRanges, taken: &Taken, used: &BTreeSet<u16>, seed: u64) -> Option<u16> {
    let (lo, hi) = (u64::from(*ranges.node_ports.start()), u64::from(*ranges.node_ports.end()));
    let n = hi - lo + 1;
    (0..n).map(|i| (lo + seed.wrapping_add(i) % n) as u16).find(|p| !taken.ports.contains(p) && !used.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn ranges() -> ServiceRanges {
        ServiceRanges { cidr: "10.96.0.0/29".parse().unwrap(), node_ports: 30000..=30002 }
    }

    #[test]
    fn defaults_and_a_free_cluster_ip() {
        let mut s = svc(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let taken = Taken { ips: ["10.96.0.3".parse().unwrap()].into(), ..Default::default() };
        prepare(&mut s, None, &ranges(), &taken, 2).unwrap();
        // Seed 2 starts at offset 3, which is taken: the next one is used.
        assert_eq!(s["spec"]["clusterIP"], "10.96.0.4");
        assert_eq!(s["spec"]["clusterIPs"], json!(["10.96.0.4"]));
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["sessionAffinity"], "None");
        assert_eq!(s["spec"]["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
        assert_eq!(held(&s), BTreeSet::from(["/registry/ranges/serviceips/10.96.0.4".to_string()]));
    }

    #[test]
    fn the_range_can_run_out_and_never_hands_out_network_or_broadcast() {
        let r = ranges();
        let mut taken = Taken::default();
        // 8 addresses: the network, the broadcast and the `kubernetes` Service's are never
        // handed out at random; the other 5 are.
        for seed in 0..5 {
            let mut s = svc(json!({"ports": [{"port": 80}]}));
            prepare(&mut s, None, &r, &taken, seed * 7).unwrap();
            let ip: Ipv4Addr = s["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
            assert!(ip != r.cidr.network() && ip != r.cidr.broadcast() && ip != kubernetes_cluster_ip(&r) && taken.ips.insert(ip), "{ip}");
        }
        let mut s = svc(json!({"ports": [{"port": 80}]}));
        assert!(prepare(&mut s, None, &r, &taken, 0).unwrap_err().0.contains("no ClusterIP is free"));
    }

    #[test]
    fn requested_ips_are_checked() {
        let taken = Taken { ips: ["10.96.0.5".parse().unwrap()].into(), ..Default::default() };
        let attempt = |ip: &str| prepare(&mut svc(json!({"clusterIP": ip})), None, &ranges(), &taken, 0);
        assert!(attempt("10.96.0.5").unwrap_err().0.contains("already allocated"));
        assert!(attempt("10.96.1.5").unwrap_err().0.contains("not in the valid range"));
        assert!(attempt("10.96.0.7").unwrap_err().0.contains("not in the valid range"), "broadcast");
        assert!(attempt("banana").unwrap_err().0.contains("valid IPv4"));
        assert!(attempt("10.96.0.6").is_ok());
        let mut headless = svc(json!({"clusterIP": "None", "selector": {"a": "b"}}));
        prepare(&mut headless, None, &ranges(), &taken, 0).unwrap();
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert!(held(&headless).is_empty());
        let mut bad = svc(json!({"clusterIP": "None", "type": "NodePort"}));
        assert!(prepare(&mut bad, None, &ranges(), &taken, 0).unwrap_err().0.contains("may not be set for type NodePort"));
    }

    #[test]
    fn cluster_ip_is_immutable_but_may_be_omitted_on_update() {
        let current = svc(json!({"clusterIP": "10.96.0.2", "ports": [{"port": 80}]}));
        let taken = Taken { ips: ["10.96.0.2".parse().unwrap()].into(), ..Default::default() };
        let mut omitted = svc(json!({"ports": [{"port": 81}]}));
        prepare(&mut omitted, Some(&current), &ranges(), &taken, 0).unwrap();
        assert_eq!(omitted["spec"]["clusterIP"], "10.96.0.2");
        let mut same = svc(json!({"clusterIP": "10.96.0.2"}));
        prepare(&mut same, Some(&current), &ranges(), &taken, 0).unwrap();
        let mut changed = svc(json!({"clusterIP": "10.96.0.3"}));
        assert!(prepare(&mut changed, Some(&current), &ranges(), &taken, 0).unwrap_err().0.contains("immutable"));
    }

    #[test]
    fn node_ports_are_allocated_kept_and_checked() {
        let r = ranges();
        let taken = Taken { ports: [30000].into(), ..Default::default() };
        let mut s = svc(json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 53, "protocol": "UDP"}]}));
        prepare(&mut s, None, &r, &taken, 0).unwrap();
        let got: Vec<u64> = s["spec"]["ports"].as_array().unwrap().iter().map(|p| p["nodePort"].as_u64().unwrap()).collect();
        assert_eq!(got, vec![30001, 30002]);
        assert_eq!(held(&s).len(), 3);

        // An update keeps each port's NodePort; the service's own ports are not "taken" for it.
        let taken = Taken { ports: [30000, 30001, 30002].into(), ips: Taken::from_keys(held(&s).iter().map(String::as_str)).ips };
        let mut update = svc(json!({"type": "NodePort", "ports": [{"name": "b", "port": 53, "protocol": "UDP"}, {"name": "a", "port": 80}]}));
        prepare(&mut update, Some(&s), &r, &taken, 9).unwrap();
        assert_eq!(update["spec"]["ports"][0]["nodePort"], 30002);
        assert_eq!(update["spec"]["ports"][1]["nodePort"], 30001);

        let mut out_of_range = svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 8080}]}));
        assert!(prepare(&mut out_of_range, None, &r, &Taken::default(), 0).unwrap_err().0.contains("not in the valid range"));
        let mut clash = svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30000}]}));
        assert!(prepare(&mut clash, None, &r, &taken, 0).unwrap_err().0.contains("already allocated"));
        let mut full = svc(json!({"type": "NodePort", "ports": [{"port": 80}]}));
        assert!(prepare(&mut full, None, &r, &taken, 0).unwrap_err().0.contains("no NodePort is free"));
        let mut forbidden = svc(json!({"ports": [{"port": 80, "nodePort": 30001}]}));
        assert!(prepare(&mut forbidden, None, &r, &Taken::default(), 0).unwrap_err().0.contains("Forbidden"));
    }

    #[test]
    fn bad_ports_and_types_are_refused() {
        let check = |spec: Value| prepare(&mut svc(spec), None, &ranges(), &Taken::default(), 0).unwrap_err().0;
        assert!(check(json!({"ports": [{"port": 0}]})).contains("between 1 and 65535"));
        assert!(check(json!({"ports": [{"port": 80, "protocol": "SCTP"}]})).contains("Unsupported value"));
        assert!(check(json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]})).contains("Duplicate value: 80/TCP"));
        assert!(check(json!({"ports": [{"port": 80}, {"port": 81}]})).contains("name: Required"));
        assert!(check(json!({"type": "Weird"})).contains("unsupported value"));
        assert!(check(json!({"type": "ExternalName"})).contains("externalName: Required"));
        assert!(check(json!({"sessionAffinity": "Sticky"})).contains("sessionAffinity"));
    }
}
