//! Table tests for the server-side Tables: durations, Accept negotiation, each kind's cells as kubectl prints them.

use chrono::{Duration, TimeZone, Utc};
use serde_json::{json, Value};

use super::*;
use crate::api::resources;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 8, 12, 0, 0).unwrap()
}

fn ago(seconds: i64) -> String {
    (now() - Duration::seconds(seconds)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn cells(kind: &str, obj: Value) -> Vec<Value> {
    rows::cells(kind, &obj, now())
}

#[test]
fn durations_lose_precision_as_they_grow() {
    let cases = [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (303, "5m3s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 20 * 60, "3h20m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (4 * 86400, "4d"),
        (40 * 86400, "40d"),
        (2 * 365 * 86400 + 10 * 86400, "2y10d"),
        (9 * 365 * 86400, "9y"),
    ];
    for (seconds, want) in cases {
        assert_eq!(human(seconds), want, "{seconds}s");
    }
    assert_eq!(since(Some(&ago(90)), now()), "90s");
    assert_eq!(since(None, now()), "<unknown>");
}

#[test]
fn accept_headers_choose_a_table_only_when_it_comes_first() {
    let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    assert_eq!(requested(Some(kubectl)), Some(Version::V1));
    assert_eq!(requested(Some("application/json;as=Table;v=v1beta1;g=meta.k8s.io")), Some(Version::V1beta1));
    assert_eq!(requested(Some("application/json, application/json;as=Table;v=v1;g=meta.k8s.io")), None);
    assert_eq!(requested(Some("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json")), None);
    assert_eq!(requested(Some("application/json;as=Table;v=v2;g=meta.k8s.io")), None);
    assert_eq!(requested(None), None);
    assert_eq!(Include::parse(None).unwrap(), Include::Metadata);
    assert_eq!(Include::parse(Some("Object")).unwrap(), Include::Object);
    assert_eq!(Include::parse(Some("Everything")).unwrap_err().code, 400);
}

fn pod(status: Value) -> Value {
    json!({"metadata": {"name": "web", "creationTimestamp": ago(300)},
        "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]}, "status": status})
}

#[test]
fn pod_rows_read_as_kubectl_prints_them() {
    let running = |ready| json!({"ready": ready, "restartCount": 0, "state": {"running": {"startedAt": ago(200)}}});
    let row = cells("Pod", pod(json!({"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [running(true), running(false)]})));
    assert_eq!(row, vec![json!("web"), json!("1/2"), json!("Running"), json!("0"), json!("5m"), json!("10.0.0.5"), json!("n1"), json!("<none>"), json!("<none>")]);

    let crashing = json!({"restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(65)}}});
    let row = cells("Pod", pod(json!({"phase": "Running", "containerStatuses": [running(true), crashing]})));
    assert_eq!((&row[1], &row[2], &row[3]), (&json!("1/2"), &json!("CrashLoopBackOff"), &json!("4 (65s ago)")));

    let creating = json!({"state": {"waiting": {"reason": "ContainerCreating"}}});
    assert_eq!(cells("Pod", pod(json!({"phase": "Pending", "containerStatuses": [creating.clone(), creating]})))[2], "ContainerCreating");
    assert_eq!(cells("Pod", pod(json!({"phase": "Pending"})))[2], "Pending");

    let done = json!({"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
    assert_eq!(cells("Pod", pod(json!({"phase": "Succeeded", "containerStatuses": [done.clone(), done.clone()]})))[2], "Completed");
    let signalled = json!({"state": {"terminated": {"exitCode": 137, "signal": 9}}});
    assert_eq!(cells("Pod", pod(json!({"phase": "Failed", "containerStatuses": [signalled, done]})))[2], "Signal:9");

    let mut deleting = pod(json!({"phase": "Running", "containerStatuses": [running(true), running(true)]}));
    deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
    assert_eq!(rows::cells("Pod", &deleting, now())[2], "Terminating");
}

#[test]
fn init_containers_show_their_progress() {
    let mut p = pod(json!({"phase": "Pending",
        "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
            {"name": "i2", "state": {"running": {}}}],
        "containerStatuses": [{"state": {"waiting": {"reason": "PodInitializing"}}}]}));
    p["spec"]["initContainers"] = json!([{"name": "i1"}, {"name": "i2"}]);
    assert_eq!(rows::cells("Pod", &p, now())[2], "Init:1/2");
    p["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 3}});
    assert_eq!(rows::cells("Pod", &p, now())[2], "Init:ExitCode:3");
    p["status"]["initContainerStatuses"][1]["state"] = json!({"waiting": {"reason": "ImagePullBackOff"}});
    assert_eq!(rows::cells("Pod", &p, now())[2], "Init:ImagePullBackOff");
}

#[test]
fn nodes_services_and_workloads() {
    let node = json!({"metadata": {"name": "n1", "creationTimestamp": ago(7200), "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "head"}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "addresses": [{"type": "InternalIP", "address": "10.1.0.2"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0-orch", "osImage": "Debian 12", "kernelVersion": "6.1", "containerRuntimeVersion": "containerd://1.6"}}});
    let row = cells("Node", node);
    assert_eq!(row[..5], [json!("n1"), json!("Ready,SchedulingDisabled"), json!("control-plane,head"), json!("120m"), json!("v1.33.0-orch")]);
    assert_eq!(row[5..], [json!("10.1.0.2"), json!("<none>"), json!("Debian 12"), json!("6.1"), json!("containerd://1.6")]);
    assert_eq!(cells("Node", json!({"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}))[1], "NotReady");

    let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.7",
        "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], "selector": {"tier": "f", "app": "web"}}});
    let row = cells("Service", svc);
    assert_eq!(row[1..5], [json!("NodePort"), json!("10.96.0.7"), json!("<none>"), json!("80:30080/TCP,53/UDP")]);
    assert_eq!(row[6], "app=web,tier=f");

    let deploy = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}, {"key": "legacy", "operator": "DoesNotExist"}]},
        "template": {"spec": {"containers": [{"name": "app", "image": "busybox"}, {"name": "log", "image": "fluent"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
    let row = cells("Deployment", deploy);
    assert_eq!(row[1..4], [json!("2/3"), json!(3), json!(2)]);
    assert_eq!(row[5..], [json!("app,log"), json!("busybox,fluent"), json!("app=web,!legacy,tier in (a,b)")]);

    let ep = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "a"}, {"ip": "b"}, {"ip": "c"}, {"ip": "d"}], "ports": [{"port": 80}]}]});
    assert_eq!(cells("Endpoints", ep)[1], "a:80,b:80,c:80 + 1 more...");
    assert_eq!(cells("Endpoints", json!({"metadata": {"name": "x"}}))[1], "<none>");
}

#[test]
fn jobs_events_and_quotas() {
    let job = json!({"metadata": {"name": "pi"}, "spec": {"completions": 2},
        "status": {"succeeded": 2, "startTime": ago(100), "completionTime": ago(40), "conditions": [{"type": "Complete", "status": "True"}]}});
    assert_eq!(cells("Job", job)[1..4], [json!("Complete"), json!("2/2"), json!("60s")]);
    let running = json!({"metadata": {"name": "pi"}, "spec": {"parallelism": 3}, "status": {"startTime": ago(30)}});
    assert_eq!(cells("Job", running)[1..4], [json!("Running"), json!("0/1 of 3"), json!("30s")]);

    let ev = json!({"metadata": {"name": "web.1"}, "type": "Warning", "reason": "BackOff", "message": " Back-off restarting \n",
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{a}"}, "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": ago(600), "lastTimestamp": ago(5), "count": 7});
    let row = cells("Event", ev);
    assert_eq!(row, vec![json!("5s"), json!("Warning"), json!("BackOff"), json!("pod/web"), json!("spec.containers{a}"),
        json!("kubelet, n1"), json!("Back-off restarting"), json!("10m"), json!(7), json!("web.1")]);

    let quota = json!({"metadata": {"name": "q"}, "status": {"hard": {"pods": "5", "limits.cpu": "2", "configmaps": "3"},
        "used": {"pods": "1", "limits.cpu": "500m"}}});
    let row = cells("ResourceQuota", quota);
    assert_eq!(row[2..], [json!("configmaps: 0/3, pods: 1/5"), json!("limits.cpu: 500m/2")]);
}

#[test]
fn every_row_has_a_cell_per_column() {
    for res in resources::RESOURCES {
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": ago(1)}});
        assert_eq!(rows::cells(res.kind, &obj, now()).len(), rows::columns(res.kind).len(), "{}", res.kind);
    }
}

#[test]
fn tables_carry_metadata_or_the_object_as_asked() {
    let cm = resources::by_plural("", "configmaps").unwrap();
    let obj = json!({"kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "7", "labels": {"x": "y"}}, "data": {"k": "v"}});
    let t = of_list(cm, std::slice::from_ref(&obj), Some("9"), Version::V1, Include::Metadata, now());
    assert_eq!((t["kind"].as_str(), t["apiVersion"].as_str(), t["metadata"]["resourceVersion"].as_str()), (Some("Table"), Some("meta.k8s.io/v1"), Some("9")));
    let names: Vec<&str> = t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Name", "Data", "Age"]);
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
    assert_eq!(t["rows"][0]["cells"], json!(["a", 1, "<unknown>"]));
    assert_eq!(t["rows"][0]["object"], json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}));
    let t = of_object(cm, &obj, Version::V1beta1, Include::Object, now());
    assert_eq!((t["apiVersion"].as_str(), t["metadata"]["resourceVersion"].as_str()), (Some("meta.k8s.io/v1beta1"), Some("7")));
    assert_eq!(t["rows"][0]["object"], obj);
    assert!(of_object(cm, &obj, Version::V1, Include::None, now())["rows"][0].get("object").is_none());
}
