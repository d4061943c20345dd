//! Getting a container's image onto the node: the pull policy as Kubernetes defaults it,
//! image names as registry references, credentials from a pod's imagePullSecrets, and
//! pulls one at a time with a back-off per pod and image (ErrImagePull, then
//! ImagePullBackOff).
//! The decisions are pure; `Puller::ensure` does the I/O through the runtime and registry
//! traits.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine;
use k8s_openapi::api::core::v1::{Container, Secret};
use oci_client::Reference;
use serde_json::Value;

use super::plan::Backoff;
use super::registry::{Credentials, Registry};
use super::runtime::{ContainerRuntime, LocalImage, RuntimeError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// The container's pull policy; unset, as the API server defaults it: `Always` for the tag
/// `latest` (or no tag and no digest), else `IfNotPresent`.
pub fn policy(c: &Container) -> PullPolicy {
    match c.image_pull_policy.as_deref() {
        Some("Always") => PullPolicy::Always,
        Some("Never") => PullPolicy::Never,
        Some("IfNotPresent") => PullPolicy::IfNotPresent,
        _ => {
            let image = c.image.as_deref().unwrap_or_default();
            let latest = crate::image_reference::parse(image).is_ok_and(|r| r.digest().is_none() && r.tag().is_none_or(|t| t == "latest"));
            if latest { PullPolicy::Always } else { PullPolicy::IfNotPresent }
        }
    }
}

/// An image's `repository@digest` name (a Node's `status.images`, a container's `imageID`).
pub fn digest_name(name: &str, digest: &str) -> String {
    let repository = crate::image_reference::parse(name).map(|r| format!("{}/{}", r.registry(), r.repository())).unwrap_or_else(|_| name.to_string());
    format!("{repository}@{digest}")
}

/// Why a container's image is not there to run.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image name {0:?}: {1}")]
    InvalidName(String, String),
    #[error("image {0:?} is not present on this node and its pull policy is Never; load it with `orchctl image load`")]
    NeverPull(String),
    #[error("back-off pulling image {0:?}: {1}")]
    BackOff(String, String),
    #[error("{0}")]
    Pull(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl ImageError {
    /// The container's waiting reason, as the kubelet names it.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::InvalidName(..) => "InvalidImageName",
            ImageError::NeverPull(_) => "ErrImageNeverPull",
            ImageError::BackOff(..) => "ImagePullBackOff",
            ImageError::Pull(_) => "ErrImagePull",
            ImageError::Runtime(_) => "CreateContainerError",
        }
    }
}

/// The registry host a key of a docker config names (`https://host/v1/` → `host`).
fn config_host(key: &str) -> &str {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn same_registry(a: &str, b: &str) -> bool {
    const HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
    a == b || (HUB.contains(&a) && HUB.contains(&b))
}

/// Credentials for `registry` from image pull secrets (`kubernetes.io/dockerconfigjson`
/// and the older `kubernetes.io/dockercfg`), in the secrets' order.
pub fn credentials(registry: &str, secrets: &[Secret]) -> Vec<Credentials> {
    let mut out = Vec::new();
    for s in secrets {
        let data = s.data.as_ref();
        let auths: Option<Value> = data
            .and_then(|d| d.get(".dockerconfigjson"))
            .and_then(|b| serde_json::from_slice::<Value>(&b.0).ok())
            .map(|v| v["auths"].clone())
            .or_else(|| data.and_then(|d| d.get(".dockercfg")).and_then(|b| serde_json::from_slice(&b.0).ok()));
        let Some(Value::Object(auths)) = auths else { continue };
        for (key, entry) in auths {
            if !same_registry(config_host(&key), registry) {
                continue;
            }
            let decoded = entry["auth"]
                .as_str()
                .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())));
            let user = entry["username"].as_str().map(String::from);
            let pass = entry["password"].as_str().map(String::from);
            let (username, password) = match (user, pass, decoded) {
                (Some(u), Some(p), _) => (u, p),
                (_, _, Some(pair)) => pair,
                _ => continue,
            };
            out.push(Credentials { username, password });
        }
    }
    out
}

/// A failed pull of one image: how many in a row, the last one's time and message.
#[derive(Debug, Clone)]
struct Failure {
    count: u32,
    at: SystemTime,
    message: String,
}

/// Whether a pull of an image that failed as `f` must wait: until its back-off has passed.
fn waiting(f: &Failure, backoff: &Backoff, now: SystemTime) -> bool {
    now < f.at + backoff.delay(f.count.saturating_sub(1))
}

