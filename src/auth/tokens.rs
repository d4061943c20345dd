//! ServiceAccount tokens: JWTs (ES256) signed with the cluster's service-account key, with
//! Kubernetes' claims (`sub` = `system:serviceaccount:<ns>:<name>`, audience, expiry, and the
//! ServiceAccount and pod they are bound to). Issuing and checking the signature and times
//! are pure; whether the ServiceAccount and pod still exist is asked of a `Bindings`
//! (a head's local replica: no Raft round trip), so a token of a deleted pod or
//! ServiceAccount stops working at once.
//!
//! jsonwebtoken 9 is used because it signs with ring, which orch already builds; its later
//! majors need aws-lc or the RustCrypto RSA stack as a backend.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::User;

/// Kubernetes' default issuer and audience of ServiceAccount tokens.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
pub const AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";
pub const SA_GROUP: &str = "system:serviceaccounts";
/// Where the signing key lives in the replicated store (beside the CA; never served).
pub const KEY_SIGNING: &str = "/orch/cluster/service-account-key";
/// Tokens last an hour unless asked otherwise, at least 10 minutes, at most a day.
pub const DEFAULT_TTL_S: i64 = 3600;
pub const MIN_TTL_S: i64 = 600;
pub const MAX_TTL_S: i64 = 86_400;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

impl Claims {
    /// The user a token authenticates as, with Kubernetes' groups.
    pub fn user(&self) -> User {
        let ns = &self.kubernetes.namespace;
        User {
            name: self.sub.clone(),
            groups: vec![SA_GROUP.into(), format!("{SA_GROUP}:{ns}"), super::AUTHENTICATED.into()],
        }
    }
}

/// The cluster's service-account key pair (PEM), kept in the replicated store like the CA.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SigningKey {
    pub private_pem: String,
    pub public_pem: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    pub fn generate() -> anyhow::Result<SigningKey> {
        // rcgen's default key is ECDSA P-256, which ES256 signs with.
        let key = rcgen::KeyPair::generate()?;
        Ok(SigningKey { private_pem: key.serialize_pem(), public_pem: key.public_key_pem() })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token's {0} no longer exists")]
    Revoked(String),
}

/// Issue a token for ServiceAccount `sa` (bound to `pod` if given), valid `ttl_s` from `now`.
pub fn issue(key: &SigningKey, k: KubernetesClaims, audiences: Vec<String>, now: i64, ttl_s: i64) -> Result<String, TokenError> {
    let claims = Claims {
        iss: ISSUER.into(),
        sub: format!("system:serviceaccount:{}:{}", k.namespace, k.serviceaccount.name),
        aud: audiences,
        exp: now + ttl_s,
        iat: now,
        nbf: now,
        kubernetes: k,
    };
    let enc = EncodingKey::from_ec_pem(key.private_pem.as_bytes()).map_err(|e| TokenError::Invalid(e.to_string()))?;
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &enc).map_err(|e| TokenError::Invalid(e.to_string()))
}

/// What a token is checked against besides its signature: do its subjects still exist?
pub trait Bindings {
    /// The uid of ServiceAccount `ns/name`, if it exists.
    fn service_account_uid(&self, ns: &str, name: &str) -> Option<String>;
    /// The uid of pod `ns/name`, if it exists.
    fn pod_uid(&self, ns: &str, name: &str) -> Option<String>;
}

