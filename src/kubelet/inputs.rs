//! What a container receives from the API besides its image: environment variables
//! (literal, from ConfigMap and Secret keys, from pod fields) and volumes (emptyDir,
//! hostPath, configMap, secret, persistentVolumeClaim bound to a hostPath or local PV),
//! materialized as files under the pod's directory and bind-mounted. Reads the API and
//! writes files; `resolve_env` and `mounts_for` are pure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume};
use serde::de::DeserializeOwned;

use crate::client::{ApiClient, HttpError};

/// The objects a pod refers to, fetched once per start.
#[derive(Debug, Default)]
pub struct Refs {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
    /// The pod's imagePullSecrets that exist, in its order.
    pub pull_secrets: Vec<Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Api(String),
    #[error("writing volume files: {0}")]
    Io(#[from] std::io::Error),
}

/// Read-only API access for the kubelet (through this node's own API).
#[derive(Clone)]
pub struct Api {
    pub client: ApiClient,
    pub base: String,
}

impl Api {
    /// GET an object; `Ok(None)` when it does not exist.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, InputError> {
        match self.client.json(hyper::Method::GET, &format!("{}{path}", self.base), None).await {
            Ok(v) => serde_json::from_value(v).map(Some).map_err(|e| InputError::Api(format!("{path}: {e}"))),
            Err(e) if e.downcast_ref::<HttpError>().is_some_and(|h| h.code == 404) => Ok(None),
            Err(e) => Err(InputError::Api(e.to_string())),
        }
    }
}

/// Fetch every ConfigMap and Secret the pod's env and volumes name (absent ones are left
/// out; whether that is an error depends on `optional`, decided when they are used).
pub async fn fetch_refs(api: &Api, pod: &Pod) -> Result<Refs, InputError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.as_ref().ok_or_else(|| InputError::Missing("pod has no spec".into()))?;
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for c in spec.init_containers.iter().flatten().chain(&spec.containers) {
        for e in c.env.iter().flatten() {
            if let Some(v) = &e.value_from {
                cms.extend(v.config_map_key_ref.as_ref().map(|r| r.name.clone()));
                secrets.extend(v.secret_key_ref.as_ref().map(|r| r.name.clone()));
            }
        }
        for e in c.env_from.iter().flatten() {
            cms.extend(e.config_map_ref.as_ref().map(|r| r.name.clone()));
            secrets.extend(e.secret_ref.as_ref().map(|r| r.name.clone()));
        }
    }
    for v in spec.volumes.iter().flatten() {
        cms.extend(v.config_map.as_ref().map(|c| c.name.clone()));
        secrets.extend(v.secret.as_ref().and_then(|s| s.secret_name.clone()));
    }
    let mut refs = Refs::default();
    for name in cms {
        if let Some(cm) = api.get::<ConfigMap>(&format!("/api/v1/namespaces/{ns}/configmaps/{name}")).await? {
            refs.config_maps.insert(name, cm);
        }
    }
    for name in secrets {
        if let Some(s) = api.get::<Secret>(&format!("/api/v1/namespaces/{ns}/secrets/{name}")).await? {
            refs.secrets.insert(name, s);
        }
    }
    for name in spec.image_pull_secrets.iter().flatten().map(|r| &r.name) {
        if let Some(s) = api.get::<Secret>(&format!("/api/v1/namespaces/{ns}/secrets/{name}")).await? {
            refs.pull_secrets.push(s);
        }
    }
    Ok(refs)
}

fn cm_value(cm: &ConfigMap, key: &str) -> Option<String> {
    cm.data.as_ref().and_then(|d| d.get(key).cloned())
}

