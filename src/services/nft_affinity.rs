//! Services with ClientIP session affinity in table `ip orch-proxy-affinity`: a verdict
//! map from VIP (and NodePort) to one chain per service port, which sends a remembered
//! client back to its backend and picks a new one at random; one chain per backend
//! remembers the client and does the DNAT. Planning only (pure); `nftables` renders and
//! applies the steps.
//!
//! These chains are what nftables needs to remember clients per backend, and the price is
//! the kernel's: a commit that adds a jump or goto re-validates every chain reachable in
//! the table, so a change here costs in proportion to the affinity services, which is why
//! they have a table of their own and all other services none of this (`nftables`).

use super::model::{Backend, VirtualService};
use super::nftables::{key_of_nodeport, key_of_vip, ElementData, Op, Rule, Step};

/// The affinity services' table.
pub const TABLE: &str = "orch-proxy-affinity";
pub const SERVICE_IPS: &str = "service-ips";
pub const NODEPORTS: &str = "service-nodeports";

/// The table, emptied and remade (part of a full sync's script).
pub fn skeleton(masq_mark: u32) -> String {
    format!(
        "table ip {TABLE}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tmap {SERVICE_IPS} {{ type ipv4_addr . inet_proto . inet_service : verdict; }}\n\
         \tmap {NODEPORTS} {{ type inet_proto . inet_service : verdict; }}\n\
         \tchain prerouting {{ type nat hook prerouting priority dstnat; policy accept; jump services; }}\n\
         \tchain output {{ type nat hook output priority -100; policy accept; jump services; }}\n\
         \tchain services {{\n\
         \t\tip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}\n\
         \t\tip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @{NODEPORTS}\n\
         \t}}\n\
         \tchain mark-masq {{ meta mark set meta mark | {masq_mark:#x}; }}\n\
         }}\n"
    )
}

fn short_hash(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Chain names of one service port (stable across restarts, short).
pub(crate) struct Names {
    pub svc: String,
    pub ext: String,
}

pub(crate) fn names(key: &str) -> Names {
    let h = short_hash(&[key]);
    Names { svc: format!("svc-{h}"), ext: format!("ext-{h}") }
}

/// A backend's chain and affinity set; the timeout is part of the set's name so a changed
/// timeout makes a new set.
pub(crate) fn backend_names(key: &str, vs: &VirtualService, b: &Backend) -> (String, String) {
    let h = short_hash(&[key, &b.to_string()]);
    (format!("ep-{h}"), format!("aff-{h}-{}", vs.affinity_timeout.unwrap_or(0)))
}

struct Steps<'a>(&'a mut Vec<Step>);

impl Steps<'_> {
    fn push(&mut self, op: Op) {
        self.0.push(Step { table: TABLE.to_string(), op });
    }

    fn rule(&mut self, chain: &str, rule: Rule) {
        self.push(Op::AddRule { chain: chain.to_string(), rule });
    }
}

/// Steps that make `new` (which has affinity) out of `old` (in this table, or None).
pub fn upsert(steps: &mut Vec<Step>, key: &str, old: Option<&VirtualService>, new: &VirtualService) {
    let mut s = Steps(steps);
    let n = names(key);
    // Backend chains first: the service chain refers to them.
    for b in &new.backends {
        let (ep, aff) = backend_names(key, new, b);
        s.push(Op::AddAffinitySet { name: aff.clone(), timeout_s: new.affinity_timeout.unwrap_or(0) });
        s.push(Op::AddChain(ep.clone()));
        s.push(Op::FlushChain(ep.clone()));
        // Hairpin: a pod reaching itself through the service must see the reply come back
        // through the node, so its source is masqueraded.
        s.rule(&ep, Rule::MasqueradeFrom(b.ip));
        s.rule(&ep, Rule::RememberClient { set: aff });
        s.rule(&ep, Rule::Dnat { protocol: new.protocol, backend: *b });
    }
    s.push(Op::AddChain(n.svc.clone()));
    s.push(Op::FlushChain(n.svc.clone()));
    for b in &new.backends {
        let (ep, aff) = backend_names(key, new, b);
        s.rule(&n.svc, Rule::StickyGoto { set: aff, chain: ep });
    }
    // A uniform random pick, one rule per backend: rule i takes 1/(N-i) of what reaches it.
    let count = new.backends.len();
    for (i, b) in new.backends.iter().enumerate() {
        let ep = backend_names(key, new, b).0;
        if i + 1 < count {
            s.rule(&n.svc, Rule::RandomGoto { modulus: (count - i) as u32, chain: ep });
        } else {
            s.rule(&n.svc, Rule::Goto(ep));
        }
    }
    if new.node_port.is_some() {
        s.push(Op::AddChain(n.ext.clone()));
        s.push(Op::FlushChain(n.ext.clone()));
        s.rule(&n.ext, Rule::Masquerade);
        s.rule(&n.ext, Rule::Goto(n.svc.clone()));
    }
    if let Some(old) = old {
        remove_elements(&mut s, old);
    }
    if !new.backends.is_empty() {
        s.push(Op::AddElement { set: SERVICE_IPS.into(), key: key_of_vip(new), data: Some(ElementData::Goto(n.svc.clone())) });
        if let Some(np) = new.node_port {
            s.push(Op::AddElement { set: NODEPORTS.into(), key: key_of_nodeport(new.protocol, np), data: Some(ElementData::Goto(n.ext.clone())) });
        }
    }
    if let Some(old) = old {
        remove_chains(&mut s, key, old, Some(new));
    }
}

/// Steps that remove `old` from this table.
pub fn remove(steps: &mut Vec<Step>, key: &str, old: &VirtualService) {
    let mut s = Steps(steps);
    remove_elements(&mut s, old);
    remove_chains(&mut s, key, old, None);
}

