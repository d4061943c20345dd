//! Pull policy, credentials and the puller against the fake runtime and registry.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Secret};
use k8s_openapi::ByteString;

use super::*;
use crate::kubelet::image::{busybox_archive, parse_archive, Archive};
use crate::kubelet::registry::FakeRegistry;
use crate::kubelet::runtime::{Call, FakeRuntime};

fn container(image: &str, policy: Option<&str>) -> Container {
    Container { name: "c".into(), image: Some(image.into()), image_pull_policy: policy.map(String::from), ..Default::default() }
}

/// A one-layer image archive whose content (and so digests) depends on `content`.
fn archive(name: &str, content: &[u8]) -> Archive {
    let bin = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bin.path(), content).unwrap();
    parse_archive(&busybox_archive(name, bin.path()).unwrap()).unwrap()
}

fn secret(key: &str, json: &str) -> Secret {
    Secret { data: Some(BTreeMap::from([(key.to_string(), ByteString(json.as_bytes().to_vec()))])), ..Default::default() }
}

fn creds(u: &str, p: &str) -> Credentials {
    Credentials { username: u.into(), password: p.into() }
}

const FULL: &str = "reg.test:5000/app:1";

fn puller(registry: FakeRegistry, base: Duration) -> Puller<FakeRegistry> {
    Puller::new(registry, Backoff { base, max: Duration::from_secs(300) })
}

fn served(content: &[u8]) -> FakeRegistry {
    let r = FakeRegistry::default();
    r.images.lock().unwrap().insert(FULL.into(), archive(FULL, content));
    r
}

fn calls(p: &Puller<FakeRegistry>) -> Vec<&'static str> {
    p.registry.calls.lock().unwrap().iter().map(|c| c.0).collect()
}

#[test]
fn policy_defaults_like_the_api_server() {
    assert_eq!(policy(&container("busybox", None)), PullPolicy::Always);
    assert_eq!(policy(&container("busybox:latest", None)), PullPolicy::Always);
    assert_eq!(policy(&container("reg.test:5000/app:1", None)), PullPolicy::IfNotPresent);
    let pinned = format!("reg.test/app@sha256:{}", "a".repeat(64));
    assert_eq!(policy(&container(&pinned, None)), PullPolicy::IfNotPresent);
    assert_eq!(policy(&container("busybox:latest", Some("Never"))), PullPolicy::Never);
    assert_eq!(policy(&container("app:1", Some("Always"))), PullPolicy::Always);
}

