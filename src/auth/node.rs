//! The Node authorizer (with NodeRestriction's rules folded in): what a node's own
//! credentials (`system:node:<name>` in `system:nodes`) may do. A node reads the nodes,
//! pods, services and endpoints its roles follow; it changes only its own Node object and
//! the status of pods bound to it, deletes only pods bound to it, and reads only the
//! Secrets, ConfigMaps and claims those pods use. Anything else is left to RBAC. Pure: what
//! it needs of the cluster comes through `NodeGraph`.

use serde_json::Value;

use super::attributes::{Attributes, Target};
use super::{User, NODES};

/// What the Node authorizer needs to know of the cluster's pods.
pub trait NodeGraph {
    /// The node pod `ns/name` is bound to, if it exists and is bound.
    fn pod_node(&self, ns: &str, name: &str) -> Option<String>;
    /// The pods bound to `node` in namespace `ns`.
    fn pods_on(&self, node: &str, ns: &str) -> Vec<Value>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
    /// Not a node, or not a request the Node authorizer judges: RBAC decides.
    NoOpinion,
}

/// The node a user is, if it authenticated as one.
pub fn node_name(user: &User) -> Option<&str> {
    user.name.strip_prefix("system:node:").filter(|_| user.in_group(NODES))
}

pub fn decide(user: &User, a: &Attributes, graph: &dyn NodeGraph) -> Decision {
    let Some(node) = node_name(user) else { return Decision::NoOpinion };
    let Target::Resource { group, resource, subresource, namespace, name } = &a.target else {
        // Renewing its own certificate (the handler signs for the caller's name only).
        return match &a.target {
            Target::Path(p) if a.verb == "post" && p == crate::api::credentials::RENEW_NODE_PATH => Decision::Allow,
            _ => Decision::NoOpinion,
        };
    };
    let read = matches!(a.verb.as_str(), "get" | "list" | "watch");
    let change = matches!(a.verb.as_str(), "update" | "patch");
    let own = |what: &str| Decision::Deny(format!("node {node:?} may only change {what}"));
    match (group.as_str(), resource.as_str(), subresource.as_str()) {
        ("", "nodes", "" | "status") if read || a.verb == "create" => Decision::Allow,
        ("", "nodes", "" | "status") if change || a.verb == "delete" => {
            if name == node {
                Decision::Allow
            } else {
                own("its own Node object")
            }
        }
        ("", "pods", "") if read => Decision::Allow,
        ("", "pods", "status") if change => match graph.pod_node(namespace, name) {
            Some(n) if n == node => Decision::Allow,
            _ => own("the status of pods bound to it"),
        },
        ("", "pods", "") if a.verb == "delete" => match graph.pod_node(namespace, name) {
            Some(n) if n == node => Decision::Allow,
            _ => Decision::Deny(format!("node {node:?} may only delete pods bound to it")),
        },
        ("", "services" | "endpoints", "") if read => Decision::Allow,
        ("", "persistentvolumes", "") if a.verb == "get" => Decision::Allow,
        ("", kind @ ("secrets" | "configmaps" | "persistentvolumeclaims"), "") if a.verb == "get" => {
            if graph.pods_on(node, namespace).iter().any(|p| uses(p, kind, name)) {
                Decision::Allow
            } else {
                Decision::Deny(format!("no pod bound to node {node:?} uses {kind} {name:?} in namespace {namespace:?}"))
            }
        }
        // Tokens for the ServiceAccounts its pods run as (the TokenRequest handler checks
        // that the token is bound to one of its pods).
        ("", "serviceaccounts", "token") if a.verb == "create" => {
            let account = |p: &Value| p["spec"]["serviceAccountName"].as_str().filter(|s| !s.is_empty()).unwrap_or("default").to_string();
            if graph.pods_on(node, namespace).iter().any(|p| account(p) == *name) {
                Decision::Allow
            } else {
                Decision::Deny(format!("no pod bound to node {node:?} runs as ServiceAccount {name:?} in namespace {namespace:?}"))
            }
        }
        ("" | "events.k8s.io", "events", "") if matches!(a.verb.as_str(), "create" | "patch" | "update") => Decision::Allow,
        ("authorization.k8s.io", "subjectaccessreviews", "") | ("authentication.k8s.io", "tokenreviews", "") if a.verb == "create" => Decision::Allow,
        _ => Decision::NoOpinion,
    }
}

