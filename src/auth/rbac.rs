//! RBAC (`rbac.authorization.k8s.io/v1`): a `Policy` compiled from the cluster's Roles,
//! ClusterRoles (aggregation resolved), RoleBindings and ClusterRoleBindings, and the
//! decision for one request: allowed if some binding that names the user (or one of its
//! groups) refers to a role with a matching rule; denied otherwise. Also the rules a user
//! has in a namespace (`SelfSubjectRulesReview`). Pure.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1 as rbac;
use serde_json::Value;

use super::attributes::{Attributes, Target};
use super::User;

/// One rule, as written in a role.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

impl Rule {
    fn of(r: &rbac::PolicyRule) -> Rule {
        Rule {
            verbs: r.verbs.clone(),
            api_groups: r.api_groups.clone().unwrap_or_default(),
            resources: r.resources.clone().unwrap_or_default(),
            resource_names: r.resource_names.clone().unwrap_or_default(),
            non_resource_urls: r.non_resource_urls.clone().unwrap_or_default(),
        }
    }

    /// Does this rule allow `a`?
    pub fn allows(&self, a: &Attributes) -> bool {
        if !self.verbs.iter().any(|v| v == "*" || *v == a.verb) {
            return false;
        }
        match &a.target {
            Target::Path(path) => self.non_resource_urls.iter().any(|u| {
                u == "*" || u == path || u.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix))
            }),
            Target::Resource { group, resource, subresource, name, .. } => {
                let full = if subresource.is_empty() { resource.clone() } else { format!("{resource}/{subresource}") };
                self.api_groups.iter().any(|g| g == "*" || g == group)
                    && self.resources.iter().any(|r| {
                        r == "*"
                            || *r == full
                            || (subresource.is_empty() && r == resource)
                            || (!subresource.is_empty() && r.strip_prefix("*/").is_some_and(|s| s == subresource))
                    })
                    && (self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name))
            }
        }
    }
}

/// A binding's grant: a role's rules for its subjects, in one namespace or everywhere.
#[derive(Debug, Clone)]
struct Grant {
    /// `None`: cluster-wide (a ClusterRoleBinding).
    namespace: Option<String>,
    subjects: Vec<rbac::Subject>,
    role: RoleRef,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum RoleRef {
    Cluster(String),
    /// A Role in the binding's own namespace.
    Namespaced(String, String),
}

/// Everything RBAC decides from, compiled.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    roles: BTreeMap<RoleRef, Vec<Rule>>,
    grants: Vec<Grant>,
    cluster_bindings: BTreeSet<String>,
}

fn parse<T: serde::de::DeserializeOwned>(v: &Value) -> Option<T> {
    serde_json::from_value(v.clone()).ok()
}

impl Policy {
    /// Compile the policy from the stored objects of the four kinds. ClusterRoles with an
    /// aggregation rule get the rules of every ClusterRole their selectors match, as
    /// Kubernetes' aggregation controller writes them (followed transitively).
    pub fn build(roles: &[Value], cluster_roles: &[Value], bindings: &[Value], cluster_bindings: &[Value]) -> Policy {
        let mut policy = Policy::default();
        for r in roles.iter().filter_map(parse::<rbac::Role>) {
            let (ns, name) = (r.metadata.namespace.clone().unwrap_or_default(), r.metadata.name.clone().unwrap_or_default());
            policy.roles.insert(RoleRef::Namespaced(ns, name), r.rules.iter().flatten().map(Rule::of).collect());
        }
        let cluster: Vec<rbac::ClusterRole> = cluster_roles.iter().filter_map(parse).collect();
        for (name, rules) in aggregate(&cluster) {
            policy.roles.insert(RoleRef::Cluster(name), rules);
        }
        for b in bindings.iter().filter_map(parse::<rbac::RoleBinding>) {
            let ns = b.metadata.namespace.clone().unwrap_or_default();
            let role = match b.role_ref.kind.as_str() {
                "ClusterRole" => RoleRef::Cluster(b.role_ref.name.clone()),
                _ => RoleRef::Namespaced(ns.clone(), b.role_ref.name.clone()),
            };
            policy.grants.push(Grant { namespace: Some(ns), subjects: b.subjects.unwrap_or_default(), role });
        }
        for b in cluster_bindings.iter().filter_map(parse::<rbac::ClusterRoleBinding>) {
            policy.cluster_bindings.insert(b.metadata.name.clone().unwrap_or_default());
            if b.role_ref.kind == "ClusterRole" {
                policy.grants.push(Grant { namespace: None, subjects: b.subjects.unwrap_or_default(), role: RoleRef::Cluster(b.role_ref.name) });
            }
        }
        policy
    }

