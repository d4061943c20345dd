//! Cluster PKI: the cluster CA, node certificates signed from CSRs, join tokens, and
//! the tonic TLS configurations built from them. Pure except for key generation.
//!
//! Model (kubeadm/k3s): initializing a cluster creates a CA; a join token carries the
//! SHA-256 of the CA certificate and a secret. A joining node fetches the CA certificate,
//! checks it against the token's hash *before* sending the secret, then sends the secret
//! and a CSR over TLS verified against that CA, and receives its signed certificate.
//! Every node certificate carries the name `orch-node` (what peers verify) and the
//! node's addresses; all node-to-node gRPC is mutual TLS with these certificates.

use std::fmt;
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The DNS name every node certificate carries and every peer verifies.
pub const NODE_DNS_NAME: &str = "orch-node";
/// How long a node certificate is valid (k3s's one year); nodes renew theirs when they
/// start inside the last 90 days (see `orchd`'s `--renew-certificate-within`).
pub const NODE_CERT_DAYS: i64 = 365;
/// The name only heads' certificates carry: Raft and cluster RPCs require it, so a worker's
/// certificate can neither vote, propose nor add itself as a head.
pub const HEAD_DNS_NAME: &str = "orch-head";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("malformed join token: {0}")]
    BadToken(&'static str),
    #[error("the cluster CA does not match the join token (token has sha256:{expected}, server sent sha256:{actual})")]
    CaMismatch { expected: String, actual: String },
    #[error("not a PEM certificate")]
    BadPem,
    #[error("a client certificate can carry one group (O) here; {0} were asked for")]
    TooManyGroups(usize),
    #[error("{0}")]
    BadClientRequest(String),
    #[error("{0:?} is not a valid node name (lowercase letters, digits, '-' and '.', at most 253)")]
    BadNodeName(String),
}

