//! The kinds orch stores: names, API groups, scope, storage keys, and validation by a
//! round trip through the k8s-openapi type (which rejects ill-typed fields and prunes
//! unknown ones, as the Kubernetes API server does by default) followed by Kubernetes'
//! defaults (`defaults.rs`). Pure.

use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core, policy::v1 as policy, rbac::v1 as rbac};
use serde_json::Value;

/// One storable kind.
pub struct Resource {
    pub kind: &'static str,
    pub plural: &'static str,
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    validate: fn(&Value) -> Result<Value, String>,
}

/// Read through the kind's type (from a reference: the body need not be copied) and back.
fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Result<Value, String> {
    let typed = T::deserialize(v).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

macro_rules! resources {
    ($($ty:ty => $kind:literal, $plural:literal, $group:literal, $ns:literal, [$($short:literal),*];)*) => {
        pub static RESOURCES: &[Resource] = &[$(Resource {
            kind: $kind,
            plural: $plural,
            group: $group,
            version: "v1",
            namespaced: $ns,
            short_names: &[$($short),*],
            validate: roundtrip::<$ty>,
        }),*];
    };
}

resources! {
    core::Namespace => "Namespace", "namespaces", "", false, ["ns"];
    core::Node => "Node", "nodes", "", false, ["no"];
    core::Pod => "Pod", "pods", "", true, ["po"];
    core::ConfigMap => "ConfigMap", "configmaps", "", true, ["cm"];
    core::Secret => "Secret", "secrets", "", true, [];
    core::Service => "Service", "services", "", true, ["svc"];
    core::Endpoints => "Endpoints", "endpoints", "", true, ["ep"];
    core::Event => "Event", "events", "", true, ["ev"];
    core::ServiceAccount => "ServiceAccount", "serviceaccounts", "", true, ["sa"];
    core::LimitRange => "LimitRange", "limitranges", "", true, ["limits"];
    core::ResourceQuota => "ResourceQuota", "resourcequotas", "", true, ["quota"];
    core::PersistentVolume => "PersistentVolume", "persistentvolumes", "", false, ["pv"];
    core::PersistentVolumeClaim => "PersistentVolumeClaim", "persistentvolumeclaims", "", true, ["pvc"];
    apps::Deployment => "Deployment", "deployments", "apps", true, ["deploy"];
    apps::ReplicaSet => "ReplicaSet", "replicasets", "apps", true, ["rs"];
    apps::DaemonSet => "DaemonSet", "daemonsets", "apps", true, ["ds"];
    apps::StatefulSet => "StatefulSet", "statefulsets", "apps", true, ["sts"];
    batch::Job => "Job", "jobs", "batch", true, [];
    batch::CronJob => "CronJob", "cronjobs", "batch", true, ["cj"];
    policy::PodDisruptionBudget => "PodDisruptionBudget", "poddisruptionbudgets", "policy", true, ["pdb"];
    rbac::Role => "Role", "roles", "rbac.authorization.k8s.io", true, [];
    rbac::ClusterRole => "ClusterRole", "clusterroles", "rbac.authorization.k8s.io", false, [];
    rbac::RoleBinding => "RoleBinding", "rolebindings", "rbac.authorization.k8s.io", true, [];
    rbac::ClusterRoleBinding => "ClusterRoleBinding", "clusterrolebindings", "rbac.authorization.k8s.io", false, [];
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.plural, self.group)
    }
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key prefix of every object of this kind (all namespaces).
    pub fn prefix(&self) -> String {
        let group = if self.group.is_empty() { "core" } else { self.group };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// Storage key prefix of this kind in one namespace (the whole kind if cluster-scoped).
    pub fn ns_prefix(&self, ns: Option<&str>) -> String {
        match (self.namespaced, ns) {
            (true, Some(ns)) => format!("{}{ns}/", self.prefix()),
            _ => self.prefix(),
        }
    }

    pub fn key(&self, ns: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.ns_prefix(ns))
    }

    /// The object as the kind's type reads it: ill-typed fields refused, unknown ones
    /// dropped (no defaults, no other rule).
    pub fn typed(&self, obj: &Value) -> Result<Value, String> {
        (self.validate)(obj).map_err(|e| format!("{} is invalid: {e}", self.kind))
    }

    /// Check the object's shape against the Kubernetes schema of this kind (and the few
    /// values the schema cannot check, such as a CronJob's schedule); returns the
    /// normalized object (unknown fields dropped).
    pub fn validate(&self, obj: Value) -> Result<Value, String> {
        let obj = self.typed(&obj)?;
        self.finish(obj)
    }

    /// `validate` after the type check: defaults and the rules the schema cannot state.
    pub fn finish(&self, mut obj: Value) -> Result<Value, String> {
        super::defaults::apply(self.kind, &mut obj);
        let errs = super::validation::check(self.kind, &obj);
        if !errs.is_empty() {
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            return Err(super::validation::message(self.kind, self.group, name, &errs));
        }
        if self.kind == "CronJob" {
            crate::control::cronjob::parse_schedule(&obj).map_err(|e| format!("CronJob is invalid: {e}"))?;
        }
        Ok(if self.kind == "Secret" { merge_string_data(obj) } else { obj })
    }
}

