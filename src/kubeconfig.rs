//! Standard kubeconfig files (`apiVersion: v1, kind: Config`): reading them as kubectl does
//! (`--kubeconfig`, else every file of `$KUBECONFIG` merged with the first one winning,
//! else `~/.kube/config`), choosing a context, and writing one for a user. Credentials
//! orch does not implement (exec plugins, auth providers) are refused, never ignored.
//! Reads and writes files; the rest is pure.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use base64::Engine;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    pub users: Vec<Named<User>>,
    #[serde(default)]
    pub contexts: Vec<Named<Context>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Named<T> {
    pub name: String,
    #[serde(flatten)]
    pub item: T,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cluster {
    pub cluster: ClusterInfo,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterInfo {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_tls_verify: bool,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub user: UserInfo,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct UserInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_provider: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Context {
    pub context: ContextInfo,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContextInfo {
    pub cluster: String,
    #[serde(default)]
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// What a client needs from a kubeconfig to reach the API as its user.
#[derive(Clone, PartialEq)]
pub struct Credentials {
    pub server: String,
    pub ca_pem: String,
    /// Client certificate and key (PEM).
    pub client: Option<(String, String)>,
    pub token: Option<String>,
    pub namespace: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("client_certificate", &self.client.is_some())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// The files to read: an explicit path, else `$KUBECONFIG`'s, else `~/.kube/config`.
pub fn paths(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        return std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()).collect();
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    vec![home.join(".kube").join("config")]
}

impl Kubeconfig {
    pub fn parse(text: &str) -> anyhow::Result<Kubeconfig> {
        Ok(serde_norway::from_str(text)?)
    }

    /// Read and merge the files (an explicit file must exist; missing `$KUBECONFIG` entries
    /// are skipped, as kubectl skips them). The first definition of a name wins.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Kubeconfig> {
        let mut merged = Kubeconfig::default();
        for p in paths(explicit) {
            let text = match std::fs::read_to_string(&p) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
            };
            let mut one = Kubeconfig::parse(&text).with_context(|| format!("parsing {}", p.display()))?;
            one.resolve_paths(p.parent().unwrap_or(Path::new(".")));
            merged.merge(one);
        }
        Ok(merged)
    }

    /// Relative file references are relative to the kubeconfig file, as in kubectl.
    fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(path) = p {
                if path.is_relative() {
                    *path = dir.join(&*path);
                }
            }
        };
        for c in &mut self.clusters {
            fix(&mut c.item.cluster.certificate_authority);
        }
        for u in &mut self.users {
            fix(&mut u.item.user.client_certificate);
            fix(&mut u.item.user.client_key);
            fix(&mut u.item.user.token_file);
        }
    }

    fn merge(&mut self, other: Kubeconfig) {
        fn add<T>(into: &mut Vec<Named<T>>, from: Vec<Named<T>>) {
            for item in from {
                if !into.iter().any(|i| i.name == item.name) {
                    into.push(item);
                }
            }
        }
        add(&mut self.clusters, other.clusters);
        add(&mut self.users, other.users);
        add(&mut self.contexts, other.contexts);
        if self.current_context.is_none() {
            self.current_context = other.current_context;
        }
    }

    /// The credentials of context `name` (else the current context).
    pub fn credentials(&self, name: Option<&str>) -> anyhow::Result<Credentials> {
        let Some(ctx_name) = name.or(self.current_context.as_deref()) else {
            bail!("no context is set: pass --kubeconfig or --context, or set current-context");
        };
        let ctx = &find(&self.contexts, ctx_name, "context")?.context;
        let cluster = &find(&self.clusters, &ctx.cluster, "cluster")?.cluster;
        if cluster.insecure_skip_tls_verify {
            bail!("cluster {:?}: insecure-skip-tls-verify is not supported; give its certificate-authority", ctx.cluster);
        }
        if cluster.tls_server_name.is_some() {
            bail!("cluster {:?}: tls-server-name is not supported", ctx.cluster);
        }
        let ca_pem = match (&cluster.certificate_authority_data, &cluster.certificate_authority) {
            (Some(data), _) => decode(data).with_context(|| format!("cluster {:?}: certificate-authority-data", ctx.cluster))?,
            (None, Some(path)) => read(path)?,
            (None, None) => bail!("cluster {:?} names no certificate-authority: the server could not be verified", ctx.cluster),
        };
        let mut creds = Credentials { server: cluster.server.clone(), ca_pem, client: None, token: None, namespace: ctx.namespace.clone() };
        if ctx.user.is_empty() {
            return Ok(creds);
        }
        let user = &find(&self.users, &ctx.user, "user")?.user;
        if user.exec.is_some() || user.auth_provider.is_some() || user.username.is_some() {
            bail!("user {:?}: exec plugins, auth providers and basic auth are not supported; use a client certificate or a token", ctx.user);
        }
        let cert = match (&user.client_certificate_data, &user.client_certificate) {
            (Some(d), _) => Some(decode(d)?),
            (None, Some(p)) => Some(read(p)?),
            (None, None) => None,
        };
        let key = match (&user.client_key_data, &user.client_key) {
            (Some(d), _) => Some(decode(d)?),
            (None, Some(p)) => Some(read(p)?),
            (None, None) => None,
        };
        creds.client = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => bail!("user {:?} has a client certificate without its key, or a key without its certificate", ctx.user),
        };
        creds.token = match (&user.token, &user.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(p)) => Some(read(p)?.trim().to_string()),
            (None, None) => None,
        };
        Ok(creds)
    }

    /// A kubeconfig with one cluster, one user (client certificate) and one context.
    pub fn for_user(cluster: &str, server: &str, ca_pem: &str, user: &str, cert_pem: &str, key_pem: &str) -> Kubeconfig {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let context = format!("{user}@{cluster}");
        Kubeconfig {
            api_version: Some("v1".into()),
            kind: Some("Config".into()),
            clusters: vec![Named {
                name: cluster.into(),
                item: Cluster { cluster: ClusterInfo { server: server.into(), certificate_authority_data: Some(b64(ca_pem)), ..Default::default() } },
            }],
            users: vec![Named {
                name: user.into(),
                item: User {
                    user: UserInfo { client_certificate_data: Some(b64(cert_pem)), client_key_data: Some(b64(key_pem)), ..Default::default() },
                },
            }],
            contexts: vec![Named {
                name: context.clone(),
                item: Context { context: ContextInfo { cluster: cluster.into(), user: user.into(), namespace: None } },
            }],
            current_context: Some(context),
        }
    }

    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).expect("a kubeconfig always serializes")
    }
}