/// The cluster certificate authority (certificate and private key, PEM).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ClusterCa {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClusterCa {
    pub fn generate(cluster_id: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(&format!("orch cluster CA {cluster_id}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_after = rcgen::date_time_ymd(2125, 1, 1);
        let cert = params.self_signed(&key)?;
        Ok(ClusterCa { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// SHA-256 of the CA certificate's DER, lowercase hex: what join tokens pin.
    pub fn hash(&self) -> Result<String, TlsError> {
        ca_hash(&self.cert_pem)
    }

    /// Sign the CSR of node `node_name`. The node may ask for any addresses (it holds the
    /// join secret), but never for a CA certificate nor for another subject than its node
    /// identity (`system:node:<name>` in group `system:nodes`, as the API authenticates
    /// it); usages are fixed to TLS server and client.
    pub fn sign(&self, csr_pem: &str, node_name: &str, head: bool) -> Result<String, TlsError> {
        let key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, key)?;
        if !valid_node_name(node_name) {
            return Err(TlsError::BadNodeName(node_name.to_string()));
        }
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        csr.params.distinguished_name = node_subject(node_name);
        // Whatever the CSR asked for, only a head gets the head name.
        csr.params.subject_alt_names.retain(|san| !matches!(san, SanType::DnsName(n) if n.as_str() == HEAD_DNS_NAME));
        if head {
            csr.params.subject_alt_names.push(SanType::DnsName(HEAD_DNS_NAME.try_into()?));
        }
        csr.params.is_ca = IsCa::ExplicitNoCa;
        csr.params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        csr.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        csr.params.not_before = now - time::Duration::minutes(5);
        csr.params.not_after = now + time::Duration::days(NODE_CERT_DAYS);
        Ok(csr.signed_by(&issuer)?.pem())
    }
}

/// A client certificate (and its new key) for `user` in `groups`: the API authenticates
/// it as that user (CN) with those groups (O), as Kubernetes does. Client use only. At most
/// one group: rcgen writes one attribute per type into a subject (bind the user to more
/// roles instead of giving it more groups).
pub fn issue_client(ca: &ClusterCa, user: &str, groups: &[&str], valid_days: i64) -> Result<(String, String), TlsError> {
    if groups.len() > 1 {
        return Err(TlsError::TooManyGroups(groups.len()));
    }
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name(user);
    for g in groups {
        params.distinguished_name.push(DnType::OrganizationName, *g);
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(valid_days);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A new key and a CSR for a person's client certificate (`user`, at most one `group`).
pub fn client_csr(user: &str, group: Option<&str>) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name(user);
    if let Some(g) = group {
        params.distinguished_name.push(DnType::OrganizationName, g);
    }
    Ok((key.serialize_pem(), params.serialize_request(&key)?.pem()?))
}

impl ClusterCa {
    /// Sign a person's CSR as a client certificate valid `valid_days`: its subject (CN =
    /// user, O = group) is kept, its usages are fixed to client authentication, and a CSR
    /// naming a node (`system:node:*`) or asking for a CA is refused.
    pub fn sign_client(&self, csr_pem: &str, valid_days: i64) -> Result<String, TlsError> {
        let key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, key)?;
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        match csr.params.distinguished_name.get(&DnType::CommonName).map(|v| format!("{v:?}")) {
            None => return Err(TlsError::BadClientRequest("the CSR names no user (CN)".into())),
            Some(cn) if cn.contains("system:node:") => return Err(TlsError::BadClientRequest(format!("a person's certificate may not name a node ({cn})"))),
            Some(_) => {}
        }
        csr.params.subject_alt_names.clear();
        csr.params.is_ca = IsCa::ExplicitNoCa;
        csr.params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        csr.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        csr.params.not_before = now - time::Duration::minutes(5);
        csr.params.not_after = now + time::Duration::days(valid_days);
        Ok(csr.signed_by(&issuer)?.pem())
    }
}

/// The user and group a node's certificate names it by.
pub fn node_user(node_name: &str) -> String {
    format!("system:node:{node_name}")
}

pub const NODES_GROUP: &str = "system:nodes";

/// A DNS subdomain name, as Kubernetes requires of a Node's name.
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn node_subject(node_name: &str) -> DistinguishedName {
    let mut dn = name(&node_user(node_name));
    dn.push(DnType::OrganizationName, NODES_GROUP);
    dn
}

/// Does this (verified) certificate name a head?
pub fn is_head_certificate(der: &[u8]) -> bool {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else { return false };
    let Ok(Some(san)) = cert.subject_alternative_name() else { return false };
    san.value.general_names.iter().any(|n| matches!(n, GeneralName::DNSName(d) if *d == HEAD_DNS_NAME))
}

/// When the certificate in `cert_pem` stops being valid (seconds since the Unix epoch).
pub fn not_after(cert_pem: &str) -> Result<i64, TlsError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = pem_der(cert_pem)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|_| TlsError::BadPem)?;
    Ok(cert.validity().not_after.timestamp())
}

pub fn ca_hash(cert_pem: &str) -> Result<String, TlsError> {
    let der = pem_der(cert_pem)?;
    Ok(hex(&Sha256::digest(der)))
}

fn pem_der(cert_pem: &str) -> Result<Vec<u8>, TlsError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    CertificateDer::from_pem_slice(cert_pem.as_bytes()).map(|c| c.to_vec()).map_err(|_| TlsError::BadPem)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// A node's private key and the CSR it sends to the cluster.
pub struct NodeKey {
    pub key_pem: String,
    pub csr_pem: String,
}

impl NodeKey {
    /// A fresh key and a CSR for `node_name` with the given IP addresses and DNS names
    /// (besides `orch-node`, which peers verify, and the node's own name).
    pub fn generate(node_name: &str, ips: &[std::net::IpAddr], dns: &[String]) -> Result<Self, TlsError> {
        let key = KeyPair::generate()?;
        let mut names = vec![NODE_DNS_NAME.to_string(), node_name.to_string()];
        names.extend(dns.iter().filter(|d| !names.contains(d)).cloned().collect::<Vec<_>>());
        let mut params = CertificateParams::new(names)?;
        params.subject_alt_names.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.distinguished_name = node_subject(node_name);
        let csr = params.serialize_request(&key)?;
        Ok(NodeKey { key_pem: key.serialize_pem(), csr_pem: csr.pem()? })
    }
}

/// `ORCH1::<sha256 of CA cert>::<secret>`, shaped after k3s's `K10<hash>::<credentials>`.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_hash: String,
    pub secret: String,
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ORCH1::{}::{}", self.ca_hash, self.secret)
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinToken(sha256:{}, secret: <redacted>)", self.ca_hash)
    }
}