/// A Secret's `stringData` is write-only: its entries go into `data` (base64, replacing
/// keys of the same name), as the Kubernetes API server stores them.
fn merge_string_data(mut obj: Value) -> Value {
    use base64::Engine;
    let Some(Value::Object(strings)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else { return obj };
    if !obj["data"].is_object() {
        obj["data"] = serde_json::json!({});
    }
    for (k, v) in strings {
        let text = v.as_str().unwrap_or_default();
        obj["data"][k] = base64::engine::general_purpose::STANDARD.encode(text).into();
    }
    obj
}

pub fn by_plural(group: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.plural == plural)
}

/// Find a kind by `apiVersion` and `kind` as written in a manifest.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind && r.api_version() == api_version)
}

/// Resolve what a user typed (`pods`, `pod`, `po`, `Deployment`, `deployments.apps`).
pub fn lookup(name: &str) -> Option<&'static Resource> {
    let lower = name.to_ascii_lowercase();
    let base = lower.split('.').next().unwrap_or_default();
    RESOURCES.iter().find(|r| {
        r.plural == base || r.kind.to_ascii_lowercase() == base || r.short_names.contains(&base)
    })
}

/// The namespace key, which a namespaced object's namespace must exist at.
pub fn namespace_key(ns: &str) -> String {
    by_plural("", "namespaces").expect("namespaces are registered").key(None, ns)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_and_lookup() {
        let pods = lookup("po").unwrap();
        assert_eq!(pods.key(Some("default"), "web"), "/registry/core/pods/default/web");
        let deploy = lookup("deployments.apps").unwrap();
        assert_eq!(deploy.api_version(), "apps/v1");
        assert_eq!(deploy.ns_prefix(None), "/registry/apps/deployments/");
        assert_eq!(lookup("Namespace").unwrap().key(Some("ignored"), "x"), "/registry/core/namespaces/x");
        assert!(by_kind("v1", "Deployment").is_none());
        assert!(lookup("widgets").is_none());
    }

    #[test]
    fn validation_rejects_ill_typed_and_prunes_unknown() {
        let deploy = lookup("deploy").unwrap();
        let bad = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
            "spec": {"replicas": "three", "selector": {}, "template": {}}});
        assert!(deploy.validate(bad).unwrap_err().contains("Deployment is invalid"));
        let cm = lookup("cm").unwrap();
        let ok = cm.validate(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"},
            "data": {"k": "v"}, "bogus": 1})).unwrap();
        assert_eq!(ok["data"]["k"], "v");
        assert!(ok.get("bogus").is_none());
    }

    #[test]
    fn secret_string_data_is_stored_as_data() {
        let secret = lookup("secrets").unwrap();
        let stored = secret
            .validate(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                "data": {"kept": "YQ==", "replaced": "YQ=="}, "stringData": {"replaced": "hi", "new": "x:y"}}))
            .unwrap();
        assert_eq!(stored["data"], json!({"kept": "YQ==", "replaced": "aGk=", "new": "eDp5"}));
        assert!(stored.get("stringData").is_none());
        let only = secret.validate(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"a": "b"}})).unwrap();
        assert_eq!(only["data"], json!({"a": "Yg=="}));
    }
}