/// Pulls images into the runtime, one at a time (as the kubelet's serialized pulls), with
/// a back-off per pod and image after failures.
pub struct Puller<G> {
    registry: G,
    backoff: Backoff,
    failures: Mutex<BTreeMap<String, Failure>>,
    one_at_a_time: tokio::sync::Mutex<()>,
    /// Images stored so far (so the image list can be refreshed after one).
    pulled: std::sync::atomic::AtomicU64,
}

impl<G: Registry> Puller<G> {
    pub fn new(registry: G, backoff: Backoff) -> Self {
        Puller { registry, backoff, failures: Mutex::new(BTreeMap::new()), one_at_a_time: tokio::sync::Mutex::new(()), pulled: Default::default() }
    }

    /// How many images this puller has stored.
    pub fn pulled(&self) -> u64 {
        self.pulled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Make `image` present as `policy` asks and return the name it is stored under (the
    /// name as written if an image was loaded under it, else the full reference, e.g.
    /// `docker.io/library/busybox:1.36`) with the image as resolved there. `secrets` are
    /// the pod's image pull secrets.
    /// Failures back off per pod (`pod`, its uid) and image, as the kubelet's do: a pod
    /// with the right secret does not wait out another pod's failures.
    pub async fn ensure<R: ContainerRuntime>(
        &self,
        runtime: &R,
        pod: &str,
        image: &str,
        policy: PullPolicy,
        secrets: &[Secret],
    ) -> Result<(String, LocalImage), ImageError> {
        let reference = crate::image_reference::parse(image).map_err(|e| ImageError::InvalidName(image.into(), e.to_string()))?;
        let full = reference.whole();
        let mut present = None;
        // Stored under the name as written (loaded images) or the full reference (pulled).
        let names = if image == full { vec![image] } else { vec![image, full.as_str()] };
        for name in names {
            if let Some(local) = runtime.image(name).await? {
                present = Some((name.to_string(), local));
                break;
            }
        }
        let present = match (policy, present) {
            (PullPolicy::Never, None) => return Err(ImageError::NeverPull(image.into())),
            (PullPolicy::Never | PullPolicy::IfNotPresent, Some(found)) => return Ok(found),
            (_, present) => present,
        };
        let key = format!("{pod}/{full}");
        if let Some(f) = self.failures.lock().expect("pull failures lock").get(&key) {
            if waiting(f, &self.backoff, SystemTime::now()) {
                return Err(ImageError::BackOff(image.into(), f.message.clone()));
            }
        }
        let _one = self.one_at_a_time.lock().await;
        let result = self.pull(runtime, &reference, &full, present, secrets).await;
        let mut failures = self.failures.lock().expect("pull failures lock");
        match &result {
            Ok(_) => {
                failures.remove(&key);
            }
            Err(e) => {
                // Entries of pods long gone (none fails twice further apart than this).
                let stale = SystemTime::now() - self.backoff.max * 2;
                failures.retain(|_, f| f.at > stale);
                let count = failures.get(&key).map_or(0, |f| f.count) + 1;
                failures.insert(key, Failure { count, at: SystemTime::now(), message: e.to_string() });
            }
        }
        result
    }

    async fn pull<R: ContainerRuntime>(
        &self,
        runtime: &R,
        reference: &Reference,
        full: &str,
        present: Option<(String, LocalImage)>,
        secrets: &[Secret],
    ) -> Result<(String, LocalImage), ImageError> {
        let creds = credentials(reference.registry(), secrets);
        // Each matching secret in turn (as the kubelet tries them), else anonymously.
        let tries: Vec<Option<&Credentials>> = if creds.is_empty() { vec![None] } else { creds.iter().map(Some).collect() };
        let mut last = String::new();
        for auth in tries {
            if let Some((name, local)) = &present {
                match self.registry.resolve(reference, auth).await {
                    Ok(now) if now == local.digest => return Ok((name.clone(), local.clone())),
                    Ok(_) => {}
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                }
            }
            match self.registry.fetch(reference, full, auth).await {
                Ok(archive) => {
                    let started = std::time::Instant::now();
                    runtime.import(&archive).await?;
                    self.pulled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let bytes: usize = archive.blobs.values().map(Vec::len).sum();
                    tracing::info!(image = full, digest = %archive.images[0].target.digest, bytes, unpack_ms = started.elapsed().as_millis() as u64, "image pulled");
                    let local = runtime.image(full).await?.ok_or_else(|| ImageError::Pull(format!("{full} was stored but is not in the runtime's store")))?;
                    return Ok((full.to_string(), local));
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(ImageError::Pull(last))
    }
}

#[cfg(test)]
mod tests;
