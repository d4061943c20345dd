//! The proxy's incremental nftables changes as nf_tables netlink messages, sent as one
//! batch (one transaction) on a NETLINK_NETFILTER socket.
//!
//! Hand-rolled on purpose: `nft -f` (nftables 1.0.6, Debian 12) first downloads the whole
//! ruleset into its cache for any `add rule` or `add element`, about 100 ms and 40 MB at
//! 10,000 services, so a one-endpoint change cost as much as the table was big. The Rust
//! nftables crates either drive `nft` (same cost) or are GPL (rustables). The messages
//! below are the few the proxy needs, laid out as `linux/netfilter/nf_tables.h` defines
//! them; `tests/nftables_dataplane.rs` checks that the kernel ends up with exactly the table
//! the equivalent `nft` script makes. Full syncs still go through `nft -f`.

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};

use super::model::Protocol;
use super::nftables::{ElementData, Field, Op, Rule, Step};
use super::DataplaneError;

// nfnetlink framing.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFPROTO_IPV4: u8 = 2;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;

// enum nf_tables_msg_types
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

// Attributes: NFTA_CHAIN_*, NFTA_RULE_*, NFTA_SET_*, NFTA_SET_ELEM_LIST_*, NFTA_SET_ELEM_*
// (attribute 1 of the first four is the table).
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_TIMEOUT: u16 = 11;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFT_SET_TIMEOUT: u32 = 0x10;
const NFT_SET_EVAL: u32 = 0x20;
/// nftables' datatype number for `ipv4_addr` (TYPE_IPADDR).
const TYPE_IPADDR: u32 = 7;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;

/// A netlink message or attribute under construction.
#[derive(Default)]
struct Buf(Vec<u8>);

impl Buf {
    fn attr(&mut self, ty: u16, payload: &[u8]) -> &mut Self {
        let len = 4 + payload.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(payload);
        self.pad();
        self
    }

    fn str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v)
    }

    /// nf_tables integers are big-endian.
    fn u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_be_bytes())
    }

    fn nested(&mut self, ty: u16, f: impl FnOnce(&mut Buf)) -> &mut Self {
        let start = self.0.len();
        self.0.extend_from_slice(&[0, 0]);
        self.0.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        f(self);
        let len = (self.0.len() - start) as u16;
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn pad(&mut self) {
        while self.0.len() % 4 != 0 {
            self.0.push(0);
        }
    }
}

/// A verdict (`jump`/`goto` a chain) as NFTA_DATA_VERDICT inside `ty`.
fn verdict(b: &mut Buf, ty: u16, code: i32, chain: &str) {
    b.nested(ty, |d| {
        d.nested(NFTA_DATA_VERDICT, |v| {
            v.attr(NFTA_VERDICT_CODE, &code.to_be_bytes()).str(NFTA_VERDICT_CHAIN, chain);
        });
    });
}

fn value(b: &mut Buf, ty: u16, bytes: &[u8]) {
    b.nested(ty, |d| {
        d.attr(NFTA_DATA_VALUE, bytes);
    });
}

/// One expression: NFTA_LIST_ELEM { NAME, DATA { ... } }.
fn expr(b: &mut Buf, name: &str, data: impl FnOnce(&mut Buf)) {
    b.nested(NFTA_LIST_ELEM, |e| {
        e.str(NFTA_EXPR_NAME, name).nested(NFTA_EXPR_DATA, data);
    });
}

/// `payload load ip saddr => reg 1` (network header, offset 12, 4 bytes).
fn ip_saddr(b: &mut Buf) {
    // NFTA_PAYLOAD_DREG 1, BASE 2 (NFT_PAYLOAD_NETWORK_HEADER = 1), OFFSET 3, LEN 4.
    expr(b, "payload", |d| {
        d.u32(1, NFT_REG_1).u32(2, 1).u32(3, 12).u32(4, 4);
    });
}

/// `cmp eq reg 1 VALUE`.
fn cmp_eq(b: &mut Buf, bytes: &[u8]) {
    // NFTA_CMP_SREG 1, OP 2 (NFT_CMP_EQ = 0), DATA 3.
    expr(b, "cmp", |d| {
        d.u32(1, NFT_REG_1).u32(2, 0);
        value(d, 3, bytes);
    });
}

