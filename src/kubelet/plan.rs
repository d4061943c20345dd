//! What the kubelet should do next for one pod, decided from the pod's spec and what the
//! runtime reports: start, restart (with exponential back-off), stop gracefully, clean up.
//! Pure: the sync loop passes the observations and the time in and performs the actions.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::PodSpec;

use super::runtime::ContainerState;

/// One run of a container as the runtime reports it. A restart is a new attempt with a
/// new runtime id; the previous one is kept for `logs --previous`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub id: String,
    pub attempt: u32,
    pub state: ContainerState,
    pub started_at: Option<SystemTime>,
    pub exited_at: Option<SystemTime>,
    pub oom_killed: bool,
    /// The image it runs, as `repository@digest` (empty if not known).
    pub image_id: String,
}

/// Everything the runtime and the network report about one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Per container name, its attempts, oldest first.
    pub containers: BTreeMap<String, Vec<Attempt>>,
    /// True once the pod's namespaces and network are set up.
    pub sandbox: bool,
    /// Containers whose liveness probe failed past its threshold (restart them).
    pub unhealthy: Vec<String>,
}

impl Observed {
    pub fn latest(&self, name: &str) -> Option<&Attempt> {
        self.containers.get(name).and_then(|a| a.last())
    }

    pub fn previous(&self, name: &str) -> Option<&Attempt> {
        self.containers.get(name).and_then(|a| a.len().checked_sub(2).map(|i| &a[i]))
    }

    fn all(&self) -> impl Iterator<Item = &Attempt> {
        self.containers.values().flatten()
    }
}

/// Restart back-off: `base` doubled per restart, capped at `max` (Kubernetes: 10 s, 5 min).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_secs(10), max: Duration::from_secs(300) }
    }
}

impl Backoff {
    /// The wait before starting attempt `restarts + 1`.
    pub fn delay(&self, restarts: u32) -> Duration {
        self.base.saturating_mul(1u32.checked_shl(restarts.min(31)).unwrap_or(u32::MAX)).min(self.max)
    }
}

pub struct Input<'a> {
    pub spec: &'a PodSpec,
    /// The pod is being deleted (or is gone from the API).
    pub deleting: bool,
    /// How long a stopping container gets between SIGTERM and SIGKILL.
    pub grace: Duration,
    pub observed: &'a Observed,
    /// Runtime ids sent SIGTERM, and when.
    pub terminating: &'a BTreeMap<String, SystemTime>,
    pub now: SystemTime,
    pub backoff: Backoff,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Pin the namespaces, lease an IP, plug the network in.
    Sandbox,
    Start { container: String, init: bool, attempt: u32 },
    Term { id: String },
    Kill { id: String },
    Remove { id: String },
    TeardownSandbox,
    /// Nothing of the pod is left on the node.
    Finished,
}

/// Why a container is not running, for its status (`waiting.reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub waiting: BTreeMap<String, Waiting>,
    /// When to look again even if nothing changes (a back-off or grace period ending).
    pub wake_at: Option<SystemTime>,
}

impl Plan {
    fn wake(&mut self, at: SystemTime) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }
}

fn live(state: ContainerState) -> bool {
    matches!(state, ContainerState::Running { .. } | ContainerState::Created | ContainerState::Unknown)
}

pub fn restart_policy(spec: &PodSpec) -> &str {
    spec.restart_policy.as_deref().unwrap_or("Always")
}

/// Decide the next actions for one pod.
pub fn plan(input: &Input) -> Plan {
    let mut plan = Plan::default();
    let obs = input.observed;
    if input.deleting {
        stop_all(input, &mut plan);
        return plan;
    }
    for name in unhealthy_running(input) {
        stop_one(input, &name, &mut plan);
    }
    if !obs.sandbox {
        plan.actions.push(Action::Sandbox);
    }
    let policy = restart_policy(input.spec);
    let mut initialized = true;
    for c in input.spec.init_containers.iter().flatten() {
        match obs.latest(&c.name) {
            None => {
                plan.actions.push(Action::Start { container: c.name.clone(), init: true, attempt: 0 });
                initialized = false;
            }
            Some(a) if live(a.state) => initialized = false,
            Some(Attempt { state: ContainerState::Exited { code: 0 }, .. }) => {}
            Some(a) => {
                // A failed init container: the pod fails under Never, else it retries.
                if policy != "Never" {
                    restart(input, &c.name, true, a, &mut plan);
                }
                initialized = false;
            }
        }
        if !initialized {
            break;
        }
    }
    if initialized {
        for c in &input.spec.containers {
            match obs.latest(&c.name) {
                None => plan.actions.push(Action::Start { container: c.name.clone(), init: false, attempt: 0 }),
                Some(a) if live(a.state) => {}
                Some(a) => {
                    let ContainerState::Exited { code } = a.state else { continue };
                    let again = match policy {
                        "Never" => false,
                        "OnFailure" => code != 0,
                        _ => true,
                    };
                    if again {
                        restart(input, &c.name, false, a, &mut plan);
                    }
                }
            }
        }
    }
    // Keep the latest two attempts of each container (the previous one serves `logs --previous`).
    for attempts in obs.containers.values() {
        for old in attempts.iter().rev().skip(2).filter(|a| !live(a.state)) {
            plan.actions.push(Action::Remove { id: old.id.clone() });
        }
    }
    plan
}

