//! Inter-pod affinity and topology spread against small hand-made clusters.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodAffinityTerm, TopologySpreadConstraint, WeightedPodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::*;
use crate::sched::{filter, schedule, Decision, NodeInfo, Resources};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn selector(app: &str) -> Option<LabelSelector> {
    Some(LabelSelector { match_labels: Some(labels(&[("app", app)])), match_expressions: None })
}

fn term(app: &str, key: &str) -> PodAffinityTerm {
    PodAffinityTerm { label_selector: selector(app), topology_key: key.into(), ..Default::default() }
}

/// Nodes n0..n3: n0, n1 in zone a, n2, n3 in zone b.
fn cluster() -> Snapshot {
    let node = |i: usize| NodeInfo {
        name: format!("n{i}"),
        labels: labels(&[("kubernetes.io/hostname", &format!("n{i}")), ("zone", if i < 2 { "a" } else { "b" })]),
        allocatable: Resources { cpu_millis: 4000, memory: 8 << 30, pods: 20 },
        ready: true,
        ..Default::default()
    };
    Snapshot { nodes: (0..4).map(node).collect(), ..Default::default() }
}

fn pod(name: &str, app: &str) -> PodInfo {
    PodInfo { key: format!("default/{name}"), namespace: "default".into(), labels: labels(&[("app", app)]), requests: Resources { pods: 1, ..Default::default() }, ..Default::default() }
}

fn node_of(d: &Decision) -> &str {
    match d {
        Decision::Bind { node, .. } => node,
        Decision::Unschedulable { reasons, .. } => panic!("unschedulable: {reasons:?}"),
    }
}

#[test]
fn selectors_match_labels_and_expressions() {
    let l = labels(&[("app", "web"), ("tier", "front")]);
    assert!(selects(selector("web").as_ref(), &l));
    assert!(!selects(selector("db").as_ref(), &l));
    assert!(!selects(None, &l), "no selector matches nothing");
    assert!(selects(Some(&LabelSelector::default()), &l), "an empty selector matches everything");
    let expr = |op: &str, values: &[&str]| LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement { key: "tier".into(), operator: op.into(), values: Some(values.iter().map(|v| v.to_string()).collect()) }]),
    };
    assert!(selects(Some(&expr("In", &["front", "back"])), &l));
    assert!(!selects(Some(&expr("NotIn", &["front"])), &l));
    assert!(selects(Some(&expr("Exists", &[])), &l));
    assert!(!selects(Some(&expr("DoesNotExist", &[])), &l));
}

#[test]
fn required_anti_affinity_puts_one_per_host_and_refuses_the_fifth() {
    let mut snap = cluster();
    let pods: Vec<PodInfo> = (0..5).map(|i| PodInfo { pod_anti_affinity: vec![term("web", "kubernetes.io/hostname")], ..pod(&format!("web-{i}"), "web") }).collect();
    let decisions = schedule(&mut snap, &pods);
    let mut hosts: Vec<&str> = decisions[..4].iter().map(node_of).collect();
    hosts.sort();
    assert_eq!(hosts, ["n0", "n1", "n2", "n3"]);
    let Decision::Unschedulable { reasons, .. } = &decisions[4] else { panic!("a fifth web pod has no host left") };
    assert!(reasons.values().all(|r| r.contains("anti-affinity rules")), "{reasons:?}");
}

#[test]
fn existing_pods_anti_affinity_refuses_matching_newcomers() {
    let mut snap = cluster();
    // A db pod that wants no cache pod in its zone.
    let db = PodInfo { node_selector: labels(&[("zone", "a")]), pod_anti_affinity: vec![term("cache", "zone")], ..pod("db", "db") };
    schedule(&mut snap, &[db]);
    let ctx = prepare(&snap, &pod("cache", "cache"));
    assert_eq!(ctx.refused, [("zone".to_string(), ["a".to_string()].into())].into());
    let d = schedule(&mut snap, &[pod("cache", "cache")]);
    assert_eq!(snap.nodes.iter().find(|n| n.name == node_of(&d[0])).unwrap().labels["zone"], "b");
    assert_eq!(filter::pod_affinity::check(&snap.nodes[0], &ctx).unwrap_err(), "node(s) didn't satisfy existing pods anti-affinity rules");
}

