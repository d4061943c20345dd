//! NSD, Debian's authoritative DNS server, serving one zone file inside a node's network
//! namespace: the reference server next to cluster DNS in the benchmark, and the "outside
//! world" that cluster DNS forwards to in the tests.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

pub struct Nsd {
    child: std::process::Child,
}

impl Nsd {
    /// Serve `zone` (its records, one per line, relative to the origin) on `addr@port` in
    /// namespace `netns`, with files under `dir`.
    pub fn start(netns: &str, dir: &Path, addr: &str, port: u16, zone: &str, records: &str) -> anyhow::Result<Nsd> {
        let body = format!("$ORIGIN {zone}.\n$TTL 5\n@ IN SOA ns.{zone}. hostmaster.{zone}. 1 7200 1800 86400 5\n@ IN NS ns\nns IN A 127.0.0.1\n{records}");
        std::fs::write(dir.join("zone"), body)?;
        let conf = format!(
            "server:\n  ip-address: {addr}@{port}\n  database: \"\"\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  xfrdir: \"{d}\"\n  username: \"\"\n  server-count: 1\n  verbosity: 0\nremote-control:\n  control-enable: no\nzone:\n  name: {zone}\n  zonefile: zone\n",
            d = dir.display()
        );
        std::fs::write(dir.join("nsd.conf"), conf)?;
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "nsd", "-d", "-c"])
            .arg(dir.join("nsd.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("nsd (Debian package nsd)")?;
        let mut nsd = Nsd { child };
        // Serving once it answers for its zone's SOA.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let out = Command::new("ip")
                .args(["netns", "exec", netns, "dig", &format!("@{addr}"), "-p", &port.to_string(), "+short", "+tries=1", "+time=1", zone, "SOA"])
                .output()
                .context("dig (bind9-dnsutils)")?;
            if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                return Ok(nsd);
            }
            if let Some(status) = nsd.child.try_wait()? {
                anyhow::bail!("nsd exited ({status}) before serving {zone}");
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "nsd not answering for {zone} on {addr}@{port} after 10 s");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
