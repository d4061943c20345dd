//! Probes of a pod's running containers: which are due (started on tasks of their own,
//! results sent back to the loop), their tallies, and what they mean for the pod
//! (containers to restart, readiness).

use super::*;

impl<R: ContainerRuntime + 'static, N: PodNetwork + 'static, G: Registry + 'static> Kubelet<R, N, G> {
    /// Record the probe results that arrived, and requeue their pods.
    pub(super) fn record_probe_results(&self) {
        let mut rx = self.probe_rx.lock().expect("probe results lock");
        while let Ok((uid, id, kind, spec, outcome, at)) = rx.try_recv() {
            self.probing.lock().expect("probe lock").remove(&(id.clone(), kind));
            let mut probes = self.probes();
            let state = probes.entry((id.clone(), kind)).or_default();
            let (ok, message) = match outcome {
                Ok(m) => (true, m),
                Err(m) => (false, m),
            };
            let failed = (!ok).then(|| message.clone());
            *state = probe::record(&spec, state, ok, message, at);
            drop(probes);
            if let Some(message) = failed {
                tracing::info!(container = %id, ?kind, %message, "probe failed");
                self.note_probe_failure(&uid, &id, kind, message);
            }
            self.workers().requeue(&uid);
        }
    }

    /// An `Unhealthy` event for a failed probe of the container `id` of pod `uid`.
    fn note_probe_failure(&self, uid: &str, id: &str, kind: probe::Kind, message: String) {
        let Some(pod) = self.local().get(uid).and_then(|l| l.pod.clone()) else { return };
        // The container's name is in its id (the spec is not at hand here).
        let name = id.split_once('-').and_then(|(_, rest)| rest.rsplit_once('-')).map(|(n, _)| n.to_string());
        let what = match kind {
            probe::Kind::Startup => "Startup",
            probe::Kind::Liveness => "Liveness",
            probe::Kind::Readiness => "Readiness",
        };
        self.events.note(&pod, events::Note::warning("Unhealthy", format!("{what} probe failed: {message}"), name.as_deref()));
    }

    /// Start the probes that are due for the pod's running containers; returns the
    /// containers to restart (liveness or startup failed), readiness per container, and
    /// when the next probe is due.
    pub(super) fn probe_pod(
        &self,
        uid: &str,
        spec: &PodSpec,
        containers: &Observation,
    ) -> (Vec<String>, BTreeMap<String, bool>, Option<SystemTime>) {
        let now = SystemTime::now();
        let mut unhealthy = Vec::new();
        let mut readiness = BTreeMap::new();
        let mut wake = None;
        let pod_ip = self.lease(uid).map(std::net::IpAddr::V4);
        for c in &spec.containers {
            let Some(run) = containers.get(&c.name).and_then(|a| a.last()) else { continue };
            if !matches!(run.state, crate::kubelet::runtime::ContainerState::Running { .. }) {
                continue;
            }
            let started = run.started_at.unwrap_or(now);
            let startup_done = probe::spec(c, probe::Kind::Startup).is_none()
                || self.probes().get(&(run.id.clone(), probe::Kind::Startup)).is_some_and(|s| s.result == Some(true));
            let kinds: &[probe::Kind] = if startup_done { &[probe::Kind::Liveness, probe::Kind::Readiness] } else { &[probe::Kind::Startup] };
            for kind in kinds {
                let Some(parsed) = probe::spec(c, *kind) else { continue };
                let pspec = match parsed {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(container = %c.name, ?kind, error = %e, "probe ignored");
                        continue;
                    }
                };
                let key = (run.id.clone(), *kind);
                let state = self.probes().get(&key).cloned().unwrap_or_default();
                if state.result == Some(false) && *kind != probe::Kind::Readiness {
                    unhealthy.push(c.name.clone());
                }
                let due = probe::next_run(&pspec, &state, started);
                if due <= now && !self.probing.lock().expect("probe lock").contains(&key) {
                    if let Some(ip) = pod_ip {
                        self.probing.lock().expect("probe lock").insert(key.clone());
                        let (rt, tx, wake_loop, kind, uid) = (self.runtime.clone(), self.probe_tx.clone(), self.wake.clone(), *kind, uid.to_string());
                        tokio::spawn(async move {
                            let outcome = probe::run(rt.as_ref(), &key.0, ip, &pspec).await;
                            let _ = tx.send((uid, key.0, kind, pspec, outcome, SystemTime::now()));
                            wake_loop.notify_one();
                        });
                    }
                } else {
                    wake = min_time(wake, Some(due));
                }
            }
            let ready = match probe::spec(c, probe::Kind::Readiness) {
                None => true,
                Some(_) => self.probes().get(&(run.id.clone(), probe::Kind::Readiness)).is_some_and(|s| s.result == Some(true)),
            };
            readiness.insert(c.name.clone(), ready && startup_done);
        }
        (unhealthy, readiness, wake)
    }
}