/// `immediate verdict` to the verdict register.
fn immediate_verdict(b: &mut Buf, code: i32, chain: &str) {
    // NFTA_IMMEDIATE_DREG 1, DATA 2.
    expr(b, "immediate", |d| {
        d.u32(1, NFT_REG_VERDICT);
        verdict(d, 2, code, chain);
    });
}

fn immediate_value(b: &mut Buf, reg: u32, bytes: &[u8]) {
    expr(b, "immediate", |d| {
        d.u32(1, reg);
        value(d, 2, bytes);
    });
}

fn protocol_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
    }
}

/// A rule's expressions.
fn rule_exprs(b: &mut Buf, rule: &Rule) {
    match rule {
        Rule::MasqueradeFrom(ip) => {
            ip_saddr(b);
            cmp_eq(b, &ip.octets());
            immediate_verdict(b, NFT_JUMP, "mark-masq");
        }
        Rule::Masquerade => immediate_verdict(b, NFT_JUMP, "mark-masq"),
        Rule::RememberClient { set } => {
            ip_saddr(b);
            // NFTA_DYNSET_SET_NAME 1, OP 3 (NFT_DYNSET_OP_UPDATE = 1), SREG_KEY 4; the
            // timeout is the set's own.
            expr(b, "dynset", |d| {
                d.str(1, set).u32(3, 1).u32(4, NFT_REG_1);
            });
        }
        Rule::Dnat { protocol, backend } => {
            // NFTA_META_DREG 1, KEY 2 (NFT_META_L4PROTO = 16).
            expr(b, "meta", |d| {
                d.u32(1, NFT_REG_1).u32(2, 16);
            });
            cmp_eq(b, &[protocol_number(*protocol)]);
            immediate_value(b, NFT_REG_1, &backend.ip.octets());
            immediate_value(b, NFT_REG_2, &backend.port.to_be_bytes());
            // NFTA_NAT_TYPE 1 (NFT_NAT_DNAT = 1), FAMILY 2, REG_ADDR_MIN 3, REG_PROTO_MIN 5.
            expr(b, "nat", |d| {
                d.u32(1, 1).u32(2, u32::from(NFPROTO_IPV4)).u32(3, NFT_REG_1).u32(5, NFT_REG_2);
            });
        }
        Rule::StickyGoto { set, chain } => {
            ip_saddr(b);
            // NFTA_LOOKUP_SET 1, SREG 2.
            expr(b, "lookup", |d| {
                d.str(1, set).u32(2, NFT_REG_1);
            });
            immediate_verdict(b, NFT_GOTO, chain);
        }
        Rule::RandomGoto { modulus, chain } => {
            // NFTA_NG_DREG 1, MODULUS 2, TYPE 3 (NFT_NG_RANDOM = 1).
            expr(b, "numgen", |d| {
                d.u32(1, NFT_REG_1).u32(2, *modulus).u32(3, 1);
            });
            cmp_eq(b, &0u32.to_ne_bytes());
            immediate_verdict(b, NFT_GOTO, chain);
        }
        Rule::Goto(chain) => immediate_verdict(b, NFT_GOTO, chain),
    }
}

/// A key as the kernel stores a concatenation: each field padded to 4 bytes (a slot is
/// what `numgen` writes: a host-order u32).
fn key_bytes(key: &[Field]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 * key.len());
    for f in key {
        match f {
            Field::Ip(ip) => out.extend_from_slice(&ip.octets()),
            Field::Proto(p) => out.extend_from_slice(&[protocol_number(*p), 0, 0, 0]),
            Field::Port(n) => {
                let b = n.to_be_bytes();
                out.extend_from_slice(&[b[0], b[1], 0, 0]);
            }
            Field::Slot(i) => out.extend_from_slice(&i.to_ne_bytes()),
        }
    }
    out
}

/// One message: nlmsghdr, nfgenmsg, then `attrs`.
fn message(out: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &Buf) {
    let len = 16 + 4 + attrs.0.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[family, 0]);
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(&attrs.0);
}