/// NodeRestriction at create: a node may register only its own Node object (the name of a
/// create is in the body, not the path the authorizer saw).
pub fn admit_create(user: &User, kind: &str, obj: &Value) -> Result<(), String> {
    match node_name(user) {
        Some(node) if kind == "Node" && obj["metadata"]["name"].as_str() != Some(node) => {
            Err(format!("node {node:?} may only create its own Node object"))
        }
        _ => Ok(()),
    }
}

/// Does `pod` use the Secret, ConfigMap or claim `name` (volumes, projected sources, env,
/// envFrom, image pull secrets)?
pub fn uses(pod: &Value, kind: &str, name: &str) -> bool {
    let spec = &pod["spec"];
    let is = |v: &Value| v.as_str() == Some(name);
    let volumes = spec["volumes"].as_array().into_iter().flatten();
    let containers = ["containers", "initContainers", "ephemeralContainers"].into_iter().flat_map(|k| spec[k].as_array().into_iter().flatten());
    match kind {
        "secrets" => {
            spec["imagePullSecrets"].as_array().into_iter().flatten().any(|s| is(&s["name"]))
                || volumes.clone().any(|v| is(&v["secret"]["secretName"]) || projected(v, "secret").any(|s| is(&s["name"])))
                || containers.clone().any(|c| env_refs(c, "secretKeyRef", "secretRef").any(is))
        }
        "configmaps" => {
            volumes.clone().any(|v| is(&v["configMap"]["name"]) || projected(v, "configMap").any(|s| is(&s["name"])))
                || containers.clone().any(|c| env_refs(c, "configMapKeyRef", "configMapRef").any(is))
        }
        "persistentvolumeclaims" => volumes.clone().any(|v| is(&v["persistentVolumeClaim"]["claimName"])),
        _ => false,
    }
}

fn projected<'a>(volume: &'a Value, source: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    volume["projected"]["sources"].as_array().into_iter().flatten().map(move |s| &s[source])
}

