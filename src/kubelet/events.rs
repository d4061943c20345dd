//! The Events the kubelet reports about the pods it runs (`Created`, `Started`, `Killing`,
//! `Failed`, `BackOff`, `Unhealthy`), worded as Kubernetes' kubelet words them, so that
//! `kubectl describe pod` and `kubectl events` tell what happened on the node. `Recorder`
//! sends them from a task of its own, best effort (a lost event is logged, never retried,
//! and no pod waits for one), and counts a repeat of the same event on the same pod within
//! `REPEAT_WINDOW` on the first one instead of writing another, as Kubernetes' event
//! correlator does. `event` and `Repeats` are pure.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use hyper::Method;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::inputs::Api;

/// The pod an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// What happened, before it is an Event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Note {
    pub normal: bool,
    pub reason: &'static str,
    pub message: String,
    /// `spec.containers{name}` for an event about one container.
    pub field_path: String,
}

impl Note {
    pub fn normal(reason: &'static str, message: String, container: Option<&str>) -> Note {
        Note { normal: true, reason, message, field_path: field_path(container) }
    }

    pub fn warning(reason: &'static str, message: String, container: Option<&str>) -> Note {
        Note { normal: false, reason, message, field_path: field_path(container) }
    }
}

fn field_path(container: Option<&str>) -> String {
    container.map(|c| format!("spec.containers{{{c}}}")).unwrap_or_default()
}

/// Repeats of one event are counted on it for this long.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Events queued for the sender; past this they are dropped (and logged).
const QUEUE: usize = 256;
/// Repeats remembered at most (the oldest are forgotten first).
const REMEMBERED: usize = 1024;

/// The Event for `note` about `pod`, reported by the kubelet of `node`.
pub fn event(pod: &PodRef, note: &Note, node: &str, now: DateTime<Utc>, id: &str) -> Value {
    let at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut involved = json!({"apiVersion": "v1", "kind": "Pod", "name": pod.name, "namespace": pod.namespace, "uid": pod.uid});
    if !note.field_path.is_empty() {
        involved["fieldPath"] = note.field_path.clone().into();
    }
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{}.{id}", pod.name), "namespace": pod.namespace},
        "involvedObject": involved,
        "type": if note.normal { "Normal" } else { "Warning" },
        "reason": note.reason, "message": note.message,
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet", "reportingInstance": node,
        "firstTimestamp": at, "lastTimestamp": at, "count": 1,
    })
}

/// The events already written, by what they said: a repeat is counted on the first.
#[derive(Default)]
pub struct Repeats {
    seen: HashMap<(PodRef, Note), Seen>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub name: String,
    pub count: u64,
    pub first: DateTime<Utc>,
}

/// What to write for an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    /// A new Event named so.
    Create(String),
    /// Count a repeat on the Event named so: its new count.
    Count(String, u64),
}

impl Repeats {
    /// What to write for `note` about `pod` at `now`, `id` naming a new event.
    pub fn write(&mut self, pod: &PodRef, note: &Note, now: DateTime<Utc>, id: &str) -> Write {
        let key = (pod.clone(), note.clone());
        if let Some(seen) = self.seen.get_mut(&key) {
            if (now - seen.first).to_std().is_ok_and(|d| d < REPEAT_WINDOW) {
                seen.count += 1;
                return Write::Count(seen.name.clone(), seen.count);
            }
        }
        if self.seen.len() >= REMEMBERED {
            // Forget the oldest half; their repeats start new events.
            let mut firsts: Vec<DateTime<Utc>> = self.seen.values().map(|s| s.first).collect();
            firsts.sort();
            let cut = firsts[firsts.len() / 2];
            self.seen.retain(|_, s| s.first > cut);
        }
        let name = format!("{}.{id}", pod.name);
        self.seen.insert(key, Seen { name: name.clone(), count: 1, first: now });
        Write::Create(name)
    }

    /// A failed write is forgotten, so that the next repeat writes anew.
    pub fn forget(&mut self, pod: &PodRef, note: &Note) {
        self.seen.remove(&(pod.clone(), note.clone()));
    }
}

/// Sends the kubelet's events to the API.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<(PodRef, Note)>,
}

