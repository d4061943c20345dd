//! HTTP handlers for Kubernetes resource paths: parse the path, query and body, call the
//! object store, render objects, lists, watch streams and `Status` errors.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::cascade;

/// Namespaces the cluster itself relies on; deleting them is refused, as Kubernetes does.
pub const PROTECTED_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];
use super::object::{self, FieldSelector, Selector, MAX_BODY_BYTES};
use super::patch::PatchType;
use super::resources::{self, Resource};
use super::status::ApiError;
use super::store::{parse_rv, Consistency, Filter, WatchItem};
use super::{fields, scale, table};
use super::AppState;
use crate::auth::User;
use axum::Extension;

/// Where a request points.
#[derive(Debug)]
struct Target {
    res: &'static Resource,
    ns: Option<String>,
    name: Option<String>,
    status: bool,
    /// `/scale` of a scalable kind.
    scale: bool,
    /// `pods/{name}/eviction`.
    eviction: bool,
}

fn parse_target(group: &str, rest: &str) -> Result<Target, ApiError> {
    let seg: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (ns, seg) = if seg.len() >= 3 && seg[0] == "namespaces" && seg[2] != "status" {
        (Some(seg[1].to_string()), &seg[2..])
    } else {
        (None, &seg[..])
    };
    let plural = seg.first().ok_or_else(|| ApiError::not_found("resource"))?;
    let res = resources::by_plural(group, plural)
        .ok_or_else(|| ApiError::new(404, "NotFound", format!("the server could not find the requested resource {plural:?}")))?;
    if res.namespaced != ns.is_some() && seg.len() > 1 {
        return Err(ApiError::not_found(format!("{} is {}", res.plural, if res.namespaced { "namespaced" } else { "cluster-scoped" })));
    }
    let (mut status, mut scale, mut eviction) = (false, false, false);
    match seg.get(2) {
        None => {}
        Some(&"status") if seg.len() == 3 => status = true,
        Some(&"scale") if seg.len() == 3 && scale::scalable(res) => scale = true,
        Some(&"eviction") if seg.len() == 3 && res.kind == "Pod" => eviction = true,
        Some(other) => return Err(ApiError::not_found(format!("subresource {other:?}"))),
    }
    Ok(Target { res, ns, name: seg.get(1).map(|s| s.to_string()), status, scale, eviction })
}

