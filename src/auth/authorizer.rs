//! Deciding requests, in the order of k3s's `--authorization-mode=Node,RBAC`:
//! `system:masters` may do everything, then the Node authorizer judges nodes' requests,
//! then RBAC (default deny). A head decides from its own replica: the RBAC objects
//! followed by informers and compiled into a `Policy` on every change, pods read in place
//! for the Node authorizer. A worker, for what it serves itself (a pod's logs, exec,
//! port-forward), asks a head with a SubjectAccessReview and keeps the answer briefly.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::Method;
use serde_json::{json, Value};

use super::answers::Answers;
use super::attributes::{Attributes, Target};
use super::node::{self, NodeGraph};
use super::rbac::Policy;
use super::User;
use crate::api::resources;
use crate::api::status::ApiError;
use crate::api::store::ObjectStore;
use crate::client::ApiClient;
use crate::control::informer::Informer;

pub const MASTERS: &str = "system:masters";

/// The 403 for a denied request, worded as Kubernetes words it.
pub fn forbidden(user: &User, a: &Attributes, why: Option<&str>) -> ApiError {
    let subject = match &a.target {
        Target::Resource { resource, subresource, name, .. } => {
            let full = if subresource.is_empty() { resource.clone() } else { format!("{resource}/{subresource}") };
            if name.is_empty() {
                format!("{full} is forbidden")
            } else {
                format!("{full} {name:?} is forbidden")
            }
        }
        Target::Path(_) => "forbidden".to_string(),
    };
    let reason = why.map(|w| format!(": {w}")).unwrap_or_default();
    ApiError::forbidden(format!("{subject}: User {:?} cannot {a}{reason}", user.name))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied(Option<String>),
}

/// A head's authorizer: decides from the local replica.
pub struct Local {
    store: ObjectStore,
    policy: RwLock<Option<Arc<Policy>>>,
    /// The default policy is in the store and in `policy` (see `mark_bootstrapped`).
    bootstrapped: std::sync::atomic::AtomicBool,
}

impl Local {
    /// Start following the RBAC kinds; until the first complete copy is in, only
    /// `system:masters` and the Node authorizer's own decisions pass.
    pub fn start(store: ObjectStore) -> Arc<Local> {
        let local = Arc::new(Local { store: store.clone(), policy: RwLock::new(None), bootstrapped: Default::default() });
        let weak = Arc::downgrade(&local);
        tokio::spawn(async move {
            let kind = |plural| resources::by_plural("rbac.authorization.k8s.io", plural).expect("the RBAC kinds are registered");
            let (roles, cluster_roles, bindings, cluster_bindings) = tokio::join!(
                Informer::start(store.clone(), kind("roles")),
                Informer::start(store.clone(), kind("clusterroles")),
                Informer::start(store.clone(), kind("rolebindings")),
                Informer::start(store.clone(), kind("clusterrolebindings")),
            );
            loop {
                // Subscribed before reading, so no change between the two is missed.
                let changed = futures::future::select_all([
                    Box::pin(roles.changed.notified()),
                    Box::pin(cluster_roles.changed.notified()),
                    Box::pin(bindings.changed.notified()),
                    Box::pin(cluster_bindings.changed.notified()),
                ]);
                let policy = Policy::build(&roles.objects(), &cluster_roles.objects(), &bindings.objects(), &cluster_bindings.objects());
                let Some(me) = weak.upgrade() else { return };
                *me.policy.write().expect("policy lock") = Some(Arc::new(policy));
                drop(me);
                changed.await;
            }
        });
        local
    }

