//! RBAC decisions over the default policy and a few bindings, after the cases of
//! Kubernetes' RBAC authorizer tests (namespaced vs cluster grants, aggregation, resource
//! names, subresources, non-resource paths).

use serde_json::{json, Value};

use super::*;
use crate::auth::bootstrap;

fn user(name: &str, groups: &[&str]) -> User {
    let mut g: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
    g.push("system:authenticated".into());
    User { name: name.into(), groups: g }
}

fn role_binding(ns: &str, name: &str, kind: &str, role: &str, subject: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role}, "subjects": [subject]})
}

fn u(name: &str) -> Value {
    json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name})
}

fn policy(roles: &[Value], extra_cluster_roles: &[Value], bindings: &[Value]) -> Policy {
    let mut cluster_roles = bootstrap::cluster_roles();
    cluster_roles.extend_from_slice(extra_cluster_roles);
    Policy::build(roles, &cluster_roles, bindings, &bootstrap::cluster_role_bindings())
}

fn can(p: &Policy, who: &User, verb: &str, group: &str, resource: &str, ns: &str) -> bool {
    let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
    p.allows(who, &Attributes::resource(verb, group, resource, sub, ns, ""))
}

#[test]
fn default_roles_by_namespace() {
    let p = policy(&[], &[], &[
        role_binding("dev", "alice-view", "ClusterRole", "view", u("alice")),
        role_binding("dev", "bob-edit", "ClusterRole", "edit", u("bob")),
        role_binding("dev", "carol-admin", "ClusterRole", "admin", u("carol")),
    ]);
    let (alice, bob, carol) = (user("alice", &[]), user("bob", &[]), user("carol", &[]));
    assert!(can(&p, &alice, "list", "", "pods", "dev") && can(&p, &alice, "get", "apps", "deployments", "dev"));
    assert!(!can(&p, &alice, "list", "", "pods", "prod"), "a namespaced binding grants nothing elsewhere");
    assert!(!can(&p, &alice, "list", "", "pods", ""), "nor at the cluster scope");
    assert!(!can(&p, &alice, "get", "", "secrets", "dev"), "view does not read secrets");
    assert!(!can(&p, &alice, "create", "", "pods", "dev") && !can(&p, &alice, "create", "", "pods/exec", "dev"));
    assert!(can(&p, &bob, "create", "apps", "deployments", "dev") && can(&p, &bob, "get", "", "secrets", "dev"));
    assert!(can(&p, &bob, "create", "", "pods/exec", "dev") && can(&p, &bob, "list", "", "pods", "dev"), "edit includes view");
    assert!(!can(&p, &bob, "create", "rbac.authorization.k8s.io", "rolebindings", "dev"), "edit cannot grant");
    assert!(can(&p, &carol, "create", "rbac.authorization.k8s.io", "rolebindings", "dev") && can(&p, &carol, "delete", "", "pods", "dev"));
    assert!(!can(&p, &carol, "list", "", "nodes", ""), "admin of a namespace is no cluster admin");
}

#[test]
fn masters_discovery_and_self_reviews() {
    let p = policy(&[], &[], &[]);
    let admin = user("root", &["system:masters"]);
    assert!(can(&p, &admin, "delete", "", "nodes", "") && p.allows(&admin, &Attributes::path("get", "/metrics")));
    let nobody = user("nobody", &[]);
    assert!(p.allows(&nobody, &Attributes::path("get", "/apis/apps/v1")) && p.allows(&nobody, &Attributes::path("get", "/version")));
    assert!(!p.allows(&nobody, &Attributes::path("get", "/metrics")));
    assert!(can(&p, &nobody, "create", "authorization.k8s.io", "selfsubjectaccessreviews", ""));
    assert!(!can(&p, &nobody, "list", "", "pods", "default"), "default deny");
}

#[test]
fn roles_resource_names_and_groups() {
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "one-cm", "namespace": "dev"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["get", "update"]}]});
    let group = json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "ops"});
    let p = policy(&[role], &[], &[role_binding("dev", "ops-cm", "Role", "one-cm", group)]);
    let dan = user("dan", &["ops"]);
    let get = |name: &str| p.allows(&dan, &Attributes::resource("get", "", "configmaps", "", "dev", name));
    assert!(get("settings") && !get("other"));
    assert!(!can(&p, &dan, "list", "", "configmaps", "dev"), "a list names no resource");
    assert!(!p.allows(&user("eve", &[]), &Attributes::resource("get", "", "configmaps", "", "dev", "settings")));
    // A RoleBinding to a Role of another namespace grants nothing.
    let p = policy(&[], &[], &[role_binding("prod", "x", "Role", "one-cm", u("dan"))]);
    assert!(!p.allows(&dan, &Attributes::resource("get", "", "configmaps", "", "prod", "settings")));
}

#[test]
fn aggregation_extends_the_default_roles() {
    let extra = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "widgets-view", "labels": {bootstrap::AGGREGATE_TO_VIEW: "true"}},
        "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list"]}]});
    let p = policy(&[], &[extra], &[role_binding("dev", "b", "ClusterRole", "admin", u("carol"))]);
    assert!(can(&p, &user("carol", &[]), "list", "example.com", "widgets", "dev"), "view -> edit -> admin picks it up");
}

#[test]
fn subresource_rules() {
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "scaler"},
        "rules": [{"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update"]},
                  {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
    let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "s"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "scaler"}, "subjects": [u("sam")]});
    let p = Policy::build(&[], &[role], &[], &[crb]);
    let sam = user("sam", &[]);
    assert!(can(&p, &sam, "update", "apps", "deployments/scale", "dev"));
    assert!(!can(&p, &sam, "update", "apps", "deployments", "dev"));
    assert!(can(&p, &sam, "get", "", "pods", "dev") && !can(&p, &sam, "get", "", "pods/log", "dev"), "pods does not cover pods/log");
    assert_eq!(p.rules_for(&sam, "dev").len(), 2);
}