pub async fn core(
    State(st): State<AppState>,
    user: Option<Extension<User>>,
    Path(rest): Path<String>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Response {
    dispatch(st, user.map(|u| u.0), "", &rest, method, headers, q, body).await
}

pub async fn grouped(
    State(st): State<AppState>,
    user: Option<Extension<User>>,
    Path((group, version, rest)): Path<(String, String, String)>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Response {
    if version != "v1" {
        return ApiError::not_found(format!("version {group}/{version}")).into_response();
    }
    dispatch(st, user.map(|u| u.0), &group, &rest, method, headers, q, body).await
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    st: AppState,
    user: Option<User>,
    group: &str,
    rest: &str,
    method: Method,
    headers: HeaderMap,
    q: HashMap<String, String>,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let verb = match (&method, q.get("watch").map(String::as_str)) {
        (&Method::GET, Some("true" | "1")) => "WATCH",
        _ => method.as_str(),
    }
    .to_string();
    let user = user.unwrap_or_else(User::anonymous);
    let resp = match handle(&st, &user, group, rest, method, &headers, &q, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    st.metrics.observe_request(&verb, resp.status().as_u16(), started.elapsed());
    resp
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    st: &AppState,
    user: &User,
    group: &str,
    rest: &str,
    method: Method,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    body: Body,
) -> Result<Response, ApiError> {
    let t = parse_target(group, rest)?;
    let ns = t.ns.as_deref();
    // A dry run goes through every step of the write, and nothing reaches the log.
    let rehearsal;
    let store = if method != Method::GET && dry_run(q)? {
        rehearsal = st.store.dry_run();
        &rehearsal
    } else {
        &st.store
    };
    let consistency = match q.get("resourceVersion").map(String::as_str) {
        Some("0") => Consistency::Local,
        _ => Consistency::Linearizable,
    };
    // `kubectl get` asks for the rows it prints (a Table) before plain JSON.
    let table = match table::requested(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())) {
        Some(v) if method == Method::GET => Some((v, table::Include::parse(q.get("includeObject").map(String::as_str))?)),
        _ => None,
    };
    if t.scale {
        return scale(store, &t, method, headers, body).await;
    }
    if t.eviction {
        return match (method, ns, t.name.as_deref()) {
            (Method::POST, Some(ns), Some(name)) => super::eviction::evict(store, ns, name, &read_body(headers, body).await?).await,
            (m, _, _) => Err(ApiError::new(405, "MethodNotAllowed", format!("{m} is not supported on pods/eviction; POST an Eviction"))),
        };
    }
    match (method, t.name.as_deref()) {
        (Method::GET, None) if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) => watch(st, &t, q, table).await,
        (Method::GET, None) => {
            let filter = filter(q)?;
            let (items, revision) = store.list(t.res, ns, &filter, consistency).await?;
            if let Some((v, include)) = table {
                let rv = revision.to_string();
                return Ok(json_response(StatusCode::OK, &table::of_list(t.res, &items, Some(&rv), v, include, chrono::Utc::now())));
            }
            Ok(json_response(StatusCode::OK, &json!({
                "kind": format!("{}List", t.res.kind),
                "apiVersion": t.res.api_version(),
                "metadata": {"resourceVersion": revision.to_string()},
                "items": items,
            })))
        }
        (Method::GET, Some(name)) => {
            let obj = store.get(t.res, ns, name, consistency).await?;
            Ok(json_response(StatusCode::OK, &match table {
                Some((v, include)) => table::of_object(t.res, &obj, v, include, chrono::Utc::now()),
                None => obj,
            }))
        }
        (Method::POST, None) => {
            let input = manifest(&t, read_body(headers, body).await?, None)?;
            let kept = t.res.typed(&input).map_err(ApiError::invalid)?;
            let warnings = fields::judge(t.res, fields::Mode::of(q)?, &fields::unknown(&input, &kept))?;
            let obj = t.res.finish(kept).map_err(ApiError::invalid)?;
            crate::auth::node::admit_create(user, t.res.kind, &obj).map_err(ApiError::forbidden)?;
            let obj = if t.res.kind == "Pod" { limit_pod(store, ns, obj).await? } else { obj };
            let mut created = store.create(t.res, ns, obj).await?;
            if dry_run(q)? {
                // Not stored: no version yet, as Kubernetes answers a dry-run create.
                object::meta_mut(&mut created).remove("resourceVersion");
            }
            Ok(warned(json_response(StatusCode::CREATED, &created), &warnings))
        }
        (Method::PUT, Some(name)) => {
            let obj = manifest(&t, read_body(headers, body).await?, Some(name))?;
            let warnings = fields::judge(t.res, fields::Mode::of(q)?, &fields::of_body(t.res, &obj)?)?;
            let expected = object::str_field(&obj, "resourceVersion").map(parse_rv).transpose()?;
            Ok(warned(json_response(StatusCode::OK, &store.update(t.res, ns, name, obj, expected, t.status).await?), &warnings))
        }
        (Method::PATCH, Some(name)) => {
            let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let kind = PatchType::from_content_type(ct)?;
            let mode = fields::Mode::of(q)?;
            let patch = read_body(headers, body).await?;
            let (obj, warnings) = store.patch_checked(t.res, ns, name, patch, kind, t.status, mode).await?;
            Ok(warned(json_response(StatusCode::OK, &obj), &warnings))
        }
        (Method::DELETE, Some(name)) => {
            let opts = read_body(headers, body).await.unwrap_or(Value::Null);
            let store = &match opts.get("dryRun") {
                None | Some(Value::Null) => store.clone(),
                Some(v) if v.as_array().is_some_and(|a| a.is_empty()) => store.clone(),
                Some(v) if *v == json!(["All"]) => store.dry_run(),
                Some(v) => return Err(ApiError::bad_request(format!("DeleteOptions.dryRun {v} is not supported: the only value is [\"All\"]"))),
            };
            let expected = opts.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(parse_rv).transpose()?;
            let grace = match q.get("gracePeriodSeconds") {
                Some(g) => Some(g.parse::<i64>().map_err(|_| ApiError::bad_request(format!("gracePeriodSeconds {g:?} is not a number")))?),
                None => opts.get("gracePeriodSeconds").and_then(Value::as_i64),
            };
            if t.res.kind == "Namespace" {
                // Terminating first; the namespace controller empties it, then removes it.
                if PROTECTED_NAMESPACES.contains(&name) {
                    return Err(ApiError::forbidden(format!("namespace {name:?} is protected and may not be deleted")));
                }
                return Ok(json_response(StatusCode::OK, &store.terminate_namespace(t.res, name, expected).await?));
            }
            let policy = cascade::Propagation::parse(q.get("propagationPolicy").map(String::as_str), &opts)?;
            if policy != cascade::Propagation::Background {
                // Marked first, so its controller stops replacing what is taken from it.
                let owner = store.mark_deleting(t.res, ns, name).await?;
                cascade::before_delete(store, t.res, ns, &owner, policy).await?;
            }
            let last = store.delete_gracefully(t.res, ns, name, expected, grace).await?;
            Ok(json_response(StatusCode::OK, &super::status::deleted(t.res, last)))
        }
        (m, _) => Err(ApiError::new(405, "MethodNotAllowed", format!("{m} is not supported on this path"))),
    }
}

/// `/scale`: read the object's Scale, or set its replicas from a Scale written or patched.
async fn scale(store: &super::store::ObjectStore, t: &Target, method: Method, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let (res, ns) = (t.res, t.ns.as_deref());
    let name = t.name.as_deref().ok_or_else(|| ApiError::not_found("scale"))?;
    let set = |replicas, rv: Option<String>| async move {
        let obj = store.patch_as(res, ns, name, scale::object_patch(replicas, rv.as_deref()), PatchType::Merge, false).await?;
        Ok::<_, ApiError>(json_response(StatusCode::OK, &scale::of(&obj)))
    };
    match method {
        Method::GET => Ok(json_response(StatusCode::OK, &scale::of(&store.get(res, ns, name, Consistency::Linearizable).await?))),
        Method::PUT => {
            let (replicas, rv) = scale::requested(name, &read_body(headers, body).await?)?;
            set(replicas, rv).await
        }
        Method::PATCH => {
            let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let kind = PatchType::from_content_type(ct)?;
            let patch = read_body(headers, body).await?;
            let named = patch.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
            // The replicas are computed from the Scale as read, so the write is conditioned
            // on that read; a conflict the caller did not ask for is retried on a new read.
            for _ in 0..5 {
                let current = store.get(res, ns, name, Consistency::Linearizable).await?;
                let replicas = scale::patched(name, &current, &patch, kind)?;
                let read = object::str_field(&current, "resourceVersion").map(str::to_string);
                match set(replicas, named.clone().or(read)).await {
                    Err(e) if e.code == 409 && named.is_none() => continue,
                    answer => return answer,
                }
            }
            Err(ApiError::conflict(format!("{}.{} {name:?} kept changing while its scale was patched; try again", res.plural, res.group)))
        }
        m => Err(ApiError::new(405, "MethodNotAllowed", format!("{m} is not supported on /scale"))),
    }
}

/// Whether the request is a dry run (`dryRun=All`, the only value Kubernetes knows).
fn dry_run(q: &HashMap<String, String>) -> Result<bool, ApiError> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(v) => Err(ApiError::bad_request(format!("dryRun={v:?} is not supported: the only value is \"All\"; nothing was changed"))),
    }
}

