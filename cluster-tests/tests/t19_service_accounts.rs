//! ServiceAccounts on a real cluster (one head, one worker): every namespace gets a
//! `default` account; `kubectl create token` issues a token that authenticates as the
//! account through a head and through a worker, is authorized by RBAC like any user, and
//! stops working when its account or its pod is deleted; forged tokens are refused.

use std::time::Duration;

use base64::Engine;
use cluster_tests::cluster::{until, Cluster};
use cluster_tests::kubectl::kubectl;
use hyper::Method;
use orch::client::HttpError;
use serde_json::{json, Value};

fn code(r: &anyhow::Result<Value>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(e) => e.downcast_ref::<HttpError>().map_or(0, |e| e.code),
    }
}

/// Poll until `client` gets `want` for a GET of `url`.
async fn until_code(client: &orch::client::ApiClient, url: &str, want: u16, what: &str) {
    until(Duration::from_secs(30), what, || async {
        let r = client.json(Method::GET, url, None).await;
        ((code(&r) == want).then_some(()), format!("{r:?}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_tokens_authenticate_and_are_revoked_with_their_account() {
    let c = Cluster::start(1, 1).await.expect("cluster starts");
    let admin = &c.client;
    admin.json(Method::POST, &c.url(0, "/api/v1/namespaces"), Some(&json!({"metadata": {"name": "team"}}))).await.unwrap();
    let sa_url = c.url(0, "/api/v1/namespaces/team/serviceaccounts/default");
    let sa = until(Duration::from_secs(20), "the namespace's default ServiceAccount", || async {
        let r = admin.json(Method::GET, &sa_url, None).await;
        (r.as_ref().ok().cloned(), format!("{r:?}"))
    })
    .await;
    assert!(sa["metadata"]["uid"].is_string());

    let r = kubectl(&c, 1, &["create", "token", "default", "-n", "team", "--duration", "10m"], None).unwrap();
    assert!(r.ok(), "{r:?}");
    let token = r.stdout.trim().to_string();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims: Value = serde_json::from_slice(&b64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600, "--duration 10m: {claims}");
    let as_sa = c.client_as(None, Some(&token)).unwrap();
    let whoami = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    for node in [0, 1] {
        let me = as_sa.json(Method::POST, &c.url(node, "/apis/authentication.k8s.io/v1/selfsubjectreviews"), Some(&whoami)).await.unwrap();
        assert_eq!(me["status"]["userInfo"]["username"], "system:serviceaccount:team:default", "through node {node}");
        let groups = me["status"]["userInfo"]["groups"].as_array().unwrap();
        assert!(groups.contains(&json!("system:serviceaccounts:team")), "{groups:?}");
        assert_eq!(code(&as_sa.json(Method::GET, &c.url(node, "/api/v1/namespaces/team/pods"), None).await), 403, "no role yet");
    }
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "sa-view", "namespace": "team"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "team"}]});
    admin.json(Method::POST, &c.url(0, "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings"), Some(&binding)).await.unwrap();
    for node in [0, 1] {
        until_code(&as_sa, &c.url(node, "/api/v1/namespaces/team/pods"), 200, "the ServiceAccount may list pods").await;
    }

    // Forged tokens: another signature, a changed subject, alg none.
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = "system:serviceaccount:kube-system:default".into();
    let forged = [
        format!("{}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2]),
        format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1]),
        format!("{}.{}.{}", parts[0], parts[1], b64.encode([0u8; 64])),
        "not-a-jwt".to_string(),
    ];
    for bad in &forged {
        let client = c.client_as(None, Some(bad)).unwrap();
        for node in [0, 1] {
            assert_eq!(code(&client.json(Method::GET, &c.url(node, "/api/v1/namespaces/team/pods"), None).await), 401, "{bad} via {node}");
        }
    }

    // A token bound to a pod dies with the pod; every token dies with its account.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "holder", "namespace": "team"},
        "spec": {"containers": [{"name": "c", "image": "none"}]}});
    admin.json(Method::POST, &c.url(0, "/api/v1/namespaces/team/pods"), Some(&pod)).await.unwrap();
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "holder"}}});
    let bound = admin.json(Method::POST, &c.url(1, "/api/v1/namespaces/team/serviceaccounts/default/token"), Some(&request)).await.unwrap();
    let bound = c.client_as(None, bound["status"]["token"].as_str()).unwrap();
    assert_eq!(code(&bound.json(Method::GET, &c.url(0, "/api/v1/namespaces/team/pods"), None).await), 200);
    admin.json(Method::DELETE, &c.url(0, "/api/v1/namespaces/team/pods/holder?gracePeriodSeconds=0"), None).await.unwrap();
    until_code(&bound, &c.url(0, "/api/v1/namespaces/team/pods"), 401, "the pod-bound token stops working").await;
    admin.json(Method::DELETE, &sa_url, None).await.unwrap();
    // (The controller makes a new `default`, with a new uid: the old token stays dead.)
    for node in [0, 1] {
        until_code(&as_sa, &c.url(node, "/api/v1/namespaces/team/pods"), 401, "the account's token stops working").await;
    }
}
