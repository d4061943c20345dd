//! The chaos workload: concurrent clients doing create, linearizable read, compare-and-set
//! (on the resourceVersion they last saw) and delete on a small set of ConfigMaps through
//! random nodes, and long-lived watches that resume on another node from the last
//! resourceVersion they received. Every operation is recorded with monotonic timestamps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use orch::client::{ApiClient, HttpError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::check::linear::{Call, Op, Ret};
use crate::check::{Change, WatchLog};

pub const NAMESPACE: &str = "chaos";

/// One recorded operation: which key, through which node.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: String,
    pub node: usize,
    pub op: Op,
}

fn nanos(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64
}

fn rv_of(v: &Value) -> Option<u64> {
    v["metadata"]["resourceVersion"].as_str()?.parse().ok()
}

/// Map an HTTP outcome to the model's return value.
fn classify(call: &Call, result: &anyhow::Result<Value>) -> Ret {
    let code = match result {
        Ok(_) => 200,
        Err(e) => e.downcast_ref::<HttpError>().map_or(0, |h| h.code),
    };
    match (call, code, result) {
        (Call::Create { .. }, 200, Ok(v)) => rv_of(v).map_or(Ret::Unknown, |rv| Ret::Created { rv }),
        (Call::Create { .. }, 409, _) => Ret::AlreadyExists,
        (Call::Read, 200, Ok(v)) => match (v["data"]["v"].as_str(), rv_of(v)) {
            (Some(val), Some(rv)) => Ret::Value(Some((val.to_string(), rv))),
            _ => Ret::Unknown,
        },
        (Call::Read, 404, _) => Ret::Value(None),
        (Call::Cas { .. }, 200, Ok(v)) => rv_of(v).map_or(Ret::Unknown, |rv| Ret::Updated { rv }),
        (Call::Cas { .. }, 409, _) => Ret::Conflict,
        (Call::Cas { .. }, 404, _) => Ret::NotFound,
        (Call::Delete, 200, Ok(v)) => rv_of(v).map_or(Ret::Unknown, |rv| Ret::Deleted { rv }),
        (Call::Delete, 404, _) => Ret::NotFound,
        // 5xx, timeouts, broken connections: the write may or may not have applied.
        _ => Ret::Unknown,
    }
}

/// Run one client until `stop`; returns its records.
pub async fn client(
    http: ApiClient,
    id: usize,
    nodes: Vec<String>,
    keys: usize,
    seed: u64,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Record> {
    // Short: a client stuck on a paused or cut-off node should come back and use a healthy
    // one (its operation is recorded as unknown, which the checker allows for).
    let http = http.with_timeout(Duration::from_secs(1));
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut known_rv = vec![0u64; keys];
    let mut out = Vec::new();
    let mut counter = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let k = rng.random_range(0..keys);
        let key = format!("k{k}");
        let node = rng.random_range(0..nodes.len());
        let base = format!("https://{}/api/v1/namespaces/{NAMESPACE}/configmaps", nodes[node]);
        counter += 1;
        let value = format!("c{id}-{counter}");
        let roll = rng.random_range(0..100);
        let call = match roll {
            0..40 => Call::Read,
            40..55 => Call::Create { value: value.clone() },
            55..88 => Call::Cas { expect: known_rv[k], value: value.clone() },
            _ => Call::Delete,
        };
        let start = nanos(t0);
        let body = |v: &str, rv: Option<u64>| {
            let mut meta = json!({"name": key});
            if let Some(rv) = rv {
                meta["resourceVersion"] = rv.to_string().into();
            }
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"v": v}})
        };
        let result = match &call {
            Call::Read => http.json(Method::GET, &format!("{base}/{key}"), None).await,
            Call::Create { value } => http.json(Method::POST, &base, Some(&body(value, None))).await,
            Call::Cas { expect, value } => http.json(Method::PUT, &format!("{base}/{key}"), Some(&body(value, Some(*expect)))).await,
            Call::Delete => http.json(Method::DELETE, &format!("{base}/{key}"), None).await,
        };
        let ret = classify(&call, &result);
        let end = (ret != Ret::Unknown).then(|| nanos(t0));
        match &ret {
            Ret::Created { rv } | Ret::Updated { rv } | Ret::Value(Some((_, rv))) => known_rv[k] = *rv,
            Ret::Deleted { .. } | Ret::Value(None) | Ret::NotFound => known_rv[k] = 0,
            _ => {}
        }
        if ret == Ret::Unknown {
            // Don't hammer a node that is down or cut off.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        out.push(Record { key, node, op: Op { start, end, call, ret } });
    }
    out
}