impl FromStr for JoinToken {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().split("::");
        if parts.next() != Some("ORCH1") {
            return Err(TlsError::BadToken("expected it to start with ORCH1::"));
        }
        let ca_hash = parts.next().ok_or(TlsError::BadToken("missing CA hash"))?.to_ascii_lowercase();
        if ca_hash.len() != 64 || !ca_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TlsError::BadToken("the CA hash must be 64 hex digits"));
        }
        let secret = parts.next().ok_or(TlsError::BadToken("missing secret"))?.to_string();
        if secret.len() < 16 || parts.next().is_some() {
            return Err(TlsError::BadToken("the secret must be one field of at least 16 characters"));
        }
        Ok(JoinToken { ca_hash, secret })
    }
}

impl JoinToken {
    /// Check a CA certificate fetched from a server against this token, before trusting it.
    pub fn verify_ca(&self, ca_pem: &str) -> Result<(), TlsError> {
        let actual = ca_hash(ca_pem)?;
        if actual != self.ca_hash {
            return Err(TlsError::CaMismatch { expected: self.ca_hash.clone(), actual });
        }
        Ok(())
    }
}

/// The TLS material a node holds in its data dir.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NodeTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl NodeTls {
    /// Server side: present our certificate; verify a client certificate when one is sent.
    /// Client certificates are optional at the TLS layer so that a joining node (which has
    /// none yet) can reach the Join service; every other service requires one (see
    /// `transport::server::require_peer_cert`).
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(true)
    }

    /// Client side: verify the peer against the cluster CA and present our certificate.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(NODE_DNS_NAME)
    }
}

/// Client side for a node that has no certificate yet: verify the server against a CA
/// that was already checked against the join token.
pub fn join_client_config(ca_pem: &str) -> ClientTlsConfig {
    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name(NODE_DNS_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_rejects_garbage() {
        let t = JoinToken { ca_hash: "ab".repeat(32), secret: "s".repeat(24) };
        let parsed: JoinToken = t.to_string().parse().unwrap();
        assert!(parsed == t);
        for bad in ["", "K10abc::x:y", "ORCH1::zz::secretsecretsecret", &format!("ORCH1::{}::short", "ab".repeat(32))] {
            assert!(bad.parse::<JoinToken>().is_err(), "{bad} should be rejected");
        }
        assert!(!format!("{t:?}").contains(&t.secret), "Debug must not print the secret");
    }

    #[test]
    fn ca_signs_csr_and_hash_pins_the_ca() {
        let ca = ClusterCa::generate("test").unwrap();
        let other = ClusterCa::generate("other").unwrap();
        let node = NodeKey::generate("n1", &["10.0.0.1".parse().unwrap()], &[HEAD_DNS_NAME.to_string()]).unwrap();
        let der = |pem: &str| pem_der(pem).unwrap();
        let worker = ca.sign(&node.csr_pem, "n1", false).unwrap();
        assert!(!is_head_certificate(&der(&worker)), "a worker's CSR asking for the head name does not get it");
        let cert = ca.sign(&node.csr_pem, "n1", true).unwrap();
        assert!(is_head_certificate(&der(&cert)));
        let (_key, csr) = client_csr("alice", Some("dev")).unwrap();
        assert!(ca.sign_client(&csr, 30).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
        let (_key, node_csr) = client_csr("system:node:w1", Some("system:nodes")).unwrap();
        assert!(ca.sign_client(&node_csr, 30).is_err(), "no node identity through the user path");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        let left = not_after(&cert).unwrap() - time::OffsetDateTime::now_utc().unix_timestamp();
        let day = 86_400;
        assert!((NODE_CERT_DAYS * day - day..=NODE_CERT_DAYS * day).contains(&left), "a node certificate lasts a year: {left} s left");

        let token = JoinToken { ca_hash: ca.hash().unwrap(), secret: "x".repeat(32) };
        token.verify_ca(&ca.cert_pem).unwrap();
        assert!(matches!(token.verify_ca(&other.cert_pem), Err(TlsError::CaMismatch { .. })));
        assert_eq!(ca.hash().unwrap().len(), 64);
    }
}
