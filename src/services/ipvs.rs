//! IPVS over generic netlink: the kernel's `IPVS` family (include/uapi/linux/ip_vs.h)
//! encoded with netlink-packet-generic, the commands that turn proxy changes into virtual
//! services and real servers (pure), detection of the family, and a dataplane that sends
//! the commands and binds VIPs to a dummy interface. The message layout is hand-written
//! because no maintained crate encodes IPVS; every attribute follows the kernel's policy
//! (`ip_vs_svc_policy`, `ip_vs_dest_policy`) and ipvsadm's encoding (addresses as a
//! 16-byte `nf_inet_addr`, ports in network order).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use netlink_packet_core::{
    DecodeError, Emitable, ErrorContext, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla, NlaBuffer, NlasIterator, ParseableParametrized,
    NLA_F_NESTED, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};

use super::model::{Change, Protocol, Table, VirtualService};
use super::{Dataplane, DataplaneError};

pub const FAMILY: &str = "IPVS";
const VERSION: u8 = 1;

// Commands.
const CMD_NEW_SERVICE: u8 = 1;
const CMD_SET_SERVICE: u8 = 2;
const CMD_DEL_SERVICE: u8 = 3;
const CMD_NEW_DEST: u8 = 5;
const CMD_DEL_DEST: u8 = 7;
const CMD_FLUSH: u8 = 17;
// First-level attributes.
const CMD_ATTR_SERVICE: u16 = 1;
const CMD_ATTR_DEST: u16 = 2;
// Service attributes.
const SVC_ATTR_AF: u16 = 1;
const SVC_ATTR_PROTOCOL: u16 = 2;
const SVC_ATTR_ADDR: u16 = 3;
const SVC_ATTR_PORT: u16 = 4;
const SVC_ATTR_SCHED_NAME: u16 = 6;
const SVC_ATTR_FLAGS: u16 = 7;
const SVC_ATTR_TIMEOUT: u16 = 8;
const SVC_ATTR_NETMASK: u16 = 9;
// Destination attributes.
const DEST_ATTR_ADDR: u16 = 1;
const DEST_ATTR_PORT: u16 = 2;
const DEST_ATTR_FWD_METHOD: u16 = 3;
const DEST_ATTR_WEIGHT: u16 = 4;
const DEST_ATTR_U_THRESH: u16 = 5;
const DEST_ATTR_L_THRESH: u16 = 6;
const DEST_ATTR_ADDR_FAMILY: u16 = 11;

const AF_INET: u16 = 2;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
/// `IP_VS_SVC_F_PERSISTENT`: ClientIP affinity.
const SVC_F_PERSISTENT: u32 = 0x1;
/// `IP_VS_CONN_F_MASQ`: NAT to the real server.
const CONN_F_MASQ: u32 = 0;

/// One virtual service as IPVS keys it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsService {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    pub scheduler: &'static str,
    /// Persistence timeout in seconds (ClientIP affinity).
    pub persistence: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsDest {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpvsCommand {
    NewService(IpvsService),
    SetService(IpvsService),
    DelService(IpvsService),
    NewDest(IpvsService, IpvsDest),
    DelDest(IpvsService, IpvsDest),
    Flush,
}

/// One attribute; nested ones carry their children.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Attr {
    U16(u16, u16),
    U32(u16, u32),
    /// A port, in network byte order.
    Be16(u16, u16),
    /// An IPv4 address in a 16-byte `union nf_inet_addr`.
    Addr(u16, Ipv4Addr),
    /// A NUL-terminated string.
    Str(u16, &'static str),
    /// `struct ip_vs_flags { flags, mask }`.
    Flags(u32, u32),
    Nested(u16, Vec<Attr>),
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match self {
            Attr::U16(..) | Attr::Be16(..) => 2,
            Attr::U32(..) => 4,
            Attr::Addr(..) => 16,
            Attr::Str(_, s) => s.len() + 1,
            Attr::Flags(..) => 8,
            Attr::Nested(_, children) => children.as_slice().buffer_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Attr::U16(k, _) | Attr::U32(k, _) | Attr::Be16(k, _) | Attr::Addr(k, _) | Attr::Str(k, _) => *k,
            Attr::Flags(..) => SVC_ATTR_FLAGS,
            Attr::Nested(k, _) => k | NLA_F_NESTED,
        }
    }

    fn emit_value(&self, buf: &mut [u8]) {
        match self {
            Attr::U16(_, v) => buf[..2].copy_from_slice(&v.to_ne_bytes()),
            Attr::U32(_, v) => buf[..4].copy_from_slice(&v.to_ne_bytes()),
            Attr::Be16(_, v) => buf[..2].copy_from_slice(&v.to_be_bytes()),
            Attr::Addr(_, a) => {
                buf[..16].fill(0);
                buf[..4].copy_from_slice(&a.octets());
            }
            Attr::Str(_, s) => {
                buf[..s.len()].copy_from_slice(s.as_bytes());
                buf[s.len()] = 0;
            }
            Attr::Flags(flags, mask) => {
                buf[..4].copy_from_slice(&flags.to_ne_bytes());
                buf[4..8].copy_from_slice(&mask.to_ne_bytes());
            }
            Attr::Nested(_, children) => children.as_slice().emit(buf),
        }
    }
}