#[test]
fn credentials_come_from_docker_config_secrets_for_the_image_registry() {
    let json = secret(".dockerconfigjson", r#"{"auths":{"reg.test:5000":{"username":"u","password":"p"},"other.test":{"username":"x","password":"y"}}}"#);
    // "u2:p:2" base64: the password may hold a colon.
    let auth_only = secret(".dockerconfigjson", r#"{"auths":{"https://reg.test:5000/v2/":{"auth":"dTI6cDoy"}}}"#);
    let old = secret(".dockercfg", r#"{"reg.test:5000":{"username":"u3","password":"p3"}}"#);
    let junk = secret(".dockerconfigjson", "not json");
    let got = credentials("reg.test:5000", &[json.clone(), junk, auth_only, old]);
    assert_eq!(got, vec![creds("u", "p"), creds("u2", "p:2"), creds("u3", "p3")]);
    assert!(credentials("elsewhere.test", &[json]).is_empty());
    let hub = secret(".dockerconfigjson", r#"{"auths":{"https://index.docker.io/v1/":{"username":"h","password":"q"}}}"#);
    assert_eq!(credentials("docker.io", &[hub]), vec![creds("h", "q")]);
}

#[tokio::test]
async fn never_runs_only_what_is_present() {
    let p = puller(served(b"v1"), Duration::from_secs(10));
    let rt = FakeRuntime::default();
    let err = p.ensure(&rt, "pod-a", FULL, PullPolicy::Never, &[]).await.unwrap_err();
    assert_eq!(err.reason(), "ErrImageNeverPull");
    rt.import(&archive("local.test/x:1", b"x")).await.unwrap();
    assert_eq!(p.ensure(&rt, "pod-a", "local.test/x:1", PullPolicy::Never, &[]).await.unwrap().0, "local.test/x:1");
    assert!(calls(&p).is_empty());
}

#[tokio::test]
async fn if_not_present_pulls_once_under_the_full_name() {
    let p = puller(served(b"v1"), Duration::from_secs(10));
    let rt = FakeRuntime::default();
    assert_eq!(p.ensure(&rt, "pod-a", FULL, PullPolicy::IfNotPresent, &[]).await.unwrap().0, FULL);
    assert_eq!(calls(&p), ["fetch"]);
    assert!(rt.has_image(FULL).await.unwrap());
    rt.calls.lock().unwrap().clear();
    let (name, local) = p.ensure(&rt, "pod-a", FULL, PullPolicy::IfNotPresent, &[]).await.unwrap();
    assert_eq!(name, FULL);
    assert_eq!(calls(&p), ["fetch"], "present: the registry is not asked again");
    assert_eq!(Some(local.digest), rt.image_digest(FULL).await.unwrap());
    let lookups = rt.calls.lock().unwrap().iter().filter(|c| matches!(c, Call::Image(_))).count();
    assert_eq!(lookups, 2, "one lookup by ensure (the name is already full), one by the check above");
}

#[tokio::test]
async fn always_fetches_only_when_the_registry_has_another_digest() {
    let p = puller(served(b"v1"), Duration::from_secs(10));
    let rt = FakeRuntime::default();
    p.ensure(&rt, "pod-a", FULL, PullPolicy::Always, &[]).await.unwrap();
    p.ensure(&rt, "pod-a", FULL, PullPolicy::Always, &[]).await.unwrap();
    assert_eq!(calls(&p), ["fetch", "resolve"], "same digest: resolved, not fetched");
    let v2 = archive(FULL, b"v2");
    let new_digest = v2.images[0].target.digest.clone();
    p.registry.images.lock().unwrap().insert(FULL.into(), v2);
    let (_, local) = p.ensure(&rt, "pod-a", FULL, PullPolicy::Always, &[]).await.unwrap();
    assert_eq!(calls(&p), ["fetch", "resolve", "resolve", "fetch"]);
    assert_eq!(local.digest, new_digest, "the image as pulled, not as it was");
    assert_eq!(rt.image_digest(FULL).await.unwrap(), Some(new_digest));
}

#[tokio::test]
async fn failures_back_off_per_image() {
    let p = puller(served(b"v1"), Duration::from_secs(3600));
    *p.registry.fail.lock().unwrap() = Some("connection refused".into());
    let rt = FakeRuntime::default();
    let first = p.ensure(&rt, "pod-a", FULL, PullPolicy::IfNotPresent, &[]).await.unwrap_err();
    assert_eq!(first.reason(), "ErrImagePull");
    assert!(first.to_string().contains("connection refused"), "{first}");
    let second = p.ensure(&rt, "pod-a", FULL, PullPolicy::IfNotPresent, &[]).await.unwrap_err();
    assert_eq!(second.reason(), "ImagePullBackOff");
    assert_eq!(calls(&p).len(), 1, "backing off: the registry is not asked");
    // Another pod's pull of the same image does not wait out pod-a's back-off.
    let other = p.ensure(&rt, "pod-b", FULL, PullPolicy::IfNotPresent, &[]).await.unwrap_err();
    assert_eq!(other.reason(), "ErrImagePull");
    assert_eq!(calls(&p).len(), 2);

    // With no back-off to wait, the next try reaches the registry and, once it answers, pulls.
    let p = puller(served(b"v1"), Duration::ZERO);
    *p.registry.fail.lock().unwrap() = Some("connection refused".into());
    assert!(p.ensure(&rt, "pod-a", FULL, PullPolicy::IfNotPresent, &[]).await.is_err());
    *p.registry.fail.lock().unwrap() = None;
    assert_eq!(p.ensure(&rt, "pod-a", FULL, PullPolicy::IfNotPresent, &[]).await.unwrap().0, FULL);
    assert_eq!(calls(&p), ["fetch", "fetch"]);
}

#[tokio::test]
async fn the_pods_credentials_for_that_registry_are_used() {
    let p = puller(served(b"v1"), Duration::from_secs(10));
    let rt = FakeRuntime::default();
    let s = secret(".dockerconfigjson", r#"{"auths":{"reg.test:5000":{"username":"u","password":"p"}}}"#);
    p.ensure(&rt, "pod-a", FULL, PullPolicy::IfNotPresent, &[s]).await.unwrap();
    let seen = p.registry.calls.lock().unwrap().clone();
    assert_eq!(seen, vec![("fetch", FULL.to_string(), Some(creds("u", "p")))]);
}

#[tokio::test]
async fn bad_names_are_refused_without_asking_anyone() {
    let p = puller(served(b"v1"), Duration::from_secs(10));
    let rt = FakeRuntime::default();
    let err = p.ensure(&rt, "pod-a", "Reg.test/UPPER:1", PullPolicy::IfNotPresent, &[]).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidImageName", "{err}");
    assert!(calls(&p).is_empty());
}
