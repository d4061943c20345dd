//! Image registries as the kubelet sees them: a small trait (`Registry`: what a reference
//! names now, and the image itself with every blob checked against its digest), its
//! implementation over the OCI distribution API with oci-client, and a fake for tests.

use std::future::Future;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;

use super::image::{diff_ids, is_index, manifest_parts, pick_platform, sha256_digest, Archive, ArchiveImage, Descriptor, MANIFEST, MANIFEST_TYPES};
use super::runtime::RuntimeError;

/// A user name and password for one registry (from a pod's imagePullSecrets).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Registry(String),
    #[error(transparent)]
    Image(#[from] RuntimeError),
}

/// The registry operations a pull needs.
pub trait Registry: Send + Sync {
    /// The digest of the manifest `reference` names now (for `imagePullPolicy: Always`:
    /// an image already present under that digest is not fetched again).
    fn resolve(&self, reference: &Reference, auth: Option<&Credentials>) -> impl Future<Output = Result<String, RegistryError>> + Send;
    /// The image `reference` names (for a multi-platform index, its linux/amd64 manifest),
    /// stored as `name`: manifest, config and layers, each checked against its digest.
    fn fetch(&self, reference: &Reference, name: &str, auth: Option<&Credentials>) -> impl Future<Output = Result<Archive, RegistryError>> + Send;
}

/// `Registry` over HTTPS (HTTP for the registries named insecure), with oci-client.
pub struct OciRegistry {
    insecure: Vec<String>,
    /// One client per set of credentials: oci-client keeps the first credentials it was
    /// given for a registry, and one pod's secret must not serve another pod's pull.
    clients: Mutex<HashMap<Option<Credentials>, Client>>,
}

impl OciRegistry {
    /// `insecure`: registries (`host[:port]`) spoken to over plain HTTP.
    pub fn new(insecure: Vec<String>) -> Self {
        OciRegistry { insecure, clients: Mutex::new(HashMap::new()) }
    }

    fn client(&self, auth: Option<&Credentials>) -> Client {
        let mut clients = self.clients.lock().expect("registry clients lock");
        clients
            .entry(auth.cloned())
            .or_insert_with(|| {
                Client::new(ClientConfig {
                    protocol: ClientProtocol::HttpsExcept(self.insecure.clone()),
                    connect_timeout: Some(Duration::from_secs(10)),
                    read_timeout: Some(Duration::from_secs(60)),
                    platform_resolver: Some(Box::new(oci_client::client::linux_amd64_resolver)),
                    ..Default::default()
                })
            })
            .clone()
    }

    async fn manifest(&self, client: &Client, reference: &Reference, auth: &RegistryAuth) -> Result<(Vec<u8>, Descriptor), RegistryError> {
        let (bytes, _) = client.pull_manifest_raw(reference, auth, &MANIFEST_TYPES).await.map_err(|e| pull_error(reference, e))?;
        let digest = sha256_digest(&bytes);
        if let Some(wanted) = reference.digest().filter(|d| d.starts_with("sha256:")) {
            if wanted != digest {
                return Err(RegistryError::Registry(format!("{reference}: manifest digest {digest}, wanted {wanted}")));
            }
        }
        let json: Value = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Registry(format!("{reference}: manifest: {e}")))?;
        let media_type = json["mediaType"].as_str().map(String::from).unwrap_or_else(|| {
            // OCI manifests may leave their type out; an index is the one with `manifests`.
            if json.get("manifests").is_some() { super::image::INDEX.into() } else { MANIFEST.into() }
        });
        Ok((bytes.to_vec(), Descriptor { media_type, size: bytes.len() as i64, digest }))
    }
}

fn pull_error(reference: &Reference, e: oci_client::errors::OciDistributionError) -> RegistryError {
    RegistryError::Registry(format!("pulling {reference}: {e}"))
}

fn basic(auth: Option<&Credentials>) -> RegistryAuth {
    auth.map_or(RegistryAuth::Anonymous, |c| RegistryAuth::Basic(c.username.clone(), c.password.clone()))
}

