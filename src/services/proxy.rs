//! The proxy role's loop: on every change of Services or Endpoints, recompute the virtual
//! services of the Services that changed (`model::entries_of`), apply only the difference
//! to the dataplane, flush conntrack entries of UDP backends that left; rewrite everything
//! (`model::desired`) on start, after a failure, when a cache was listed again and every
//! resync period. Its mode and last sync are shared with the heartbeat, which reports
//! them on the Node.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::watch_cache::{Changed, WatchCache};
use super::model::{self, Backend, Table};
use super::{Dataplane, DataplaneError};
use crate::clock::Clock;

/// What the proxy reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyStatus {
    pub mode: String,
    /// RFC 3339 time of the last successful sync or change.
    pub last_sync: Option<String>,
    pub virtual_services: usize,
    pub last_error: Option<String>,
    /// Revisions of the Services and Endpoints caches the rules were computed from.
    pub services_revision: u64,
    pub endpoints_revision: u64,
    /// How long the last step that changed rules took (computing and applying).
    pub last_step_micros: u64,
}

pub type SharedStatus = Arc<Mutex<ProxyStatus>>;

/// The dataplane and what it holds.
pub struct Proxy<D> {
    dataplane: D,
    /// What the dataplane holds; None until a full sync succeeded (and after any failure).
    applied: Option<Table>,
}

/// What one step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Unchanged,
    Full(usize),
    Changes(usize),
}

impl<D: Dataplane> Proxy<D> {
    pub fn new(dataplane: D) -> Self {
        Proxy { dataplane, applied: None }
    }

    pub fn dataplane(&self) -> &D {
        &self.dataplane
    }

    /// Whether the next step must be a full one (nothing applied yet, or a failure left the
    /// dataplane's state unknown).
    pub fn needs_full(&self) -> bool {
        self.applied.is_none()
    }

    /// Bring the dataplane to `desired`: all of it when `full` or when its state is not
    /// known, otherwise only the changes. Returns UDP backends that left (for conntrack).
    pub async fn step(&mut self, desired: Table, full: bool) -> Result<(Step, Vec<(Ipv4Addr, Backend)>), DataplaneError> {
        match self.applied.take() {
            Some(applied) if !full => {
                let changes = model::changes(&applied, &desired);
                self.apply_changes(applied, changes).await
            }
            previous => {
                self.dataplane.sync(&desired).await?;
                let gone = previous.map(|p| model::stale_udp(&model::changes(&p, &desired))).unwrap_or_default();
                self.applied = Some(desired);
                Ok((Step::Full(self.applied.as_ref().map_or(0, Table::len)), gone))
            }
        }
    }

    /// Bring the given Services (`namespace/name` → their virtual services now, empty when
    /// gone) up to date, leaving all others alone. Needs a dataplane in a known state.
    pub async fn step_services(&mut self, services: &[(String, Table)]) -> Result<(Step, Vec<(Ipv4Addr, Backend)>), DataplaneError> {
        let applied = self.applied.take().ok_or_else(|| DataplaneError("no full sync yet".into()))?;
        let changes = services.iter().flat_map(|(name, entries)| model::changes_for(&applied, name, entries)).collect();
        self.apply_changes(applied, changes).await
    }

    async fn apply_changes(&mut self, mut applied: Table, changes: Vec<model::Change>) -> Result<(Step, Vec<(Ipv4Addr, Backend)>), DataplaneError> {
        if changes.is_empty() {
            self.applied = Some(applied);
            return Ok((Step::Unchanged, vec![]));
        }
        // On failure `applied` stays None: the dataplane may hold part of the changes.
        model::apply(&mut applied, &changes);
        self.dataplane.apply(&changes, &applied).await?;
        self.applied = Some(applied);
        Ok((Step::Changes(changes.len()), model::stale_udp(&changes)))
    }
}

/// The virtual services of the Services named `keys`, from the caches as they are now.
fn entries_now(keys: &std::collections::BTreeSet<String>, services: &WatchCache, endpoints: &WatchCache) -> Vec<(String, Table)> {
    keys.iter()
        .map(|k| {
            let entries = services.get(k).map(|svc| model::entries_of(&svc, endpoints.get(k).as_ref())).unwrap_or_default();
            (k.clone(), entries)
        })
        .collect()
}

/// Forget conntrack entries of a UDP backend that left a VIP (best effort: without the
/// `conntrack` tool, clients may keep reaching the old backend until their entry expires).
async fn flush_udp(vip: Ipv4Addr, b: Backend) {
    let out = tokio::process::Command::new("conntrack")
        .args(["-D", "-p", "udp", "--orig-dst", &vip.to_string(), "--reply-src", &b.ip.to_string()])
        .output()
        .await;
    match out {
        Ok(_) => tracing::debug!(%vip, backend = %b, "flushed UDP conntrack entries"),
        Err(e) => tracing::warn!(%vip, backend = %b, error = %e, "could not flush UDP conntrack entries (is conntrack installed?)"),
    }
}