fn unhealthy_running(input: &Input) -> Vec<String> {
    input.observed.unhealthy.iter().filter(|n| input.observed.latest(n).is_some_and(|a| live(a.state))).cloned().collect()
}

fn restart(input: &Input, name: &str, init: bool, last: &Attempt, plan: &mut Plan) {
    let delay = input.backoff.delay(last.attempt);
    let exited = last.exited_at.unwrap_or(input.now);
    let ready_at = exited + delay;
    if input.now >= ready_at {
        plan.actions.push(Action::Start { container: name.into(), init, attempt: last.attempt + 1 });
    } else {
        let message = format!("back-off {}s restarting failed container {name}", delay.as_secs());
        plan.waiting.insert(name.into(), Waiting { reason: "CrashLoopBackOff", message });
        plan.wake(ready_at);
    }
}

fn stop_one(input: &Input, name: &str, plan: &mut Plan) {
    if let Some(a) = input.observed.latest(name) {
        signal(input, a, plan);
    }
}

fn signal(input: &Input, a: &Attempt, plan: &mut Plan) {
    match input.terminating.get(&a.id) {
        None => {
            plan.actions.push(Action::Term { id: a.id.clone() });
            plan.wake(input.now + input.grace);
        }
        Some(since) if input.now >= *since + input.grace => plan.actions.push(Action::Kill { id: a.id.clone() }),
        Some(since) => plan.wake(*since + input.grace),
    }
}

