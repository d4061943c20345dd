//! Who a request is: authentication of the API (client certificates from the cluster CA,
//! identities forwarded by nodes) and the rule that anonymous requests reach only the
//! public endpoints. `identify` and `anonymous_may` are pure; `middleware` applies them to
//! every request of a node's API, and `forwarded_headers` is how a node passes the
//! caller's identity on when it relays a request.

pub mod answers;
pub mod attributes;
pub mod audit;
pub mod authorizer;
pub mod bearer;
pub mod bootstrap;
pub mod encryption;
pub mod listener;
pub mod node;
pub mod rbac;
pub mod tokens;

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::api::status::ApiError;
pub use listener::Peer;

pub const ANONYMOUS: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const AUTHENTICATED: &str = "system:authenticated";
pub const NODES: &str = orch_raft::tls::NODES_GROUP;

/// The headers in which a node passes on the identity of the caller it relays for (the
/// names of Kubernetes' request-header authentication). Only node certificates may send them.
pub const REMOTE_USER: &str = "x-remote-user";
pub const REMOTE_GROUP: &str = "x-remote-group";

/// A client certificate's subject: CN is the user, each O a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub common_name: String,
    pub organizations: Vec<String>,
}

impl Subject {
    pub fn from_der(der: &[u8]) -> Result<Subject, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let subject = cert.subject();
        let text = |attr: &x509_parser::x509::AttributeTypeAndValue| attr.as_str().map(str::to_string).map_err(|e| e.to_string());
        let common_name = subject.iter_common_name().next().map(text).transpose()?.ok_or("the certificate names no CN")?;
        let organizations = subject.iter_organization().map(text).collect::<Result<_, _>>()?;
        Ok(Subject { common_name, organizations })
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn anonymous() -> User {
        User { name: ANONYMOUS.into(), groups: vec![UNAUTHENTICATED.into()] }
    }

    pub fn is_anonymous(&self) -> bool {
        self.name == ANONYMOUS
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    fn authenticated(name: String, mut groups: Vec<String>) -> User {
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.into());
        }
        User { name, groups }
    }
}

/// What a request's credentials are, before any token is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    User(User),
    /// A bearer token, for the node's token authenticator.
    Bearer(String),
}

/// Who a request is, from what its connection proved and its headers (a bearer token is
/// handed on to be checked).
pub fn identify(peer: Option<&Subject>, headers: &HeaderMap) -> Result<Caller, ApiError> {
    Ok(match identify_user(peer, headers)? {
        Some(user) => Caller::User(user),
        None => match headers.get(axum::http::header::AUTHORIZATION).map(|v| v.to_str()) {
            Some(Ok(v)) if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") => Caller::Bearer(v[7..].trim().to_string()),
            Some(_) => return Err(unauthorized()),
            None => Caller::User(User::anonymous()),
        },
    })
}

/// The user a certificate or a node's forwarded identity names (`None`: neither).
fn identify_user(peer: Option<&Subject>, headers: &HeaderMap) -> Result<Option<User>, ApiError> {
    let forwarded = headers.get(REMOTE_USER);
    if let Some(user) = forwarded {
        let node = peer.is_some_and(|s| s.organizations.iter().any(|o| o == NODES));
        if !node {
            return Err(ApiError::forbidden(format!("only nodes may assert an identity ({REMOTE_USER}); send your own credentials")));
        }
        let name = user.to_str().map_err(|_| ApiError::bad_request(format!("{REMOTE_USER} is not text")))?.to_string();
        let groups = headers
            .get_all(REMOTE_GROUP)
            .iter()
            .map(|g| g.to_str().map(str::to_string))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ApiError::bad_request(format!("{REMOTE_GROUP} is not text")))?;
        return Ok(Some(if name == ANONYMOUS { User::anonymous() } else { User::authenticated(name, groups) }));
    }
    Ok(peer.map(|s| User::authenticated(s.common_name.clone(), s.organizations.clone())))
}

/// Kubernetes' answer to a request it cannot authenticate.
pub fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

/// What anonymous requests may reach: Kubernetes' `system:public-info-viewer` paths and
/// what a joining node needs before it has a certificate.
pub fn anonymous_may(path: &str) -> bool {
    matches!(
        path.trim_end_matches('/'),
        "/healthz" | "/livez" | "/readyz" | "/version" | "/orch/v1/ca.crt" | "/orch/v1/cluster/status"
    )
}

/// What every request of a node's API passes through.
#[derive(Clone)]
pub struct Gate {
    /// A head's authorizer; a worker has none (it forwards to a head, which decides).
    pub authz: Option<Arc<authorizer::Local>>,
    pub tokens: bearer::Tokens,
    pub audit: Arc<audit::AuditLog>,
}

