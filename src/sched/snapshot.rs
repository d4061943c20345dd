//! The scheduler's view of the cluster: per node what it offers (allocatable, labels,
//! taints, readiness) and what the pods bound to it already request; per pending pod what
//! it asks for. Built from API objects by pure functions.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelector, Pod, PodAffinityTerm, PreferredSchedulingTerm, Taint, Toleration, TopologySpreadConstraint, WeightedPodAffinityTerm,
};

use crate::api::quantity;

/// CPU in millicores, memory in bytes, and a pod count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_millis: i64,
    pub memory: i64,
    pub pods: i64,
}

impl Resources {
    pub fn add(&mut self, other: &Resources) {
        self.cpu_millis += other.cpu_millis;
        self.memory += other.memory;
        self.pods += other.pods;
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    pub requested: Resources,
    pub ready: bool,
    pub unschedulable: bool,
    /// (protocol, port) pairs taken by pods' hostPorts.
    pub host_ports: BTreeSet<(String, i32)>,
    /// Pods per owner (controller uid) on this node, for spreading replicas.
    pub owners: BTreeMap<String, u32>,
    /// Images present (every name, normalized as `image_key`) and their sizes.
    pub images: BTreeMap<String, i64>,
    /// The pods on it, as inter-pod affinity and topology spread see them.
    pub pods: Vec<Placed>,
}

/// A pod on a node: what other pods' affinity terms and spread constraints match against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placed {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

/// A required anti-affinity term of placed pods (those of one namespace with the same
/// term are one entry) and the domains (values of its topologyKey) they are in: a pod the
/// term matches may not go to those domains.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlacedAnti {
    pub namespace: String,
    pub term: PodAffinityTerm,
    pub domains: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodInfo {
    /// `namespace/name`.
    pub key: String,
    pub requests: Resources,
    pub node_selector: BTreeMap<String, String>,
    pub required_affinity: Option<NodeSelector>,
    pub preferred_affinity: Vec<PreferredSchedulingTerm>,
    pub tolerations: Vec<Toleration>,
    pub host_ports: BTreeSet<(String, i32)>,
    /// The controller owning the pod (its uid), if any.
    pub owner: Option<String>,
    /// Its containers' images, normalized as `image_key`.
    pub images: Vec<String>,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// Inter-pod affinity and anti-affinity, required and preferred.
    pub pod_affinity: Vec<PodAffinityTerm>,
    pub pod_anti_affinity: Vec<PodAffinityTerm>,
    pub preferred_pod_affinity: Vec<WeightedPodAffinityTerm>,
    pub preferred_pod_anti_affinity: Vec<WeightedPodAffinityTerm>,
    pub spread: Vec<TopologySpreadConstraint>,
}

impl PodInfo {
    /// Whether anything about other pods' placement matters to this pod.
    pub fn has_pod_constraints(&self) -> bool {
        !(self.pod_affinity.is_empty()
            && self.pod_anti_affinity.is_empty()
            && self.preferred_pod_affinity.is_empty()
            && self.preferred_pod_anti_affinity.is_empty()
            && self.spread.is_empty())
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub nodes: Vec<NodeInfo>,
    /// On how many nodes each image is present (image locality weighs by spread).
    pub image_nodes: BTreeMap<String, usize>,
    /// Placed pods' required anti-affinity, grouped by term: every pending pod is checked
    /// against these.
    pub anti_affinity: Vec<PlacedAnti>,
    /// Placed pods by label pair, as (node, index in its `pods`): the candidates a selector
    /// with matchLabels can match, without looking at every pod.
    pub by_label: BTreeMap<(String, String), Vec<(usize, usize)>>,
}

/// An image name as the scheduler compares them: the full reference (`busybox:1` and
/// `docker.io/library/busybox:1` are one image), or the name as written if it does not parse.
pub fn image_key(name: &str) -> String {
    crate::image_reference::parse(name).map(|r| r.whole()).unwrap_or_else(|_| name.to_string())
}

impl Snapshot {
    /// Count `pod` against node `i` (after binding it there).
    pub fn assign(&mut self, i: usize, pod: &PodInfo) {
        let n = &mut self.nodes[i];
        n.requested.add(&pod.requests);
        n.host_ports.extend(pod.host_ports.iter().cloned());
        if let Some(o) = &pod.owner {
            *n.owners.entry(o.clone()).or_default() += 1;
        }
        n.pods.push(Placed { namespace: pod.namespace.clone(), labels: pod.labels.clone() });
        let j = n.pods.len() - 1;
        for (k, v) in &pod.labels {
            self.by_label.entry((k.clone(), v.clone())).or_default().push((i, j));
        }
        for term in &pod.pod_anti_affinity {
            let Some(domain) = self.nodes[i].labels.get(&term.topology_key).cloned() else { continue };
            match self.anti_affinity.iter_mut().find(|a| a.namespace == pod.namespace && a.term == *term) {
                Some(group) => {
                    group.domains.insert(domain);
                }
                None => self.anti_affinity.push(PlacedAnti { namespace: pod.namespace.clone(), term: term.clone(), domains: [domain].into() }),
            }
        }
    }