/// A new pod with its namespace's LimitRanges applied (defaults filled, bounds checked).
async fn limit_pod(store: &super::store::ObjectStore, ns: Option<&str>, mut pod: Value) -> Result<Value, ApiError> {
    let ranges = resources::by_plural("", "limitranges").expect("registered");
    let (items, _) = store.list(ranges, ns, &Filter::default(), Consistency::Local).await?;
    if items.is_empty() {
        return Ok(pod);
    }
    let name = object::name_of(&pod).unwrap_or_default().to_string();
    super::limitrange::admit(&mut pod, &items).map_err(|why| ApiError::forbidden(format!("pods {name:?} is forbidden: {why}")))?;
    resources::by_plural("", "pods").expect("registered").validate(pod).map_err(ApiError::invalid)
}

fn filter(q: &HashMap<String, String>) -> Result<Filter, ApiError> {
    Ok(Filter {
        labels: q.get("labelSelector").map(|s| Selector::parse(s)).transpose()?.unwrap_or_default(),
        fields: q.get("fieldSelector").map(|s| FieldSelector::parse(s)).transpose()?.unwrap_or_default(),
    })
}

/// Check a submitted object against the path: kind, apiVersion, name, namespace.
fn manifest(t: &Target, mut obj: Value, name: Option<&str>) -> Result<Value, ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON or YAML object"));
    }
    for (field, want) in [("kind", t.res.kind.to_string()), ("apiVersion", t.res.api_version())] {
        match obj.get(field).and_then(Value::as_str) {
            None => obj[field] = want.into(),
            Some(got) if got == want => {}
            Some(got) => return Err(ApiError::bad_request(format!("{field} {got:?} does not match the path (expected {want:?})"))),
        }
    }
    if let Some(name) = name {
        if object::name_of(&obj) != Some(name) {
            return Err(ApiError::bad_request(format!("metadata.name must be {name:?}, as in the request path")));
        }
    }
    let body_ns = object::str_field(&obj, "namespace").map(str::to_string);
    match (&t.ns, body_ns) {
        (Some(path), Some(body)) if *path != body => {
            return Err(ApiError::bad_request(format!("metadata.namespace {body:?} does not match the request path's {path:?}")))
        }
        (Some(path), _) => obj["metadata"]["namespace"] = path.clone().into(),
        (None, _) => {
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("namespace");
            }
        }
    }
    Ok(obj)
}

