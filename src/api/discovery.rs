//! Kubernetes discovery documents (`/version`, `/api`, `/apis`, resource lists), built
//! from the resource registry so `kubectl` can find every stored kind. Pure.

use serde_json::{json, Value};

use super::resources::RESOURCES;

pub fn version() -> Value {
    // Every field of Kubernetes' version.Info (clients such as the Python one require them
    // all); the build's commit and date when the build sets them, Kubernetes' defaults else.
    json!({
        "major": "1", "minor": "33",
        "gitVersion": concat!("v1.33.0-orch.", env!("CARGO_PKG_VERSION")),
        "gitCommit": option_env!("ORCH_GIT_COMMIT").unwrap_or(""),
        "gitTreeState": if option_env!("ORCH_GIT_COMMIT").is_some() { "clean" } else { "" },
        "buildDate": option_env!("ORCH_BUILD_DATE").unwrap_or("1970-01-01T00:00:00Z"),
        "goVersion": "none (orch is written in Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

pub fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
}

fn groups() -> Vec<&'static str> {
    let mut g: Vec<_> = RESOURCES.iter().map(|r| r.group).filter(|g| !g.is_empty()).collect();
    g.dedup();
    g
}

pub fn api_groups() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .map(|g| {
            let gv = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `None` if the group/version is not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if version != "v1" || !(group.is_empty() || groups().contains(&group)) {
        return None;
    }
    let verbs = ["create", "delete", "get", "list", "patch", "update", "watch"];
    let mut resources = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        let mut entry = json!({"name": r.plural, "singularName": r.kind.to_ascii_lowercase(), "namespaced": r.namespaced,
            "kind": r.kind, "verbs": verbs, "shortNames": r.short_names});
        if let Some(c) = categories(r.kind) {
            entry["categories"] = json!(c);
        }
        resources.push(entry);
        resources.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
            "kind": r.kind, "verbs": ["get", "patch", "update"]}));
        if r.kind == "Pod" {
            resources.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true,
                "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
        }
        if super::scale::scalable(r) {
            resources.push(json!({"name": format!("{}/scale", r.plural), "singularName": "", "namespaced": r.namespaced,
                "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
    }
    let gv = if group.is_empty() { "v1".to_string() } else { format!("{group}/v1") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// The categories a kind is in, as Kubernetes puts them (`kubectl get all` lists `all`).
fn categories(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" | "Service" | "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" | "CronJob" => Some(&["all"]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_lists_every_kind_once() {
        let core = resource_list("", "v1").unwrap();
        let names: Vec<&str> = core["resources"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
        assert!(names.contains(&"pods") && names.contains(&"pods/status") && !names.contains(&"deployments"));
        assert!(resource_list("apps", "v1").unwrap()["resources"].as_array().unwrap().len() == 11, "with three /scale");
        assert!(resource_list("apps", "v2").is_none() && resource_list("nope", "v1").is_none());
        assert_eq!(api_groups()["groups"].as_array().unwrap().len(), 4);
        let in_all: Vec<String> = ["", "apps", "batch", "policy"]
            .iter()
            .flat_map(|g| resource_list(g, "v1").unwrap()["resources"].as_array().unwrap().clone())
            .filter(|r| r["categories"] == json!(["all"]))
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(in_all, ["pods", "services", "deployments", "replicasets", "daemonsets", "statefulsets", "jobs", "cronjobs"]);
    }
}
