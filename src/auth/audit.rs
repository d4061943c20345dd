//! The audit log: one JSON line in the `audit.k8s.io/v1` Event shape, written by the node
//! that served the request, for every request that changes something, every read of a
//! Secret, every exec, attach and port-forward, and every 401 and 403. The file is rotated
//! by size (`audit.log` → `audit.log.1` … `.N`) by a writer thread of its own, so no request
//! waits for the disk. `should_record` and `event` are pure.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::attributes::{Attributes, Target};
use super::User;

/// What one audited request was.
pub struct Entry<'a> {
    pub user: &'a User,
    pub attrs: &'a Attributes,
    pub uri: &'a str,
    pub source: std::net::IpAddr,
    pub user_agent: &'a str,
    pub code: u16,
    pub received: chrono::DateTime<chrono::Utc>,
}

/// Is this request one the log keeps?
pub fn should_record(attrs: &Attributes, code: u16) -> bool {
    if code == 401 || code == 403 {
        return true;
    }
    let mutating = matches!(attrs.verb.as_str(), "create" | "update" | "patch" | "delete" | "deletecollection" | "post" | "put");
    match &attrs.target {
        Target::Resource { resource, subresource, .. } => {
            mutating || resource == "secrets" || matches!(subresource.as_str(), "exec" | "attach" | "portforward")
        }
        // Reading the join tokens is reading a credential.
        Target::Path(p) => mutating || p.starts_with("/orch/v1/cluster/tokens"),
    }
}

/// The Event for `e`, completed at `now`.
pub fn event(e: &Entry<'_>, id: &str, now: chrono::DateTime<chrono::Utc>) -> Value {
    let ts = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut ev = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": id, "stage": "ResponseComplete",
        "requestURI": e.uri, "verb": e.attrs.verb,
        "user": {"username": e.user.name, "groups": e.user.groups},
        "sourceIPs": [e.source.to_string()], "userAgent": e.user_agent,
        "responseStatus": {"metadata": {}, "code": e.code},
        "requestReceivedTimestamp": ts(e.received), "stageTimestamp": ts(now),
    });
    if let Target::Resource { group, resource, subresource, namespace, name } = &e.attrs.target {
        let mut obj = json!({"resource": resource, "apiGroup": group, "apiVersion": "v1"});
        for (k, v) in [("namespace", namespace), ("name", name), ("subresource", subresource)] {
            if !v.is_empty() {
                obj[k] = v.as_str().into();
            }
        }
        ev["objectRef"] = obj;
    }
    ev
}

/// The Event for `e` as one JSON line, written straight from the entry (a request's
/// cost: no intermediate `Value`); the same document as `event`.
fn line(e: &Entry<'_>, id: uuid::Uuid, now: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Line<'a> {
        kind: &'static str,
        api_version: &'static str,
        level: &'static str,
        #[serde(rename = "auditID")]
        audit_id: &'a str,
        stage: &'static str,
        #[serde(rename = "requestURI")]
        request_uri: &'a str,
        verb: &'a str,
        user: UserInfo<'a>,
        #[serde(rename = "sourceIPs")]
        source_ips: [String; 1],
        user_agent: &'a str,
        response_status: Code,
        request_received_timestamp: String,
        stage_timestamp: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        object_ref: Option<ObjectRef<'a>>,
    }
    #[derive(serde::Serialize)]
    struct UserInfo<'a> {
        username: &'a str,
        groups: &'a [String],
    }
    #[derive(serde::Serialize)]
    struct Code {
        metadata: Empty,
        code: u16,
    }
    #[derive(serde::Serialize)]
    struct Empty {}
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ObjectRef<'a> {
        resource: &'a str,
        api_group: &'a str,
        api_version: &'static str,
        #[serde(skip_serializing_if = "str::is_empty")]
        namespace: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        name: &'a str,
        #[serde(skip_serializing_if = "str::is_empty")]
        subresource: &'a str,
    }
    let ts = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let object_ref = match &e.attrs.target {
        Target::Resource { group, resource, subresource, namespace, name } => {
            Some(ObjectRef { resource, api_group: group, api_version: "v1", namespace, name, subresource })
        }
        Target::Path(_) => None,
    };
    let mut buf = uuid::Uuid::encode_buffer();
    let l = Line {
        kind: "Event",
        api_version: "audit.k8s.io/v1",
        level: "Metadata",
        audit_id: id.hyphenated().encode_lower(&mut buf),
        stage: "ResponseComplete",
        request_uri: e.uri,
        verb: &e.attrs.verb,
        user: UserInfo { username: &e.user.name, groups: &e.user.groups },
        source_ips: [e.source.to_string()],
        user_agent: e.user_agent,
        response_status: Code { metadata: Empty {}, code: e.code },
        request_received_timestamp: ts(e.received),
        stage_timestamp: ts(now),
        object_ref,
    };
    serde_json::to_vec(&l).unwrap_or_default()
}

