//! Cluster DNS answers, as Kubernetes' DNS specification defines them: a zone built from
//! Services and Endpoints (`svc.ns.svc.cluster.local` A records, headless services'
//! ready addresses, SRV per named port, PTR for service IPs, CNAME for ExternalName, pod
//! names `a-b-c-d.ns.pod.cluster.local`), updated one Service at a time, and the answer
//! to one question. Pure; the server in `dns_server` asks and forwards what is not ours.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use hickory_server::proto::rr::rdata::{A, CNAME, PTR, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use ipnet::Ipv4Net;
use serde_json::Value;

pub const DOMAIN: &str = "cluster.local";

/// The answer to one question.
#[derive(Debug, PartialEq)]
pub enum Answer {
    Records(Vec<Record>),
    /// The name exists, with nothing of the asked type.
    NoData,
    NxDomain,
    /// Not a cluster name: forward it.
    NotOurs,
}

fn reverse_name(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
}

fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

fn fqdn(name: &str) -> Name {
    Name::from_ascii(format!("{name}.")).unwrap_or_else(|_| Name::root())
}

/// The names the cluster serves, kept per Service so a change of one Service or its
/// Endpoints rewrites only that Service's names.
#[derive(Debug, Default)]
pub struct Zone {
    /// Name → its records, each with the `namespace/name` of the Service it comes from.
    records: BTreeMap<String, Vec<(String, RData)>>,
    /// Names that exist only as parents of others (`ns.svc.cluster.local`): NOERROR, no
    /// data; counted, as several Services make the same parents.
    parents: BTreeMap<String, usize>,
    /// Each Service's share, to take back when it changes.
    shares: BTreeMap<String, Share>,
    service_cidr: Option<Ipv4Net>,
}

/// The names one Service contributes.
#[derive(Debug, Default, PartialEq)]
struct Share {
    records: Vec<(String, RData)>,
    parents: BTreeSet<String>,
}

impl Share {
    fn add(&mut self, name: &str, data: RData) {
        self.parent_of(name);
        if !self.records.iter().any(|(n, d)| n == name && *d == data) {
            self.records.push((name.to_string(), data));
        }
    }

    /// Make every ancestor of `name` down to the cluster domain exist.
    fn parent_of(&mut self, name: &str) {
        let mut parent = name;
        while let Some((_, rest)) = parent.split_once('.') {
            if rest.len() < DOMAIN.len() {
                break;
            }
            self.parents.insert(rest.to_string());
            parent = rest;
        }
    }

    /// What `svc` (with its Endpoints `eps`, for headless services) puts in the zone.
    fn of(svc: &Value, eps: Option<&Value>) -> Share {
        let mut share = Share::default();
        let (Some(ns), Some(name)) = (svc["metadata"]["namespace"].as_str(), svc["metadata"]["name"].as_str()) else { return share };
        let base = format!("{name}.{ns}.svc.{DOMAIN}");
        let spec = &svc["spec"];
        if spec["type"] == "ExternalName" {
            if let Some(target) = spec["externalName"].as_str() {
                share.add(&base, RData::CNAME(CNAME(fqdn(target.trim_end_matches('.')))));
            }
            return share;
        }
        match spec["clusterIP"].as_str() {
            Some("None") => {
                share.parents.insert(base.clone());
                share.parent_of(&base);
                for subset in eps.and_then(|e| e["subsets"].as_array()).into_iter().flatten() {
                    for a in subset["addresses"].as_array().into_iter().flatten() {
                        let Some(ip) = a["ip"].as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) else { continue };
                        let host = a["hostname"].as_str().map(str::to_string).unwrap_or_else(|| dashed(ip));
                        let target = format!("{host}.{base}");
                        share.add(&base, RData::A(A(ip)));
                        share.add(&target, RData::A(A(ip)));
                        for p in subset["ports"].as_array().into_iter().flatten() {
                            if let (Some(pname), Some(port)) = (p["name"].as_str().filter(|n| !n.is_empty()), p["port"].as_u64()) {
                                let proto = p["protocol"].as_str().unwrap_or("TCP").to_ascii_lowercase();
                                share.add(&format!("_{pname}._{proto}.{base}"), RData::SRV(SRV::new(0, 100, port as u16, fqdn(&target))));
                            }
                        }
                    }
                }
            }
            Some(ip) => {
                let Ok(ip) = ip.parse::<Ipv4Addr>() else { return share };
                share.add(&base, RData::A(A(ip)));
                share.records.push((reverse_name(ip), RData::PTR(PTR(fqdn(&base)))));
                for p in spec["ports"].as_array().into_iter().flatten() {
                    if let (Some(pname), Some(port)) = (p["name"].as_str().filter(|n| !n.is_empty()), p["port"].as_u64()) {
                        let proto = p["protocol"].as_str().unwrap_or("TCP").to_ascii_lowercase();
                        share.add(&format!("_{pname}._{proto}.{base}"), RData::SRV(SRV::new(0, 100, port as u16, fqdn(&base))));
                    }
                }
            }
            None => {}
        }
        share
    }
}

