//! The pod status the kubelet reports: phase, conditions, IPs and one status per
//! container (state, last state, restart count, readiness), computed from the same
//! observations the plan uses. Pure; timestamps come in.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde_json::{json, Value};

use super::plan::{restart_policy, Attempt, Observed, Waiting};
use super::runtime::ContainerState;

pub struct StatusInput<'a> {
    pub spec: &'a PodSpec,
    pub observed: &'a Observed,
    pub waiting: &'a BTreeMap<String, Waiting>,
    /// Readiness per container name; a running container without a readiness probe is ready.
    pub readiness: &'a BTreeMap<String, bool>,
    pub pod_ip: Option<String>,
    pub host_ip: &'a str,
    /// The status currently stored, so unchanged conditions keep their transition times.
    pub previous: &'a Value,
    /// Why the sandbox could not be set up, if it could not.
    pub sandbox_error: Option<String>,
    pub now: &'a str,
}

pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn terminated(a: &Attempt) -> Value {
    let ContainerState::Exited { code } = a.state else { return Value::Null };
    let reason = if a.oom_killed {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let mut t = json!({"exitCode": code, "reason": reason, "containerID": format!("containerd://{}", a.id)});
    if let Some(s) = a.started_at {
        t["startedAt"] = rfc3339(s).into();
    }
    if let Some(f) = a.exited_at {
        t["finishedAt"] = rfc3339(f).into();
    }
    json!({"terminated": t})
}

fn state(a: Option<&Attempt>, waiting: Option<&Waiting>, default_wait: &str) -> Value {
    match (waiting, a) {
        (Some(w), _) => json!({"waiting": {"reason": w.reason, "message": w.message}}),
        (None, Some(a)) => match a.state {
            ContainerState::Running { .. } => {
                json!({"running": {"startedAt": a.started_at.map(rfc3339)}})
            }
            ContainerState::Exited { .. } => terminated(a),
            ContainerState::Created | ContainerState::Unknown => json!({"waiting": {"reason": "ContainerCreating"}}),
        },
        (None, None) => json!({"waiting": {"reason": default_wait}}),
    }
}

fn container_status(input: &StatusInput, c: &Container, default_wait: &str) -> (Value, bool) {
    let (name, image) = (c.name.as_str(), c.image.as_deref().unwrap_or_default());
    let latest = input.observed.latest(name);
    let running = latest.is_some_and(|a| matches!(a.state, ContainerState::Running { .. }));
    // Without a verdict yet, a container with readiness or startup probes is not ready.
    let probed = c.readiness_probe.is_some() || c.startup_probe.is_some();
    let ready = running && input.readiness.get(name).copied().unwrap_or(!probed);
    let mut s = json!({
        "name": name,
        "image": image,
        "imageID": latest.map_or("", |a| a.image_id.as_str()),
        "ready": ready,
        "started": running,
        "restartCount": latest.map_or(0, |a| a.attempt),
        "state": state(latest, input.waiting.get(name), default_wait),
        "lastState": input.observed.previous(name).map(terminated).unwrap_or_else(|| json!({})),
    });
    if let Some(a) = latest {
        s["containerID"] = format!("containerd://{}", a.id).into();
    }
    (s, ready)
}

fn condition(input: &StatusInput, kind: &str, ok: bool, reason: Option<&str>) -> Value {
    let status = if ok { "True" } else { "False" };
    let old = input.previous["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == kind));
    let since = match old {
        Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
        _ => input.now.into(),
    };
    let mut c = json!({"type": kind, "status": status, "lastTransitionTime": since});
    if let (false, Some(r)) = (ok, reason) {
        c["reason"] = r.into();
    }
    c
}

fn exit_code(a: Option<&Attempt>) -> Option<u32> {
    match a?.state {
        ContainerState::Exited { code } => Some(code),
        _ => None,
    }
}

/// The phase, as Kubernetes defines it from the containers' states and the restart policy.
pub fn phase(spec: &PodSpec, obs: &Observed) -> &'static str {
    let policy = restart_policy(spec);
    let init_failed = spec.init_containers.iter().flatten().any(|c| exit_code(obs.latest(&c.name)).is_some_and(|code| code != 0));
    if init_failed && policy == "Never" {
        return "Failed";
    }
    let codes: Vec<Option<u32>> = spec.containers.iter().map(|c| exit_code(obs.latest(&c.name))).collect();
    let started = spec.containers.iter().all(|c| obs.latest(&c.name).is_some());
    if !obs.sandbox || !started {
        return "Pending";
    }
    if codes.iter().all(Option::is_some) && policy != "Always" {
        if codes.iter().all(|c| *c == Some(0)) {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
    }
    "Running"
}

pub fn pod_status(input: &StatusInput) -> Value {
    let spec = input.spec;
    let mut init_done = true;
    let init: Vec<Value> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            init_done &= exit_code(input.observed.latest(&c.name)) == Some(0);
            container_status(input, c, "PodInitializing").0
        })
        .collect();
    let wait = if init_done { "ContainerCreating" } else { "PodInitializing" };
    let mut all_ready = true;
    let containers: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| {
            let (s, ready) = container_status(input, c, wait);
            all_ready &= ready;
            s
        })
        .collect();
    let phase = phase(spec, input.observed);
    let all_ready = all_ready && phase == "Running";
    let not_ready_reason = if phase == "Succeeded" || phase == "Failed" { "PodCompleted" } else { "ContainersNotReady" };
    let mut status = json!({
        "phase": phase,
        "hostIP": input.host_ip,
        "hostIPs": [{"ip": input.host_ip}],
        "conditions": [
            condition(input, "PodScheduled", true, None),
            condition(input, "Initialized", init_done, Some("ContainersNotInitialized")),
            condition(input, "ContainersReady", all_ready, Some(not_ready_reason)),
            condition(input, "Ready", all_ready, Some(not_ready_reason)),
        ],
        "containerStatuses": containers,
        "startTime": input.previous.get("startTime").cloned().unwrap_or_else(|| input.now.into()),
    });
    if !init.is_empty() {
        status["initContainerStatuses"] = init.into();
    }
    if let Some(ip) = &input.pod_ip {
        status["podIP"] = ip.clone().into();
        status["podIPs"] = json!([{"ip": ip}]);
    }
    if let Some(e) = &input.sandbox_error {
        status["message"] = format!("pod sandbox: {e}").into();
        status["reason"] = "SandboxFailed".into();
    }
    status
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec(policy: &str) -> PodSpec {
        PodSpec {
            restart_policy: Some(policy.into()),
            containers: vec![Container { name: "app".into(), image: Some("img".into()), ..Default::default() }],
            ..Default::default()
        }
    }

    fn obs(attempts: Vec<Attempt>) -> Observed {
        let mut o = Observed { sandbox: true, ..Default::default() };
        o.containers.insert("app".into(), attempts);
        o
    }

    fn attempt(n: u32, state: ContainerState, oom: bool) -> Attempt {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Attempt { id: format!("u-app-{n}"), attempt: n, state, started_at: Some(t), exited_at: Some(t), oom_killed: oom, image_id: format!("r.test/img@sha256:{n}") }
    }

    fn status(spec: &PodSpec, o: &Observed, previous: &Value, readiness: &BTreeMap<String, bool>) -> Value {
        pod_status(&StatusInput {
            spec,
            observed: o,
            waiting: &BTreeMap::new(),
            readiness,
            pod_ip: Some("10.244.1.5".into()),
            host_ip: "10.0.0.2",
            previous,
            sandbox_error: None,
            now: "2026-11-22T00:00:00Z",
        })
    }

    #[test]
    fn running_ready_pod() {
        let s = spec("Always");
        let o = obs(vec![attempt(0, ContainerState::Exited { code: 137 }, true), attempt(1, ContainerState::Running { pid: 9 }, false)]);
        let st = status(&s, &o, &Value::Null, &BTreeMap::new());
        assert_eq!(st["phase"], "Running");
        assert_eq!(st["podIP"], "10.244.1.5");
        assert_eq!(st["conditions"][3], json!({"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-22T00:00:00Z"}));
        let c = &st["containerStatuses"][0];
        assert_eq!((c["restartCount"].as_u64(), c["ready"].as_bool()), (Some(1), Some(true)));
        assert_eq!(c["lastState"]["terminated"]["reason"], "OOMKilled");
        assert_eq!(c["imageID"], "r.test/img@sha256:1", "the latest attempt's image");
        assert_eq!(c["lastState"]["terminated"]["exitCode"], 137);

        // Readiness failing: not ready; the transition time moves only when the status does.
        let unready = status(&s, &o, &st, &BTreeMap::from([("app".to_string(), false)]));
        assert_eq!(unready["conditions"][3]["status"], "False");
        assert_eq!(unready["conditions"][0]["lastTransitionTime"], st["conditions"][0]["lastTransitionTime"]);
    }

    #[test]
    fn phases_follow_exit_codes_and_policy() {
        let done = obs(vec![attempt(0, ContainerState::Exited { code: 0 }, false)]);
        let failed = obs(vec![attempt(0, ContainerState::Exited { code: 2 }, false)]);
        assert_eq!(phase(&spec("Never"), &done), "Succeeded");
        assert_eq!(phase(&spec("OnFailure"), &done), "Succeeded");
        assert_eq!(phase(&spec("Never"), &failed), "Failed");
        assert_eq!(phase(&spec("OnFailure"), &failed), "Running");
        assert_eq!(phase(&spec("Always"), &done), "Running");
        assert_eq!(phase(&spec("Always"), &Observed::default()), "Pending");
        let st = status(&spec("Never"), &done, &Value::Null, &BTreeMap::new());
        assert_eq!(st["conditions"][3]["reason"], "PodCompleted");
    }
}