    /// Nodes and the pods bound to them (finished pods hold nothing).
    pub fn from_objects(nodes: &[Node], pods: &[Pod]) -> Snapshot {
        let mut snap = Snapshot { nodes: nodes.iter().map(node_info).collect(), ..Default::default() };
        for image in snap.nodes.iter().flat_map(|n| n.images.keys()) {
            *snap.image_nodes.entry(image.clone()).or_default() += 1;
        }
        let index: BTreeMap<String, usize> = snap.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        for p in pods {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            if let Some(i) = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).and_then(|n| index.get(n)) {
                snap.assign(*i, &pod_info(p));
            }
        }
        snap
    }
}

fn parse_resources(m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>) -> Resources {
    let get = |k: &str, f: fn(&str) -> Option<i64>| m.and_then(|m| m.get(k)).and_then(|q| f(&q.0)).unwrap_or(0);
    Resources { cpu_millis: get("cpu", quantity::cpu_millis), memory: get("memory", quantity::bytes), pods: get("pods", quantity::bytes) }
}

pub fn node_info(n: &Node) -> NodeInfo {
    let spec = n.spec.clone().unwrap_or_default();
    let status = n.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    NodeInfo {
        name: n.metadata.name.clone().unwrap_or_default(),
        labels: n.metadata.labels.clone().unwrap_or_default(),
        taints: spec.taints.unwrap_or_default(),
        allocatable: parse_resources(status.allocatable.as_ref()),
        requested: Resources::default(),
        ready,
        unschedulable: spec.unschedulable.unwrap_or(false),
        host_ports: BTreeSet::new(),
        owners: BTreeMap::new(),
        images: status
            .images
            .iter()
            .flatten()
            .flat_map(|i| i.names.iter().flatten().filter(|n| !n.contains('@')).map(|n| (image_key(n), i.size_bytes.unwrap_or(0))))
            .collect(),
        pods: Vec::new(),
    }
}

fn container_requests(c: &Container) -> Resources {
    let r = c.resources.as_ref();
    // A limit without a request is the request too (the API server's defaulting).
    let requests = parse_resources(r.and_then(|r| r.requests.as_ref()));
    let limits = parse_resources(r.and_then(|r| r.limits.as_ref()));
    Resources {
        cpu_millis: if requests.cpu_millis > 0 { requests.cpu_millis } else { limits.cpu_millis },
        memory: if requests.memory > 0 { requests.memory } else { limits.memory },
        pods: 0,
    }
}

/// What a pod asks for: the sum over its containers, or the largest init container if
/// that is more (init containers run one at a time, before the others), plus one pod.
pub fn pod_info(p: &Pod) -> PodInfo {
    let spec = p.spec.clone().unwrap_or_default();
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum.add(&container_requests(c));
    }
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        sum.cpu_millis = sum.cpu_millis.max(r.cpu_millis);
        sum.memory = sum.memory.max(r.memory);
    }
    sum.pods = 1;
    let affinity = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref());
    let pod_affinity = spec.affinity.as_ref().and_then(|a| a.pod_affinity.as_ref());
    let pod_anti = spec.affinity.as_ref().and_then(|a| a.pod_anti_affinity.as_ref());
    let host_ports = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| p.host_port.filter(|hp| *hp > 0).map(|hp| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), hp)))
        .collect();
    let owner = p.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true)).map(|o| o.uid.clone());
    PodInfo {
        key: format!("{}/{}", p.metadata.namespace.as_deref().unwrap_or("default"), p.metadata.name.as_deref().unwrap_or_default()),
        requests: sum,
        node_selector: spec.node_selector.unwrap_or_default(),
        required_affinity: affinity.and_then(|a| a.required_during_scheduling_ignored_during_execution.clone()),
        preferred_affinity: affinity.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.clone()).unwrap_or_default(),
        tolerations: spec.tolerations.unwrap_or_default(),
        host_ports,
        owner,
        images: spec.containers.iter().filter_map(|c| c.image.as_deref()).map(image_key).collect(),
        namespace: p.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        labels: p.metadata.labels.clone().unwrap_or_default(),
        pod_affinity: pod_affinity.and_then(|a| a.required_during_scheduling_ignored_during_execution.clone()).unwrap_or_default(),
        pod_anti_affinity: pod_anti.and_then(|a| a.required_during_scheduling_ignored_during_execution.clone()).unwrap_or_default(),
        preferred_pod_affinity: pod_affinity.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.clone()).unwrap_or_default(),
        preferred_pod_anti_affinity: pod_anti.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.clone()).unwrap_or_default(),
        spread: spec.topology_spread_constraints.clone().unwrap_or_default(),
    }
}