/// The names a container's env (`valueFrom.<key_ref>.name`) and envFrom (`<from_ref>.name`) refer to.
fn env_refs<'a>(c: &'a Value, key_ref: &'a str, from_ref: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    let env = c["env"].as_array().into_iter().flatten().map(move |e| &e["valueFrom"][key_ref]["name"]);
    let from = c["envFrom"].as_array().into_iter().flatten().map(move |e| &e[from_ref]["name"]);
    env.chain(from)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    struct Graph(BTreeMap<(String, String), Value>);

    impl NodeGraph for Graph {
        fn pod_node(&self, ns: &str, name: &str) -> Option<String> {
            self.0.get(&(ns.to_string(), name.to_string())).and_then(|p| p["spec"]["nodeName"].as_str().map(String::from))
        }
        fn pods_on(&self, node: &str, ns: &str) -> Vec<Value> {
            self.0.iter().filter(|((n, _), p)| n == ns && p["spec"]["nodeName"] == node).map(|(_, p)| p.clone()).collect()
        }
    }

    fn graph() -> Graph {
        let pod = |name: &str, node: &str, spec: Value| {
            let mut spec = spec;
            spec["nodeName"] = node.into();
            (("dev".to_string(), name.to_string()), json!({"metadata": {"name": name, "namespace": "dev"}, "spec": spec}))
        };
        Graph(BTreeMap::from([
            pod("mine", "w1", json!({"volumes": [{"name": "v", "secret": {"secretName": "db"}}, {"name": "p", "persistentVolumeClaim": {"claimName": "data"}}],
                "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "settings"}}],
                    "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "token", "key": "t"}}}]}]})),
            pod("theirs", "w2", json!({"volumes": [{"name": "v", "secret": {"secretName": "other"}}], "containers": [{"name": "c"}]})),
        ]))
    }

    fn w1() -> User {
        User { name: "system:node:w1".into(), groups: vec![NODES.into(), "system:authenticated".into()] }
    }

    fn decide_on(verb: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Decision {
        decide(&w1(), &Attributes::resource(verb, "", resource, sub, ns, name), &graph())
    }

    #[test]
    fn a_node_changes_only_its_own() {
        assert_eq!(decide_on("patch", "nodes", "status", "", "w1"), Decision::Allow);
        assert!(matches!(decide_on("patch", "nodes", "status", "", "w2"), Decision::Deny(_)));
        assert!(matches!(decide_on("update", "nodes", "", "", "w2"), Decision::Deny(_)));
        assert_eq!(decide_on("update", "pods", "status", "dev", "mine"), Decision::Allow);
        assert!(matches!(decide_on("update", "pods", "status", "dev", "theirs"), Decision::Deny(_)));
        assert!(matches!(decide_on("update", "pods", "status", "dev", "missing"), Decision::Deny(_)));
        assert_eq!(decide_on("delete", "pods", "", "dev", "mine"), Decision::Allow);
        assert!(matches!(decide_on("delete", "pods", "", "dev", "theirs"), Decision::Deny(_)));
        assert_eq!(decide_on("update", "pods", "", "dev", "mine"), Decision::NoOpinion, "a pod's spec is not the node's to change");
        assert_eq!(decide_on("watch", "pods", "", "", ""), Decision::Allow);
    }

    #[test]
    fn a_node_reads_only_what_its_pods_use() {
        for (kind, name) in [("secrets", "db"), ("secrets", "token"), ("configmaps", "settings"), ("persistentvolumeclaims", "data")] {
            assert_eq!(decide_on("get", kind, "", "dev", name), Decision::Allow, "{kind} {name}");
        }
        assert!(matches!(decide_on("get", "secrets", "", "dev", "other"), Decision::Deny(_)), "used only by another node's pod");
        assert!(matches!(decide_on("get", "secrets", "", "prod", "db"), Decision::Deny(_)), "another namespace");
        assert_eq!(decide_on("create", "serviceaccounts", "token", "dev", "default"), Decision::Allow, "its pods run as default");
        assert!(matches!(decide_on("create", "serviceaccounts", "token", "dev", "builder"), Decision::Deny(_)));
        assert_eq!(decide_on("list", "secrets", "", "dev", ""), Decision::NoOpinion, "no listing of secrets");
    }

    #[test]
    fn others_are_left_to_rbac() {
        let alice = User { name: "alice".into(), groups: vec!["system:authenticated".into()] };
        assert_eq!(decide(&alice, &Attributes::resource("get", "", "secrets", "", "dev", "db"), &graph()), Decision::NoOpinion);
        // A user named like a node but without the group is no node.
        let fake = User { name: "system:node:w1".into(), groups: vec!["system:authenticated".into()] };
        assert_eq!(node_name(&fake), None);
        assert_eq!(decide(&w1(), &Attributes::path("get", "/metrics"), &graph()), Decision::NoOpinion);
        assert!(admit_create(&w1(), "Node", &json!({"metadata": {"name": "w1"}})).is_ok());
        assert!(admit_create(&w1(), "Node", &json!({"metadata": {"name": "w2"}})).is_err());
        assert!(admit_create(&alice, "Node", &json!({"metadata": {"name": "w2"}})).is_ok(), "RBAC decided alice may");
    }

    #[test]
    fn a_node_may_ask_to_renew_its_certificate_and_nothing_else_of_orchs_paths() {
        let path = |verb: &str, p: &str| decide(&w1(), &Attributes::path(verb, p), &graph());
        assert_eq!(path("post", crate::api::credentials::RENEW_NODE_PATH), Decision::Allow);
        assert_eq!(path("get", crate::api::credentials::RENEW_NODE_PATH), Decision::NoOpinion);
        assert_eq!(path("post", "/orch/v1/cluster/tokens/rotate"), Decision::NoOpinion);
    }
}
