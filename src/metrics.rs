//! Prometheus metrics of a node: API requests and latency, proposal latency, and Raft
//! state (term, commit and applied index, leadership), rendered in the text format.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    request_seconds: Family<Labels, Histogram>,
    pub proposal_seconds: Histogram,
    pub raft_term: Gauge,
    pub raft_commit_index: Gauge,
    pub raft_applied_index: Gauge,
    pub raft_is_leader: Gauge,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<Labels, Counter>::default();
        let request_seconds = Family::<Labels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register("orch_api_requests", "API requests by verb and HTTP code", requests.clone());
        registry.register("orch_api_request_duration_seconds", "API request latency by verb", request_seconds.clone());
        let mut m = Metrics {
            requests,
            request_seconds,
            proposal_seconds: latency_histogram(),
            raft_term: Gauge::default(),
            raft_commit_index: Gauge::default(),
            raft_applied_index: Gauge::default(),
            raft_is_leader: Gauge::default(),
            registry,
        };
        m.registry.register("orch_raft_proposal_duration_seconds", "Time from proposing to applying a write", m.proposal_seconds.clone());
        m.registry.register("orch_raft_term", "Current Raft term", m.raft_term.clone());
        m.registry.register("orch_raft_commit_index", "Highest index known committed", m.raft_commit_index.clone());
        m.registry.register("orch_raft_applied_index", "Highest index applied to the state machine", m.raft_applied_index.clone());
        m.registry.register("orch_raft_is_leader", "1 if this node leads the Raft group", m.raft_is_leader.clone());
        m
    }
}

impl Metrics {
    pub fn observe_request(&self, verb: &str, code: u16, took: Duration) {
        self.requests.get_or_create(&vec![("verb".into(), verb.into()), ("code".into(), code.to_string())]).inc();
        if verb != "WATCH" {
            self.request_seconds.get_or_create(&vec![("verb".into(), verb.into())]).observe(took.as_secs_f64());
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
