//! The nftables dataplane against the real kernel, in a network namespace of its own:
//! every script the proxy produces (full sync, endpoint changes, affinity, NodePorts,
//! removal) must be accepted, and the table must hold exactly what the model says.
//! Needs root and `nft` (CI runs as root).

use std::collections::BTreeSet;
use std::process::Command;

use orch::services::model::{self, Backend, Protocol, Table, VirtualService};
use orch::services::nftables::NftablesDataplane;
use orch::services::Dataplane;

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("orch-nft{tag}-{}", std::process::id());
        let ok = Command::new("ip").args(["netns", "add", &name]).status().expect("ip netns add").success();
        assert!(ok, "creating netns {name} (needs root)");
        Netns(name)
    }

    fn nft(&self, args: &[&str]) -> String {
        let out = Command::new("ip").args(["netns", "exec", &self.0, "nft"]).args(args).output().expect("nft");
        assert!(out.status.success(), "nft {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Chains and sets of orch's table (names only).
    fn objects(&self) -> BTreeSet<String> {
        self.nft(&["list", "table", "ip", "orch-proxy"])
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                l.strip_prefix("chain ").or_else(|| l.strip_prefix("set ")).or_else(|| l.strip_prefix("map ")).map(|n| n.trim_end_matches(" {").to_string())
            })
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn vs(vip: &str, backends: &[&str], node_port: Option<u16>, affinity: Option<u32>) -> VirtualService {
    VirtualService {
        vip: vip.parse().unwrap(),
        port: 80,
        protocol: Protocol::Tcp,
        node_port,
        affinity_timeout: affinity,
        backends: backends.iter().map(|ip| Backend { ip: ip.parse().unwrap(), port: 8080 }).collect(),
    }
}

/// The table as nft lists it, in a canonical order: lines sorted, element lists split
/// and sorted (the kernel lists elements in hash order).
fn canonical(listing: &str) -> Vec<String> {
    let mut out: Vec<String> = listing
        .lines()
        .flat_map(|l| l.trim().trim_start_matches("elements = {").trim_end_matches('}').split(',').map(|p| p.trim().to_string()).collect::<Vec<_>>())
        .filter(|l| !l.is_empty())
        .collect();
    out.sort();
    out
}

/// The table's own maps and chains, there whatever the services.
const BASE: [&str; 11] = [
    "filter-forward", "filter-output", "mark-masq", "no-endpoints", "output", "postrouting", "prerouting", "reject-svc", "service-ips",
    "service-nodeports", "services",
];

fn base() -> BTreeSet<String> {
    BASE.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn the_kernel_accepts_every_script_and_the_table_follows_the_model() {
    let ns = Netns::new("");
    let mut dp = NftablesDataplane::in_netns(&ns.0);
    let mut applied = Table::new();
    let step = |dp_table: &mut Table, next: Table| {
        let changes = model::changes(dp_table, &next);
        *dp_table = next;
        changes
    };

    // Start with one service; a full sync of an empty table first.
    dp.sync(&Table::new()).await.unwrap();
    assert_eq!(ns.objects(), base());
    let mut want = Table::from([("default/web:".to_string(), vs("10.96.0.10", &["10.244.0.2", "10.244.1.3"], Some(30080), None))]);
    let changes = step(&mut applied, want.clone());
    dp.apply(&changes).await.unwrap();
    let listed = ns.nft(&["list", "table", "ip", "orch-proxy"]);
    assert!(listed.contains("10.96.0.10 . tcp . 80 : goto svc-"), "{listed}");
    assert!(listed.contains("tcp . 30080 : goto ext-"));
    assert!(listed.contains("dnat to 10.244.1.3:8080"));
    assert_eq!(ns.objects().len(), base().len() + 4, "svc, ext and two backend chains");

    // Endpoint change, affinity on, a second service without endpoints.
    want.insert("default/web:".into(), vs("10.96.0.10", &["10.244.1.3", "10.244.2.4", "10.244.2.5"], Some(30080), Some(60)));
    want.insert("default/empty:".into(), vs("10.96.0.11", &[], None, None));
    let changes = step(&mut applied, want.clone());
    dp.apply(&changes).await.unwrap();
    let listed = ns.nft(&["list", "table", "ip", "orch-proxy"]);
    assert!(!listed.contains("10.244.0.2"), "the departed backend is gone:\n{listed}");
    assert!(listed.contains("numgen random mod 3"));
    assert!(listed.contains("10.96.0.11 . tcp . 80 : goto reject-svc"));
    assert_eq!(ns.objects().len(), base().len() + 2 + 3 + 3 + 1, "svc, ext, 3 backends, 3 affinity sets, empty svc chain");

    // Affinity timeout change, NodePort dropped: old sets and the ext chain go.
    want.insert("default/web:".into(), vs("10.96.0.10", &["10.244.1.3"], None, Some(120)));
    let changes = step(&mut applied, want.clone());
    dp.apply(&changes).await.unwrap();
    let listed = ns.nft(&["list", "table", "ip", "orch-proxy"]);
    assert!(!listed.contains("30080") && !listed.contains("-60 {"), "{listed}");
    assert_eq!(ns.objects().len(), base().len() + 1 + 1 + 1 + 1);

    // A full resync gives the same table as the changes did.
    let incremental = ns.objects();
    dp.sync(&want).await.unwrap();
    assert_eq!(ns.objects(), incremental);

    // Everything removed: back to the skeleton.
    let changes = step(&mut applied, Table::new());
    dp.apply(&changes).await.unwrap();
    assert_eq!(ns.objects(), base());
    dp.remove().await.unwrap();
    let out = Command::new("ip").args(["netns", "exec", &ns.0, "nft", "list", "tables"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("orch-proxy"));
}

/// Changes go to the kernel as netlink batches written by orch; the same changes as an
/// `nft` script must leave the same table, rule for rule.
#[tokio::test]
async fn netlink_batches_leave_the_table_nft_scripts_leave() {
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    let mut dp = NftablesDataplane::in_netns(&a.0);
    let mut script_dp = NftablesDataplane::in_netns(&b.0);
    dp.sync(&Table::new()).await.unwrap();
    script_dp.sync(&Table::new()).await.unwrap();
    let steps = [
        Table::from([("default/web:".to_string(), vs("10.96.0.10", &["10.244.0.2", "10.244.1.3"], Some(30080), None))]),
        Table::from([
            ("default/web:".to_string(), vs("10.96.0.10", &["10.244.1.3", "10.244.2.4", "10.244.2.5"], Some(30080), Some(60))),
            ("default/empty:".to_string(), vs("10.96.0.11", &[], None, None)),
        ]),
        Table::from([
            ("default/web:".to_string(), vs("10.96.0.10", &["10.244.1.3"], None, Some(120))),
            ("default/empty:".to_string(), vs("10.96.0.11", &["10.244.7.7"], Some(30999), None)),
        ]),
        Table::new(),
    ];
    let mut applied = Table::new();
    for (i, next) in steps.into_iter().enumerate() {
        let changes = model::changes(&applied, &next);
        applied = next;
        dp.apply(&changes).await.unwrap_or_else(|e| panic!("step {i}: {e}"));
        script_dp.run_script(&orch::services::nftables::change_script(&changes)).await.unwrap();
        let (got, want) = (a.nft(&["list", "table", "ip", "orch-proxy"]), b.nft(&["list", "table", "ip", "orch-proxy"]));
        assert_eq!(canonical(&got), canonical(&want), "step {i}: netlink made\n{got}\nnft made\n{want}");
    }

    // A batch the kernel refuses (a chain that does not exist) is an error and changes nothing.
    let before = a.nft(&["list", "table", "ip", "orch-proxy"]);
    let bad = model::changes(&Table::new(), &Table::from([("x/y:".to_string(), vs("10.96.0.12", &["10.244.0.9"], None, None))]));
    let mut ops = orch::services::nftables::plan(&bad);
    ops.push(orch::services::nftables::Op::DeleteChain("no-such-chain".into()));
    let err = orch::services::nft_netlink::NftSocket::open_in(&a.0).unwrap().apply(&ops).unwrap_err();
    assert!(err.to_string().contains("No such file") && err.to_string().contains("no-such-chain"), "{err}");
    assert_eq!(a.nft(&["list", "table", "ip", "orch-proxy"]), before);
}