impl Registry for OciRegistry {
    async fn resolve(&self, reference: &Reference, auth: Option<&Credentials>) -> Result<String, RegistryError> {
        let client = self.client(auth);
        let (_, target) = self.manifest(&client, reference, &basic(auth)).await?;
        Ok(target.digest)
    }

    async fn fetch(&self, reference: &Reference, name: &str, auth: Option<&Credentials>) -> Result<Archive, RegistryError> {
        let client = self.client(auth);
        let auth = basic(auth);
        let mut blobs = BTreeMap::new();
        let (mut bytes, mut target) = self.manifest(&client, reference, &auth).await?;
        if is_index(&target.media_type) {
            let index: Value = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Registry(format!("{reference}: index: {e}")))?;
            let pick = pick_platform(name, &index)?;
            (bytes, target) = self.manifest(&client, &reference.clone_with_digest(pick.digest.clone()), &auth).await?;
            if target.digest != pick.digest {
                return Err(RegistryError::Registry(format!("{reference}: the index names {}, the registry sent {}", pick.digest, target.digest)));
            }
            // The index's entry says what kind of manifest it is.
            target.media_type = pick.media_type;
        }
        let manifest: Value = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Registry(format!("{reference}: manifest: {e}")))?;
        blobs.insert(target.digest.clone(), bytes);
        let (config, layers) = manifest_parts(name, &target, &manifest)?;
        for d in std::iter::once(&config).chain(&layers) {
            if blobs.contains_key(&d.digest) {
                continue;
            }
            let mut data = Vec::with_capacity(usize::try_from(d.size).unwrap_or(0).min(1 << 30));
            client.pull_blob(reference, d.digest.as_str(), &mut data).await.map_err(|e| pull_error(reference, e))?;
            // oci-client checks sha256 digests as it reads; this also refuses other algorithms.
            if sha256_digest(&data) != d.digest {
                return Err(RegistryError::Registry(format!("{reference}: blob {} does not match its digest", d.digest)));
            }
            blobs.insert(d.digest.clone(), data);
        }
        let config_json: Value = serde_json::from_slice(&blobs[&config.digest]).map_err(|e| RegistryError::Registry(format!("{reference}: config: {e}")))?;
        let ids = diff_ids(name, &config_json, layers.len())?;
        let image = ArchiveImage { name: name.to_string(), target, config, layers, diff_ids: ids };
        Ok(Archive { blobs, images: vec![image] })
    }
}

/// Test double: serves the images it was given (by reference, whole form), counts calls,
/// fails on demand.
#[derive(Default)]
pub struct FakeRegistry {
    pub images: Mutex<BTreeMap<String, Archive>>,
    /// Reference and credentials of every call, `resolve` and `fetch` alike.
    pub calls: Mutex<Vec<(&'static str, String, Option<Credentials>)>>,
    /// When set, every call fails with this message.
    pub fail: Mutex<Option<String>>,
}

impl FakeRegistry {
    fn call(&self, what: &'static str, reference: &Reference, auth: Option<&Credentials>) -> Result<Archive, RegistryError> {
        self.calls.lock().expect("fake lock").push((what, reference.whole(), auth.cloned()));
        if let Some(m) = self.fail.lock().expect("fake lock").clone() {
            return Err(RegistryError::Registry(m));
        }
        self.images.lock().expect("fake lock").get(&reference.whole()).cloned().ok_or_else(|| RegistryError::Registry(format!("{reference}: manifest unknown")))
    }
}

impl Registry for FakeRegistry {
    async fn resolve(&self, reference: &Reference, auth: Option<&Credentials>) -> Result<String, RegistryError> {
        Ok(self.call("resolve", reference, auth)?.images[0].target.digest.clone())
    }

    async fn fetch(&self, reference: &Reference, name: &str, auth: Option<&Credentials>) -> Result<Archive, RegistryError> {
        let mut archive = self.call("fetch", reference, auth)?;
        archive.images[0].name = name.to_string();
        Ok(archive)
    }
}