fn stop_all(input: &Input, plan: &mut Plan) {
    let obs = input.observed;
    let running: Vec<&Attempt> = obs.all().filter(|a| live(a.state) && a.state != ContainerState::Created).collect();
    if !running.is_empty() {
        for a in running {
            signal(input, a, plan);
        }
        return;
    }
    for a in obs.all() {
        plan.actions.push(Action::Remove { id: a.id.clone() });
    }
    if obs.sandbox {
        plan.actions.push(Action::TeardownSandbox);
    }
    plan.actions.push(Action::Finished);
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Container;

    use super::*;

    fn spec(policy: &str, init: &[&str], containers: &[&str]) -> PodSpec {
        let c = |n: &&str| Container { name: n.to_string(), image: Some("img".into()), ..Default::default() };
        PodSpec {
            restart_policy: Some(policy.into()),
            init_containers: (!init.is_empty()).then(|| init.iter().map(c).collect()),
            containers: containers.iter().map(c).collect(),
            ..Default::default()
        }
    }

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn attempt(name: &str, n: u32, state: ContainerState, exited: Option<u64>) -> Attempt {
        Attempt { id: format!("{name}-{n}"), attempt: n, state, started_at: None, exited_at: exited.map(at), oom_killed: false, image_id: String::new() }
    }

    fn observed(sandbox: bool, attempts: Vec<(&str, Attempt)>) -> Observed {
        let mut o = Observed { sandbox, ..Default::default() };
        for (name, a) in attempts {
            o.containers.entry(name.into()).or_default().push(a);
        }
        o
    }

    fn run(spec: &PodSpec, obs: &Observed, now: u64) -> Plan {
        let terminating = BTreeMap::new();
        plan(&Input {
            spec,
            deleting: false,
            grace: Duration::from_secs(30),
            observed: obs,
            terminating: &terminating,
            now: at(now),
            backoff: Backoff::default(),
        })
    }

    const RUNNING: ContainerState = ContainerState::Running { pid: 1 };

    #[test]
    fn a_new_pod_gets_a_sandbox_then_its_init_containers_one_by_one() {
        let s = spec("Always", &["i1", "i2"], &["app"]);
        let p = run(&s, &Observed::default(), 0);
        assert_eq!(p.actions, vec![Action::Sandbox, Action::Start { container: "i1".into(), init: true, attempt: 0 }]);
        let o = observed(true, vec![("i1", attempt("i1", 0, RUNNING, None))]);
        assert_eq!(run(&s, &o, 0).actions, vec![]);
        let o = observed(true, vec![("i1", attempt("i1", 0, ContainerState::Exited { code: 0 }, Some(1)))]);
        assert_eq!(run(&s, &o, 1).actions, vec![Action::Start { container: "i2".into(), init: true, attempt: 0 }]);
        let o = observed(
            true,
            vec![("i1", attempt("i1", 0, ContainerState::Exited { code: 0 }, Some(1))), ("i2", attempt("i2", 0, ContainerState::Exited { code: 0 }, Some(2)))],
        );
        assert_eq!(run(&s, &o, 2).actions, vec![Action::Start { container: "app".into(), init: false, attempt: 0 }]);
    }

    #[test]
    fn restarts_back_off_exponentially_and_follow_the_policy() {
        let b = Backoff::default();
        assert_eq!((b.delay(0), b.delay(1), b.delay(2), b.delay(10)), (Duration::from_secs(10), Duration::from_secs(20), Duration::from_secs(40), Duration::from_secs(300)));
        let s = spec("Always", &[], &["app"]);
        let o = observed(true, vec![("app", attempt("app", 2, ContainerState::Exited { code: 1 }, Some(100)))]);
        let waiting = run(&s, &o, 130);
        assert_eq!(waiting.actions, vec![]);
        assert_eq!(waiting.waiting["app"].reason, "CrashLoopBackOff");
        assert_eq!(waiting.wake_at, Some(at(140)));
        assert_eq!(run(&s, &o, 140).actions, vec![Action::Start { container: "app".into(), init: false, attempt: 3 }]);

        let done = observed(true, vec![("app", attempt("app", 0, ContainerState::Exited { code: 0 }, Some(5)))]);
        assert_eq!(run(&spec("OnFailure", &[], &["app"]), &done, 100).actions, vec![]);
        assert_eq!(run(&spec("Never", &[], &["app"]), &o, 1000).actions, vec![]);
        assert_eq!(run(&spec("Always", &[], &["app"]), &done, 100).actions.len(), 1);
    }

    #[test]
    fn a_failed_init_container_fails_the_pod_under_never() {
        let s = spec("Never", &["i1"], &["app"]);
        let o = observed(true, vec![("i1", attempt("i1", 0, ContainerState::Exited { code: 3 }, Some(1)))]);
        assert_eq!(run(&s, &o, 100).actions, vec![]);
    }

    #[test]
    fn old_attempts_are_removed_keeping_the_previous_one() {
        let s = spec("Always", &[], &["app"]);
        let o = observed(
            true,
            vec![
                ("app", attempt("app", 0, ContainerState::Exited { code: 1 }, Some(1))),
                ("app", attempt("app", 1, ContainerState::Exited { code: 1 }, Some(20))),
                ("app", attempt("app", 2, RUNNING, None)),
            ],
        );
        assert_eq!(run(&s, &o, 100).actions, vec![Action::Remove { id: "app-0".into() }]);
    }

    #[test]
    fn deletion_terms_then_kills_after_the_grace_then_cleans_up() {
        let s = spec("Always", &[], &["a", "b"]);
        let o = observed(true, vec![("a", attempt("a", 0, RUNNING, None)), ("b", attempt("b", 0, ContainerState::Exited { code: 0 }, Some(1)))]);
        let mut terminating = BTreeMap::new();
        let input = |now, terminating: &BTreeMap<String, SystemTime>| {
            plan(&Input { spec: &s, deleting: true, grace: Duration::from_secs(30), observed: &o, terminating, now: at(now), backoff: Backoff::default() })
        };
        let first = input(10, &terminating);
        assert_eq!(first.actions, vec![Action::Term { id: "a-0".into() }]);
        assert_eq!(first.wake_at, Some(at(40)));
        terminating.insert("a-0".to_string(), at(10));
        assert_eq!(input(20, &terminating).actions, vec![]);
        assert_eq!(input(40, &terminating).actions, vec![Action::Kill { id: "a-0".into() }]);

        let stopped = observed(true, vec![("a", attempt("a", 0, ContainerState::Exited { code: 137 }, Some(40)))]);
        let p = plan(&Input { spec: &s, deleting: true, grace: Duration::from_secs(30), observed: &stopped, terminating: &terminating, now: at(41), backoff: Backoff::default() });
        assert_eq!(p.actions, vec![Action::Remove { id: "a-0".into() }, Action::TeardownSandbox, Action::Finished]);
    }

    #[test]
    fn an_unhealthy_container_is_stopped_and_then_restarted() {
        let s = spec("Always", &[], &["app"]);
        let mut o = observed(true, vec![("app", attempt("app", 0, RUNNING, None))]);
        o.unhealthy = vec!["app".into()];
        assert_eq!(run(&s, &o, 5).actions, vec![Action::Term { id: "app-0".into() }]);
    }
}