fn remove_elements(s: &mut Steps, old: &VirtualService) {
    if !old.backends.is_empty() {
        s.push(Op::DeleteElement { set: SERVICE_IPS.into(), key: key_of_vip(old) });
        if let Some(np) = old.node_port {
            s.push(Op::DeleteElement { set: NODEPORTS.into(), key: key_of_nodeport(old.protocol, np) });
        }
    }
}

/// Delete the chains and sets of `old` that its replacement (if any) does not use.
fn remove_chains(s: &mut Steps, key: &str, old: &VirtualService, replaced: Option<&VirtualService>) {
    let n = names(key);
    if old.node_port.is_some() && replaced.is_none_or(|k| k.node_port.is_none()) {
        s.push(Op::DeleteChain(n.ext.clone()));
    }
    if replaced.is_none() {
        s.push(Op::DeleteChain(n.svc.clone()));
    }
    for b in &old.backends {
        let (ep, aff) = backend_names(key, old, b);
        let kept = replaced.filter(|k| k.backends.contains(b));
        if kept.is_none() {
            s.push(Op::DeleteChain(ep));
        }
        if kept.is_none_or(|k| backend_names(key, k, b).1 != aff) {
            s.push(Op::DeleteSet(aff));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::Protocol;
    use super::super::nftables::script;
    use super::*;

    fn vs(backends: &[&str], node_port: Option<u16>, affinity: u32) -> VirtualService {
        VirtualService {
            vip: "10.96.0.10".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
            node_port,
            affinity_timeout: Some(affinity),
            backends: backends.iter().map(|ip| Backend { ip: ip.parse().unwrap(), port: 8080 }).collect(),
        }
    }

    fn upsert_script(old: Option<&VirtualService>, new: &VirtualService) -> String {
        let mut steps = vec![];
        upsert(&mut steps, "default/web:", old, new);
        script(&steps)
    }

    #[test]
    fn a_service_gets_a_chain_per_backend_remembering_clients_and_a_random_pick() {
        let new = vs(&["10.244.0.2", "10.244.1.3"], Some(30080), 60);
        let s = upsert_script(None, &new);
        let n = names("default/web:");
        let (ep0, aff0) = backend_names("default/web:", &new, &new.backends[0]);
        let t = TABLE;
        for want in [
            format!("add set ip {t} {aff0} {{ type ipv4_addr; flags dynamic,timeout; timeout 60s; }}"),
            format!("add rule ip {t} {ep0} ip saddr 10.244.0.2 jump mark-masq"),
            format!("add rule ip {t} {ep0} update @{aff0} {{ ip saddr }}"),
            format!("add rule ip {t} {ep0} meta l4proto tcp dnat to 10.244.0.2:8080"),
            format!("add rule ip {t} {} ip saddr @{aff0} goto {ep0}", n.svc),
            format!("add rule ip {t} {} numgen random mod 2 == 0 goto {ep0}", n.svc),
            format!("add element ip {t} service-ips {{ 10.96.0.10 . tcp . 80 : goto {} }}", n.svc),
            format!("add element ip {t} service-nodeports {{ tcp . 30080 : goto {} }}", n.ext),
        ] {
            assert!(s.lines().any(|l| l == want), "missing {want:?} in\n{s}");
        }
        // Chains exist before anything jumps to them.
        let pos = |needle: &str| s.find(needle).unwrap();
        assert!(pos(&format!("add chain ip {t} {ep0}")) < pos("numgen"));
        assert!(pos(&format!("add chain ip {t} {}", n.ext)) < pos("service-nodeports"));
        assert!(!s.contains("delete"));
    }

    #[test]
    fn a_backend_leaving_and_a_new_timeout_delete_what_is_no_longer_used() {
        let old = vs(&["10.244.0.2", "10.244.1.3"], Some(30080), 60);
        let new = vs(&["10.244.1.3"], None, 120);
        let s = upsert_script(Some(&old), &new);
        let (gone, gone_aff) = backend_names("default/web:", &old, &old.backends[0]);
        let (_, kept_old_aff) = backend_names("default/web:", &old, &old.backends[1]);
        let deleted: Vec<&str> = s.lines().filter(|l| l.starts_with("delete chain") || l.starts_with("delete set")).collect();
        let t = TABLE;
        let ext = names("default/web:").ext;
        assert_eq!(deleted, vec![format!("delete chain ip {t} {ext}"), format!("delete chain ip {t} {gone}"), format!("delete set ip {t} {gone_aff}"), format!("delete set ip {t} {kept_old_aff}")]);
        // The service chain stops jumping to a chain before it is deleted.
        assert!(s.find("goto ep-").unwrap() < s.find(&format!("delete chain ip {t} {gone}")).unwrap());
    }

    #[test]
    fn removal_deletes_elements_then_chains_and_sets() {
        let old = vs(&["10.244.0.9"], Some(30080), 60);
        let mut steps = vec![];
        remove(&mut steps, "k", &old);
        let s = script(&steps);
        let n = names("k");
        let (ep, aff) = backend_names("k", &old, &old.backends[0]);
        let t = TABLE;
        let want = [
            "delete element ip orch-proxy-affinity service-ips { 10.96.0.10 . tcp . 80 }".to_string(),
            "delete element ip orch-proxy-affinity service-nodeports { tcp . 30080 }".to_string(),
            format!("delete chain ip {t} {}", n.ext),
            format!("delete chain ip {t} {}", n.svc),
            format!("delete chain ip {t} {ep}"),
            format!("delete set ip {t} {aff}"),
        ];
        assert_eq!(s.lines().collect::<Vec<_>>(), want.iter().map(String::as_str).collect::<Vec<_>>());
    }
}
