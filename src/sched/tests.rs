//! Scheduler properties over generated clusters: no node is ever overcommitted, every pod
//! gets exactly one decision, every binding honours the hard constraints (node selectors,
//! taints, required pod anti-affinity, hard topology spread), and the same input gives the
//! same placement. Plus kube-scheduler's message format.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodAffinityTerm, Taint, Toleration, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use proptest::prelude::*;

use super::*;

fn node_strategy() -> impl Strategy<Value = NodeInfo> {
    (500i64..4000, 1i64..8, 1i64..10, prop::bool::weighted(0.9), prop::bool::weighted(0.1), 0usize..2, prop::bool::weighted(0.2)).prop_map(
        |(cpu, gib, pods, ready, cordoned, zone, tainted)| NodeInfo {
            name: String::new(),
            labels: [("zone".to_string(), ["a", "b"][zone].to_string())].into(),
            taints: if tainted { vec![Taint { key: "dedicated".into(), value: Some("db".into()), effect: "NoSchedule".into(), time_added: None }] } else { vec![] },
            allocatable: Resources { cpu_millis: cpu, memory: gib << 30, pods },
            ready,
            unschedulable: cordoned,
            ..Default::default()
        },
    )
}

fn pod_strategy() -> impl Strategy<Value = PodInfo> {
    (0i64..1500, 0i64..(3 << 30), prop::option::weighted(0.3, 0usize..2), prop::bool::weighted(0.2), prop::option::of(0u8..3)).prop_map(
        |(cpu, mem, zone, tolerates, owner)| PodInfo {
            key: String::new(),
            requests: Resources { cpu_millis: cpu, memory: mem, pods: 1 },
            node_selector: zone.map(|z| [("zone".to_string(), ["a", "b"][z].to_string())].into()).unwrap_or_default(),
            tolerations: if tolerates {
                vec![Toleration { key: Some("dedicated".into()), operator: Some("Exists".into()), ..Default::default() }]
            } else {
                vec![]
            },
            owner: owner.map(|o| format!("rs-{o}")),
            ..Default::default()
        },
    )
    .prop_map(|mut p| {
        // rs-0's pods refuse to share a host; rs-1's keep the zones within one of each other.
        let app = |o: &str| Some(LabelSelector { match_labels: Some([("app".to_string(), o.to_string())].into()), match_expressions: None });
        p.namespace = "default".into();
        match p.owner.as_deref() {
            Some(o @ "rs-0") => {
                p.labels = [("app".to_string(), o.to_string())].into();
                p.pod_anti_affinity = vec![PodAffinityTerm { label_selector: app(o), topology_key: "kubernetes.io/hostname".into(), ..Default::default() }];
            }
            Some(o @ "rs-1") => {
                p.labels = [("app".to_string(), o.to_string())].into();
                p.node_selector.clear();
                p.spread = vec![TopologySpreadConstraint { max_skew: 1, topology_key: "zone".into(), when_unsatisfiable: "DoNotSchedule".into(), label_selector: app(o), ..Default::default() }];
            }
            _ => {}
        }
        p
    })
}

fn cluster() -> impl Strategy<Value = (Snapshot, Vec<PodInfo>)> {
    (prop::collection::vec(node_strategy(), 1..8), prop::collection::vec(pod_strategy(), 0..40)).prop_map(|(mut nodes, mut pods)| {
        for (i, n) in nodes.iter_mut().enumerate() {
            n.name = format!("node-{i}");
            n.labels.insert("kubernetes.io/hostname".into(), n.name.clone());
        }
        for (i, p) in pods.iter_mut().enumerate() {
            p.key = format!("default/pod-{i}");
        }
        (Snapshot { nodes, ..Default::default() }, pods)
    })
}