/// Read and parse a JSON or YAML body, enforcing the size limit.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let bytes = read_limited(body).await?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    if ct.contains("protobuf") || ct.contains("cbor") {
        // client-go switches to JSON when a server answers 415 to these.
        return Err(ApiError::new(415, "UnsupportedMediaType", format!("{ct} is not supported; send JSON or YAML")));
    }
    if ct.contains("yaml") {
        serde_norway::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("malformed YAML: {e}")))
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))
    }
}

/// Read at most `MAX_BODY_BYTES`. Past that, keep reading (and discarding) up to a hard
/// cap before answering 413, so the client, still uploading, receives the answer instead
/// of a reset connection.
pub async fn read_limited(body: Body) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    const DISCARD_CAP: usize = 64 << 20;
    let too_large = || ApiError::too_large(format!("the request body is larger than {MAX_BODY_BYTES} bytes"));
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        total += data.len();
        if total > DISCARD_CAP {
            return Err(too_large());
        }
        if total <= MAX_BODY_BYTES {
            buf.extend_from_slice(&data);
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

/// `resp` with a `Warning` header for each of `warnings`.
fn warned(mut resp: Response, warnings: &[String]) -> Response {
    for w in fields::warning_headers(warnings) {
        resp.headers_mut().append(header::WARNING, w);
    }
    resp
}

pub fn json_response(code: StatusCode, v: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], serde_json::to_vec(v).unwrap_or_default()).into_response()
}