fn protocol_number(p: Protocol) -> u16 {
    match p {
        Protocol::Tcp => IPPROTO_TCP,
        Protocol::Udp => IPPROTO_UDP,
    }
}

/// The attributes naming a service (all a delete or a destination needs).
fn service_key(s: &IpvsService) -> Vec<Attr> {
    vec![Attr::U16(SVC_ATTR_AF, AF_INET), Attr::U16(SVC_ATTR_PROTOCOL, protocol_number(s.protocol)), Attr::Addr(SVC_ATTR_ADDR, s.addr), Attr::Be16(SVC_ATTR_PORT, s.port)]
}

/// A full service entry, as NEW/SET_SERVICE require (scheduler, flags, timeout, netmask).
fn service_full(s: &IpvsService) -> Vec<Attr> {
    let mut a = service_key(s);
    let flags = if s.persistence.is_some() { SVC_F_PERSISTENT } else { 0 };
    a.extend([
        Attr::Str(SVC_ATTR_SCHED_NAME, s.scheduler),
        Attr::Flags(flags, SVC_F_PERSISTENT),
        Attr::U32(SVC_ATTR_TIMEOUT, s.persistence.unwrap_or(0)),
        Attr::U32(SVC_ATTR_NETMASK, u32::MAX),
    ]);
    a
}

fn dest_attrs(d: &IpvsDest) -> Vec<Attr> {
    vec![
        Attr::Addr(DEST_ATTR_ADDR, d.addr),
        Attr::Be16(DEST_ATTR_PORT, d.port),
        Attr::U32(DEST_ATTR_FWD_METHOD, CONN_F_MASQ),
        Attr::U32(DEST_ATTR_WEIGHT, d.weight),
        Attr::U32(DEST_ATTR_U_THRESH, 0),
        Attr::U32(DEST_ATTR_L_THRESH, 0),
        Attr::U16(DEST_ATTR_ADDR_FAMILY, AF_INET),
    ]
}

/// An IPVS generic-netlink message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsMessage {
    cmd: u8,
    attrs: Vec<Attr>,
}

impl From<&IpvsCommand> for IpvsMessage {
    fn from(c: &IpvsCommand) -> Self {
        let svc = |attrs| Attr::Nested(CMD_ATTR_SERVICE, attrs);
        let dest = |d: &IpvsDest| Attr::Nested(CMD_ATTR_DEST, dest_attrs(d));
        let (cmd, attrs) = match c {
            IpvsCommand::NewService(s) => (CMD_NEW_SERVICE, vec![svc(service_full(s))]),
            IpvsCommand::SetService(s) => (CMD_SET_SERVICE, vec![svc(service_full(s))]),
            IpvsCommand::DelService(s) => (CMD_DEL_SERVICE, vec![svc(service_key(s))]),
            IpvsCommand::NewDest(s, d) => (CMD_NEW_DEST, vec![svc(service_key(s)), dest(d)]),
            IpvsCommand::DelDest(s, d) => (CMD_DEL_DEST, vec![svc(service_key(s)), dest(d)]),
            IpvsCommand::Flush => (CMD_FLUSH, vec![]),
        };
        IpvsMessage { cmd, attrs }
    }
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        FAMILY
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    /// Replies to the commands above are acknowledgements; their payload is kept opaque.
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let mut attrs = vec![];
        for nla in NlasIterator::new(buf) {
            let nla: NlaBuffer<&[u8]> = nla.context("IPVS reply attribute")?;
            attrs.push(Attr::U16(nla.kind(), 0));
        }
        Ok(IpvsMessage { cmd: header.cmd, attrs })
    }
}

