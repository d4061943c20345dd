//! Starting things for a pod: its sandbox (an IP lease, the network plugged in, the /etc
//! files) and a container (image, env, volumes, mounts, limits resolved into the runtime's
//! config; at most `PARALLEL_STARTS` runtime starts at once).

use k8s_openapi::api::core::v1::Container;

use super::token;
use super::*;

impl<R: ContainerRuntime + 'static, N: PodNetwork + 'static, G: Registry + 'static> Kubelet<R, N, G> {
    /// Lease an IP, plug the network in, write the pod's /etc files.
    pub(super) async fn sandbox(&self, pod: &Pod, uid: &str) -> anyhow::Result<()> {
        let node = self.node_net().ok_or_else(|| anyhow::anyhow!("this node has no pod CIDR yet"))?;
        let ip = self.ipam.lease(node.pod_cidr, uid)?;
        self.net.setup(uid, &node, ip).await?;
        let etc = self.pod_dir(uid).join("etc");
        std::fs::create_dir_all(&etc)?;
        let host = hostname(pod);
        let ns = namespace(pod);
        std::fs::write(etc.join("hostname"), format!("{host}\n"))?;
        std::fs::write(etc.join("hosts"), format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{host}\n"))?;
        std::fs::write(
            etc.join("resolv.conf"),
            format!("search {ns}.svc.cluster.local svc.cluster.local cluster.local\nnameserver {}\noptions ndots:5\n", node.gateway()),
        )?;
        std::fs::write(self.sandbox_marker(uid), ip.to_string())?;
        Ok(())
    }

    /// The events of a container start: created and started, or why not (Kubernetes'
    /// kubelet's words).
    pub(super) fn note_start(&self, pod: &Pod, c: &Container, result: &Result<(), StartError>) {
        let (me, name) = (pod_ref(pod), Some(c.name.as_str()));
        let image = c.image.as_deref().unwrap_or_default();
        let notes = match result {
            Ok(()) => vec![
                events::Note::normal("Created", format!("Created container: {}", c.name), name),
                events::Note::normal("Started", format!("Started container {}", c.name), name),
            ],
            Err(StartError::Image(e)) if e.reason() == "ImagePullBackOff" => vec![
                events::Note::normal("BackOff", format!("Back-off pulling image {image:?}"), name),
                events::Note::warning("Failed", "Error: ImagePullBackOff".to_string(), name),
            ],
            Err(StartError::Image(e)) => vec![
                events::Note::warning("Failed", format!("Failed to pull image {image:?}: {e}"), name),
                events::Note::warning("Failed", format!("Error: {}", e.reason()), name),
            ],
            Err(e) => vec![events::Note::warning("Failed", format!("Error: {e}"), name)],
        };
        for note in notes {
            self.events.note(&me, note);
        }
    }

    pub(super) async fn start(&self, pod: &Pod, uid: &str, c: &Container, init: bool, attempt: u32) -> Result<(), StartError> {
        let began = std::time::Instant::now();
        let refs = inputs::fetch_refs(&self.api, pod).await.map_err(StartError::Config)?;
        let image = c.image.clone().unwrap_or_default();
        let (image, local) = self.puller.ensure(&*self.runtime, uid, &image, pull::policy(c), &refs.pull_secrets).await.map_err(StartError::Image)?;
        let image_cfg = &local.config;
        let image_id = pull::digest_name(&image, &local.digest);
        let ip = self.lease(uid).map(|ip| ip.to_string()).unwrap_or_default();
        let mut env = image_cfg.env.clone();
        // Where the API is, for in-cluster clients (the `kubernetes` Service), as Kubernetes
        // sets it in every container; the container's own env wins.
        let api = [("KUBERNETES_SERVICE_HOST", self.cfg.kubernetes_ip.to_string()), ("KUBERNETES_SERVICE_PORT", "443".to_string()),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443".to_string()), ("KUBERNETES_PORT", format!("tcp://{}:443", self.cfg.kubernetes_ip))];
        for (k, v) in api {
            env.retain(|(n, _)| n != k);
            env.push((k.to_string(), v));
        }
        for (k, v) in inputs::resolve_env(pod, c, &refs, &ip, &self.cfg.node_ip).map_err(StartError::Config)? {
            env.retain(|(n, _)| *n != k);
            env.push((k, v));
        }
        let pod_dir = self.pod_dir(uid);
        let volumes = inputs::prepare_volumes(&self.api, pod, &pod_dir, &refs).await.map_err(StartError::Config)?;
        let read_only: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter(|v| v.config_map.is_some() || v.secret.is_some())
            .map(|v| v.name.clone())
            .collect();
        let mut mounts = inputs::mounts_for(c, &volumes, &read_only).map_err(StartError::Config)?;
        for f in ["hosts", "hostname", "resolv.conf"] {
            mounts.push((pod_dir.join("etc").join(f), format!("/etc/{f}"), false));
        }
        if let Some(dir) = self.token_mount(pod, uid).await.map_err(|e| StartError::Config(inputs::InputError::Api(e)))? {
            if !mounts.iter().any(|(_, path, _)| path == token::MOUNT_PATH) {
                mounts.push((dir, token::MOUNT_PATH.to_string(), true));
            }
        }
        let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let quantity = |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, k: &str, f: fn(&str) -> Option<i64>| {
            m.and_then(|m| m.get(k)).and_then(|q| f(&q.0))
        };
        let id = container_id(uid, &c.name, attempt);
        let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
        let labels = BTreeMap::from([
            (LABEL_UID.to_string(), uid.to_string()),
            (LABEL_NAMESPACE.to_string(), namespace(pod).to_string()),
            (LABEL_POD.to_string(), pod_name(pod).to_string()),
            (LABEL_CONTAINER.to_string(), c.name.clone()),
            (LABEL_ATTEMPT.to_string(), attempt.to_string()),
            (LABEL_GRACE.to_string(), grace.to_string()),
            (LABEL_IMAGE_ID.to_string(), image_id),
            ("orch.dev/init".to_string(), init.to_string()),
        ]);
        let paths = SandboxPaths::new(&self.cfg.run_dir, uid);
        let config = ContainerConfig {
            id: id.clone(),
            image,
            rootfs_parent: Some(local.top.clone()),
            args: image_cfg.argv(c.command.as_deref().unwrap_or_default(), c.args.as_deref().unwrap_or_default()),
            env,
            working_dir: c.working_dir.clone().or(image_cfg.working_dir.clone()),
            hostname: hostname(pod),
            netns: Some(paths.netns),
            ipcns: Some(paths.ipcns),
            mounts,
            memory_limit: quantity(limits, "memory", quantity::bytes),
            cpu_limit_millis: quantity(limits, "cpu", quantity::cpu_millis),
            cpu_request_millis: quantity(requests, "cpu", quantity::cpu_millis).or(quantity(limits, "cpu", quantity::cpu_millis)),
            cgroup: format!("/{}/{uid}/{id}", self.cfg.cgroup_parent.trim_matches('/')),
            log_path: Self::log_path(&self.cfg.data_dir, uid, &c.name, attempt),
            labels,
            shim_group: Some(uid.to_string()),
        };
        if config.args.is_empty() {
            return Err(StartError::Config(inputs::InputError::Missing(format!("container {:?} has no command and its image none", c.name))));
        }
        let prepared = began.elapsed();
        let _permit = self.starts.acquire().await.expect("the start semaphore is never closed");
        let queued = began.elapsed() - prepared;
        match self.runtime.run(&config).await {
            Err(RuntimeError::Runtime(m)) if m.contains("AlreadyExists") => {
                // A start that failed half-way earlier: remove the remains and start again.
                let _ = self.runtime.remove(&id).await;
                self.runtime.run(&config).await.map_err(StartError::Runtime)?;
            }
            other => other.map_err(StartError::Runtime)?,
        }
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        let run = began.elapsed() - prepared - queued;
        tracing::info!(pod = %pod_name(pod), container = %c.name, attempt, prepare_ms = ms(prepared), queued_ms = ms(queued), run_ms = ms(run), "container started");
        Ok(())
    }

}

#[derive(Debug, thiserror::Error)]
pub(super) enum StartError {
    #[error("{0}")]
    Image(pull::ImageError),
    #[error("{0}")]
    Config(inputs::InputError),
    #[error("{0}")]
    Runtime(RuntimeError),
}