async fn watch(st: &AppState, t: &Target, q: &HashMap<String, String>, table: Option<(table::Version, table::Include)>) -> Result<Response, ApiError> {
    let from = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(parse_rv(rv)?),
    };
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = q.get("timeoutSeconds").and_then(|s| s.parse().ok()).map(Duration::from_secs);
    let mut rx = st.store.watch(t.res, t.ns.clone(), filter(q)?, from, bookmarks).await?;
    let api_version = t.res.api_version();
    let res = t.res;
    let kind = t.res.kind;
    let stream = async_stream(move |tx| async move {
        let deadline = timeout.map(|d| tokio::time::Instant::now() + d);
        loop {
            let item = match deadline {
                Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                    Ok(i) => i,
                    Err(_) => return,
                },
                None => rx.recv().await,
            };
            let Some(item) = item else { return };
            let line = match item {
                WatchItem::Event { kind, object } => match table {
                    // Each event's object is a Table of one row (`kubectl get -w`).
                    Some((v, include)) => json!({"type": kind, "object": table::of_object(res, &object, v, include, chrono::Utc::now())}),
                    None => json!({"type": kind, "object": object}),
                },
                WatchItem::Bookmark(rev) => json!({"type": "BOOKMARK", "object": {
                    "kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": rev.to_string()}}}),
                WatchItem::Error(e) => json!({"type": "ERROR", "object": e.to_status()}),
            };
            let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
            bytes.push(b'\n');
            if tx.send(Ok::<_, std::io::Error>(Bytes::from(bytes))).await.is_err() {
                return;
            }
        }
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("static response parts are valid"))
}

/// A body stream fed by a task; the task ends when the client goes away.
fn async_stream<F, Fut>(f: F) -> tokio_stream::wrappers::ReceiverStream<Result<Bytes, std::io::Error>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let t = parse_target("", "namespaces/default/pods/web").unwrap();
        assert_eq!((t.res.plural, t.ns.as_deref(), t.name.as_deref(), t.status), ("pods", Some("default"), Some("web"), false));
        let t = parse_target("", "namespaces/default").unwrap();
        assert_eq!((t.res.plural, t.ns, t.name.as_deref()), ("namespaces", None, Some("default")));
        let t = parse_target("", "namespaces/kube-system/status").unwrap();
        assert!(t.status && t.res.plural == "namespaces");
        let t = parse_target("", "pods").unwrap();
        assert_eq!((t.ns, t.name), (None, None));
        let t = parse_target("apps", "namespaces/x/deployments/d/status").unwrap();
        assert!(t.status);
        assert_eq!(parse_target("", "widgets").unwrap_err().code, 404);
        assert_eq!(parse_target("", "pods/web").unwrap_err().code, 404);
        assert_eq!(parse_target("", "namespaces/x/pods/a/exec2").unwrap_err().code, 404);
        assert!(parse_target("apps", "namespaces/x/deployments/d/scale").unwrap().scale);
        assert_eq!(parse_target("", "namespaces/x/pods/a/scale").unwrap_err().code, 404, "pods have no scale");
        assert!(parse_target("", "namespaces/x/pods/a/eviction").unwrap().eviction);
        assert_eq!(parse_target("", "namespaces/x/configmaps/a/eviction").unwrap_err().code, 404);
    }

    #[test]
    fn manifest_checks_kind_and_namespace() {
        let t = parse_target("", "namespaces/a/configmaps").unwrap();
        let bad_kind = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}});
        assert_eq!(manifest(&t, bad_kind, None).unwrap_err().code, 400);
        let other_ns = json!({"metadata": {"name": "x", "namespace": "b"}});
        assert_eq!(manifest(&t, other_ns, None).unwrap_err().code, 400);
        let ok = manifest(&t, json!({"metadata": {"name": "x"}}), None).unwrap();
        assert_eq!((ok["metadata"]["namespace"].as_str(), ok["kind"].as_str()), (Some("a"), Some("ConfigMap")));
    }
}