impl Recorder {
    /// Start the sender on the current tokio runtime (without one, events go nowhere).
    pub fn start(api: Api, node: String) -> Recorder {
        let (tx, mut rx) = mpsc::channel::<(PodRef, Note)>(QUEUE);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return Recorder { tx } };
        runtime.spawn(async move {
            let mut repeats = Repeats::default();
            while let Some((pod, note)) = rx.recv().await {
                let now = Utc::now();
                let id = format!("{:016x}", rand::random::<u64>());
                let events = format!("{}/api/v1/namespaces/{}/events", api.base, pod.namespace);
                let written = match repeats.write(&pod, &note, now, &id) {
                    Write::Create(_) => api.client.json(Method::POST, &events, Some(&event(&pod, &note, &node, now, &id))).await,
                    Write::Count(name, count) => {
                        let at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
                        let patch = json!({"count": count, "lastTimestamp": at});
                        let url = format!("{events}/{name}");
                        api.client.json_as(Method::PATCH, &url, Some(&patch), "application/merge-patch+json").await
                    }
                };
                if let Err(e) = written {
                    tracing::debug!(reason = note.reason, pod = %pod.name, error = %e, "event not recorded");
                    repeats.forget(&pod, &note);
                }
            }
        });
        Recorder { tx }
    }

    /// The container a container id (`container_id`) names, among `names`.
    pub fn container_of<'a>(id: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        let rest = id.split_once('-')?.1;
        let (name, attempt) = rest.rsplit_once('-')?;
        attempt.parse::<u32>().ok()?;
        names.into_iter().find(|n| n.chars().take(55).eq(name.chars()))
    }

    /// Report `note` about `pod`; never waits.
    pub fn note(&self, pod: &PodRef, note: Note) {
        if let Err(e) = self.tx.try_send((pod.clone(), note)) {
            tracing::debug!(error = %e, "the event queue is full; an event is dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodRef {
        PodRef { namespace: "d".into(), name: "web".into(), uid: "u1".into() }
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn events_read_as_the_kubelets() {
        let note = Note::normal("Started", "Started container app".into(), Some("app"));
        let e = event(&pod(), &note, "n1", t(0), "abc");
        assert_eq!(e["metadata"], json!({"name": "web.abc", "namespace": "d"}));
        assert_eq!(e["involvedObject"], json!({"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "d", "uid": "u1", "fieldPath": "spec.containers{app}"}));
        assert_eq!((e["type"].as_str(), e["reason"].as_str(), e["source"]["host"].as_str()), (Some("Normal"), Some("Started"), Some("n1")));
        let whole = event(&pod(), &Note::warning("FailedMount", "x".into(), None), "n1", t(0), "abc");
        assert!(whole["involvedObject"].get("fieldPath").is_none());
        assert_eq!(whole["type"], "Warning");
    }

    #[test]
    fn repeats_are_counted_on_the_first_within_the_window() {
        let mut r = Repeats::default();
        let backoff = Note::warning("BackOff", "Back-off restarting failed container app".into(), Some("app"));
        assert_eq!(r.write(&pod(), &backoff, t(0), "a"), Write::Create("web.a".into()));
        assert_eq!(r.write(&pod(), &backoff, t(10), "b"), Write::Count("web.a".into(), 2));
        assert_eq!(r.write(&pod(), &backoff, t(20), "c"), Write::Count("web.a".into(), 3));
        let other = Note::normal("Killing", "Stopping container app".into(), Some("app"));
        assert_eq!(r.write(&pod(), &other, t(20), "d"), Write::Create("web.d".into()), "another event is its own");
        assert_eq!(r.write(&pod(), &backoff, t(700), "e"), Write::Create("web.e".into()), "past the window: a new event");
        r.forget(&pod(), &other);
        assert_eq!(r.write(&pod(), &other, t(701), "f"), Write::Create("web.f".into()), "a failed write starts over");
    }

    #[test]
    fn container_ids_name_their_container() {
        let id = crate::kubelet::sync::container_id("0123456789abcdef", "app-server", 3);
        assert_eq!(Recorder::container_of(&id, ["app", "app-server"]), Some("app-server"));
        assert_eq!(Recorder::container_of(&id, ["app"]), None);
        assert_eq!(Recorder::container_of("junk", ["app"]), None);
    }

    #[test]
    fn the_memory_of_repeats_is_bounded() {
        let mut r = Repeats::default();
        let note = Note::normal("Started", "x".into(), None);
        for i in 0..(REMEMBERED as i64 * 3) {
            let p = PodRef { name: format!("p{i}"), ..pod() };
            r.write(&p, &note, t(i), &i.to_string());
        }
        assert!(r.seen.len() <= REMEMBERED);
        let last = PodRef { name: format!("p{}", REMEMBERED * 3 - 1), ..pod() };
        assert!(matches!(r.write(&last, &note, t(REMEMBERED as i64 * 3), "z"), Write::Count(_, 2)), "the newest are kept");
    }
}