    /// Once the default bindings are stored, wait until this head's policy has them all,
    /// then count it ready (`/readyz` waits for it, as Kubernetes' for its bootstrap roles).
    pub async fn mark_bootstrapped(&self, bindings: &[String]) {
        loop {
            if self.policy().is_some_and(|p| bindings.iter().all(|b| p.has_cluster_binding(b))) {
                self.bootstrapped.store(true, std::sync::atomic::Ordering::Release);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn ready(&self) -> bool {
        self.bootstrapped.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn policy(&self) -> Option<Arc<Policy>> {
        self.policy.read().expect("policy lock").clone()
    }

    pub fn decide(&self, user: &User, a: &Attributes) -> Result<(), ApiError> {
        match self.judge(user, a)? {
            Verdict::Allowed => Ok(()),
            Verdict::Denied(why) => Err(forbidden(user, a, why.as_deref())),
        }
    }

    /// Allowed, or denied with the reason when one is more than "no rule allows it".
    pub fn judge(&self, user: &User, a: &Attributes) -> Result<Verdict, ApiError> {
        if user.in_group(MASTERS) {
            return Ok(Verdict::Allowed);
        }
        match node::decide(user, a, &StoreGraph(&self.store)) {
            node::Decision::Allow => return Ok(Verdict::Allowed),
            node::Decision::Deny(why) => return Ok(Verdict::Denied(Some(why))),
            node::Decision::NoOpinion => {}
        }
        let policy = self.policy().ok_or_else(|| ApiError::unavailable("the authorization policy is still loading; try again"))?;
        Ok(if policy.allows(user, a) { Verdict::Allowed } else { Verdict::Denied(None) })
    }
}

/// Pods as the local replica has them, for the Node authorizer.
struct StoreGraph<'a>(&'a ObjectStore);

impl StoreGraph<'_> {
    fn pods() -> &'static resources::Resource {
        resources::by_plural("", "pods").expect("pods are registered")
    }
}

impl NodeGraph for StoreGraph<'_> {
    fn pod_node(&self, ns: &str, name: &str) -> Option<String> {
        let pod = self.0.local_object(Self::pods(), Some(ns), name)?;
        pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()).map(String::from)
    }

    fn pods_on(&self, node: &str, ns: &str) -> Vec<Value> {
        let Ok((kvs, _)) = self.0.node().reader().range(&Self::pods().ns_prefix(Some(ns))) else { return Vec::new() };
        kvs.iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .filter(|p| p["spec"]["nodeName"].as_str() == Some(node))
            .collect()
    }
}

/// A worker's authorizer: a head decides (SubjectAccessReview), answers kept `TTL`.
#[derive(Clone)]
pub struct Remote {
    client: ApiClient,
    api_base: String,
    answers: Answers<(User, Attributes), Result<(), ApiError>>,
}

const TTL: Duration = Duration::from_secs(10);

impl Remote {
    pub fn new(client: ApiClient, api_base: &str) -> Remote {
        Remote { client, api_base: api_base.to_string(), answers: Answers::new(TTL) }
    }

    pub async fn decide(&self, user: &User, a: &Attributes) -> Result<(), ApiError> {
        let key = (user.clone(), a.clone());
        if let Some(answer) = self.answers.get(&key) {
            return answer;
        }
        let url = format!("{}/apis/authorization.k8s.io/v1/subjectaccessreviews", self.api_base);
        let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": with_attributes(json!({"user": user.name, "groups": user.groups}), a)});
        let status = self.client.json(Method::POST, &url, Some(&review)).await.map_err(|e| ApiError::unavailable(format!("asking a head to authorize: {e}")))?;
        let answer = if status["status"]["allowed"] == true {
            Ok(())
        } else {
            Err(forbidden(user, a, status["status"]["reason"].as_str().filter(|r| !r.is_empty())))
        };
        self.answers.keep(key, answer.clone());
        answer
    }
}

/// `spec` with the attributes of a review (`resourceAttributes` or `nonResourceAttributes`).
pub fn with_attributes(mut spec: Value, a: &Attributes) -> Value {
    match &a.target {
        Target::Resource { group, resource, subresource, namespace, name } => {
            spec["resourceAttributes"] = json!({"verb": a.verb, "group": group, "resource": resource,
                "subresource": subresource, "namespace": namespace, "name": name});
        }
        Target::Path(path) => spec["nonResourceAttributes"] = json!({"verb": a.verb, "path": path}),
    }
    spec
}

/// The attributes a review's spec asks about.
pub fn attributes_of(spec: &Value) -> Result<Attributes, ApiError> {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        let verb = s(&r["verb"]);
        if verb.is_empty() {
            return Err(ApiError::invalid("spec.resourceAttributes.verb: Required value"));
        }
        return Ok(Attributes::resource(&verb, &s(&r["group"]), &s(&r["resource"]), &s(&r["subresource"]), &s(&r["namespace"]), &s(&r["name"])));
    }
    if let Some(n) = spec.get("nonResourceAttributes").filter(|n| n.is_object()) {
        return Ok(Attributes::path(&s(&n["verb"]), &s(&n["path"])));
    }
    Err(ApiError::invalid("spec: exactly one of resourceAttributes and nonResourceAttributes must be set"))
}

/// The authorizer of what a node serves itself: a head's own, or a worker's questions to
/// a head.
#[derive(Clone)]
pub enum Authorize {
    Local(Arc<Local>),
    Remote(Remote),
}

impl Authorize {
    pub async fn decide(&self, user: &User, a: &Attributes) -> Result<(), ApiError> {
        match self {
            Authorize::Local(l) => l.decide(user, a),
            Authorize::Remote(r) => {
                if user.in_group(MASTERS) {
                    return Ok(());
                }
                r.decide(user, a).await
            }
        }
    }
}
