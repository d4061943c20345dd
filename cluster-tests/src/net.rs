//! Test hosts: a Linux bridge in the root namespace and one network namespace per node,
//! joined by veth pairs, on a private /24 that only these namespaces use. Everything is
//! removed on drop. Slots (bridge name and subnet) are claimed with files under
//! /run/orch-tests so parallel test processes never collide, and slots left by a crashed
//! run (its pid is gone) are cleaned and reused.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

const SLOT_DIR: &str = "/run/orch-tests";
const SLOTS: u8 = 200;

/// Run `ip` with arguments; fail with its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn pid_alive(pid: u32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

pub struct TestNet {
    pub slot: u8,
    bridge: String,
    hosts: Vec<String>,
}

impl TestNet {
    /// Claim a free slot and create its bridge.
    pub fn new() -> anyhow::Result<TestNet> {
        std::fs::create_dir_all(SLOT_DIR)?;
        for slot in 0..SLOTS {
            let marker = PathBuf::from(format!("{SLOT_DIR}/slot-{slot}"));
            if let Ok(owner) = std::fs::read_to_string(&marker) {
                match owner.trim().parse::<u32>() {
                    Ok(pid) if pid_alive(pid) => continue,
                    _ => Self::reclaim(slot, &marker),
                }
            }
            let Ok(mut f) = OpenOptions::new().write(true).create_new(true).open(&marker) else { continue };
            write!(f, "{}", std::process::id())?;
            let net = TestNet { slot, bridge: format!("obr{slot}"), hosts: Vec::new() };
            ip(&["link", "add", &net.bridge, "type", "bridge"])?;
            ip(&["addr", "add", &format!("{}/24", net.gateway()), "dev", &net.bridge])?;
            ip(&["link", "set", &net.bridge, "up"])?;
            return Ok(net);
        }
        bail!("no free test network slot under {SLOT_DIR}")
    }

    /// Remove whatever a dead run left in `slot`.
    fn reclaim(slot: u8, marker: &PathBuf) {
        let _ = ip(&["link", "del", &format!("obr{slot}")]);
        if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or_default();
                if name.starts_with(&format!("orcht{slot}-")) {
                    let _ = ip(&["netns", "del", name]);
                }
            }
        }
        let _ = std::fs::remove_file(marker);
    }

    /// The root namespace's address on the bridge (where tests connect from).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.slot, 254)
    }

    pub fn host_ip(&self, index: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.slot, index as u8 + 1)
    }

    fn veth(&self, index: usize) -> String {
        format!("ov{}h{index}", self.slot)
    }

    pub fn netns(&self, index: usize) -> String {
        format!("orcht{}-{index}", self.slot)
    }

    /// Create host `index`: its namespace, a veth to the bridge, its address, loopback up.
    pub fn add_host(&mut self, index: usize) -> anyhow::Result<Ipv4Addr> {
        let ns = self.netns(index);
        let veth = self.veth(index);
        let _ = ip(&["link", "del", &veth]); // left over by a crashed run
        ip(&["netns", "add", &ns])?;
        self.hosts.push(ns.clone());
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
        ip(&["link", "set", &veth, "master", &self.bridge])?;
        ip(&["link", "set", &veth, "up"])?;
        let addr = self.host_ip(index);
        ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(addr)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for (index, ns) in self.hosts.iter().enumerate() {
            // Delete the pair from the root side first: a namespace's links are destroyed
            // asynchronously after `netns del`, which would race with the next test.
            let _ = ip(&["link", "del", &self.veth(index)]);
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
        let _ = std::fs::remove_file(format!("{SLOT_DIR}/slot-{}", self.slot));
    }
}
