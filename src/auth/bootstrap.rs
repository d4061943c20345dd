//! The default authorization policy every cluster starts with, after Kubernetes' bootstrap
//! policy: the user-facing ClusterRoles `cluster-admin`, `admin`, `edit` and `view` (the
//! last three aggregated from `system:aggregate-to-*` roles by label, so a cluster can
//! extend them), discovery, self-reviews and the public health paths, and the bindings that
//! give them to `system:masters`, every authenticated user, and everyone. Pure data.

use serde_json::{json, Value};

const RBAC: &str = "rbac.authorization.k8s.io/v1";
pub const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";
pub const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
pub const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn paths(urls: &[&str], verbs: &[&str]) -> Value {
    json!({"nonResourceURLs": urls, "verbs": verbs})
}

fn cluster_role(name: &str, labels: Value, rules: Vec<Value>) -> Value {
    json!({"apiVersion": RBAC, "kind": "ClusterRole",
        "metadata": {"name": name, "labels": bootstrap_labels(labels)}, "rules": rules})
}

fn aggregated(name: &str, labels: Value, from: &[&str]) -> Value {
    let selectors: Vec<Value> = from.iter().map(|l| json!({"matchLabels": {*l: "true"}})).collect();
    json!({"apiVersion": RBAC, "kind": "ClusterRole",
        "metadata": {"name": name, "labels": bootstrap_labels(labels)},
        "aggregationRule": {"clusterRoleSelectors": selectors}, "rules": []})
}

fn bootstrap_labels(mut labels: Value) -> Value {
    labels["kubernetes.io/bootstrapping"] = "rbac-defaults".into();
    labels
}

fn binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups.iter().map(|g| json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": g})).collect();
    json!({"apiVersion": RBAC, "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": bootstrap_labels(json!({}))},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": subjects})
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const WORKLOADS: &[&str] = &["deployments", "deployments/scale", "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale", "daemonsets"];

/// The default ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    let core_read = ["pods", "pods/log", "pods/status", "services", "services/status", "endpoints", "configmaps", "events",
        "persistentvolumeclaims", "persistentvolumeclaims/status", "replicationcontrollers", "serviceaccounts"];
    vec![
        cluster_role("cluster-admin", json!({}), vec![rule(&["*"], &["*"], &["*"]), paths(&["*"], &["*"])]),
        aggregated("admin", json!({}), &[AGGREGATE_TO_ADMIN]),
        aggregated("edit", json!({AGGREGATE_TO_ADMIN: "true"}), &[AGGREGATE_TO_EDIT]),
        aggregated("view", json!({AGGREGATE_TO_EDIT: "true"}), &[AGGREGATE_TO_VIEW]),
        cluster_role("system:aggregate-to-view", json!({AGGREGATE_TO_VIEW: "true"}), vec![
            rule(&[""], &core_read, READ),
            rule(&[""], &["namespaces", "namespaces/status"], READ),
            rule(&["apps"], &[WORKLOADS, &["deployments/status", "replicasets/status", "statefulsets/status", "daemonsets/status"]].concat(), READ),
            rule(&["batch"], &["jobs", "jobs/status", "cronjobs", "cronjobs/status"], READ),
            rule(&["policy"], &["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
        ]),
        cluster_role("system:aggregate-to-edit", json!({AGGREGATE_TO_EDIT: "true"}), vec![
            rule(&[""], &["pods", "pods/exec", "pods/attach", "pods/portforward", "pods/eviction", "services", "endpoints",
                "configmaps", "secrets", "persistentvolumeclaims", "replicationcontrollers", "serviceaccounts"], WRITE),
            rule(&[""], &["pods/exec", "pods/attach", "pods/portforward"], &["get", "create"]),
            rule(&[""], &["serviceaccounts/token"], &["create"]),
            rule(&[""], &["secrets"], READ),
            rule(&["apps"], WORKLOADS, WRITE),
            rule(&["batch"], &["jobs", "cronjobs"], WRITE),
            rule(&["policy"], &["poddisruptionbudgets"], WRITE),
        ]),
        cluster_role("system:aggregate-to-admin", json!({AGGREGATE_TO_ADMIN: "true"}), vec![
            rule(&["rbac.authorization.k8s.io"], &["roles", "rolebindings"], &[READ, WRITE].concat()),
            rule(&["authorization.k8s.io"], &["localsubjectaccessreviews"], &["create"]),
        ]),
        cluster_role("system:discovery", json!({}), vec![paths(
            &["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/version", "/version/", "/openapi", "/openapi/*"],
            &["get"],
        )]),
        cluster_role("system:basic-user", json!({}), vec![
            rule(&["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"], &["create"]),
            rule(&["authentication.k8s.io"], &["selfsubjectreviews"], &["create"]),
        ]),
        cluster_role("system:public-info-viewer", json!({}), vec![paths(&["/healthz", "/livez", "/readyz", "/version", "/version/"], &["get"])]),
    ]
}

/// The default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", "cluster-admin", &["system:masters"]),
        binding("system:discovery", "system:discovery", &["system:authenticated"]),
        binding("system:basic-user", "system:basic-user", &["system:authenticated"]),
        binding("system:public-info-viewer", "system:public-info-viewer", &["system:authenticated", "system:unauthenticated"]),
    ]
}