#[test]
fn required_affinity_follows_the_first_of_its_group() {
    let mut snap = cluster();
    let with_db = |name: &str| PodInfo { pod_affinity: vec![term("db", "zone")], ..pod(name, "web") };
    // No db pod anywhere, and a web pod does not match its own term: nowhere to go.
    let d = schedule(&mut snap, &[with_db("early")]);
    assert!(matches!(&d[0], Decision::Unschedulable { reasons, .. } if reasons.values().all(|r| r == "node(s) didn't match pod affinity rules")));
    schedule(&mut snap, &[PodInfo { node_selector: labels(&[("zone", "b")]), ..pod("db", "db") }]);
    for d in schedule(&mut snap, &[with_db("w1"), with_db("w2"), with_db("w3")]) {
        assert!(["n2", "n3"].contains(&node_of(&d)), "{d:?}");
    }
    // A pod that matches its own term may start its group anywhere.
    let first = PodInfo { pod_affinity: vec![term("cache", "zone")], ..pod("cache-0", "cache") };
    assert_eq!(prepare(&snap, &first).affinity, vec![("zone".to_string(), None)]);
}

#[test]
fn hard_spread_keeps_zones_within_max_skew() {
    let mut snap = cluster();
    let spread = TopologySpreadConstraint { max_skew: 1, topology_key: "zone".into(), when_unsatisfiable: "DoNotSchedule".into(), label_selector: selector("web"), ..Default::default() };
    // Prefer zone a strongly (node affinity would otherwise be neutral): spreading must win.
    let pods: Vec<PodInfo> = (0..6).map(|i| PodInfo { spread: vec![spread.clone()], ..pod(&format!("web-{i}"), "web") }).collect();
    let decisions = schedule(&mut snap, &pods);
    let mut per_zone: BTreeMap<String, i64> = BTreeMap::new();
    for d in &decisions {
        let zone = snap.nodes.iter().find(|n| n.name == node_of(d)).unwrap().labels["zone"].clone();
        *per_zone.entry(zone).or_default() += 1;
    }
    assert_eq!(per_zone, [("a".to_string(), 3), ("b".to_string(), 3)].into());
    // Zone b full of web pods by selector: the next must go to a.
    let mut lopsided = cluster();
    schedule(&mut lopsided, &[PodInfo { node_selector: labels(&[("zone", "b")]), ..pod("w0", "web") }]);
    let ctx = prepare(&lopsided, &PodInfo { spread: vec![spread.clone()], ..pod("w1", "web") });
    assert_eq!(ctx.spread[0].counts, [("a".to_string(), 0), ("b".to_string(), 1)].into());
    assert!(filter::topology_spread::check(&lopsided.nodes[2], &ctx).is_err());
    assert!(filter::topology_spread::check(&lopsided.nodes[0], &ctx).is_ok());
}

#[test]
fn soft_preferences_and_soft_spread_rank_nodes() {
    let mut snap = cluster();
    schedule(&mut snap, &[PodInfo { node_selector: labels(&[("kubernetes.io/hostname", "n3")]), ..pod("cache", "cache") }]);
    let near = PodInfo {
        preferred_pod_affinity: vec![WeightedPodAffinityTerm { weight: 100, pod_affinity_term: term("cache", "kubernetes.io/hostname") }],
        ..pod("app", "app")
    };
    assert_eq!(node_of(&schedule(&mut snap.clone(), &[near])[0]), "n3");
    let away = PodInfo {
        preferred_pod_anti_affinity: vec![WeightedPodAffinityTerm { weight: 100, pod_affinity_term: term("cache", "zone") }],
        ..pod("app", "app")
    };
    let d = schedule(&mut snap.clone(), &[away]);
    assert!(["n0", "n1"].contains(&node_of(&d[0])), "{d:?}");
    let soft = TopologySpreadConstraint { max_skew: 1, topology_key: "zone".into(), when_unsatisfiable: "ScheduleAnyway".into(), label_selector: selector("cache"), ..Default::default() };
    let d = schedule(&mut snap, &[PodInfo { spread: vec![soft], ..pod("cache-2", "cache") }]);
    assert!(["n0", "n1"].contains(&node_of(&d[0])), "the emptier zone: {d:?}");
}