proptest! {
    #[test]
    fn placements_respect_capacity_and_constraints_and_are_deterministic((snap, pods) in cluster()) {
        let mut placed = snap.clone();
        let decisions = schedule(&mut placed, &pods);
        prop_assert_eq!(decisions.len(), pods.len());
        for (d, p) in decisions.iter().zip(&pods) {
            prop_assert_eq!(d.pod(), p.key.as_str());
        }
        // Re-add every binding to the original snapshot: nothing exceeds allocatable.
        let mut check = snap.clone();
        for (d, p) in decisions.iter().zip(&pods) {
            if let Decision::Bind { node, .. } = d {
                let i = check.nodes.iter().position(|n| &n.name == node).unwrap();
                let n = &check.nodes[i];
                prop_assert!(n.ready && !n.unschedulable);
                prop_assert!(p.node_selector.iter().all(|(k, v)| n.labels.get(k) == Some(v)));
                prop_assert!(filter::taints::check(n, p).is_ok());
                check.assign(i, p);
            }
        }
        let of = |n: &NodeInfo, app: &str| n.pods.iter().filter(|p| p.labels.get("app").map(String::as_str) == Some(app)).count();
        let mut per_zone: BTreeMap<&str, usize> = check.nodes.iter().map(|n| (n.labels["zone"].as_str(), 0)).collect();
        for n in &check.nodes {
            *per_zone.get_mut(n.labels["zone"].as_str()).unwrap() += of(n, "rs-1");
            prop_assert!(of(n, "rs-0") <= 1, "two rs-0 pods on {}", n.name);
        }
        let (lo, hi) = (per_zone.values().min().copied().unwrap_or(0), per_zone.values().max().copied().unwrap_or(0));
        prop_assert!(hi - lo <= 1, "rs-1 per zone: {:?}", per_zone);
        for n in &check.nodes {
            prop_assert!(n.requested.pods <= n.allocatable.pods, "{} pods on {}", n.requested.pods, n.name);
            prop_assert!(n.requested.cpu_millis <= n.allocatable.cpu_millis || n.requested.cpu_millis == 0);
            prop_assert!(n.requested.memory <= n.allocatable.memory);
        }
        prop_assert_eq!(check, placed.clone());
        let mut again = snap.clone();
        prop_assert_eq!(schedule(&mut again, &pods), decisions);
    }
}

#[test]
fn an_unplaceable_pod_gets_every_nodes_reason() {
    let node = |name: &str, ready, cpu| NodeInfo {
        name: name.into(),
        ready,
        allocatable: Resources { cpu_millis: cpu, memory: 1 << 30, pods: 10 },
        ..Default::default()
    };
    let mut snap = Snapshot { nodes: vec![node("a", true, 100), node("b", false, 4000), node("c", true, 200)], ..Default::default() };
    let pod = PodInfo { key: "default/big".into(), requests: Resources { cpu_millis: 1000, memory: 0, pods: 1 }, ..Default::default() };
    let Decision::Unschedulable { reasons, .. } = &schedule(&mut snap, &[pod])[0] else { panic!("placed") };
    assert_eq!(unschedulable_message(3, reasons), "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) were not ready.");
    assert_eq!(reasons.len(), 3);
}

#[test]
fn replicas_spread_over_equal_nodes() {
    let node = |name: &str| NodeInfo { name: name.into(), ready: true, allocatable: Resources { cpu_millis: 4000, memory: 8 << 30, pods: 110 }, ..Default::default() };
    let mut snap = Snapshot { nodes: vec![node("n1"), node("n2"), node("n3")], ..Default::default() };
    let pods: Vec<PodInfo> = (0..9)
        .map(|i| PodInfo { key: format!("default/web-{i}"), owner: Some("rs-web".into()), requests: Resources { pods: 1, ..Default::default() }, ..Default::default() })
        .collect();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for d in schedule(&mut snap, &pods) {
        let Decision::Bind { node, .. } = d else { panic!("unplaced") };
        *per_node.entry(node).or_default() += 1;
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), vec![3, 3, 3]);
}