fn object_key(obj: &Value) -> String {
    format!("{}/{}", obj["metadata"]["namespace"].as_str().unwrap_or(""), obj["metadata"]["name"].as_str().unwrap_or(""))
}

impl Zone {
    pub fn new(service_cidr: Option<Ipv4Net>) -> Zone {
        Zone { service_cidr, ..Zone::default() }
    }

    /// A zone of all `services` (headless ones with their `endpoints`).
    pub fn build<'a>(services: impl IntoIterator<Item = &'a Value>, endpoints: impl IntoIterator<Item = &'a Value>, service_cidr: Option<Ipv4Net>) -> Zone {
        let endpoints: BTreeMap<String, &Value> = endpoints.into_iter().map(|e| (object_key(e), e)).collect();
        let mut zone = Zone::new(service_cidr);
        for svc in services {
            let key = object_key(svc);
            zone.set(&key, Some(svc), endpoints.get(&key).copied());
        }
        zone
    }

    /// Replace the names of Service `key` (`namespace/name`) with those of `svc` (`None`:
    /// it is gone) and its Endpoints `eps`.
    pub fn set(&mut self, key: &str, svc: Option<&Value>, eps: Option<&Value>) {
        let share = svc.map(|s| Share::of(s, eps)).unwrap_or_default();
        if self.shares.get(key) == Some(&share) {
            return;
        }
        if let Some(old) = self.shares.remove(key) {
            for (name, _) in &old.records {
                if let Some(v) = self.records.get_mut(name) {
                    v.retain(|(k, _)| k != key);
                    if v.is_empty() {
                        self.records.remove(name);
                    }
                }
            }
            for p in &old.parents {
                if let Some(n) = self.parents.get_mut(p) {
                    *n -= 1;
                    if *n == 0 {
                        self.parents.remove(p);
                    }
                }
            }
        }
        if share == Share::default() {
            return;
        }
        for (name, data) in &share.records {
            self.records.entry(name.clone()).or_default().push((key.to_string(), data.clone()));
        }
        for p in &share.parents {
            *self.parents.entry(p.clone()).or_default() += 1;
        }
        self.shares.insert(key.to_string(), share);
    }

    /// The zone's SOA, sent with negative answers so resolvers cache them for `ttl`.
    pub fn soa(ttl: u32) -> Record {
        let soa = SOA::new(fqdn(&format!("ns.dns.{DOMAIN}")), fqdn(&format!("hostmaster.{DOMAIN}")), 1, 7200, 1800, 86400, ttl);
        Record::from_rdata(fqdn(DOMAIN), ttl, RData::SOA(soa))
    }

    /// Whether `name` (lowercase, without the final dot) is in a zone this server answers for.
    fn owns(&self, name: &str) -> bool {
        if name == DOMAIN || name.ends_with(&format!(".{DOMAIN}")) {
            return true;
        }
        match (self.service_cidr, parse_reverse(name)) {
            (Some(cidr), Some(ip)) => cidr.contains(&ip),
            _ => false,
        }
    }

    /// Answer `qtype` for `qname`, records with `ttl`.
    pub fn answer(&self, qname: &str, qtype: RecordType, ttl: u32) -> Answer {
        let name = qname.trim_end_matches('.').to_ascii_lowercase();
        if !self.owns(&name) {
            return Answer::NotOurs;
        }
        let owner = fqdn(&name);
        let data: Vec<RData> = match self.records.get(&name) {
            Some(d) => {
                let mut data: Vec<RData> = Vec::with_capacity(d.len());
                for (_, r) in d {
                    if !data.contains(r) {
                        data.push(r.clone());
                    }
                }
                data
            }
            None => match pod_address(&name) {
                Some(ip) => vec![RData::A(A(ip))],
                None if self.parents.contains_key(&name) || name == DOMAIN => return Answer::NoData,
                None => return Answer::NxDomain,
            },
        };
        let cname: Vec<&RData> = data.iter().filter(|d| matches!(d, RData::CNAME(_))).collect();
        let wanted: Vec<Record> = if !cname.is_empty() && qtype != RecordType::CNAME {
            cname.into_iter().map(|d| Record::from_rdata(owner.clone(), ttl, d.clone())).collect()
        } else {
            data.into_iter().filter(|d| qtype == RecordType::ANY || d.record_type() == qtype).map(|d| Record::from_rdata(owner.clone(), ttl, d)).collect()
        };
        if wanted.is_empty() { Answer::NoData } else { Answer::Records(wanted) }
    }
}

