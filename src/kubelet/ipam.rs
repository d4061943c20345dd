//! Pod IP addresses from the node's pod CIDR, recorded one file per address under the
//! data dir (as CNI's host-local plugin does), so a restarted orchd neither reuses a live
//! pod's address nor forgets one. `first_free` is pure; `Ipam` does the file I/O and keeps
//! a copy of the files in memory (it is their only writer), read once at start.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

/// The lowest address of `cidr` that is not the network, the gateway (first host), the
/// broadcast address, or in `used`.
pub fn first_free(cidr: Ipv4Net, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let first = u32::from(cidr.network()) + 2;
    let last = u32::from(cidr.broadcast()).checked_sub(1)?;
    (first..=last).map(Ipv4Addr::from).find(|ip| !used.contains(ip))
}

pub struct Ipam {
    dir: PathBuf,
    /// The lease files' contents: address → pod uid.
    leases: Mutex<BTreeMap<Ipv4Addr, String>>,
}

impl Ipam {
    pub fn new(data_dir: &Path) -> io::Result<Self> {
        let dir = data_dir.join("ipam");
        std::fs::create_dir_all(&dir)?;
        let mut leases = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else { continue };
            leases.insert(ip, std::fs::read_to_string(entry.path())?.trim().to_string());
        }
        Ok(Ipam { dir, leases: Mutex::new(leases) })
    }

    fn held(&self) -> MutexGuard<'_, BTreeMap<Ipv4Addr, String>> {
        self.leases.lock().expect("ipam lock")
    }

    /// Every recorded (address, pod uid).
    pub fn leases(&self) -> Vec<(Ipv4Addr, String)> {
        self.held().iter().map(|(ip, uid)| (*ip, uid.clone())).collect()
    }

    /// The address leased to `uid`, if any.
    pub fn lease_of(&self, uid: &str) -> Option<Ipv4Addr> {
        self.held().iter().find(|(_, u)| *u == uid).map(|(ip, _)| *ip)
    }

    /// The address leased to `uid`, leasing the lowest free one of `cidr` if it has none
    /// (written and fsync'd before it is handed out).
    pub fn lease(&self, cidr: Ipv4Net, uid: &str) -> io::Result<Ipv4Addr> {
        let mut leases = self.held();
        if let Some((ip, _)) = leases.iter().find(|(ip, u)| *u == uid && cidr.contains(*ip)) {
            return Ok(*ip);
        }
        let used: BTreeSet<Ipv4Addr> = leases.keys().copied().collect();
        let ip = first_free(cidr, &used).ok_or_else(|| io::Error::other(format!("pod CIDR {cidr} is full")))?;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(self.dir.join(ip.to_string()))?;
        f.write_all(uid.as_bytes())?;
        f.sync_all()?;
        leases.insert(ip, uid.to_string());
        Ok(ip)
    }

    /// Release every address leased to `uid`.
    pub fn release(&self, uid: &str) -> io::Result<()> {
        let mut leases = self.held();
        let mine: Vec<Ipv4Addr> = leases.iter().filter(|(_, u)| *u == uid).map(|(ip, _)| *ip).collect();
        for ip in mine {
            match std::fs::remove_file(self.dir.join(ip.to_string())) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            leases.remove(&ip);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_network_gateway_broadcast_and_used() {
        let cidr: Ipv4Net = "10.244.1.0/30".parse().unwrap();
        assert_eq!(first_free(cidr, &BTreeSet::new()), Some(Ipv4Addr::new(10, 244, 1, 2)));
        assert_eq!(first_free(cidr, &BTreeSet::from([Ipv4Addr::new(10, 244, 1, 2)])), None);
    }

    #[test]
    fn leases_are_stable_per_pod_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cidr: Ipv4Net = "10.244.1.0/24".parse().unwrap();
        let ipam = Ipam::new(dir.path()).unwrap();
        let a = ipam.lease(cidr, "a").unwrap();
        let b = ipam.lease(cidr, "b").unwrap();
        assert_ne!(a, b);
        let again = Ipam::new(dir.path()).unwrap();
        assert_eq!(again.lease_of("a"), Some(a), "read back from the files");
        assert_eq!(again.lease(cidr, "a").unwrap(), a);
        again.release("a").unwrap();
        assert_eq!(again.lease_of("a"), None);
        assert_eq!(Ipam::new(dir.path()).unwrap().leases(), vec![(b, "b".to_string())], "the release removed the file");
        assert_eq!(again.lease(cidr, "c").unwrap(), a, "a released address is reused");
    }
}
