//! Filter: the node's labels satisfy the pod's nodeSelector and its required node
//! affinity (any one term, all expressions of a term).

use k8s_openapi::api::core::v1::NodeSelectorRequirement;

use super::{NodeInfo, PodInfo};
use std::collections::BTreeMap;

/// One node-selector requirement against a node's labels.
pub fn matches(req: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&req.key);
    let values = req.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => matches!((value.and_then(|v| number(v)), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a > b),
        "Lt" => matches!((value.and_then(|v| number(v)), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a < b),
        _ => false,
    }
}

pub fn check(node: &NodeInfo, pod: &PodInfo) -> Result<(), String> {
    let refused = || Err("node(s) didn't match Pod's node affinity/selector".to_string());
    if pod.node_selector.iter().any(|(k, v)| node.labels.get(k) != Some(v)) {
        return refused();
    }
    if let Some(required) = &pod.required_affinity {
        let any_term = required.node_selector_terms.iter().any(|term| term.match_expressions.iter().flatten().all(|r| matches(r, &node.labels)));
        if !any_term {
            return refused();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorTerm};

    use super::*;

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement { key: key.into(), operator: op.into(), values: Some(values.iter().map(|v| v.to_string()).collect()) }
    }

    #[test]
    fn selectors_and_affinity_terms() {
        let node = NodeInfo { labels: [("zone".to_string(), "a".to_string()), ("cores".to_string(), "8".to_string())].into(), ..Default::default() };
        let l = &node.labels;
        assert!(matches(&req("zone", "In", &["a", "b"]), l));
        assert!(!matches(&req("zone", "NotIn", &["a"]), l));
        assert!(matches(&req("gpu", "DoesNotExist", &[]), l));
        assert!(matches(&req("cores", "Gt", &["4"]), l) && !matches(&req("cores", "Lt", &["4"]), l));
        let selector = PodInfo { node_selector: [("zone".to_string(), "b".to_string())].into(), ..Default::default() };
        assert!(check(&node, &selector).is_err());
        let term = |r| NodeSelectorTerm { match_expressions: Some(vec![r]), match_fields: None };
        let affinity = PodInfo {
            required_affinity: Some(NodeSelector { node_selector_terms: vec![term(req("zone", "In", &["x"])), term(req("cores", "Exists", &[]))] }),
            ..Default::default()
        };
        assert!(check(&node, &affinity).is_ok(), "one matching term is enough");
    }
}
