//! Faults: SIGKILL (leader or random node), SIGSTOP/SIGCONT pauses, and network
//! partitions made with nftables inside each node's namespace (peer traffic dropped both
//! ways; the test runner's own address is never blocked, so clients still reach every
//! node). The schedule is drawn from a seeded RNG, so a run replays from its seed.

use std::process::Command;

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;

use crate::Cluster;

const TABLE: &str = "orch_chaos";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FaultKind {
    KillLeader,
    KillRandom,
    Pause,
    /// The leader alone on one side.
    IsolateLeader,
    /// A random minority against the majority.
    SplitMajority,
    /// One node sees both halves; the halves do not see each other.
    Bridge,
    /// A random head is cut off and reconnected several times in quick succession.
    Flap,
}

impl FaultKind {
    pub fn is_partition(self) -> bool {
        matches!(self, FaultKind::IsolateLeader | FaultKind::SplitMajority | FaultKind::Bridge | FaultKind::Flap)
    }
}

/// Block traffic between node `i` and the nodes in `peers` (by address), both directions.
pub fn block(c: &Cluster, i: usize, peers: &[usize]) -> anyhow::Result<()> {
    if peers.is_empty() {
        return Ok(());
    }
    let addrs: Vec<String> = peers.iter().map(|p| c.nodes[*p].ip.to_string()).collect();
    let set = addrs.join(", ");
    let script = format!(
        "table inet {TABLE} {{\n  chain input {{ type filter hook input priority -10; policy accept; ip saddr {{ {set} }} drop; }}\n  \
         chain output {{ type filter hook output priority -10; policy accept; ip daddr {{ {set} }} drop; }}\n}}\n"
    );
    nft(c, i, &["-f", "-"], Some(&script))
}

/// Remove every block on node `i`.
pub fn heal(c: &Cluster, i: usize) -> anyhow::Result<()> {
    let _ = nft(c, i, &["delete", "table", "inet", TABLE], None);
    Ok(())
}

fn nft(c: &Cluster, i: usize, args: &[&str], stdin: Option<&str>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &c.netns(i), "nft"]).args(args);
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().context("running nft (nftables)")?;
    if let Some(text) = stdin {
        child.stdin.take().context("nft stdin")?.write_all(text.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Apply a partition into `groups`: each node is cut from every node outside its groups
/// (a node may be in several groups: the bridge).
pub fn partition(c: &Cluster, heads: usize, groups: &[Vec<usize>]) -> anyhow::Result<()> {
    for i in 0..heads {
        let mine: Vec<&Vec<usize>> = groups.iter().filter(|g| g.contains(&i)).collect();
        let blocked: Vec<usize> = (0..heads).filter(|j| *j != i && !mine.iter().any(|g| g.contains(j))).collect();
        heal(c, i)?;
        block(c, i, &blocked)?;
    }
    Ok(())
}

/// Groups for a partition fault over `heads` heads, given the current leader.
pub fn groups_for(kind: FaultKind, heads: usize, leader: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut others: Vec<usize> = (0..heads).filter(|i| *i != leader).collect();
    shuffle(&mut others, rng);
    match kind {
        FaultKind::IsolateLeader => vec![vec![leader], others],
        FaultKind::SplitMajority => {
            let mut all: Vec<usize> = (0..heads).collect();
            shuffle(&mut all, rng);
            let minority = (heads - 1) / 2;
            vec![all[..minority].to_vec(), all[minority..].to_vec()]
        }
        FaultKind::Bridge => {
            // The bridge node sees both halves.
            let bridge = others.pop().unwrap_or(leader);
            let mut all: Vec<usize> = (0..heads).filter(|i| *i != bridge).collect();
            shuffle(&mut all, rng);
            let half = all.len() / 2;
            let mut a = all[..half].to_vec();
            let mut b = all[half..].to_vec();
            a.push(bridge);
            b.push(bridge);
            vec![a, b]
        }
        _ => vec![(0..heads).collect()],
    }
}

fn shuffle(v: &mut [usize], rng: &mut StdRng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn partitions_have_the_promised_shape() {
        let mut rng = StdRng::seed_from_u64(7);
        let g = groups_for(FaultKind::IsolateLeader, 5, 2, &mut rng);
        assert_eq!(g[0], vec![2]);
        assert_eq!(g[1].len(), 4);
        let g = groups_for(FaultKind::SplitMajority, 5, 0, &mut rng);
        assert_eq!((g[0].len(), g[1].len()), (2, 3));
        let g = groups_for(FaultKind::Bridge, 5, 0, &mut rng);
        let shared: Vec<_> = g[0].iter().filter(|n| g[1].contains(n)).collect();
        assert_eq!(shared.len(), 1, "{g:?}");
        // Same seed, same schedule.
        let a = groups_for(FaultKind::SplitMajority, 5, 0, &mut StdRng::seed_from_u64(1));
        let b = groups_for(FaultKind::SplitMajority, 5, 0, &mut StdRng::seed_from_u64(1));
        assert_eq!(a, b);
    }
}