fn ipvs_service(vs: &VirtualService, addr: Ipv4Addr, port: u16) -> IpvsService {
    IpvsService { addr, port, protocol: vs.protocol, scheduler: "rr", persistence: vs.affinity_timeout }
}

/// IPVS services of one virtual service: its VIP, and each node address for a NodePort.
fn services_of(vs: &VirtualService, node_ips: &[Ipv4Addr]) -> Vec<IpvsService> {
    let mut out = vec![ipvs_service(vs, vs.vip, vs.port)];
    if let Some(np) = vs.node_port {
        out.extend(node_ips.iter().map(|ip| ipvs_service(vs, *ip, np)));
    }
    out
}

fn dests(vs: &VirtualService) -> Vec<IpvsDest> {
    vs.backends.iter().map(|b| IpvsDest { addr: b.ip, port: b.port, weight: 1 }).collect()
}

/// The IPVS commands that apply `changes` (pure): services added, changed in place (only
/// their scheduling flags) or replaced, and real servers added or removed one by one.
pub fn commands(changes: &[Change], node_ips: &[Ipv4Addr]) -> Vec<IpvsCommand> {
    let mut out = vec![];
    for c in changes {
        match c {
            Change::Remove { old, .. } => out.extend(services_of(old, node_ips).into_iter().map(IpvsCommand::DelService)),
            Change::Upsert { new, old, .. } => {
                let (new_svcs, new_dests) = (services_of(new, node_ips), dests(new));
                let (old_svcs, old_dests) = old.as_ref().map(|o| (services_of(o, node_ips), dests(o))).unwrap_or_default();
                let key = |s: &IpvsService| (s.addr, s.port, s.protocol);
                for o in &old_svcs {
                    if !new_svcs.iter().any(|n| key(n) == key(o)) {
                        out.push(IpvsCommand::DelService(o.clone()));
                    }
                }
                for n in &new_svcs {
                    match old_svcs.iter().find(|o| key(o) == key(n)) {
                        None => {
                            out.push(IpvsCommand::NewService(n.clone()));
                            out.extend(new_dests.iter().map(|d| IpvsCommand::NewDest(n.clone(), d.clone())));
                        }
                        Some(o) => {
                            if o != n {
                                out.push(IpvsCommand::SetService(n.clone()));
                            }
                            out.extend(old_dests.iter().filter(|d| !new_dests.contains(d)).map(|d| IpvsCommand::DelDest(n.clone(), d.clone())));
                            out.extend(new_dests.iter().filter(|d| !old_dests.contains(d)).map(|d| IpvsCommand::NewDest(n.clone(), d.clone())));
                        }
                    }
                }
            }
        }
    }
    out
}

/// A generic-netlink socket (blocking; every call is a request and its acknowledgement).
struct GenlSocket {
    socket: netlink_sys::Socket,
    seq: u32,
}