/// An append-only file of audit events, rotated when it passes `max_bytes`. Requests hand
/// their lines to a writer thread and never wait for the disk.
pub struct AuditLog {
    lines: std::sync::mpsc::SyncSender<Vec<u8>>,
    /// Answered once every line handed over before it is written (tests, shutdown).
    flushes: std::sync::mpsc::SyncSender<std::sync::mpsc::SyncSender<()>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Lines waiting for the writer; past this a request waits (the log never drops a line).
const QUEUE: usize = 4096;

struct Writer {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: std::fs::File,
    len: u64,
}

impl AuditLog {
    pub fn open(path: PathBuf, max_bytes: u64, keep: usize) -> std::io::Result<AuditLog> {
        let file = open_file(&path)?;
        let len = file.metadata()?.len();
        let mut w = Writer { path, max_bytes, keep, file, len };
        let (lines, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let (flushes, flush_rx) = std::sync::mpsc::sync_channel::<std::sync::mpsc::SyncSender<()>>(16);
        let writer = std::thread::Builder::new().name("audit-log".into()).spawn(move || loop {
            match rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(line) => w.write(&line),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(done) = flush_rx.try_recv() {
                while let Ok(line) = rx.try_recv() {
                    w.write(&line);
                }
                let _ = done.send(());
            }
        })?;
        Ok(AuditLog { lines, flushes, writer: Mutex::new(Some(writer)) })
    }

    pub fn record(&self, e: &Entry<'_>) {
        if !should_record(e.attrs, e.code) {
            return;
        }
        let mut line = line(e, uuid::Uuid::new_v4(), chrono::Utc::now());
        line.push(b'\n');
        if self.lines.send(line).is_err() {
            tracing::error!("the audit log writer has stopped");
        }
    }

    /// Wait until every line recorded so far is in the file.
    pub fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if self.flushes.send(tx).is_ok() {
            let _ = rx.recv();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.flush();
        drop(self.writer.lock().expect("audit writer lock").take());
    }
}

fn open_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

impl Writer {
    fn write(&mut self, line: &[u8]) {
        if self.len + line.len() as u64 > self.max_bytes && self.len > 0 {
            if let Err(err) = self.rotate() {
                tracing::error!(error = %err, path = %self.path.display(), "rotating the audit log");
            }
        }
        match self.file.write_all(line) {
            Ok(()) => self.len += line.len() as u64,
            Err(err) => tracing::error!(error = %err, path = %self.path.display(), "writing the audit log"),
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = std::fs::remove_file(numbered(self.keep));
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.file = open_file(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_recorded() {
        let a = |m, p| Attributes::of_request(m, p, None);
        assert!(should_record(&a("POST", "/api/v1/namespaces/d/configmaps"), 201));
        assert!(should_record(&a("GET", "/api/v1/namespaces/d/secrets/s"), 200), "every Secret read");
        assert!(should_record(&a("GET", "/api/v1/namespaces/d/pods/p/exec"), 101));
        assert!(should_record(&a("GET", "/api/v1/namespaces/d/pods"), 403), "every refusal");
        assert!(!should_record(&a("GET", "/api/v1/namespaces/d/pods"), 200), "plain reads are not");
        assert!(!should_record(&a("GET", "/version"), 200));
        assert!(should_record(&a("GET", "/orch/v1/cluster/tokens"), 200), "reading the join tokens");
    }

    #[test]
    fn events_have_the_audit_shape_and_the_file_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path().join("audit.log"), 600, 2).unwrap();
        let user = User { name: "alice".into(), groups: vec!["dev".into()] };
        let attrs = Attributes::of_request("DELETE", "/api/v1/namespaces/d/pods/p", None);
        let now = chrono::Utc::now();
        let entry = Entry { user: &user, attrs: &attrs, uri: "/api/v1/namespaces/d/pods/p", source: [10, 0, 0, 9].into(), user_agent: "kubectl", code: 200, received: now };
        let ev = event(&entry, "id-1", now);
        assert_eq!(ev["verb"], "delete");
        assert_eq!(ev["objectRef"], json!({"resource": "pods", "apiGroup": "", "apiVersion": "v1", "namespace": "d", "name": "p"}));
        assert_eq!((ev["user"]["username"].as_str(), ev["responseStatus"]["code"].as_u64()), (Some("alice"), Some(200)));
        let id = uuid::Uuid::new_v4();
        let written: Value = serde_json::from_slice(&line(&entry, id, now)).unwrap();
        assert_eq!(written, event(&entry, &id.to_string(), now), "the line is the event");
        for _ in 0..10 {
            log.record(&entry);
        }
        log.flush();
        let current = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        assert!(current.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()), "whole lines only");
        assert!(dir.path().join("audit.log.1").exists() && dir.path().join("audit.log.2").exists());
        assert!(!dir.path().join("audit.log.3").exists(), "only `keep` old files");
        assert!(std::fs::metadata(dir.path().join("audit.log")).unwrap().len() <= 600);
    }
}
