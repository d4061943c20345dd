//! What a pending pod's inter-pod (anti-)affinity and topology spread constraints need
//! from the whole snapshot, computed once per pod before its nodes are filtered and scored
//! (`Context`): which topology domains hold pods matching each term, which domains existing
//! pods' anti-affinity closes to it, and how many matching pods each spread domain holds.
//! A domain is a value of a term's `topologyKey` label on nodes. Pure.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::PodAffinityTerm;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::filter::node_affinity;
use super::snapshot::Placed;
use super::{PodInfo, Snapshot};

/// A label selector against labels: every matchLabels pair and every expression. No
/// selector matches nothing; an empty one matches everything (as in Kubernetes).
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = selector else { return false };
    let pairs = sel.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let exprs = sel.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    pairs && exprs
}

/// Whether `term` (of a pod in namespace `owner_ns`) matches pod `labels` in `ns`: the
/// term's namespaces, or the owner's own when it lists none; an empty namespaceSelector
/// means every namespace. (A namespaceSelector with labels would need namespaces' labels,
/// which the snapshot does not carry: such a term matches no pod.)
fn term_matches(term: &PodAffinityTerm, owner_ns: &str, ns: &str, labels: &BTreeMap<String, String>) -> bool {
    let in_ns = match term.namespaces.as_deref() {
        Some(list) if !list.is_empty() => list.iter().any(|n| n == ns),
        _ => term.namespace_selector.as_ref().map_or(owner_ns == ns, |s| s.match_labels.is_none() && s.match_expressions.is_none()),
    };
    in_ns && selects(term.label_selector.as_ref(), labels)
}

/// Every placed pod a selector could match, as (node, index in its `pods`): those with its
/// first matchLabels pair when it has one (the index), else all.
fn candidates<'a>(snap: &'a Snapshot, selector: Option<&LabelSelector>) -> Box<dyn Iterator<Item = (usize, &'a Placed)> + 'a> {
    let first = selector.and_then(|s| s.match_labels.as_ref()).and_then(|m| m.iter().next());
    match first {
        Some((k, v)) => {
            let hits = snap.by_label.get(&(k.clone(), v.clone())).map(Vec::as_slice).unwrap_or_default();
            Box::new(hits.iter().map(|&(i, j)| (i, &snap.nodes[i].pods[j])))
        }
        None => Box::new(snap.nodes.iter().enumerate().flat_map(|(i, n)| n.pods.iter().map(move |p| (i, p)))),
    }
}

/// Per domain (value of the term's topologyKey), the placed pods that `term` of `pod` matches.
fn domains_matching(snap: &Snapshot, pod: &PodInfo, term: &PodAffinityTerm) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (i, p) in candidates(snap, term.label_selector.as_ref()) {
        if let Some(domain) = snap.nodes[i].labels.get(&term.topology_key) {
            if term_matches(term, &pod.namespace, &p.namespace, &p.labels) {
                *out.entry(domain.clone()).or_default() += 1;
            }
        }
    }
    out
}

/// One spread constraint, counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spread {
    pub key: String,
    pub max_skew: i64,
    /// `DoNotSchedule` (a filter) rather than `ScheduleAnyway` (a score).
    pub hard: bool,
    /// Matching pods per domain, over the nodes the pod could go to by its node affinity.
    pub counts: BTreeMap<String, i64>,
    /// Whether the pod itself matches (it counts once placed).
    pub self_match: bool,
}

impl Spread {
    pub fn min(&self) -> i64 {
        self.counts.values().copied().min().unwrap_or(0)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// Per required affinity term: its key and the domains with a matching pod; `None`
    /// when nothing matches anywhere and the pod matches its own term (the first of a
    /// group may go to any node with the key).
    pub affinity: Vec<(String, Option<BTreeSet<String>>)>,
    /// Per required anti-affinity term: its key and the domains with a matching pod.
    pub anti_affinity: Vec<(String, BTreeSet<String>)>,
    /// Per topology key, the domains where an existing pod's required anti-affinity
    /// refuses this pod.
    pub refused: BTreeMap<String, BTreeSet<String>>,
    /// Preferred terms: per (key, domain), weight times matching pods (anti negative).
    pub preferred: BTreeMap<(String, String), i64>,
    /// The sum of the preferred terms' weights (to scale the score).
    pub preferred_weight: i64,
    pub spread: Vec<Spread>,
}

/// Everything about other pods that placing `pod` depends on.
pub fn prepare(snap: &Snapshot, pod: &PodInfo) -> Context {
    let mut ctx = Context::default();
    for anti in snap.anti_affinity.iter().filter(|a| term_matches(&a.term, &a.namespace, &pod.namespace, &pod.labels)) {
        ctx.refused.entry(anti.term.topology_key.clone()).or_default().extend(anti.domains.iter().cloned());
    }
    if !pod.has_pod_constraints() {
        return ctx;
    }
    for term in &pod.pod_affinity {
        let found: BTreeSet<String> = domains_matching(snap, pod, term).into_keys().collect();
        let first_of_group = found.is_empty() && term_matches(term, &pod.namespace, &pod.namespace, &pod.labels);
        ctx.affinity.push((term.topology_key.clone(), (!first_of_group).then_some(found)));
    }
    for term in &pod.pod_anti_affinity {
        ctx.anti_affinity.push((term.topology_key.clone(), domains_matching(snap, pod, term).into_keys().collect()));
    }
    let weighted = pod.preferred_pod_affinity.iter().map(|w| (w, 1)).chain(pod.preferred_pod_anti_affinity.iter().map(|w| (w, -1)));
    for (w, sign) in weighted {
        let term = &w.pod_affinity_term;
        ctx.preferred_weight += i64::from(w.weight);
        for (domain, count) in domains_matching(snap, pod, term) {
            *ctx.preferred.entry((term.topology_key.clone(), domain)).or_default() += sign * i64::from(w.weight) * count;
        }
    }
    for c in &pod.spread {
        // Domains come from the nodes the pod's nodeSelector and required node affinity
        // allow; pods count on those nodes only.
        let allowed: Vec<bool> = snap.nodes.iter().map(|n| node_affinity::check(n, pod).is_ok()).collect();
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for (n, _) in snap.nodes.iter().zip(&allowed).filter(|(_, ok)| **ok) {
            if let Some(domain) = n.labels.get(&c.topology_key) {
                counts.entry(domain.clone()).or_default();
            }
        }
        for (i, p) in candidates(snap, c.label_selector.as_ref()) {
            let Some(domain) = snap.nodes[i].labels.get(&c.topology_key).filter(|_| allowed[i]) else { continue };
            if p.namespace == pod.namespace && selects(c.label_selector.as_ref(), &p.labels) {
                *counts.entry(domain.clone()).or_default() += 1;
            }
        }
        ctx.spread.push(Spread {
            key: c.topology_key.clone(),
            max_skew: i64::from(c.max_skew.max(1)),
            hard: c.when_unsatisfiable != "ScheduleAnyway",
            counts,
            self_match: selects(c.label_selector.as_ref(), &pod.labels),
        });
    }
    ctx
}

#[cfg(test)]
mod tests;
