//! Who a request is: authentication of the API (client certificates from the cluster CA,
//! bearer tokens, and the credentials of callers that nodes relay) and the rule that
//! anonymous requests reach only the public endpoints. `identify` and `anonymous_may` are
//! pure; `middleware` applies them to every request of a node's API, and `Relay` is how a
//! node passes its caller's credential on when it relays a request.

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
pub use listener::{CertVerifier, ClientCert, Peer};

pub const ANONYMOUS: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const AUTHENTICATED: &str = "system:authenticated";
pub const NODES: &str = orch_raft::tls::NODES_GROUP;

/// The header in which a node relays its caller's client certificate (base64 DER); the
/// next node verifies it against the cluster CA. A token-bearing caller's token is relayed
/// in `Authorization`. Only node certificates may relay.
pub const FORWARDED_CERT: &str = "x-orch-client-certificate";
/// Relays an anonymous caller (the only value it may carry is `system:anonymous`).
pub const REMOTE_USER: &str = "x-remote-user";

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

    fn of(s: &Subject) -> User {
        User::authenticated(s.common_name.clone(), s.organizations.clone())
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

/// The credential that proved who a request is. A node that relays the request passes it
/// on (`Relay`), so that the next node proves the caller for itself: a node can relay a
/// caller, never make one up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Anonymous,
    /// A client certificate's DER.
    Certificate(Arc<[u8]>),
    Bearer(String),
}