/// Authenticate every request and pass its `User` on in the request's extensions. With an
/// authorizer (a head's), every request that is not public is also authorized here; a
/// worker forwards what it does not serve itself to a head, which decides. What the audit
/// log keeps is written once the answer is known.
pub async fn middleware(State(gate): State<Gate>, ConnectInfo(peer): ConnectInfo<Peer>, req: Request, next: Next) -> Response {
    let received = chrono::Utc::now();
    let attrs = attributes::Attributes::of_request(req.method().as_str(), req.uri().path(), req.uri().query());
    let uri = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let agent = req.headers().get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let user = match identify(peer.subject.as_ref(), req.headers()) {
        Ok(Caller::User(u)) => Ok(u),
        Ok(Caller::Bearer(token)) => gate.tokens.authenticate(&token).await,
        Err(e) => Err(e),
    };
    let (user, resp) = match user {
        Ok(user) => {
            let resp = admit(&gate, &user, &attrs, req, next).await;
            (user, resp)
        }
        Err(e) => {
            let who = peer.subject.as_ref().map_or_else(User::anonymous, |s| User::authenticated(s.common_name.clone(), s.organizations.clone()));
            (who, e.into_response())
        }
    };
    gate.audit.record(&audit::Entry {
        user: &user,
        attrs: &attrs,
        uri: &uri,
        source: peer.addr.ip(),
        user_agent: &agent,
        code: resp.status().as_u16(),
        received,
    });
    resp
}

async fn admit(gate: &Gate, user: &User, attrs: &attributes::Attributes, mut req: Request, next: Next) -> Response {
    let public = anonymous_may(req.uri().path());
    if user.is_anonymous() && !public {
        return unauthorized().into_response();
    }
    if let (Some(authz), false) = (&gate.authz, public) {
        if let Err(e) = authz.decide(user, attrs) {
            return e.into_response();
        }
    }
    // A relayed request carries the caller's identity in these headers; they are only
    // ever set by `forwarded_headers` below.
    req.headers_mut().remove(REMOTE_USER);
    req.headers_mut().remove(REMOTE_GROUP);
    req.extensions_mut().insert(user.clone());
    next.run(req).await
}

/// The headers that pass `user` on to the node a request is relayed to.
pub fn forwarded_headers(user: &User) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Ok(v) = HeaderValue::from_str(&user.name) {
        out.push((HeaderName::from_static(REMOTE_USER), v));
    }
    for g in &user.groups {
        if let Ok(v) = HeaderValue::from_str(g) {
            out.push((HeaderName::from_static(REMOTE_GROUP), v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(cn: &str, orgs: &[&str]) -> Subject {
        Subject { common_name: cn.into(), organizations: orgs.iter().map(|s| s.to_string()).collect() }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn certificates_name_users_and_groups() {
        let u = identify(Some(&subject("alice", &["dev", "ops"])), &HeaderMap::new()).unwrap();
        assert_eq!(u, Caller::User(User { name: "alice".into(), groups: vec!["dev".into(), "ops".into(), AUTHENTICATED.into()] }));
        assert_eq!(identify(None, &HeaderMap::new()).unwrap(), Caller::User(User::anonymous()));
    }

    #[test]
    fn only_nodes_may_forward_an_identity() {
        let fwd = headers(&[(REMOTE_USER, "alice"), (REMOTE_GROUP, "dev")]);
        let node = subject("system:node:w1", &[NODES]);
        let user = |c: Caller| match c {
            Caller::User(u) => u,
            other => panic!("{other:?}"),
        };
        assert_eq!(user(identify(Some(&node), &fwd).unwrap()).name, "alice");
        let anon = headers(&[(REMOTE_USER, ANONYMOUS)]);
        assert!(user(identify(Some(&node), &anon).unwrap()).is_anonymous());
        assert_eq!(identify(Some(&subject("mallory", &["system:masters"])), &fwd).unwrap_err().code, 403);
        assert_eq!(identify(None, &fwd).unwrap_err().code, 403);
    }

    #[test]
    fn bearer_tokens_go_to_the_token_authenticator_never_to_anonymous() {
        let h = headers(&[("authorization", "Bearer abc")]);
        assert_eq!(identify(None, &h).unwrap(), Caller::Bearer("abc".into()));
        let basic = headers(&[("authorization", "Basic YTpi")]);
        assert_eq!(identify(None, &basic).unwrap_err().code, 401, "basic auth is refused");
    }

    #[test]
    fn anonymous_reaches_only_public_paths() {
        for p in ["/healthz", "/readyz", "/livez", "/version", "/version/", "/orch/v1/ca.crt"] {
            assert!(anonymous_may(p), "{p}");
        }
        for p in ["/api/v1/secrets", "/api", "/metrics", "/apis", "/api/v1/namespaces/default/pods/x/exec"] {
            assert!(!anonymous_may(p), "{p}");
        }
    }

    #[test]
    fn a_certificate_from_the_cluster_ca_names_its_subject() {
        let ca = orch_raft::tls::ClusterCa::generate("t").unwrap();
        let (cert, _key) = orch_raft::tls::issue_client(&ca, "bob", &["team-a"], 1).unwrap();
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        assert_eq!(Subject::from_der(&der).unwrap(), subject("bob", &["team-a"]));
        assert!(orch_raft::tls::issue_client(&ca, "bob", &["a", "b"], 1).is_err(), "two groups cannot be written: refused");
    }
}