/// The message type and flags for `op` in table `table`, with its attributes.
fn encode(table: &str, op: &Op, set_id: u32) -> (u16, u16, Buf) {
    const TABLE_ATTR: u16 = 1; // NFTA_{CHAIN,RULE,SET,SET_ELEM_LIST}_TABLE alike
    let mut b = Buf::default();
    b.str(TABLE_ATTR, table);
    let (msg, flags) = match op {
        Op::AddAffinitySet { name, timeout_s } => {
            b.str(NFTA_SET_NAME, name)
                .u32(NFTA_SET_FLAGS, NFT_SET_TIMEOUT | NFT_SET_EVAL)
                .u32(NFTA_SET_KEY_TYPE, TYPE_IPADDR)
                .u32(NFTA_SET_KEY_LEN, 4)
                .u32(NFTA_SET_ID, set_id)
                .attr(NFTA_SET_TIMEOUT, &(u64::from(*timeout_s) * 1000).to_be_bytes());
            (NFT_MSG_NEWSET, NLM_F_CREATE)
        }
        Op::AddChain(c) => {
            b.str(NFTA_CHAIN_NAME, c);
            (NFT_MSG_NEWCHAIN, NLM_F_CREATE)
        }
        Op::FlushChain(c) => {
            b.str(NFTA_RULE_CHAIN, c);
            (NFT_MSG_DELRULE, 0)
        }
        Op::AddRule { chain, rule } => {
            b.str(NFTA_RULE_CHAIN, chain).nested(NFTA_RULE_EXPRESSIONS, |e| rule_exprs(e, rule));
            (NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND)
        }
        Op::AddElement { set, key, data } => {
            b.str(NFTA_SET_ELEM_LIST_SET, set).nested(NFTA_SET_ELEM_LIST_ELEMENTS, |l| {
                l.nested(NFTA_LIST_ELEM, |e| {
                    value(e, NFTA_SET_ELEM_KEY, &key_bytes(key));
                    match data {
                        None => {}
                        Some(ElementData::Goto(chain)) => verdict(e, NFTA_SET_ELEM_DATA, NFT_GOTO, chain),
                        Some(ElementData::Backend(to)) => {
                            value(e, NFTA_SET_ELEM_DATA, &key_bytes(&[Field::Ip(to.ip), Field::Port(to.port)]));
                        }
                    }
                });
            });
            (NFT_MSG_NEWSETELEM, NLM_F_CREATE)
        }
        Op::DeleteElement { set, key } => {
            b.str(NFTA_SET_ELEM_LIST_SET, set).nested(NFTA_SET_ELEM_LIST_ELEMENTS, |l| {
                l.nested(NFTA_LIST_ELEM, |e| value(e, NFTA_SET_ELEM_KEY, &key_bytes(key)));
            });
            (NFT_MSG_DELSETELEM, 0)
        }
        Op::DeleteChain(c) => {
            b.str(NFTA_CHAIN_NAME, c);
            (NFT_MSG_DELCHAIN, 0)
        }
        Op::DeleteSet(set) => {
            b.str(NFTA_SET_NAME, set);
            (NFT_MSG_DELSET, 0)
        }
    };
    ((NFNL_SUBSYS_NFTABLES << 8) | msg, flags, b)
}

/// `steps` as one batch: BEGIN, one message per step (sequence numbers `first_seq + 1 ..`,
/// the last one asking for an acknowledgement), END. Pure.
pub fn batch(steps: &[Step], first_seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let none = Buf::default();
    message(&mut out, NFNL_MSG_BATCH_BEGIN, 0, first_seq, 0, NFNL_SUBSYS_NFTABLES, &none);
    for (i, step) in steps.iter().enumerate() {
        let (ty, flags, attrs) = encode(&step.table, &step.op, i as u32 + 1);
        let ack = if i + 1 == steps.len() { NLM_F_ACK } else { 0 };
        message(&mut out, ty, flags | ack, first_seq + 1 + i as u32, NFPROTO_IPV4, 0, &attrs);
    }
    message(&mut out, NFNL_MSG_BATCH_END, 0, first_seq + 1 + steps.len() as u32, 0, NFNL_SUBSYS_NFTABLES, &none);
    out
}

/// Batches larger than this go through `nft -f` instead: a netlink socket's default send
/// buffer (net.core.wmem_default, 208 KiB) bounds one message.
pub const MAX_BATCH: usize = 128 * 1024;

