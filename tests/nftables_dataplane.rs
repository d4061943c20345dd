//! The nftables dataplane against the real kernel, in a network namespace of its own:
//! every script the proxy produces (full sync, endpoint changes, affinity, NodePorts,
//! removal) must be accepted, and the tables must hold exactly what the model says.
//! Needs root and `nft` (CI runs as root).

use std::collections::BTreeSet;
use std::process::Command;

use orch::services::model::{self, Backend, Protocol, Table, VirtualService};
use orch::services::nft_affinity;
use orch::services::nftables::{full_script, script, NftablesDataplane, Op, Planner, Step, TABLE};
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

/// The tables' own sets, maps and chains, there whatever the services (8 endpoint-count
/// classes unless a service has more endpoints).
fn base(classes: usize) -> BTreeSet<String> {
    let main = ["no-endpoints", "nodeports", "hairpin", "services", "nodeports", "prerouting", "output", "postrouting", "filter-forward", "filter-output"];
    let classes = (1..=classes).flat_map(|n| [format!("vip-{n}"), format!("np-{n}")]);
    let affinity = ["service-ips", "service-nodeports", "prerouting", "output", "services", "mark-masq"].map(|n| format!("{}/{n}", nft_affinity::TABLE));
    main.iter().map(|n| n.to_string()).chain(classes).map(|n| format!("{TABLE}/{n}")).chain(affinity).collect()
}

fn backends(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.244.3.{}", i + 1)).collect()
}

