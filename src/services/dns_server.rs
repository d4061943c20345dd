//! The DNS role's server: hickory-server on the node's pod gateway address (port 53, UDP
//! and TCP), answering cluster names from a `Zone` updated for the Services that change in
//! the watch caches (rebuilt whole when a cache relists), and forwarding every other name through hickory's resolver to the upstream
//! servers (the host's resolv.conf unless `--dns-upstream` is given).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_server::authority::MessageResponseBuilder;
use hickory_server::proto::op::{Header, MessageType, OpCode, ResponseCode};
use hickory_server::proto::rr::Record;
use hickory_server::resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_server::resolver::name_server::TokioConnectionProvider;
use hickory_server::resolver::TokioResolver;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use ipnet::Ipv4Net;

use crate::watch_cache::{Changed, WatchCache};
use super::dns::{Answer, Zone};
use super::nftables::NftablesDataplane;

pub struct DnsConfig {
    pub ttl: u32,
    pub service_cidr: Ipv4Net,
    /// Servers to forward other names to; empty: the host's resolv.conf.
    pub upstream: Vec<SocketAddr>,
}

struct Handler {
    zone: Arc<RwLock<Zone>>,
    ttl: u32,
    forwarder: Option<TokioResolver>,
}

fn forwarder(upstream: &[SocketAddr]) -> Option<TokioResolver> {
    let builder = if upstream.is_empty() {
        match TokioResolver::builder_tokio() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "dns: no upstream resolvers (reading resolv.conf); other names get SERVFAIL");
                return None;
            }
        }
    } else {
        let mut group = NameServerConfigGroup::new();
        for addr in upstream {
            group.merge(NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true));
        }
        TokioResolver::builder_with_config(ResolverConfig::from_parts(None, vec![], group), TokioConnectionProvider::default())
    };
    let mut builder = builder;
    let opts = builder.options_mut();
    opts.ndots = 0;
    opts.attempts = 2;
    opts.timeout = Duration::from_secs(2);
    Some(builder.build())
}

impl Handler {
    async fn respond<R: ResponseHandler>(&self, request: &Request, mut handle: R) -> std::io::Result<ResponseInfo> {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut header = Header::response_from_request(request.header());
        if request.op_code() != OpCode::Query || request.message_type() != MessageType::Query {
            return handle.send_response(builder.error_msg(request.header(), ResponseCode::NotImp)).await;
        }
        let Ok(info) = request.request_info() else {
            return handle.send_response(builder.error_msg(request.header(), ResponseCode::FormErr)).await;
        };
        let qname = info.query.name().to_string();
        let qtype = info.query.query_type();
        let answer = self.zone.read().expect("zone lock").answer(&qname, qtype, self.ttl);
        let soa = || vec![Zone::soa(self.ttl)];
        let (answers, soa): (Vec<Record>, Vec<Record>) = match answer {
            Answer::Records(r) => {
                header.set_authoritative(true);
                (r, vec![])
            }
            Answer::NoData => {
                header.set_authoritative(true);
                (vec![], soa())
            }
            Answer::NxDomain => {
                header.set_authoritative(true);
                header.set_response_code(ResponseCode::NXDomain);
                (vec![], soa())
            }
            Answer::NotOurs => {
                header.set_recursion_available(true);
                match &self.forwarder {
                    None => {
                        header.set_response_code(ResponseCode::ServFail);
                        (vec![], vec![])
                    }
                    Some(f) => match f.lookup(info.query.name().clone(), qtype).await {
                        Ok(lookup) => (lookup.records().to_vec(), vec![]),
                        Err(e) if e.is_nx_domain() => {
                            header.set_response_code(ResponseCode::NXDomain);
                            (vec![], vec![])
                        }
                        Err(e) if e.is_no_records_found() => (vec![], vec![]),
                        Err(e) => {
                            tracing::debug!(name = %qname, error = %e, "dns: forwarding failed");
                            header.set_response_code(ResponseCode::ServFail);
                            (vec![], vec![])
                        }
                    },
                }
            }
        };
        header.set_recursion_available(true);
        handle.send_response(builder.build(header, answers.iter(), [], soa.iter(), [])).await
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(&self, request: &Request, handle: R) -> ResponseInfo {
        match self.respond(request, handle).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "dns: sending a response failed");
                let mut h = Header::new();
                h.set_response_code(ResponseCode::ServFail);
                h.into()
            }
        }
    }
}