/// `a-b-c-d.ns.pod.cluster.local` → a.b.c.d.
fn pod_address(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(&format!(".pod.{DOMAIN}"))?;
    let (host, ns) = rest.split_once('.')?;
    if ns.is_empty() || ns.contains('.') {
        return None;
    }
    host.replace('-', ".").parse().ok()
}

/// `d.c.b.a.in-addr.arpa` → a.b.c.d.
fn parse_reverse(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let mut o: Vec<u8> = rest.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if o.len() != 4 {
        return None;
    }
    o.reverse();
    Some(Ipv4Addr::new(o[0], o[1], o[2], o[3]))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn zone() -> Zone {
        let services = [
            json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"clusterIP": "10.96.0.10",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]}}),
            json!({"metadata": {"name": "db", "namespace": "shop"}, "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
            json!({"metadata": {"name": "ext", "namespace": "shop"}, "spec": {"type": "ExternalName", "externalName": "example.org"}}),
        ];
        let endpoints = [json!({"metadata": {"name": "db", "namespace": "shop"}, "subsets": [{
            "addresses": [{"ip": "10.244.1.5", "hostname": "db-0"}, {"ip": "10.244.2.6"}],
            "notReadyAddresses": [{"ip": "10.244.3.7"}],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}]})];
        Zone::build(&services, &endpoints, Some("10.96.0.0/16".parse().unwrap()))
    }

    fn rdata(a: Answer) -> Vec<String> {
        match a {
            Answer::Records(r) => r.iter().map(|r| r.data().to_string()).collect(),
            other => panic!("expected records, got {other:?}"),
        }
    }

    #[test]
    fn services_resolve_to_their_cluster_ip_and_named_ports_to_srv() {
        let z = zone();
        assert_eq!(rdata(z.answer("web.shop.svc.cluster.local.", RecordType::A, 5)), vec!["10.96.0.10"]);
        assert_eq!(rdata(z.answer("WEB.Shop.svc.cluster.local", RecordType::A, 5)), vec!["10.96.0.10"]);
        assert_eq!(rdata(z.answer("_http._tcp.web.shop.svc.cluster.local", RecordType::SRV, 5)), vec!["0 100 80 web.shop.svc.cluster.local."]);
        assert_eq!(rdata(z.answer("_dns._udp.web.shop.svc.cluster.local", RecordType::SRV, 5)), vec!["0 100 53 web.shop.svc.cluster.local."]);
        assert_eq!(rdata(z.answer("10.0.96.10.in-addr.arpa.", RecordType::PTR, 5)), vec!["web.shop.svc.cluster.local."]);
        match z.answer("web.shop.svc.cluster.local", RecordType::A, 7) {
            Answer::Records(r) => assert_eq!(r[0].ttl(), 7),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn headless_services_list_ready_addresses_with_per_endpoint_names() {
        let z = zone();
        let mut a = rdata(z.answer("db.shop.svc.cluster.local", RecordType::A, 5));
        a.sort();
        assert_eq!(a, vec!["10.244.1.5", "10.244.2.6"]);
        assert_eq!(rdata(z.answer("db-0.db.shop.svc.cluster.local", RecordType::A, 5)), vec!["10.244.1.5"]);
        assert_eq!(rdata(z.answer("10-244-2-6.db.shop.svc.cluster.local", RecordType::A, 5)), vec!["10.244.2.6"]);
        let mut srv = rdata(z.answer("_pg._tcp.db.shop.svc.cluster.local", RecordType::SRV, 5));
        srv.sort();
        assert_eq!(srv, vec!["0 100 5432 10-244-2-6.db.shop.svc.cluster.local.", "0 100 5432 db-0.db.shop.svc.cluster.local."]);
        assert_eq!(z.answer("10-244-3-7.db.shop.svc.cluster.local", RecordType::A, 5), Answer::NxDomain, "not ready");
    }

    #[test]
    fn unknown_names_are_nxdomain_parents_are_nodata_and_the_rest_is_forwarded() {
        let z = zone();
        assert_eq!(z.answer("nope.shop.svc.cluster.local", RecordType::A, 5), Answer::NxDomain);
        assert_eq!(z.answer("web.shop.svc.cluster.local.shop.svc.cluster.local", RecordType::A, 5), Answer::NxDomain);
        assert_eq!(z.answer("shop.svc.cluster.local", RecordType::A, 5), Answer::NoData);
        assert_eq!(z.answer("svc.cluster.local", RecordType::A, 5), Answer::NoData);
        assert_eq!(z.answer("web.shop.svc.cluster.local", RecordType::AAAA, 5), Answer::NoData);
        assert_eq!(z.answer("9.9.96.10.in-addr.arpa", RecordType::PTR, 5), Answer::NxDomain);
        assert_eq!(z.answer("1.0.0.10.in-addr.arpa", RecordType::PTR, 5), Answer::NotOurs, "outside the service CIDR");
        assert_eq!(z.answer("example.org", RecordType::A, 5), Answer::NotOurs);
        assert_eq!(z.answer("notcluster.local", RecordType::A, 5), Answer::NotOurs);
    }

    #[test]
    fn external_names_are_cnames_and_pods_have_dashed_names() {
        let z = zone();
        assert_eq!(rdata(z.answer("ext.shop.svc.cluster.local", RecordType::A, 5)), vec!["example.org."]);
        assert_eq!(rdata(z.answer("10-244-0-9.shop.pod.cluster.local", RecordType::A, 5)), vec!["10.244.0.9"]);
        assert_eq!(z.answer("10-244-0-x.shop.pod.cluster.local", RecordType::A, 5), Answer::NxDomain);
    }

    #[test]
    fn a_change_to_one_service_rewrites_only_its_names_and_keeps_shared_parents() {
        let mut z = zone();
        let web2 = json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"clusterIP": "10.96.0.11", "ports": [{"name": "http", "port": 8080}]}});
        z.set("shop/web", Some(&web2), None);
        assert_eq!(rdata(z.answer("web.shop.svc.cluster.local", RecordType::A, 5)), vec!["10.96.0.11"]);
        assert_eq!(z.answer("10.0.96.10.in-addr.arpa", RecordType::PTR, 5), Answer::NxDomain, "the old IP's PTR went");
        assert_eq!(z.answer("_dns._udp.web.shop.svc.cluster.local", RecordType::SRV, 5), Answer::NxDomain, "the old port went");
        assert_eq!(rdata(z.answer("_http._tcp.web.shop.svc.cluster.local", RecordType::SRV, 5)), vec!["0 100 8080 web.shop.svc.cluster.local."]);

        // Headless `db`'s Endpoints change: its addresses follow.
        let db = json!({"metadata": {"name": "db", "namespace": "shop"}, "spec": {"clusterIP": "None"}});
        let eps = json!({"metadata": {"name": "db", "namespace": "shop"}, "subsets": [{"addresses": [{"ip": "10.244.9.9"}]}]});
        z.set("shop/db", Some(&db), Some(&eps));
        assert_eq!(rdata(z.answer("db.shop.svc.cluster.local", RecordType::A, 5)), vec!["10.244.9.9"]);
        assert_eq!(z.answer("db-0.db.shop.svc.cluster.local", RecordType::A, 5), Answer::NxDomain);

        // Services go one by one: the namespace stays while one is left.
        z.set("shop/web", None, None);
        z.set("shop/db", None, None);
        assert_eq!(z.answer("web.shop.svc.cluster.local", RecordType::A, 5), Answer::NxDomain);
        assert_eq!(z.answer("shop.svc.cluster.local", RecordType::A, 5), Answer::NoData, "ext is still there");
        z.set("shop/ext", None, None);
        assert_eq!(z.answer("shop.svc.cluster.local", RecordType::A, 5), Answer::NxDomain);
        assert!(z.records.is_empty() && z.parents.is_empty() && z.shares.is_empty(), "{z:?}");
    }
}