impl GenlSocket {
    fn open() -> std::io::Result<GenlSocket> {
        let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_GENERIC)?;
        socket.bind_auto()?;
        socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
        Ok(GenlSocket { socket, seq: 0 })
    }

    /// Send `payload` and wait for its reply; Err(errno) when the kernel refuses.
    fn request<F>(&mut self, payload: GenlMessage<F>) -> std::io::Result<Option<GenlMessage<F>>>
    where
        F: GenlFamily + Emitable + ParseableParametrized<[u8], GenlHeader> + std::fmt::Debug,
    {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(payload));
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut reply = None;
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < data.len() {
                let msg = NetlinkMessage::<GenlMessage<F>>::deserialize(&data[offset..]).map_err(|e| std::io::Error::other(e.to_string()))?;
                offset += msg.header.length as usize;
                if msg.header.length == 0 {
                    return Err(std::io::Error::other("netlink: empty message"));
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(reply),
                            Some(code) => Err(std::io::Error::from_raw_os_error(-code.get())),
                        };
                    }
                    NetlinkPayload::InnerMessage(m) => reply = Some(m),
                    _ => {}
                }
            }
        }
    }

    /// The id of generic-netlink family `name`, or None if the kernel has no such family.
    fn family_id(&mut self, name: &str) -> std::io::Result<Option<u16>> {
        let ask = GenlMessage::from_payload(GenlCtrl { cmd: GenlCtrlCmd::GetFamily, nlas: vec![GenlCtrlAttrs::FamilyName(name.to_string())] });
        match self.request(ask) {
            Ok(Some(reply)) => Ok(reply.payload.nlas.iter().find_map(|a| if let GenlCtrlAttrs::FamilyId(id) = a { Some(*id) } else { None })),
            Ok(None) => Ok(None),
            Err(e) if e.raw_os_error() == Some(2) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The generic-netlink id of family `name` if this kernel offers it (`nlctrl` always is).
pub fn genl_family(name: &str) -> std::io::Result<Option<u16>> {
    GenlSocket::open()?.family_id(name)
}

/// Whether this kernel offers IPVS (its generic-netlink family resolves).
pub fn kernel_has_ipvs() -> bool {
    matches!(genl_family(FAMILY), Ok(Some(_)))
}

/// The dummy interface VIPs are bound to in IPVS mode (IPVS only sees traffic to local
/// addresses).
pub const DUMMY: &str = "orch-ipvs0";

/// IPVS virtual services and real servers, and the VIPs bound to `DUMMY`.
pub struct IpvsDataplane {
    socket: GenlSocket,
    family: u16,
    node_ips: Vec<Ipv4Addr>,
    /// What the kernel holds (to know which VIPs are still used after a change).
    table: Table,
}

fn vips(table: &Table) -> BTreeSet<Ipv4Addr> {
    table.values().map(|v| v.vip).collect()
}

/// Make the addresses on `DUMMY` exactly `want` (creating the interface if needed).
async fn bind_vips(want: &BTreeSet<Ipv4Addr>) -> Result<(), DataplaneError> {
    use futures::TryStreamExt;
    use rtnetlink::packet_route::address::AddressAttribute;
    let err = |e: &dyn std::fmt::Display| DataplaneError(format!("{DUMMY}: {e}"));
    let (handle, conn) = crate::kubelet::network::connect().map_err(|e| err(&e))?;
    let result = async {
        let index = match crate::kubelet::network::link_index(&handle, DUMMY).await.map_err(|e| err(&e))? {
            Some(i) => i,
            None => {
                handle.link().add(rtnetlink::LinkDummy::new(DUMMY).up().build()).execute().await.map_err(|e| err(&e))?;
                crate::kubelet::network::link_index(&handle, DUMMY).await.map_err(|e| err(&e))?.ok_or_else(|| err(&"vanished"))?
            }
        };
        let mut have = vec![];
        let mut addrs = handle.address().get().set_link_index_filter(index).execute();
        while let Some(msg) = addrs.try_next().await.map_err(|e| err(&e))? {
            let ip = msg.attributes.iter().find_map(|a| if let AddressAttribute::Local(std::net::IpAddr::V4(ip)) | AddressAttribute::Address(std::net::IpAddr::V4(ip)) = a { Some(*ip) } else { None });
            if let Some(ip) = ip {
                have.push((ip, msg));
            }
        }
        for (ip, msg) in have.iter() {
            if !want.contains(ip) {
                handle.address().del(msg.clone()).execute().await.map_err(|e| err(&e))?;
            }
        }
        for ip in want {
            if !have.iter().any(|(h, _)| h == ip) {
                handle.address().add(index, (*ip).into(), 32).replace().execute().await.map_err(|e| err(&e))?;
            }
        }
        Ok(())
    }
    .await;
    conn.abort();
    result
}

impl IpvsDataplane {
    /// Connect to the kernel's IPVS family; Err if the kernel has none.
    pub fn new(node_ips: Vec<Ipv4Addr>) -> Result<IpvsDataplane, DataplaneError> {
        let mut socket = GenlSocket::open().map_err(|e| DataplaneError(format!("generic netlink: {e}")))?;
        let family = socket.family_id(FAMILY).map_err(|e| DataplaneError(format!("resolving IPVS: {e}")))?;
        let family = family.ok_or_else(|| DataplaneError("the kernel has no IPVS (CONFIG_IP_VS)".into()))?;
        Ok(IpvsDataplane { socket, family, node_ips, table: Table::new() })
    }

    fn send(&mut self, cmds: &[IpvsCommand]) -> Result<(), DataplaneError> {
        for c in cmds {
            let mut msg = GenlMessage::from_payload(IpvsMessage::from(c));
            msg.set_resolved_family_id(self.family);
            match self.socket.request(msg) {
                Ok(_) => {}
                // Already there / already gone: the kernel is where we want it.
                Err(e) if matches!(e.raw_os_error(), Some(17) | Some(3) | Some(2)) => {}
                Err(e) => return Err(DataplaneError(format!("IPVS {c:?}: {e}"))),
            }
        }
        Ok(())
    }
}

impl Dataplane for IpvsDataplane {
    fn mode(&self) -> &'static str {
        "ipvs"
    }

    async fn sync(&mut self, table: &Table) -> Result<(), DataplaneError> {
        let all: Vec<Change> = table.iter().map(|(k, v)| Change::Upsert { key: k.clone(), old: None, new: v.clone() }).collect();
        let mut cmds = vec![IpvsCommand::Flush];
        cmds.extend(commands(&all, &self.node_ips));
        self.send(&cmds)?;
        self.table = table.clone();
        bind_vips(&vips(&self.table)).await
    }

    async fn apply(&mut self, changes: &[Change], _all: &Table) -> Result<(), DataplaneError> {
        let cmds = commands(changes, &self.node_ips);
        self.send(&cmds)?;
        let before = vips(&self.table);
        super::model::apply(&mut self.table, changes);
        let after = vips(&self.table);
        if before != after {
            bind_vips(&after).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::Backend;
    use super::*;

    fn svc(persistence: Option<u32>) -> IpvsService {
        IpvsService { addr: Ipv4Addr::new(10, 96, 0, 10), port: 80, protocol: Protocol::Tcp, scheduler: "rr", persistence }
    }

    fn bytes(c: &IpvsCommand) -> (u8, Vec<u8>) {
        let m = IpvsMessage::from(c);
        let mut b = vec![0; m.buffer_len()];
        m.emit(&mut b);
        (m.cmd, b)
    }

    /// An attribute as the kernel reads it: length (header + value), type, value, padding.
    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut v = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        v.extend(kind.to_ne_bytes());
        v.extend(value);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn svc_key_bytes() -> Vec<u8> {
        let mut addr = vec![10, 96, 0, 10];
        addr.extend([0; 12]);
        [nla(1, &2u16.to_ne_bytes()), nla(2, &6u16.to_ne_bytes()), nla(3, &addr), nla(4, &[0, 80])].concat()
    }

    #[test]
    fn a_new_service_carries_the_full_entry_the_kernel_requires() {
        let (cmd, b) = bytes(&IpvsCommand::NewService(svc(Some(10_800))));
        assert_eq!(cmd, 1);
        let mut flags = 1u32.to_ne_bytes().to_vec();
        flags.extend(1u32.to_ne_bytes());
        let inner = [svc_key_bytes(), nla(6, b"rr\0"), nla(7, &flags), nla(8, &10_800u32.to_ne_bytes()), nla(9, &[0xff; 4])].concat();
        assert_eq!(b, nla(1 | NLA_F_NESTED, &inner));
    }

    #[test]
    fn deletes_name_the_service_and_destinations_ride_with_it() {
        let (cmd, b) = bytes(&IpvsCommand::DelService(svc(None)));
        assert_eq!((cmd, b), (3, nla(1 | NLA_F_NESTED, &svc_key_bytes())));
        let dest = IpvsDest { addr: Ipv4Addr::new(10, 244, 1, 5), port: 8080, weight: 1 };
        let mut addr = vec![10, 244, 1, 5];
        addr.extend([0; 12]);
        let dest_inner = [
            nla(1, &addr),
            nla(2, &8080u16.to_be_bytes()),
            nla(3, &0u32.to_ne_bytes()),
            nla(4, &1u32.to_ne_bytes()),
            nla(5, &0u32.to_ne_bytes()),
            nla(6, &0u32.to_ne_bytes()),
            nla(11, &2u16.to_ne_bytes()),
        ]
        .concat();
        let want = [nla(1 | NLA_F_NESTED, &svc_key_bytes()), nla(2 | NLA_F_NESTED, &dest_inner)].concat();
        assert_eq!(bytes(&IpvsCommand::NewDest(svc(None), dest.clone())), (5, want.clone()));
        assert_eq!(bytes(&IpvsCommand::DelDest(svc(None), dest)), (7, want));
        assert_eq!(bytes(&IpvsCommand::Flush), (17, vec![]));
        assert_eq!(bytes(&IpvsCommand::SetService(svc(None))).0, 2);
    }

    fn vs(backends: &[&str], node_port: Option<u16>, affinity: Option<u32>) -> VirtualService {
        VirtualService {
            vip: Ipv4Addr::new(10, 96, 0, 10),
            port: 80,
            protocol: Protocol::Tcp,
            node_port,
            affinity_timeout: affinity,
            backends: backends.iter().map(|ip| Backend { ip: ip.parse().unwrap(), port: 8080 }).collect(),
        }
    }

    #[test]
    fn changes_become_service_and_destination_commands() {
        let nodes = [Ipv4Addr::new(192, 168, 1, 1)];
        let add = commands(&[Change::Upsert { key: "k".into(), old: None, new: vs(&["10.244.0.2"], Some(30080), None) }], &nodes);
        let node_svc = IpvsService { addr: nodes[0], port: 30080, ..svc(None) };
        let d2 = IpvsDest { addr: Ipv4Addr::new(10, 244, 0, 2), port: 8080, weight: 1 };
        assert_eq!(add, vec![
            IpvsCommand::NewService(svc(None)),
            IpvsCommand::NewDest(svc(None), d2.clone()),
            IpvsCommand::NewService(node_svc.clone()),
            IpvsCommand::NewDest(node_svc.clone(), d2.clone()),
        ]);

        // Backends swap and affinity turns on; the NodePort goes.
        let update = commands(&[Change::Upsert { key: "k".into(), old: Some(vs(&["10.244.0.2"], Some(30080), None)), new: vs(&["10.244.0.3"], None, Some(60)) }], &nodes);
        let d3 = IpvsDest { addr: Ipv4Addr::new(10, 244, 0, 3), port: 8080, weight: 1 };
        assert_eq!(update, vec![
            IpvsCommand::DelService(node_svc),
            IpvsCommand::SetService(svc(Some(60))),
            IpvsCommand::DelDest(svc(Some(60)), d2),
            IpvsCommand::NewDest(svc(Some(60)), d3),
        ]);
        assert_eq!(commands(&[Change::Remove { key: "k".into(), old: vs(&["10.244.0.3"], None, None) }], &nodes), vec![IpvsCommand::DelService(svc(None))]);
    }

    #[test]
    fn family_detection_asks_the_kernel() {
        // nlctrl is always there; IPVS is absent on this kernel (CONFIG_IP_VS unset), and
        // whatever the kernel, a made-up family never resolves.
        assert!(genl_family("nlctrl").unwrap().is_some());
        assert_eq!(genl_family("orch-nofamily").unwrap(), None);
        assert_eq!(kernel_has_ipvs(), genl_family("IPVS").unwrap().is_some());
    }
}
