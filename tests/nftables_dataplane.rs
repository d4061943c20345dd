//! The nftables dataplane against the real kernel, in a network namespace of its own:
//! every script the proxy produces (full sync, endpoint changes, affinity, NodePorts,
//! removal) must be accepted, and the tables must hold exactly what the model says.
//! Needs root and `nft` (CI runs as root).

use std::collections::BTreeSet;
use std::process::Command;

use orch::services::model::{self, Backend, Protocol, Table, VirtualService};
use orch::services::nftables::{plan, shard_table, NftablesDataplane, Op, Step, SHARDS, TABLE};
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

    /// The whole ruleset as nft lists it.
    fn ruleset(&self) -> String {
        self.nft(&["list", "ruleset"])
    }

    /// Chains, sets and maps of orch's tables, as `table/name`.
    fn objects(&self) -> BTreeSet<String> {
        let mut table = String::new();
        let mut out = BTreeSet::new();
        for l in self.ruleset().lines().map(str::trim) {
            if let Some(t) = l.strip_prefix("table ip ") {
                table = t.trim_end_matches(" {").to_string();
            } else if let Some(n) = l.strip_prefix("chain ").or_else(|| l.strip_prefix("set ")).or_else(|| l.strip_prefix("map ")) {
                out.insert(format!("{table}/{}", n.trim_end_matches(" {")));
            }
        }
        out
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

/// The tables' own maps and chains, there whatever the services.
fn base() -> BTreeSet<String> {
    let main = ["no-endpoints", "postrouting", "filter-forward", "filter-output"].map(|n| format!("{TABLE}/{n}"));
    let shards = (0..SHARDS).flat_map(|i| ["service-ips", "service-nodeports", "prerouting", "output", "services", "mark-masq"].map(|n| format!("{}/{n}", shard_table(i))));
    main.into_iter().chain(shards).collect()
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
    let listed = ns.ruleset();
    assert!(listed.contains("10.96.0.10 . tcp . 80 : goto svc-"), "{listed}");
    assert!(listed.contains("tcp . 30080 : goto ext-"));
    assert!(listed.contains("dnat to 10.244.1.3:8080"));
    assert_eq!(ns.objects().len(), base().len() + 4, "svc, ext and two backend chains");

    // Endpoint change, affinity on, a second service without endpoints.
    want.insert("default/web:".into(), vs("10.96.0.10", &["10.244.1.3", "10.244.2.4", "10.244.2.5"], Some(30080), Some(60)));
    want.insert("default/empty:".into(), vs("10.96.0.11", &[], None, None));
    let changes = step(&mut applied, want.clone());
    dp.apply(&changes).await.unwrap();
    let listed = ns.ruleset();
    assert!(!listed.contains("10.244.0.2"), "the departed backend is gone:\n{listed}");
    assert!(listed.contains("numgen random mod 3"));
    let no_endpoints = ns.nft(&["list", "set", "ip", TABLE, "no-endpoints"]);
    assert!(no_endpoints.contains("10.96.0.11 . tcp . 80"), "{no_endpoints}");
    assert_eq!(ns.objects().len(), base().len() + 2 + 3 + 3 + 1, "svc, ext, 3 backends, 3 affinity sets, empty svc chain");

    // Affinity timeout change, NodePort dropped: old sets and the ext chain go.
    want.insert("default/web:".into(), vs("10.96.0.10", &["10.244.1.3"], None, Some(120)));
    let changes = step(&mut applied, want.clone());
    dp.apply(&changes).await.unwrap();
    let listed = ns.ruleset();
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
        let (got, want) = (a.ruleset(), b.ruleset());
        assert_eq!(canonical(&got), canonical(&want), "step {i}: netlink made\n{got}\nnft made\n{want}");
    }

    // A batch the kernel refuses (a chain that does not exist) is an error and changes nothing.
    let before = a.ruleset();
    let bad = model::changes(&Table::new(), &Table::from([("x/y:".to_string(), vs("10.96.0.12", &["10.244.0.9"], None, None))]));
    let mut ops = plan(&bad);
    ops.push(Step { table: TABLE.into(), op: Op::DeleteChain("no-such-chain".into()) });
    let err = orch::services::nft_netlink::NftSocket::open_in(&a.0).unwrap().apply(&ops).unwrap_err();
    assert!(err.to_string().contains("No such file") && err.to_string().contains("no-such-chain"), "{err}");
    assert_eq!(a.ruleset(), before);
}