fn secret_value(s: &Secret, key: &str) -> Option<String> {
    s.data.as_ref().and_then(|d| d.get(key)).map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// The container's environment, in Kubernetes order (envFrom, then env; later wins).
pub fn resolve_env(pod: &Pod, c: &Container, refs: &Refs, pod_ip: &str, host_ip: &str) -> Result<Vec<(String, String)>, InputError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: String, v: String| match env.iter_mut().find(|(n, _)| *n == k) {
        Some(slot) => slot.1 = v,
        None => env.push((k, v)),
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match refs.config_maps.get(&r.name) {
                Some(cm) => cm.data.iter().flatten().for_each(|(k, v)| set(format!("{prefix}{k}"), v.clone())),
                None if r.optional == Some(true) => {}
                None => return Err(InputError::Missing(format!("configmap {:?} not found", r.name))),
            }
        }
        if let Some(r) = &from.secret_ref {
            match refs.secrets.get(&r.name) {
                Some(s) => s.data.iter().flatten().for_each(|(k, v)| set(format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into_owned())),
                None if r.optional == Some(true) => {}
                None => return Err(InputError::Missing(format!("secret {:?} not found", r.name))),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = match &e.value_from {
            None => Some(e.value.clone().unwrap_or_default()),
            Some(from) => {
                if let Some(r) = &from.config_map_key_ref {
                    let v = refs.config_maps.get(&r.name).and_then(|cm| cm_value(cm, &r.key));
                    if v.is_none() && r.optional != Some(true) {
                        return Err(InputError::Missing(format!("key {:?} of configmap {:?} not found", r.key, r.name)));
                    }
                    v
                } else if let Some(r) = &from.secret_key_ref {
                    let v = refs.secrets.get(&r.name).and_then(|s| secret_value(s, &r.key));
                    if v.is_none() && r.optional != Some(true) {
                        return Err(InputError::Missing(format!("key {:?} of secret {:?} not found", r.key, r.name)));
                    }
                    v
                } else if let Some(f) = &from.field_ref {
                    let m = &pod.metadata;
                    Some(match f.field_path.as_str() {
                        "metadata.name" => m.name.clone().unwrap_or_default(),
                        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
                        "metadata.uid" => m.uid.clone().unwrap_or_default(),
                        "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
                        "spec.serviceAccountName" => pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
                        "status.podIP" => pod_ip.to_string(),
                        "status.hostIP" => host_ip.to_string(),
                        other => return Err(InputError::Missing(format!("fieldRef {other:?} is not supported"))),
                    })
                } else {
                    return Err(InputError::Missing(format!("env {:?}: resourceFieldRef is not supported", e.name)));
                }
            }
        };
        if let Some(v) = value {
            set(e.name.clone(), v);
        }
    }
    Ok(env)
}

fn write_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    for (name, data) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, data)?;
    }
    Ok(())
}

/// Key → file name, honouring `items` (only the listed keys, at their paths).
fn project(data: BTreeMap<String, Vec<u8>>, items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>) -> BTreeMap<String, Vec<u8>> {
    match items {
        None => data,
        Some(items) => items.iter().filter_map(|i| data.get(&i.key).map(|d| (i.path.clone(), d.clone()))).collect(),
    }
}

/// Make every volume of the pod exist on this node; returns volume name → host path.
pub async fn prepare_volumes(api: &Api, pod: &Pod, pod_dir: &Path, refs: &Refs) -> Result<BTreeMap<String, PathBuf>, InputError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = BTreeMap::new();
    for v in pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        out.insert(v.name.clone(), prepare_volume(api, ns, v, pod_dir, refs).await?);
    }
    Ok(out)
}

async fn prepare_volume(api: &Api, ns: &str, v: &Volume, pod_dir: &Path, refs: &Refs) -> Result<PathBuf, InputError> {
    let dir = pod_dir.join("volumes").join(&v.name);
    if v.empty_dir.is_some() {
        std::fs::create_dir_all(&dir)?;
        return Ok(dir);
    }
    if let Some(h) = &v.host_path {
        return host_path(Path::new(&h.path), h.type_.as_deref());
    }
    if let Some(c) = &v.config_map {
        let data = match refs.config_maps.get(&c.name) {
            Some(cm) => {
                let mut d: BTreeMap<String, Vec<u8>> = cm.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
                d.extend(cm.binary_data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())));
                d
            }
            None if c.optional == Some(true) => BTreeMap::new(),
            None => return Err(InputError::Missing(format!("configmap {:?} not found", c.name))),
        };
        write_files(&dir, &project(data, c.items.as_ref()))?;
        return Ok(dir);
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let data = match refs.secrets.get(&name) {
            Some(secret) => secret.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect(),
            None if s.optional == Some(true) => BTreeMap::new(),
            None => return Err(InputError::Missing(format!("secret {name:?} not found"))),
        };
        write_files(&dir, &project(data, s.items.as_ref()))?;
        return Ok(dir);
    }
    if let Some(claim) = &v.persistent_volume_claim {
        let pvc: PersistentVolumeClaim = api
            .get(&format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/{}", claim.claim_name))
            .await?
            .ok_or_else(|| InputError::Missing(format!("persistentvolumeclaim {:?} not found", claim.claim_name)))?;
        let pv_name = pvc.spec.and_then(|s| s.volume_name).filter(|n| !n.is_empty());
        let pv_name = pv_name.ok_or_else(|| InputError::Missing(format!("persistentvolumeclaim {:?} is not bound to a volume", claim.claim_name)))?;
        let pv: PersistentVolume =
            api.get(&format!("/api/v1/persistentvolumes/{pv_name}")).await?.ok_or_else(|| InputError::Missing(format!("persistentvolume {pv_name:?} not found")))?;
        let spec = pv.spec.unwrap_or_default();
        if let Some(h) = spec.host_path {
            return host_path(Path::new(&h.path), Some(h.type_.as_deref().unwrap_or("DirectoryOrCreate")));
        }
        if let Some(l) = spec.local {
            return host_path(Path::new(&l.path), Some("Directory"));
        }
        return Err(InputError::Missing(format!("persistentvolume {pv_name:?} is neither hostPath nor local; only those are supported")));
    }
    Err(InputError::Missing(format!("volume {:?}: this volume type is not supported", v.name)))
}

