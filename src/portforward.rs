//! Kubernetes' WebSocket port-forward protocol (`v4.channel.k8s.io`), as the kubelet
//! serves `pods/{name}/portforward?ports=P,...`: for the i-th port, channel 2i carries data
//! both ways and channel 2i+1 errors from the server; the server's first message on each
//! channel is the port, two bytes little-endian. One TCP connection per port per WebSocket.
//! Also the `LOCAL:REMOTE` port specs of `orchctl port-forward`. Pure.

pub use crate::remotecommand::{frame, parse};

pub const PROTOCOLS: [&str; 1] = ["v4.channel.k8s.io"];

pub fn data_channel(i: usize) -> u8 {
    (2 * i) as u8
}

pub fn error_channel(i: usize) -> u8 {
    (2 * i + 1) as u8
}

/// Most ports one WebSocket forwards (two channels each, channel numbers are one byte).
pub const MAX_PORTS: usize = 127;

/// The ports a request asks for: every `ports` (or the kubelet's `port`) parameter, each
/// a comma-separated list of 1–65535.
pub fn parse_ports(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k != "ports" && k != "port" {
            continue;
        }
        if v.is_empty() {
            return Err("query parameter \"ports\" cannot be empty".into());
        }
        for p in v.split(',') {
            match p.trim().parse::<u16>() {
                Ok(0) => return Err(format!("port {p:?} must be > 0")),
                Ok(n) => ports.push(n),
                Err(_) => return Err(format!("unable to parse {p:?} as a port")),
            }
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"ports\" is required".into());
    }
    if ports.len() > MAX_PORTS {
        return Err(format!("at most {MAX_PORTS} ports at once"));
    }
    Ok(ports)
}

/// The server's first two messages for the i-th port: its number on the data and the
/// error channel.
pub fn greeting(i: usize, port: u16) -> [Vec<u8>; 2] {
    let p = port.to_le_bytes();
    [frame(data_channel(i), &p), frame(error_channel(i), &p)]
}

/// One `orchctl port-forward` spec: `REMOTE`, `LOCAL:REMOTE`, or `:REMOTE` (any free
/// local port, shown as 0).
pub fn parse_spec(spec: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{spec:?} is not a port spec (REMOTE, LOCAL:REMOTE or :REMOTE)");
    let (local, remote) = match spec.split_once(':') {
        Some(("", r)) => (Some(0), r),
        Some((l, r)) => (Some(l.parse::<u16>().map_err(|_| bad())?), r),
        None => (None, spec),
    };
    let remote = remote.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?;
    Ok((local.unwrap_or(remote), remote))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_every_ports_parameter() {
        assert_eq!(parse_ports("ports=80"), Ok(vec![80]));
        assert_eq!(parse_ports("ports=80,443&port=8080"), Ok(vec![80, 443, 8080]));
        assert!(parse_ports("").unwrap_err().contains("required"));
        assert!(parse_ports("ports=").unwrap_err().contains("empty"));
        assert!(parse_ports("ports=0").unwrap_err().contains("> 0"));
        assert!(parse_ports("ports=70000").unwrap_err().contains("unable to parse"));
        let many = (1..=128).map(|p| p.to_string()).collect::<Vec<_>>().join(",");
        assert!(parse_ports(&format!("ports={many}")).is_err());
    }

    #[test]
    fn the_greeting_is_the_port_little_endian_on_both_channels() {
        assert_eq!(greeting(0, 8080), [vec![0, 0x90, 0x1f], vec![1, 0x90, 0x1f]]);
        assert_eq!(greeting(2, 1), [vec![4, 1, 0], vec![5, 1, 0]]);
    }

    #[test]
    fn specs_name_a_local_and_a_remote_port() {
        assert_eq!(parse_spec("8080"), Ok((8080, 8080)));
        assert_eq!(parse_spec("9000:80"), Ok((9000, 80)));
        assert_eq!(parse_spec(":80"), Ok((0, 80)));
        for bad in ["", "x", "80:", "a:80", "80:0", "1:2:3"] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
    }
}