/// A NETLINK_NETFILTER socket in the namespace it was opened in.
pub struct NftSocket {
    socket: Socket,
    seq: u32,
}

impl NftSocket {
    /// Open in this process's network namespace.
    pub fn open() -> Result<NftSocket, DataplaneError> {
        let err = |e: std::io::Error| DataplaneError(format!("nf_tables netlink socket: {e}"));
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(err)?;
        socket.bind_auto().map_err(err)?;
        socket.set_non_blocking(true).map_err(err)?;
        Ok(NftSocket { socket, seq: 1 })
    }

    /// Open in the named namespace (`ip netns` name): a thread enters it and opens the
    /// socket, which stays in that namespace wherever it is used (tests).
    pub fn open_in(netns: &str) -> Result<NftSocket, DataplaneError> {
        let path = format!("/var/run/netns/{netns}");
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).map_err(|e| DataplaneError(format!("{path}: {e}")))?;
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| DataplaneError(format!("entering {path}: {e}")))?;
            NftSocket::open()
        })
        .join()
        .map_err(|_| DataplaneError("netns thread panicked".into()))?
    }

    /// Send `steps` as one transaction and read the kernel's answers. The kernel handles a
    /// batch inside the send call, so its errors and the final acknowledgement are already
    /// queued when `send` returns.
    pub fn apply(&mut self, steps: &[Step]) -> Result<(), DataplaneError> {
        if steps.is_empty() {
            return Ok(());
        }
        let first = self.seq;
        let bytes = batch(steps, first);
        self.seq = self.seq.wrapping_add(steps.len() as u32 + 2);
        self.socket.send(&bytes, 0).map_err(|e| DataplaneError(format!("sending nf_tables batch: {e}")))?;
        let last = first + steps.len() as u32;
        let mut acked = false;
        let mut errors = vec![];
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            buf.clear();
            match self.socket.recv(&mut buf, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(DataplaneError(format!("reading nf_tables answers: {e}"))),
            }
            let mut at = 0;
            while at + 16 <= buf.len() {
                let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
                let ty = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
                if len < 16 || at + len > buf.len() {
                    break;
                }
                if ty == NLMSG_ERROR && len >= 36 {
                    let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().expect("4 bytes"));
                    // The failed request's header follows: its sequence number names the op.
                    let seq = u32::from_ne_bytes(buf[at + 28..at + 32].try_into().expect("4 bytes"));
                    if code != 0 {
                        let op = seq.checked_sub(first + 1).and_then(|i| steps.get(i as usize));
                        let what = op.map(|s| format!("{:?} in {}", s.op, s.table)).unwrap_or_default();
                        errors.push(format!("{} ({what})", std::io::Error::from_raw_os_error(-code)));
                    } else if seq == last {
                        acked = true;
                    }
                }
                at += (len + 3) & !3;
            }
        }
        if !errors.is_empty() {
            return Err(DataplaneError(format!("nf_tables rejected the batch: {}", errors.join("; "))));
        }
        if !acked {
            return Err(DataplaneError("nf_tables batch: no acknowledgement from the kernel".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::Backend;
    use super::*;

    /// Walk a batch's messages: (type, flags, seq, attribute bytes).
    fn messages(b: &[u8]) -> Vec<(u16, u16, u32, Vec<u8>)> {
        let mut out = vec![];
        let mut at = 0;
        while at < b.len() {
            let len = u32::from_ne_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(b[at + 4..at + 6].try_into().unwrap());
            let flags = u16::from_ne_bytes(b[at + 6..at + 8].try_into().unwrap());
            let seq = u32::from_ne_bytes(b[at + 8..at + 12].try_into().unwrap());
            assert_eq!(len % 4, 0, "messages are 4-byte aligned");
            out.push((ty, flags, seq, b[at + 20..at + len].to_vec()));
            at += len;
        }
        assert_eq!(at, b.len());
        out
    }

    #[test]
    fn a_batch_is_framed_by_begin_and_end_and_only_the_last_op_asks_for_an_ack() {
        let step = |op| Step { table: "orch-proxy-affinity".into(), op };
        let ops = [step(Op::AddChain("ep-1".into())), step(Op::FlushChain("ep-1".into())), step(Op::DeleteChain("ep-0".into()))];
        let m = messages(&batch(&ops, 100));
        let types: Vec<u16> = m.iter().map(|x| x.0).collect();
        assert_eq!(types, vec![0x10, 0x0a03, 0x0a08, 0x0a05, 0x11]);
        assert_eq!(m.iter().map(|x| x.2).collect::<Vec<_>>(), vec![100, 101, 102, 103, 104]);
        assert_eq!(m[1].1, NLM_F_REQUEST | NLM_F_CREATE);
        assert_eq!(m[3].1, NLM_F_REQUEST | NLM_F_ACK);
        // NEWCHAIN: table then name, NUL-terminated and padded.
        let mut want = Buf::default();
        want.str(1, "orch-proxy-affinity").str(3, "ep-1");
        assert_eq!(m[1].3, want.0);
        assert_eq!(&m[1].3[..4], &[24, 0, 1, 0], "len 4 + 'orch-proxy-affinity\\0'");
    }

    #[test]
    fn keys_pad_each_field_to_four_bytes_and_slots_are_host_order() {
        // The layout `nft --debug=netlink` shows for `10.96.0.1 . udp . 53 . 2 : 10.2.0.7 . 5353`.
        let key = [Field::Ip("10.96.0.1".parse().unwrap()), Field::Proto(Protocol::Udp), Field::Port(53), Field::Slot(2)];
        let mut want = vec![10, 96, 0, 1, 17, 0, 0, 0, 0, 53, 0, 0];
        want.extend_from_slice(&2u32.to_ne_bytes());
        assert_eq!(key_bytes(&key), want);
        assert_eq!(key_bytes(&[Field::Proto(Protocol::Tcp), Field::Port(30080)]), vec![6, 0, 0, 0, 0x75, 0x80, 0, 0]);
        assert_eq!(key_bytes(&[Field::Ip("10.2.0.7".parse().unwrap()), Field::Port(5353)]), vec![10, 2, 0, 7, 0x14, 0xe9, 0, 0]);
    }

    #[test]
    fn a_backend_element_carries_its_key_and_the_backend_as_data() {
        let op = Op::AddElement { set: "vip-2".into(), key: vec![Field::Ip("10.96.0.1".parse().unwrap()), Field::Slot(1)], data: Some(ElementData::Backend(Backend { ip: "10.2.0.7".parse().unwrap(), port: 5353 })) };
        let (ty, flags, attrs) = encode("orch-proxy", &op, 1);
        assert_eq!((ty, flags), (0x0a00 | NFT_MSG_NEWSETELEM, NLM_F_CREATE));
        let mut want = Buf::default();
        want.str(1, "orch-proxy").str(NFTA_SET_ELEM_LIST_SET, "vip-2").nested(NFTA_SET_ELEM_LIST_ELEMENTS, |l| {
            l.nested(NFTA_LIST_ELEM, |e| {
                let mut key = vec![10, 96, 0, 1];
                key.extend_from_slice(&1u32.to_ne_bytes());
                value(e, NFTA_SET_ELEM_KEY, &key);
                value(e, NFTA_SET_ELEM_DATA, &[10, 2, 0, 7, 0x14, 0xe9, 0, 0]);
            });
        });
        assert_eq!(attrs.0, want.0);
    }

    #[test]
    fn a_dnat_rule_loads_protocol_address_and_port_then_nats() {
        let mut b = Buf::default();
        rule_exprs(&mut b, &Rule::Dnat { protocol: Protocol::Tcp, backend: Backend { ip: "10.244.1.2".parse().unwrap(), port: 8080 } });
        let names: Vec<&str> = ["meta", "cmp", "immediate", "immediate", "nat"].to_vec();
        let text = String::from_utf8_lossy(&b.0).to_string();
        let mut at = 0;
        for n in names {
            let found = text[at..].find(&format!("{n}\0")).unwrap_or_else(|| panic!("{n} after {at} in {text:?}"));
            at += found + n.len();
        }
        let find = |needle: &[u8]| b.0.windows(needle.len()).any(|w| w == needle);
        assert!(find(&[10, 244, 1, 2]) && find(&8080u16.to_be_bytes()));
    }
}