/// Who a request is, from what its connection proved and its headers (a bearer token is
/// handed on to be checked). `verify` checks a client certificate a node relays (in
/// `FORWARDED_CERT`) as the handshake checks the connection's own.
pub fn identify(
    peer: Option<&ClientCert>,
    headers: &HeaderMap,
    verify: &dyn Fn(&[u8]) -> Result<Subject, String>,
) -> Result<(Caller, Credential), ApiError> {
    let relayed_cert = headers.get(FORWARDED_CERT);
    let relayed_anonymous = headers.get(REMOTE_USER);
    let by_node = peer.is_some_and(|c| c.subject.organizations.iter().any(|o| o == NODES));
    if (relayed_cert.is_some() || relayed_anonymous.is_some()) && !by_node {
        return Err(ApiError::forbidden(format!(
            "only nodes may relay a caller ({FORWARDED_CERT}, {REMOTE_USER}); send your own credentials"
        )));
    }
    if let Some(v) = relayed_cert {
        use base64::Engine;
        let der = v.to_str().ok().and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok()).ok_or_else(|| {
            ApiError::bad_request(format!("{FORWARDED_CERT} is not a base64 certificate"))
        })?;
        let subject = verify(&der).map_err(|e| {
            tracing::warn!(error = %e, "a node relayed a client certificate that does not verify");
            unauthorized()
        })?;
        return Ok((Caller::User(User::of(&subject)), Credential::Certificate(Arc::from(der))));
    }
    if let Some(v) = relayed_anonymous {
        // Kubernetes' request-header names, for the one identity that needs no proof.
        if v.as_bytes() != ANONYMOUS.as_bytes() {
            return Err(ApiError::forbidden(format!(
                "a node relays a caller by its credential, not by name: {REMOTE_USER} may only be {ANONYMOUS}"
            )));
        }
        return Ok((Caller::User(User::anonymous()), Credential::Anonymous));
    }
    let bearer = match headers.get(axum::http::header::AUTHORIZATION).map(|v| v.to_str()) {
        Some(Ok(v)) if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") => Some(v[7..].trim().to_string()),
        Some(_) => return Err(unauthorized()),
        None => None,
    };
    Ok(match (peer, bearer) {
        // A node relaying a token-bearing caller sends the token on.
        (Some(_), Some(token)) if by_node => (Caller::Bearer(token.clone()), Credential::Bearer(token)),
        (Some(c), _) => (Caller::User(User::of(&c.subject)), Credential::Certificate(c.der.clone())),
        (None, Some(token)) => (Caller::Bearer(token.clone()), Credential::Bearer(token)),
        (None, None) => (Caller::User(User::anonymous()), Credential::Anonymous),
    })
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
    /// Checks the client certificates nodes relay.
    pub verifier: CertVerifier,
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
    let verify = |der: &[u8]| listener::verify_relayed(&gate.verifier, der);
    let user = match identify(peer.cert.as_ref(), req.headers(), &verify) {
        Ok((Caller::User(u), cred)) => Ok((u, cred)),
        Ok((Caller::Bearer(token), cred)) => gate.tokens.authenticate(&token).await.map(|u| (u, cred)),
        Err(e) => Err(e),
    };
    let (user, resp) = match user {
        Ok((user, cred)) => {
            let resp = admit(&gate, &user, cred, &attrs, req, next).await;
            (user, resp)
        }
        Err(e) => {
            let who = peer.cert.as_ref().map_or_else(User::anonymous, |c| User::of(&c.subject));
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

async fn admit(gate: &Gate, user: &User, cred: Credential, attrs: &attributes::Attributes, mut req: Request, next: Next) -> Response {
    let public = anonymous_may(req.uri().path());
    if user.is_anonymous() && !public {
        return unauthorized().into_response();
    }
    if let (Some(authz), false) = (&gate.authz, public) {
        if let Err(e) = authz.decide(user, attrs) {
            return e.into_response();
        }
    }
    // What proved the caller goes on only through `Relay`, whatever the request carried.
    req.headers_mut().remove(REMOTE_USER);
    req.headers_mut().remove(FORWARDED_CERT);
    req.headers_mut().remove(axum::http::header::AUTHORIZATION);
    req.extensions_mut().insert(user.clone());
    // The relay headers are made only if the request is relayed (most are not).
    req.extensions_mut().insert(cred);
    next.run(req).await
}

/// The headers that pass a request's caller on to the node it is relayed to: the caller's
/// own credential, which that node verifies again.
#[derive(Clone, Debug, Default)]
pub struct Relay(pub Vec<(HeaderName, HeaderValue)>);

impl Relay {
    /// The relay of the caller whose credential the authentication layer put in `ext`
    /// (anonymous when none is there).
    pub fn from_extensions(ext: &axum::http::Extensions) -> Relay {
        Relay::of(ext.get::<Credential>().unwrap_or(&Credential::Anonymous))
    }

    pub fn of(cred: &Credential) -> Relay {
        use base64::Engine;
        let header = match cred {
            Credential::Anonymous => (HeaderName::from_static(REMOTE_USER), HeaderValue::from_static(ANONYMOUS)),
            Credential::Certificate(der) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(der);
                (HeaderName::from_static(FORWARDED_CERT), HeaderValue::from_str(&b64).expect("base64 is a header value"))
            }
            Credential::Bearer(token) => match HeaderValue::from_str(&format!("Bearer {token}")) {
                Ok(v) => (axum::http::header::AUTHORIZATION, v),
                // It came in as a header value: it is one.
                Err(_) => return Relay::default(),
            },
        };
        Relay(vec![header])
    }
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

    fn cert(cn: &str, orgs: &[&str]) -> ClientCert {
        ClientCert { subject: subject(cn, orgs), der: Arc::from(cn.as_bytes()) }
    }

    /// Accepts the "certificates" `cert` makes (their DER is their CN) unless they name mallory.
    fn verify(der: &[u8]) -> Result<Subject, String> {
        match std::str::from_utf8(der).unwrap() {
            "mallory" => Err("unknown issuer".into()),
            cn => Ok(subject(cn, &["dev"])),
        }
    }

    fn who(peer: Option<&ClientCert>, h: &HeaderMap) -> Result<(Caller, Credential), ApiError> {
        identify(peer, h, &verify)
    }

    fn relayed(cred: &Credential) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in Relay::of(cred).0 {
            h.append(k, v);
        }
        h
    }

    #[test]
    fn certificates_name_users_and_groups() {
        let (u, cred) = who(Some(&cert("alice", &["dev", "ops"])), &HeaderMap::new()).unwrap();
        assert_eq!(u, Caller::User(User { name: "alice".into(), groups: vec!["dev".into(), "ops".into(), AUTHENTICATED.into()] }));
        assert_eq!(cred, Credential::Certificate(Arc::from(&b"alice"[..])));
        assert_eq!(who(None, &HeaderMap::new()).unwrap(), (Caller::User(User::anonymous()), Credential::Anonymous));
    }

    #[test]
    fn a_node_relays_the_callers_credential_which_is_verified_again() {
        let node = cert("system:node:w1", &[NODES]);
        let alice = Credential::Certificate(Arc::from(&b"alice"[..]));
        let (u, cred) = who(Some(&node), &relayed(&alice)).unwrap();
        assert_eq!(u, Caller::User(User::authenticated("alice".into(), vec!["dev".into()])));
        assert_eq!(cred, alice, "relayed on as it came");
        let forged = relayed(&Credential::Certificate(Arc::from(&b"mallory"[..])));
        assert_eq!(who(Some(&node), &forged).unwrap_err().code, 401, "a certificate that does not verify");
        let token = Credential::Bearer("abc".into());
        assert_eq!(who(Some(&node), &relayed(&token)).unwrap(), (Caller::Bearer("abc".into()), token));
        let (u, _) = who(Some(&node), &relayed(&Credential::Anonymous)).unwrap();
        assert_eq!(u, Caller::User(User::anonymous()));
    }

    #[test]
    fn nothing_but_a_credential_names_a_caller() {
        let node = cert("system:node:w1", &[NODES]);
        let by_name = headers(&[(REMOTE_USER, "orch-admin"), ("x-remote-group", "system:masters")]);
        assert_eq!(who(Some(&node), &by_name).unwrap_err().code, 403, "a node cannot name a caller");
        let alice = relayed(&Credential::Certificate(Arc::from(&b"alice"[..])));
        assert_eq!(who(Some(&cert("mallory", &["system:masters"])), &alice).unwrap_err().code, 403, "only nodes relay");
        assert_eq!(who(None, &alice).unwrap_err().code, 403);
        assert_eq!(who(None, &relayed(&Credential::Anonymous)).unwrap_err().code, 403);
    }

    #[test]
    fn bearer_tokens_go_to_the_token_authenticator_never_to_anonymous() {
        let h = headers(&[("authorization", "Bearer abc")]);
        assert_eq!(who(None, &h).unwrap().0, Caller::Bearer("abc".into()));
        let basic = headers(&[("authorization", "Basic YTpi")]);
        assert_eq!(who(None, &basic).unwrap_err().code, 401, "basic auth is refused");
        let (u, _) = who(Some(&cert("alice", &[])), &h).unwrap();
        assert!(matches!(u, Caller::User(u) if u.name == "alice"), "a person's certificate wins over a token, as in Kubernetes");
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