fn find<'a, T>(items: &'a [Named<T>], name: &str, what: &str) -> anyhow::Result<&'a T> {
    items.iter().find(|i| i.name == name).map(|i| &i.item).with_context(|| format!("the kubeconfig has no {what} named {name:?}"))
}

fn decode(data: &str) -> anyhow::Result<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(data.trim()).context("not base64")?;
    String::from_utf8(bytes).context("not PEM text")
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let kc = Kubeconfig::for_user("orch", "https://10.0.0.1:6443", "CA", "admin", "CERT", "KEY");
        let text = kc.to_yaml();
        assert!(text.contains("certificate-authority-data") && text.contains("current-context: admin@orch"), "{text}");
        let back = Kubeconfig::parse(&text).unwrap();
        assert_eq!(back, kc);
        let creds = back.credentials(None).unwrap();
        assert_eq!((creds.server.as_str(), creds.ca_pem.as_str()), ("https://10.0.0.1:6443", "CA"));
        assert_eq!(creds.client, Some(("CERT".into(), "KEY".into())));
        assert!(back.credentials(Some("other")).is_err());

        let mut exec = back.clone();
        exec.users[0].item.user.exec = Some(serde_json::json!({"command": "x"}));
        assert!(exec.credentials(None).unwrap_err().to_string().contains("not supported"));
        let mut insecure = back.clone();
        insecure.clusters[0].item.cluster.insecure_skip_tls_verify = true;
        assert!(insecure.credentials(None).is_err());
        let mut half = back;
        half.users[0].item.user.client_key_data = None;
        assert!(half.credentials(None).is_err());
    }

    #[test]
    fn kubectl_style_files_parse_and_merge() {
        let a = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://a:6443\n    certificate-authority: ca.crt\n\
                 users:\n- name: u\n  user:\n    token: abc\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n    namespace: dev\ncurrent-context: x\n";
        let mut first = Kubeconfig::parse(a).unwrap();
        first.resolve_paths(Path::new("/etc/orch"));
        assert_eq!(first.clusters[0].item.cluster.certificate_authority.as_deref(), Some(Path::new("/etc/orch/ca.crt")));
        let second = Kubeconfig::for_user("c", "https://b:6443", "CA", "u", "C", "K");
        first.merge(second);
        assert_eq!(first.clusters.len(), 1, "the first definition of a name wins");
        assert_eq!(first.contexts.len(), 2);
        assert_eq!(first.current_context.as_deref(), Some("x"));
    }
}