#[tokio::test]
async fn the_kernel_accepts_every_change_and_the_tables_follow_the_model() {
    let ns = Netns::new("");
    let mut dp = NftablesDataplane::in_netns(&ns.0);
    let mut applied = Table::new();
    async fn step(dp: &mut NftablesDataplane, applied: &mut Table, next: Table) {
        let changes = model::changes(applied, &next);
        *applied = next;
        dp.apply(&changes, applied).await.unwrap();
    }

    // An empty table first, then one service.
    dp.sync(&Table::new()).await.unwrap();
    assert_eq!(ns.objects(), base(8));
    let mut want = Table::from([("default/web:".to_string(), vs("10.96.0.10", &["10.244.0.2", "10.244.1.3"], Some(30080), None))]);
    step(&mut dp, &mut applied, want.clone()).await;
    let map = ns.nft(&["list", "map", "ip", TABLE, "vip-2"]);
    assert!(map.contains("10.96.0.10 . tcp . 80 . 1 : 10.244.1.3 . 8080"), "{map}");
    let np = ns.nft(&["list", "map", "ip", TABLE, "np-2"]);
    assert!(np.contains("tcp . 30080 . 0 : 10.244.0.2 . 8080"), "{np}");
    assert_eq!(ns.objects(), base(8), "no chains per service");

    // Endpoint change, a sticky service, a second service without endpoints.
    want.insert("default/web:".into(), vs("10.96.0.10", &["10.244.1.3", "10.244.2.4", "10.244.2.5"], Some(30080), None));
    want.insert("default/sticky:".into(), vs("10.96.0.12", &["10.244.2.4"], Some(30081), Some(60)));
    want.insert("default/empty:".into(), vs("10.96.0.11", &[], None, None));
    step(&mut dp, &mut applied, want.clone()).await;
    let listed = ns.ruleset();
    assert!(!listed.contains("10.244.0.2"), "the departed backend is gone:\n{listed}");
    assert!(ns.nft(&["list", "map", "ip", TABLE, "vip-2"]).lines().all(|l| !l.contains("10.96.0.10")));
    assert!(ns.nft(&["list", "set", "ip", TABLE, "no-endpoints"]).contains("10.96.0.11 . tcp . 80"));
    assert!(ns.nft(&["list", "set", "ip", TABLE, "hairpin"]).contains("10.244.2.4 . 10.244.2.4"));
    assert_eq!(ns.objects().len(), base(8).len() + 4, "the sticky service: svc, ext, a backend chain and its affinity set");

    // A service with more endpoints than there are classes: the dataplane rewrites all.
    want.insert("default/web:".into(), vs("10.96.0.10", &backends(9).iter().map(String::as_str).collect::<Vec<_>>(), None, None));
    step(&mut dp, &mut applied, want.clone()).await;
    assert!(ns.objects().contains(&format!("{TABLE}/vip-9")));
    assert!(ns.nft(&["list", "map", "ip", TABLE, "vip-9"]).contains("10.96.0.10 . tcp . 80 . 8 : 10.244.3.9 . 8080"));

    // More changes, then a full sync gives the same tables as the changes did.
    want.insert("default/empty:".into(), vs("10.96.0.11", &["10.244.7.7"], Some(30999), None));
    want.insert("default/sticky:".into(), vs("10.96.0.12", &["10.244.2.4", "10.244.2.6"], None, Some(60)));
    step(&mut dp, &mut applied, want.clone()).await;
    let incremental = canonical(&ns.ruleset());
    dp.sync(&want).await.unwrap();
    assert_eq!(incremental, canonical(&ns.ruleset()));

    // Everything removed: back to the skeleton.
    step(&mut dp, &mut applied, Table::new()).await;
    assert_eq!(ns.objects(), base(9), "classes stay until the next full sync");
    assert!(!ns.ruleset().contains("10.244."), "{}", ns.ruleset());
    dp.remove().await.unwrap();
    let out = Command::new("ip").args(["netns", "exec", &ns.0, "nft", "list", "tables"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("orch-proxy"));
}

/// Changes go to the kernel as netlink batches written by orch; the same changes as an
/// `nft` script must leave the same tables, element for element.
#[tokio::test]
async fn netlink_batches_leave_the_tables_nft_scripts_leave() {
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    let mut dp = NftablesDataplane::in_netns(&a.0);
    let script_dp = NftablesDataplane::in_netns(&b.0);
    dp.sync(&Table::new()).await.unwrap();
    let (skeleton, mut planner) = full_script(&Table::new());
    script_dp.run_script(&skeleton).await.unwrap();
    let steps = [
        Table::from([("default/web:".to_string(), vs("10.96.0.10", &["10.244.0.2", "10.244.1.3"], Some(30080), None))]),
        Table::from([
            ("default/web:".to_string(), vs("10.96.0.10", &["10.244.1.3", "10.244.2.4", "10.244.2.5"], Some(30080), Some(60))),
            ("default/empty:".to_string(), vs("10.96.0.11", &[], None, None)),
            ("default/udp:".to_string(), VirtualService { protocol: Protocol::Udp, port: 53, ..vs("10.96.0.13", &["10.244.1.3", "10.244.2.4"], Some(30053), None) }),
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
        dp.apply(&changes, &applied).await.unwrap_or_else(|e| panic!("step {i}: {e}"));
        script_dp.run_script(&script(&planner.plan(&changes).unwrap())).await.unwrap();
        let (got, want) = (a.ruleset(), b.ruleset());
        assert_eq!(canonical(&got), canonical(&want), "step {i}: netlink made\n{got}\nnft made\n{want}");
    }

    // A batch the kernel refuses (a chain that does not exist) is an error and changes nothing.
    let before = a.ruleset();
    let bad = model::changes(&Table::new(), &Table::from([("x/y:".to_string(), vs("10.96.0.12", &["10.244.0.9"], None, None))]));
    let mut ops = Planner::after_sync(&Table::new()).plan(&bad).unwrap();
    ops.push(Step { table: TABLE.into(), op: Op::DeleteChain("no-such-chain".into()) });
    let err = orch::services::nft_netlink::NftSocket::open_in(&a.0).unwrap().apply(&ops).unwrap_err();
    assert!(err.to_string().contains("No such file") && err.to_string().contains("no-such-chain"), "{err}");
    assert_eq!(a.ruleset(), before);
}