/// Run the proxy until the process ends.
pub async fn run<D: Dataplane>(mut proxy: Proxy<D>, services: WatchCache, endpoints: WatchCache, resync: Duration, status: SharedStatus, clock: Arc<dyn Clock>) {
    let (mut svc_rx, mut ep_rx) = (services.subscribe(), endpoints.subscribe());
    status.lock().expect("status lock").mode = proxy.dataplane.mode().to_string();
    let mut last_full: Option<Instant> = None;
    let (mut svc_seen, mut ep_seen) = (0, 0);
    loop {
        if services.synced() && endpoints.synced() {
            let started = Instant::now();
            let (svc_rev, ep_rev) = (services.revision(), endpoints.revision());
            let (svc_seq, svc_changed) = services.changes_since(svc_seen);
            let (ep_seq, ep_changed) = endpoints.changes_since(ep_seen);
            let full = last_full.is_none_or(|t| t.elapsed() >= resync) || proxy.needs_full();
            let result = match (svc_changed, ep_changed) {
                (Changed::Keys(mut keys), Changed::Keys(ep_keys)) if !full => {
                    keys.extend(ep_keys);
                    proxy.step_services(&entries_now(&keys, &services, &endpoints)).await
                }
                _ => proxy.step(model::desired(&services.objects(), &endpoints.objects()), true).await,
            };
            (svc_seen, ep_seen) = (svc_seq, ep_seq);
            let gone = {
                let mut s = status.lock().expect("status lock");
                match result {
                    Ok((step, gone)) => {
                        if step != Step::Unchanged {
                            tracing::debug!(?step, took = ?started.elapsed(), "proxy rules updated");
                            s.last_sync = Some(clock.now_rfc3339());
                            s.last_step_micros = started.elapsed().as_micros() as u64;
                        }
                        (s.services_revision, s.endpoints_revision) = (svc_rev, ep_rev);
                        if matches!(step, Step::Full(_)) {
                            last_full = Some(Instant::now());
                        }
                        s.virtual_services = proxy.applied.as_ref().map_or(0, Table::len);
                        s.last_error = None;
                        gone
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "proxy: applying rules failed; rewriting all of them next");
                        s.last_error = Some(e.0);
                        last_full = None;
                        vec![]
                    }
                }
            };
            for (vip, b) in gone {
                flush_udp(vip, b).await;
            }
        }
        let wait = if last_full.is_none() { Duration::from_secs(1) } else { resync.saturating_sub(last_full.map_or(Duration::ZERO, |t| t.elapsed())) };
        tokio::select! {
            _ = svc_rx.changed() => {}
            _ = ep_rx.changed() => {}
            _ = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::model::Change;
    use super::super::{FakeCall, FakeDataplane};
    use super::*;

    fn table(backends: &[&str]) -> Table {
        let svc = json!({"metadata": {"name": "dns", "namespace": "kube"}, "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 53, "protocol": "UDP"}]}});
        let addresses: Vec<_> = backends.iter().map(|ip| json!({"ip": ip})).collect();
        let eps = json!({"metadata": {"name": "dns", "namespace": "kube"}, "subsets": [{"addresses": addresses, "ports": [{"port": 53, "protocol": "UDP"}]}]});
        model::desired(&[svc], &[eps])
    }

    #[tokio::test]
    async fn first_a_full_sync_then_only_changes_and_a_full_sync_after_a_failure() {
        let mut p = Proxy::new(FakeDataplane::default());
        assert_eq!(p.step(table(&["10.244.0.2"]), false).await.unwrap().0, Step::Full(1));
        assert_eq!(p.step(table(&["10.244.0.2"]), false).await.unwrap().0, Step::Unchanged);
        let (step, gone) = p.step(table(&["10.244.0.3"]), false).await.unwrap();
        assert_eq!(step, Step::Changes(1));
        assert_eq!(gone, vec![("10.96.0.10".parse().unwrap(), Backend { ip: "10.244.0.2".parse().unwrap(), port: 53 })]);
        assert!(matches!(&p.dataplane().calls[1], FakeCall::Apply(c) if matches!(&c[..], [Change::Upsert { .. }])));

        p.dataplane.fail_next = true;
        assert!(p.step(table(&["10.244.0.4"]), false).await.is_err());
        // The dataplane's state is unknown now: the next step rewrites everything.
        assert_eq!(p.step(table(&["10.244.0.4"]), false).await.unwrap().0, Step::Full(1));
        assert_eq!(p.step(table(&["10.244.0.4"]), true).await.unwrap().0, Step::Full(1));
        assert_eq!(p.dataplane().calls.len(), 5);
    }

    #[tokio::test]
    async fn a_change_to_one_service_applies_only_its_entries_and_needs_a_full_sync_first() {
        let mut p = Proxy::new(FakeDataplane::default());
        assert!(p.needs_full());
        assert!(p.step_services(&[]).await.is_err());
        let mut all = table(&["10.244.0.2"]);
        let other = other_service();
        all.insert("default/other:".into(), other.clone());
        p.step(all, false).await.unwrap();
        let (step, _) = p.step_services(&[("kube/dns".into(), table(&["10.244.0.3"]))]).await.unwrap();
        assert_eq!(step, Step::Changes(1));
        let FakeCall::Apply(changes) = &p.dataplane().calls[1] else { panic!("expected an apply") };
        assert!(matches!(&changes[..], [Change::Upsert { key, .. }] if key == "kube/dns:"));
        // A Service that is gone takes its entries with it; the other stays.
        assert_eq!(p.step_services(&[("kube/dns".into(), Table::new())]).await.unwrap().0, Step::Changes(1));
        assert_eq!(p.applied.as_ref().unwrap().keys().collect::<Vec<_>>(), vec!["default/other:"]);
    }

    fn other_service() -> model::VirtualService {
        model::VirtualService { vip: "10.96.0.20".parse().unwrap(), port: 80, protocol: model::Protocol::Tcp, node_port: None, affinity_timeout: None, backends: vec![] }
    }
}