/// Check a token: signature (ES256 with the cluster key only: `alg: none` and other keys
/// fail), issuer, audience, expiry, and that what it is bound to still exists.
pub fn verify(key: &SigningKey, token: &str, now: i64, audience: &str, bindings: &dyn Bindings) -> Result<Claims, TokenError> {
    let dec = DecodingKey::from_ec_pem(key.public_pem.as_bytes()).map_err(|e| TokenError::Invalid(e.to_string()))?;
    let mut v = Validation::new(Algorithm::ES256);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
    v.validate_nbf = true;
    v.leeway = 0;
    // Expiry against the given clock, not jsonwebtoken's: checked below.
    v.validate_exp = false;
    let claims = jsonwebtoken::decode::<Claims>(token, &dec, &v).map_err(|e| TokenError::Invalid(e.to_string()))?.claims;
    if claims.exp <= now {
        return Err(TokenError::Invalid("it has expired".into()));
    }
    if claims.nbf > now {
        return Err(TokenError::Invalid("it is not valid yet".into()));
    }
    let k = &claims.kubernetes;
    if claims.sub != format!("system:serviceaccount:{}:{}", k.namespace, k.serviceaccount.name) {
        return Err(TokenError::Invalid("its subject does not match its ServiceAccount".into()));
    }
    if bindings.service_account_uid(&k.namespace, &k.serviceaccount.name).as_deref() != Some(k.serviceaccount.uid.as_str()) {
        return Err(TokenError::Revoked(format!("ServiceAccount {}/{}", k.namespace, k.serviceaccount.name)));
    }
    if let Some(pod) = &k.pod {
        if bindings.pod_uid(&k.namespace, &pod.name).as_deref() != Some(pod.uid.as_str()) {
            return Err(TokenError::Revoked(format!("pod {}/{}", k.namespace, pod.name)));
        }
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use base64::Engine;

    use super::*;

    struct Store(BTreeMap<String, String>);

    impl Bindings for Store {
        fn service_account_uid(&self, ns: &str, name: &str) -> Option<String> {
            self.0.get(&format!("sa/{ns}/{name}")).cloned()
        }
        fn pod_uid(&self, ns: &str, name: &str) -> Option<String> {
            self.0.get(&format!("pod/{ns}/{name}")).cloned()
        }
    }

    fn claims(pod: bool) -> KubernetesClaims {
        KubernetesClaims {
            namespace: "dev".into(),
            serviceaccount: Ref { name: "default".into(), uid: "sa-1".into() },
            pod: pod.then(|| Ref { name: "web".into(), uid: "pod-1".into() }),
        }
    }

    fn store() -> Store {
        Store(BTreeMap::from([("sa/dev/default".into(), "sa-1".into()), ("pod/dev/web".into(), "pod-1".into())]))
    }

    #[test]
    fn a_token_names_its_service_account() {
        let key = SigningKey::generate().unwrap();
        let t = issue(&key, claims(true), vec![AUDIENCE.into()], 1_000, 600).unwrap();
        let c = verify(&key, &t, 1_100, AUDIENCE, &store()).unwrap();
        let u = c.user();
        assert_eq!(u.name, "system:serviceaccount:dev:default");
        assert_eq!(u.groups, ["system:serviceaccounts", "system:serviceaccounts:dev", "system:authenticated"]);
    }

    #[test]
    fn bad_tokens_are_refused() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let t = issue(&key, claims(true), vec![AUDIENCE.into()], 1_000, 600).unwrap();
        assert!(matches!(verify(&key, &t, 1_600, AUDIENCE, &store()), Err(TokenError::Invalid(_))), "expired");
        assert!(matches!(verify(&key, &t, 900, AUDIENCE, &store()), Err(TokenError::Invalid(_))), "not yet valid");
        assert!(matches!(verify(&other, &t, 1_100, AUDIENCE, &store()), Err(TokenError::Invalid(_))), "signed by another key");
        assert!(matches!(verify(&key, &t, 1_100, "someone-else", &store()), Err(TokenError::Invalid(_))), "another audience");
        // Tampered claims: the signature no longer matches.
        let parts: Vec<&str> = t.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut body: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        body["sub"] = "system:serviceaccount:kube-system:admin".into();
        let tampered = format!("{}.{}.{}", parts[0], b64.encode(body.to_string()), parts[2]);
        assert!(matches!(verify(&key, &tampered, 1_100, AUDIENCE, &store()), Err(TokenError::Invalid(_))));
        // alg: none, unsigned.
        let none = format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        assert!(matches!(verify(&key, &none, 1_100, AUDIENCE, &store()), Err(TokenError::Invalid(_))));
        // A deleted (or recreated) pod or ServiceAccount revokes its tokens.
        let mut s = store();
        s.0.insert("pod/dev/web".into(), "pod-2".into());
        assert!(matches!(verify(&key, &t, 1_100, AUDIENCE, &s), Err(TokenError::Revoked(_))));
        s.0.remove("sa/dev/default");
        let unbound = issue(&key, claims(false), vec![AUDIENCE.into()], 1_000, 600).unwrap();
        assert!(matches!(verify(&key, &unbound, 1_100, AUDIENCE, &s), Err(TokenError::Revoked(_))));
    }
}