/// A watcher that follows `chaos` ConfigMaps from `from`, reconnecting to a random node
/// from the last revision received whenever its stream ends.
pub async fn watcher(http: ApiClient, name: String, nodes: Vec<String>, from: u64, seed: u64, stop: Arc<AtomicBool>) -> WatchLog {
    let http = http.with_timeout(Duration::from_secs(3));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = WatchLog { name, from, events: Vec::new(), gone: 0 };
    while !stop.load(Ordering::Relaxed) {
        let last = log.events.last().map_or(from, |e| e.rv);
        let node = &nodes[rng.random_range(0..nodes.len())];
        let url = format!("https://{node}/api/v1/namespaces/{NAMESPACE}/configmaps?watch=true&resourceVersion={last}&timeoutSeconds=5");
        let Ok(resp) = http.send(Method::GET, &url, None, Default::default()).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if resp.status().as_u16() == 410 {
            log.gone += 1;
            return log;
        }
        if !resp.status().is_success() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        use http_body_util::BodyExt;
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::Relaxed) { return log; }
                    continue;
                }
            };
            let Some(Ok(frame)) = frame else { break };
            let Some(data) = frame.data_ref() else { continue };
            buf.extend_from_slice(data);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let Ok(v) = serde_json::from_slice::<Value>(&line) else { continue };
                match v["type"].as_str() {
                    Some("ERROR") if v["object"]["code"] == 410 => {
                        log.gone += 1;
                        return log;
                    }
                    Some(kind @ ("ADDED" | "MODIFIED" | "DELETED")) => {
                        if let (Some(rv), Some(key)) = (rv_of(&v["object"]), v["object"]["metadata"]["name"].as_str()) {
                            log.events.push(Change { rv, key: key.to_string(), kind: kind.to_string() });
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_err(code: u16) -> anyhow::Result<Value> {
        Err(HttpError { code, reason: String::new(), message: String::new() }.into())
    }

    #[test]
    fn outcomes_map_to_model_returns() {
        let obj = json!({"metadata": {"resourceVersion": "12"}, "data": {"v": "x"}});
        let create = Call::Create { value: "x".into() };
        assert_eq!(classify(&create, &Ok(obj.clone())), Ret::Created { rv: 12 });
        assert_eq!(classify(&create, &http_err(409)), Ret::AlreadyExists);
        assert_eq!(classify(&create, &http_err(503)), Ret::Unknown);
        assert_eq!(classify(&create, &http_err(504)), Ret::Unknown);
        assert_eq!(classify(&Call::Read, &Ok(obj.clone())), Ret::Value(Some(("x".into(), 12))));
        assert_eq!(classify(&Call::Read, &http_err(404)), Ret::Value(None));
        let cas = Call::Cas { expect: 3, value: "y".into() };
        assert_eq!(classify(&cas, &http_err(409)), Ret::Conflict);
        assert_eq!(classify(&cas, &http_err(404)), Ret::NotFound);
        assert_eq!(classify(&Call::Delete, &Ok(obj)), Ret::Deleted { rv: 12 });
        assert_eq!(classify(&Call::Delete, &Err(anyhow::anyhow!("connection reset"))), Ret::Unknown);
    }
}
