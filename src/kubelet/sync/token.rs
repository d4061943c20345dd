//! A pod's ServiceAccount token, as Kubernetes projects it: requested from the API (as this
//! node) bound to the pod, written with the cluster CA and the namespace into the pod's
//! directory, mounted read-only at `/var/run/secrets/kubernetes.io/serviceaccount` in every
//! container, and requested again once 80% of its life has passed. A pod opts out with
//! `automountServiceAccountToken: false`. `wants_token` and `needs_refresh` are pure.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::{namespace, pod_name, ContainerRuntime, Kubelet, PodNetwork, Registry};

pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// How long a pod's token lives (Kubernetes' projected default).
const TTL: Duration = Duration::from_secs(3600);

/// Does the pod get a token? (Unless it opts out.)
pub fn wants_token(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| s.automount_service_account_token != Some(false))
}

/// The ServiceAccount a pod runs as.
pub fn service_account(pod: &Pod) -> String {
    pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into())
}

/// Is a token written at `written` due for renewal at `now`?
pub fn needs_refresh(written: SystemTime, now: SystemTime) -> bool {
    now.duration_since(written).map_or(true, |age| age >= TTL * 4 / 5)
}

impl<R: ContainerRuntime + 'static, N: PodNetwork + 'static, G: Registry + 'static> Kubelet<R, N, G> {
    fn token_dir(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join("serviceaccount")
    }

    /// The directory to mount for the pod's token (written if missing or due), or None
    /// when the pod opted out.
    pub(super) async fn token_mount(&self, pod: &Pod, uid: &str) -> Result<Option<PathBuf>, String> {
        if !wants_token(pod) {
            return Ok(None);
        }
        let dir = self.token_dir(uid);
        self.write_token(pod, uid, &dir, false).await?;
        Ok(Some(dir))
    }

    /// Renew a running pod's token when it is due (called on every sync of the pod).
    pub(super) async fn refresh_token(&self, pod: &Pod, uid: &str) {
        let dir = self.token_dir(uid);
        if wants_token(pod) && dir.exists() {
            if let Err(e) = self.write_token(pod, uid, &dir, false).await {
                tracing::warn!(pod = %pod_name(pod), error = %e, "renewing the pod's ServiceAccount token");
            }
        }
    }

    async fn write_token(&self, pod: &Pod, uid: &str, dir: &Path, force: bool) -> Result<(), String> {
        let token_file = dir.join("token");
        let fresh = std::fs::metadata(&token_file).and_then(|m| m.modified()).is_ok_and(|t| !needs_refresh(t, SystemTime::now()));
        if fresh && !force {
            return Ok(());
        }
        let (ns, sa) = (namespace(pod), service_account(pod));
        let url = format!("{}/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token", self.api.base);
        let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
            "expirationSeconds": TTL.as_secs(), "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod_name(pod), "uid": uid}}});
        let answer = self.api.client.json(hyper::Method::POST, &url, Some(&request)).await.map_err(|e| format!("requesting a token for {ns}/{sa}: {e}"))?;
        let token = answer["status"]["token"].as_str().ok_or("the TokenRequest answer has no token")?;
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        for (name, content) in [("ca.crt", self.cfg.ca_pem.as_str()), ("namespace", ns), ("token", token)] {
            // Replaced whole, so a reader never sees half a token.
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, content).and_then(|_| std::fs::rename(&tmp, dir.join(name))).map_err(|e| format!("writing {name}: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodSpec;

    use super::*;

    #[test]
    fn opt_out_account_and_refresh() {
        let pod = |automount: Option<bool>, sa: Option<&str>| Pod {
            spec: Some(PodSpec { automount_service_account_token: automount, service_account_name: sa.map(String::from), ..Default::default() }),
            ..Default::default()
        };
        assert!(wants_token(&pod(None, None)) && wants_token(&pod(Some(true), None)) && !wants_token(&pod(Some(false), None)));
        assert_eq!((service_account(&pod(None, None)), service_account(&pod(None, Some("builder")))), ("default".into(), "builder".into()));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(!needs_refresh(t0, t0 + Duration::from_secs(60)));
        assert!(needs_refresh(t0, t0 + Duration::from_secs(2881)), "past 80% of an hour");
        assert!(needs_refresh(t0 + Duration::from_secs(10), t0), "a clock that went back");
    }
}