pub const NOTRACK_TABLE: &str = "orch-dns";

fn notrack_script(listen: IpAddr) -> String {
    format!(
        "table ip {t}\ndelete table ip {t}\ntable ip {t} {{\n\
         \tchain prerouting {{ type filter hook prerouting priority raw; ip daddr {listen} udp dport 53 notrack; ip daddr {listen} tcp dport 53 notrack; }}\n\
         \tchain output {{ type filter hook output priority raw; ip saddr {listen} udp sport 53 notrack; ip saddr {listen} tcp sport 53 notrack; }}\n\
         }}\n",
        t = NOTRACK_TABLE
    )
}

/// Serve DNS on `listen` (binding retries until the address exists, as the gateway address
/// appears with the node's pod network) until the process ends.
pub async fn run(listen: IpAddr, cfg: DnsConfig, services: WatchCache, endpoints: WatchCache) {
    let zone = Arc::new(RwLock::new(Zone::new(Some(cfg.service_cidr))));
    {
        let zone = zone.clone();
        let (mut svc_rx, mut ep_rx) = (services.subscribe(), endpoints.subscribe());
        let cidr = cfg.service_cidr;
        let (mut svc_seen, mut ep_seen) = (0, 0);
        tokio::spawn(async move {
            loop {
                let (s_seq, s_changed) = services.changes_since(svc_seen);
                let (e_seq, e_changed) = endpoints.changes_since(ep_seen);
                (svc_seen, ep_seen) = (s_seq, e_seq);
                match (s_changed, e_changed) {
                    (Changed::Keys(mut keys), Changed::Keys(mut ep_keys)) => {
                        keys.append(&mut ep_keys);
                        for key in keys {
                            let (svc, eps) = (services.get(&key), endpoints.get(&key));
                            zone.write().expect("zone lock").set(&key, svc.as_ref(), eps.as_ref());
                        }
                    }
                    _ => {
                        let built = Zone::build(&services.objects(), &endpoints.objects(), Some(cidr));
                        *zone.write().expect("zone lock") = built;
                    }
                }
                tokio::select! {
                    r = svc_rx.changed() => if r.is_err() { return },
                    r = ep_rx.changed() => if r.is_err() { return },
                }
            }
        });
    }
    let handler = Handler { zone, ttl: cfg.ttl, forwarder: forwarder(&cfg.upstream) };
    let addr = SocketAddr::new(listen, 53);
    let (udp, tcp) = loop {
        match (tokio::net::UdpSocket::bind(addr).await, tokio::net::TcpListener::bind(addr).await) {
            (Ok(u), Ok(t)) => break (u, t),
            (u, t) => {
                let e = u.err().or(t.err()).map(|e| e.to_string()).unwrap_or_default();
                tracing::debug!(%addr, error = %e, "dns: cannot listen yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    tracing::info!(%addr, "cluster DNS serving");
    // Queries to the node-local server skip conntrack, as NodeLocal DNSCache does: parallel
    // A/AAAA lookups from one socket otherwise race in conntrack and a query is dropped
    // (the resolver then waits out its 5 s timeout), and a busy node fills its table.
    if let Err(e) = NftablesDataplane::new().run_script(&notrack_script(listen)).await {
        tracing::warn!(error = %e, "dns: could not exempt DNS traffic from conntrack");
    }
    let mut server = ServerFuture::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(10));
    if let Err(e) = server.block_until_done().await {
        tracing::error!(error = %e, "dns server stopped");
    }
}