    pub fn has_cluster_binding(&self, name: &str) -> bool {
        self.cluster_bindings.contains(name)
    }

    /// The grants that apply to `user` for a request in `namespace` ("" = cluster scope).
    fn grants_for<'a>(&'a self, user: &'a User, namespace: &'a str) -> impl Iterator<Item = &'a [Rule]> + 'a {
        self.grants
            .iter()
            .filter(move |g| g.namespace.as_deref().is_none_or(|ns| ns == namespace && !namespace.is_empty()))
            .filter(move |g| g.subjects.iter().any(|s| names(s, user)))
            .filter_map(|g| self.roles.get(&g.role).map(Vec::as_slice))
    }

    pub fn allows(&self, user: &User, a: &Attributes) -> bool {
        let namespace = match &a.target {
            Target::Resource { namespace, .. } => namespace.as_str(),
            Target::Path(_) => "",
        };
        // Non-resource paths are granted by cluster-wide bindings only.
        let namespace = if matches!(a.target, Target::Path(_)) { "" } else { namespace };
        self.grants_for(user, namespace).any(|rules| rules.iter().any(|r| r.allows(a)))
    }

    /// Every rule `user` holds in `namespace` (cluster-wide ones included), deduplicated.
    pub fn rules_for(&self, user: &User, namespace: &str) -> Vec<Rule> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for rules in self.grants_for(user, namespace).chain(self.grants_for(user, "")) {
            for r in rules {
                let key = format!("{r:?}");
                if seen.insert(key) {
                    out.push(r.clone());
                }
            }
        }
        out
    }
}

/// Does `subject` name `user`?
fn names(s: &rbac::Subject, user: &User) -> bool {
    match s.kind.as_str() {
        "User" => s.name == user.name,
        "Group" => user.in_group(&s.name),
        "ServiceAccount" => user.name == format!("system:serviceaccount:{}:{}", s.namespace.as_deref().unwrap_or_default(), s.name),
        _ => false,
    }
}

/// Each ClusterRole's effective rules: its own, or for an aggregated one the union of those
/// of the roles its selectors match (themselves resolved first; cycles end the recursion).
fn aggregate(roles: &[rbac::ClusterRole]) -> BTreeMap<String, Vec<Rule>> {
    fn effective(i: usize, roles: &[rbac::ClusterRole], visiting: &mut Vec<usize>) -> Vec<Rule> {
        let role = &roles[i];
        let Some(agg) = &role.aggregation_rule else { return role.rules.iter().flatten().map(Rule::of).collect() };
        if visiting.contains(&i) {
            return Vec::new();
        }
        visiting.push(i);
        let mut rules: Vec<Rule> = Vec::new();
        for (j, other) in roles.iter().enumerate().filter(|(j, _)| *j != i) {
            let labels = other.metadata.labels.clone().unwrap_or_default();
            let matched = agg.cluster_role_selectors.iter().flatten().any(|sel| selects(sel, &labels));
            if matched {
                for r in effective(j, roles, visiting) {
                    if !rules.contains(&r) {
                        rules.push(r);
                    }
                }
            }
        }
        visiting.pop();
        rules
    }
    (0..roles.len()).map(|i| (roles[i].metadata.name.clone().unwrap_or_default(), effective(i, roles, &mut Vec::new()))).collect()
}

/// A LabelSelector's match (matchLabels and matchExpressions).
fn selects(sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    // An empty selector selects nothing in aggregation (Kubernetes skips it).
    let empty = sel.match_labels.as_ref().is_none_or(|m| m.is_empty()) && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty());
    !empty && labels_ok && exprs_ok
}

#[cfg(test)]
mod tests;
