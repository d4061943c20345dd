//! What a request asks to do, in the terms authorization decides on (Kubernetes'
//! `authorizer.Attributes`): a verb on a resource (API group, resource, subresource,
//! namespace, name) or on a non-resource path. Derived from the method, path and query
//! alone. Pure.

use std::fmt;

/// A request for a resource, or for a path that is not one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Resource { group: String, resource: String, subresource: String, namespace: String, name: String },
    Path(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub verb: String,
    pub target: Target,
}

impl Attributes {
    pub fn resource(verb: &str, group: &str, resource: &str, subresource: &str, namespace: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            target: Target::Resource {
                group: group.into(),
                resource: resource.into(),
                subresource: subresource.into(),
                namespace: namespace.into(),
                name: name.into(),
            },
        }
    }

    pub fn path(verb: &str, path: &str) -> Attributes {
        Attributes { verb: verb.into(), target: Target::Path(path.into()) }
    }

    /// The attributes of an HTTP request.
    pub fn of_request(method: &str, path: &str, query: Option<&str>) -> Attributes {
        let watch = query.is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "watch" && (v == "true" || v == "1")));
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, rest) = match segs.as_slice() {
            ["api", "v1", rest @ ..] if !rest.is_empty() => ("", rest),
            ["apis", group, _version, rest @ ..] if !rest.is_empty() => (*group, rest),
            _ => return Attributes::path(&path_verb(method), path),
        };
        // namespaces/NS/RESOURCE/..., except the namespace object itself (namespaces/NS[/status]).
        let (namespace, rest) = match rest {
            ["namespaces", ns, resource, more @ ..] if !(*resource == "status" && more.is_empty()) && *resource != "finalize" => {
                (*ns, &rest[2..])
            }
            ["namespaces", ns, ..] => (*ns, rest),
            _ => ("", rest),
        };
        let resource = rest[0];
        let name = rest.get(1).copied().unwrap_or_default();
        let subresource = rest.get(2).copied().unwrap_or_default();
        let verb = match (method, name.is_empty()) {
            ("GET" | "HEAD", true) if watch => "watch",
            ("GET" | "HEAD", true) => "list",
            ("GET" | "HEAD", false) if watch => "watch",
            // Exec, attach and port-forward open a stream to a pod: a create, whatever the
            // method of the upgrade (Kubernetes checks `create` for the WebSocket GET too).
            ("GET" | "HEAD", false) if matches!(subresource, "exec" | "attach" | "portforward") => "create",
            ("GET" | "HEAD", false) => "get",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "deletecollection",
            ("DELETE", false) => "delete",
            _ => "unknown",
        };
        Attributes::resource(verb, group, resource, subresource, namespace, name)
    }
}

fn path_verb(method: &str) -> String {
    match method {
        "GET" | "HEAD" => "get",
        "POST" => "post",
        "PUT" => "put",
        "PATCH" => "patch",
        "DELETE" => "delete",
        other => return other.to_ascii_lowercase(),
    }
    .to_string()
}

/// Kubernetes' wording of a denial: `User "x" cannot list resource "pods" in API group ""
/// in the namespace "y"`.
impl fmt::Display for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Path(p) => write!(f, "{} path {p:?}", self.verb),
            Target::Resource { group, resource, subresource, namespace, .. } => {
                let full = if subresource.is_empty() { resource.clone() } else { format!("{resource}/{subresource}") };
                write!(f, "{} resource {full:?} in API group {group:?}", self.verb)?;
                if namespace.is_empty() {
                    write!(f, " at the cluster scope")
                } else {
                    write!(f, " in the namespace {namespace:?}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(a: &Attributes) -> (&str, &str, &str, &str, &str, &str) {
        match &a.target {
            Target::Resource { group, resource, subresource, namespace, name } => {
                (a.verb.as_str(), group.as_str(), resource.as_str(), subresource.as_str(), namespace.as_str(), name.as_str())
            }
            Target::Path(p) => panic!("not a resource: {p}"),
        }
    }

    #[test]
    fn requests_map_to_kubernetes_attributes() {
        let a = |m, p, q| Attributes::of_request(m, p, q);
        assert_eq!(res(&a("GET", "/api/v1/namespaces/dev/pods", None)), ("list", "", "pods", "", "dev", ""));
        assert_eq!(res(&a("GET", "/api/v1/pods", Some("watch=true&fieldSelector=x"))), ("watch", "", "pods", "", "", ""));
        assert_eq!(res(&a("GET", "/api/v1/namespaces/dev/pods/web", None)), ("get", "", "pods", "", "dev", "web"));
        assert_eq!(res(&a("GET", "/api/v1/namespaces/dev/pods/web/exec", Some("command=sh"))), ("create", "", "pods", "exec", "dev", "web"));
        assert_eq!(res(&a("GET", "/api/v1/namespaces/dev/pods/web/log", None)), ("get", "", "pods", "log", "dev", "web"));
        assert_eq!(res(&a("PUT", "/api/v1/namespaces/dev/pods/web/status", None)), ("update", "", "pods", "status", "dev", "web"));
        assert_eq!(res(&a("POST", "/apis/apps/v1/namespaces/dev/deployments", None)), ("create", "apps", "deployments", "", "dev", ""));
        assert_eq!(res(&a("DELETE", "/api/v1/namespaces/dev/configmaps", None)), ("deletecollection", "", "configmaps", "", "dev", ""));
        assert_eq!(res(&a("PATCH", "/api/v1/nodes/n1/status", None)), ("patch", "", "nodes", "status", "", "n1"));
        // The namespace object is in its own namespace, as Kubernetes has it.
        assert_eq!(res(&a("GET", "/api/v1/namespaces/dev", None)), ("get", "", "namespaces", "", "dev", "dev"));
        assert_eq!(res(&a("PUT", "/api/v1/namespaces/dev/status", None)), ("update", "", "namespaces", "status", "dev", "dev"));
        assert_eq!(res(&a("GET", "/api/v1/namespaces", None)), ("list", "", "namespaces", "", "", ""));
        assert_eq!(a("GET", "/apis/apps/v1", None), Attributes::path("get", "/apis/apps/v1"));
        assert_eq!(a("GET", "/metrics", None), Attributes::path("get", "/metrics"));
        assert_eq!(a("POST", "/orch/v1/nodes/n1/images", None), Attributes::path("post", "/orch/v1/nodes/n1/images"));
    }

    #[test]
    fn denials_read_as_kubernetes_words_them() {
        let a = Attributes::of_request("GET", "/api/v1/namespaces/dev/pods", None);
        assert_eq!(a.to_string(), r#"list resource "pods" in API group "" in the namespace "dev""#);
        let a = Attributes::of_request("GET", "/api/v1/nodes", None);
        assert_eq!(a.to_string(), r#"list resource "nodes" in API group "" at the cluster scope"#);
        let a = Attributes::of_request("GET", "/api/v1/namespaces/dev/pods/x/exec", None);
        assert_eq!(a.to_string(), r#"create resource "pods/exec" in API group "" in the namespace "dev""#);
        assert_eq!(Attributes::path("get", "/metrics").to_string(), r#"get path "/metrics""#);
    }
}
