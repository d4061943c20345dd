//! Container probes (liveness, readiness, startup) with Kubernetes' thresholds: when one
//! is due and what a run's outcome makes of its state are pure (`due`, `record`); `run`
//! performs one check (exec in the container, HTTP GET or TCP connect to the pod IP).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::runtime::{exec_capture, ContainerRuntime};
use crate::client::ApiClient;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

/// What one probe check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Exec(Vec<String>),
    Http { port: u16, path: String, host: Option<String> },
    Tcp { port: u16, host: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub check: Check,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// A probe's running tally for one container run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeState {
    pub successes: u32,
    pub failures: u32,
    /// Settled outcome: None until a threshold is first reached.
    pub result: Option<bool>,
    pub last_run: Option<SystemTime>,
    pub last_message: String,
}

fn port(p: &IntOrString, c: &Container) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} is out of range")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok())
            .ok_or_else(|| format!("container {} has no port named {name:?}", c.name)),
    }
}

fn secs(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(v.map_or(default, |s| s.max(0) as u64))
}

/// The probe of `kind` on `c`, if it has one.
pub fn spec(c: &Container, kind: Kind) -> Option<Result<ProbeSpec, String>> {
    let p: &Probe = match kind {
        Kind::Startup => c.startup_probe.as_ref(),
        Kind::Liveness => c.liveness_probe.as_ref(),
        Kind::Readiness => c.readiness_probe.as_ref(),
    }?;
    let check = if let Some(e) = &p.exec {
        Ok(Check::Exec(e.command.clone().unwrap_or_default()))
    } else if let Some(h) = &p.http_get {
        port(&h.port, c).map(|port| Check::Http { port, path: h.path.clone().unwrap_or_else(|| "/".into()), host: h.host.clone() })
    } else if let Some(t) = &p.tcp_socket {
        port(&t.port, c).map(|port| Check::Tcp { port, host: t.host.clone() })
    } else {
        Err("the probe has no handler (exec, httpGet or tcpSocket; grpc is not supported)".to_string())
    };
    Some(check.map(|check| ProbeSpec {
        check,
        initial_delay: secs(p.initial_delay_seconds, 0),
        period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
        // Liveness and startup probes must use 1 (as the API server enforces).
        success_threshold: if kind == Kind::Readiness { p.success_threshold.unwrap_or(1).max(1) as u32 } else { 1 },
        failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
    }))
}

/// When the probe should run next (the container started at `started`).
pub fn next_run(spec: &ProbeSpec, state: &ProbeState, started: SystemTime) -> SystemTime {
    match state.last_run {
        None => started + spec.initial_delay,
        Some(last) => last + spec.period,
    }
}

/// The state after one run with outcome `ok`.
pub fn record(spec: &ProbeSpec, state: &ProbeState, ok: bool, message: String, at: SystemTime) -> ProbeState {
    let mut s = state.clone();
    s.last_run = Some(at);
    s.last_message = message;
    if ok {
        s.successes += 1;
        s.failures = 0;
        if s.successes >= spec.success_threshold {
            s.result = Some(true);
        }
    } else {
        s.failures += 1;
        s.successes = 0;
        if s.failures >= spec.failure_threshold {
            s.result = Some(false);
        }
    }
    s
}

/// Perform one check: Ok(message) on success, Err(message) on failure.
pub async fn run<R: ContainerRuntime + ?Sized>(rt: &R, container_id: &str, pod_ip: IpAddr, spec: &ProbeSpec) -> Result<String, String> {
    let target = |host: &Option<String>, port: u16| -> Result<SocketAddr, String> {
        let ip = match host {
            Some(h) if !h.is_empty() => h.parse().map_err(|_| format!("probe host {h:?} is not an IP address"))?,
            _ => pod_ip,
        };
        Ok(SocketAddr::new(ip, port))
    };
    match &spec.check {
        Check::Exec(cmd) => match exec_capture(rt, container_id, cmd, spec.timeout, 1024).await {
            Ok((0, _)) => Ok(String::new()),
            Ok((code, out)) => Err(format!("exit code {code}: {}", String::from_utf8_lossy(&out).trim())),
            Err(e) => Err(e.to_string()),
        },
        Check::Http { port, path, host } => {
            let url = format!("http://{}{path}", target(host, *port)?);
            match ApiClient::plain(spec.timeout).call(hyper::Method::GET, &url, None, bytes::Bytes::new()).await {
                Ok((status, _)) if (200..400).contains(&status.as_u16()) => Ok(format!("HTTP {status}")),
                Ok((status, _)) => Err(format!("HTTP probe failed with statuscode: {}", status.as_u16())),
                Err(e) => Err(e.to_string()),
            }
        }
        Check::Tcp { port, host } => {
            let addr = target(host, *port)?;
            match tokio::time::timeout(spec.timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => Ok(String::new()),
                Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
                Err(_) => Err(format!("dial tcp {addr}: timed out")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction};

    use super::*;

    fn probe_spec(success: u32, failure: u32) -> ProbeSpec {
        ProbeSpec {
            check: Check::Tcp { port: 80, host: None },
            initial_delay: Duration::from_secs(5),
            period: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn thresholds_settle_the_result() {
        let s = probe_spec(2, 3);
        let t = SystemTime::UNIX_EPOCH;
        let mut st = ProbeState::default();
        st = record(&s, &st, true, String::new(), t);
        assert_eq!(st.result, None);
        st = record(&s, &st, true, String::new(), t);
        assert_eq!(st.result, Some(true));
        st = record(&s, &st, false, "no".into(), t);
        st = record(&s, &st, false, "no".into(), t);
        assert_eq!(st.result, Some(true), "two failures of three keep it");
        st = record(&s, &st, false, "no".into(), t);
        assert_eq!(st.result, Some(false));
        st = record(&s, &st, true, String::new(), t);
        assert_eq!(st.result, Some(false), "one success of two does not flip it back");
    }

    #[test]
    fn runs_after_the_initial_delay_then_every_period() {
        let s = probe_spec(1, 1);
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let st = ProbeState::default();
        assert_eq!(next_run(&s, &st, started), started + Duration::from_secs(5));
        let st = record(&s, &st, true, String::new(), started + Duration::from_secs(6));
        assert_eq!(next_run(&s, &st, started), started + Duration::from_secs(8));
    }

    #[test]
    fn named_ports_resolve_and_defaults_apply() {
        let c = Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort { name: Some("http".into()), container_port: 8080, ..Default::default() }]),
            readiness_probe: Some(Probe {
                http_get: Some(HTTPGetAction { port: IntOrString::String("http".into()), ..Default::default() }),
                ..Default::default()
            }),
            liveness_probe: Some(Probe {
                http_get: Some(HTTPGetAction { port: IntOrString::String("nope".into()), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = spec(&c, Kind::Readiness).unwrap().unwrap();
        assert_eq!(r.check, Check::Http { port: 8080, path: "/".into(), host: None });
        assert_eq!((r.period, r.timeout, r.failure_threshold), (Duration::from_secs(10), Duration::from_secs(1), 3));
        assert!(spec(&c, Kind::Liveness).unwrap().is_err());
        assert!(spec(&c, Kind::Startup).is_none());
    }
}