fn host_path(path: &Path, kind: Option<&str>) -> Result<PathBuf, InputError> {
    match kind.unwrap_or("") {
        "DirectoryOrCreate" => std::fs::create_dir_all(path)?,
        "Directory" if !path.is_dir() => return Err(InputError::Missing(format!("hostPath {} is not a directory", path.display()))),
        "File" if !path.is_file() => return Err(InputError::Missing(format!("hostPath {} is not a file", path.display()))),
        _ => {}
    }
    Ok(path.to_path_buf())
}

/// The container's bind mounts: (host path, container path, read-only).
pub fn mounts_for(c: &Container, volumes: &BTreeMap<String, PathBuf>, read_only_kinds: &[String]) -> Result<Vec<(PathBuf, String, bool)>, InputError> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let host = volumes.get(&m.name).ok_or_else(|| InputError::Missing(format!("volumeMount {:?} names no volume of the pod", m.name)))?;
        let host = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) if sub.split('/').any(|p| p == "..") => return Err(InputError::Missing(format!("subPath {sub:?} may not contain '..'"))),
            Some(sub) => host.join(sub),
            None => host.clone(),
        };
        let ro = m.read_only == Some(true) || read_only_kinds.contains(&m.name);
        out.push((host, m.mount_path.clone(), ro));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, SecretKeySelector, VolumeMount};
    use k8s_openapi::ByteString;

    use super::*;

    #[test]
    fn env_from_literals_secrets_and_fields() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        let c = Container {
            name: "c".into(),
            env: Some(vec![
                EnvVar { name: "A".into(), value: Some("1".into()), ..Default::default() },
                EnvVar {
                    name: "PASS".into(),
                    value_from: Some(EnvVarSource { secret_key_ref: Some(SecretKeySelector { name: "s".into(), key: "pw".into(), optional: None }), ..Default::default() }),
                    ..Default::default()
                },
                EnvVar {
                    name: "ME".into(),
                    value_from: Some(EnvVarSource { field_ref: Some(ObjectFieldSelector { field_path: "metadata.name".into(), api_version: None }), ..Default::default() }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let mut refs = Refs::default();
        let err = resolve_env(&pod, &c, &refs, "10.0.0.5", "10.1.1.1").unwrap_err();
        assert!(err.to_string().contains("secret \"s\""), "{err}");
        let secret = Secret { data: Some(BTreeMap::from([("pw".to_string(), ByteString(b"hunter2".to_vec()))])), ..Default::default() };
        refs.secrets.insert("s".into(), secret);
        let env = resolve_env(&pod, &c, &refs, "10.0.0.5", "10.1.1.1").unwrap();
        assert_eq!(env, vec![("A".into(), "1".into()), ("PASS".into(), "hunter2".into()), ("ME".into(), "web".into())]);
    }

    #[test]
    fn mounts_resolve_sub_paths_and_refuse_escapes() {
        let volumes = BTreeMap::from([("data".to_string(), PathBuf::from("/v/data"))]);
        let mount = |sub: Option<&str>| Container {
            volume_mounts: Some(vec![VolumeMount { name: "data".into(), mount_path: "/d".into(), sub_path: sub.map(String::from), ..Default::default() }]),
            ..Default::default()
        };
        assert_eq!(mounts_for(&mount(Some("x")), &volumes, &[]).unwrap(), vec![(PathBuf::from("/v/data/x"), "/d".to_string(), false)]);
        assert!(mounts_for(&mount(Some("../etc")), &volumes, &[]).is_err());
        assert_eq!(mounts_for(&mount(None), &volumes, &["data".into()]).unwrap()[0].2, true);
    }
}
