//! The defaults the Kubernetes API server writes into objects it stores (its `SetDefaults_*`
//! functions for core/v1, apps/v1 and batch/v1, and the ServiceAccount admission's account
//! name), so that what `kubectl get -o yaml` and clients read is what they read from
//! Kubernetes. Applied to every create and update; idempotent. Services are defaulted
//! with their allocation in `service.rs`. Pure.

use serde_json::{json, Map, Value};

/// Fill in what `obj` of kind `kind` leaves out.
pub fn apply(kind: &str, obj: &mut Value) {
    match kind {
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec, true);
            }
        }
        "Deployment" => {
            let spec = spec(obj);
            set(spec, "replicas", json!(1));
            rolling(spec, "strategy", &[("maxUnavailable", json!("25%")), ("maxSurge", json!("25%"))]);
            set(spec, "revisionHistoryLimit", json!(10));
            set(spec, "progressDeadlineSeconds", json!(600));
            template(spec);
        }
        "ReplicaSet" => {
            set(spec(obj), "replicas", json!(1));
            template(spec(obj));
        }
        "StatefulSet" => {
            let spec = spec(obj);
            set(spec, "replicas", json!(1));
            set(spec, "podManagementPolicy", json!("OrderedReady"));
            rolling(spec, "updateStrategy", &[("partition", json!(0))]);
            set(spec, "revisionHistoryLimit", json!(10));
            let retention = spec.entry("persistentVolumeClaimRetentionPolicy").or_insert_with(|| json!({}));
            set_in(retention, "whenDeleted", json!("Retain"));
            set_in(retention, "whenScaled", json!("Retain"));
            template(spec);
        }
        "DaemonSet" => {
            let spec = spec(obj);
            rolling(spec, "updateStrategy", &[("maxUnavailable", json!(1)), ("maxSurge", json!(0))]);
            set(spec, "revisionHistoryLimit", json!(10));
            template(spec);
        }
        "Job" => job_spec(spec(obj)),
        "CronJob" => {
            let spec = spec(obj);
            set(spec, "concurrencyPolicy", json!("Allow"));
            set(spec, "suspend", json!(false));
            set(spec, "successfulJobsHistoryLimit", json!(3));
            set(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(job) = spec.get_mut("jobTemplate").and_then(|t| t.get_mut("spec")).and_then(Value::as_object_mut) {
                job_spec(job);
            }
        }
        "Secret" => set(object(obj), "type", json!("Opaque")),
        "Namespace" => {
            let status = object(obj).entry("status").or_insert_with(|| json!({}));
            set_in(status, "phase", json!("Active"));
        }
        "PersistentVolumeClaim" => set(spec(obj), "volumeMode", json!("Filesystem")),
        "PersistentVolume" => {
            let spec = spec(obj);
            set(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            set(spec, "volumeMode", json!("Filesystem"));
        }
        _ => {}
    }
}

fn object(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    obj.as_object_mut().expect("just made an object")
}

fn spec(obj: &mut Value) -> &mut Map<String, Value> {
    let spec = object(obj).entry("spec").or_insert_with(|| json!({}));
    object(spec)
}

/// Set `key` unless it is there (a JSON null counts as absent, as Go's nil does).
fn set(map: &mut Map<String, Value>, key: &str, v: Value) {
    match map.get(key) {
        Some(Value::Null) | None => {
            map.insert(key.to_string(), v);
        }
        Some(_) => {}
    }
}

fn set_in(v: &mut Value, key: &str, value: Value) {
    set(object(v), key, value);
}

/// A strategy (`field`) of type RollingUpdate unless set, with `defaults` for its
/// `rollingUpdate` when it rolls.
fn rolling(spec: &mut Map<String, Value>, field: &str, defaults: &[(&str, Value)]) {
    let strategy = spec.entry(field).or_insert_with(|| json!({}));
    set_in(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        let update = object(strategy).entry("rollingUpdate").or_insert_with(|| json!({}));
        for (k, v) in defaults {
            set_in(update, k, v.clone());
        }
    }
}

fn template(spec: &mut Map<String, Value>) {
    if let Some(pod) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
        pod_spec(pod, false);
    }
}

fn job_spec(spec: &mut Map<String, Value>) {
    let unset = |v: Option<&Value>| v.is_none_or(Value::is_null);
    // Both unset: one pod, run once. Parallelism alone defaults to 1; completions stay
    // unset (a work queue).
    if unset(spec.get("completions")) && unset(spec.get("parallelism")) {
        spec.insert("completions".into(), json!(1));
    }
    set(spec, "parallelism", json!(1));
    set(spec, "backoffLimit", json!(6));
    set(spec, "completionMode", json!("NonIndexed"));
    set(spec, "suspend", json!(false));
    set(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    template(spec);
}

/// A pod's spec, or a template's (`pod` also sets what admission sets on a pod itself).
fn pod_spec(spec: &mut Value, pod: bool) {
    let Some(spec) = spec.as_object_mut() else { return };
    set(spec, "restartPolicy", json!("Always"));
    set(spec, "terminationGracePeriodSeconds", json!(30));
    set(spec, "dnsPolicy", json!("ClusterFirst"));
    set(spec, "securityContext", json!({}));
    set(spec, "schedulerName", json!("default-scheduler"));
    set(spec, "enableServiceLinks", json!(true));
    if pod {
        // The ServiceAccount admission: `default` unless one is named (and the deprecated
        // field mirrors it), and the priority of no PriorityClass.
        let named = spec.get("serviceAccount").filter(|v| v.is_string()).cloned().unwrap_or(json!("default"));
        set(spec, "serviceAccountName", named);
        let account = spec["serviceAccountName"].clone();
        set(spec, "serviceAccount", account);
        set(spec, "priority", json!(0));
    }
    for list in ["initContainers", "containers"] {
        for c in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            container(c);
        }
    }
    for v in spec.get_mut("volumes").and_then(Value::as_array_mut).into_iter().flatten() {
        for source in ["secret", "configMap", "downwardAPI", "projected"] {
            if let Some(s) = v.get_mut(source).filter(|s| s.is_object()) {
                set_in(s, "defaultMode", json!(0o644));
            }
        }
    }
}

fn container(c: &mut Value) {
    let Some(c) = c.as_object_mut() else { return };
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
    set(c, "imagePullPolicy", json!(pull_policy(image)));
    set(c, "terminationMessagePath", json!("/dev/termination-log"));
    set(c, "terminationMessagePolicy", json!("File"));
    set(c, "resources", json!({}));
    for p in c.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
        set_in(p, "protocol", json!("TCP"));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            set_in(p, "timeoutSeconds", json!(1));
            set_in(p, "periodSeconds", json!(10));
            set_in(p, "successThreshold", json!(1));
            set_in(p, "failureThreshold", json!(3));
            if let Some(get) = p.get_mut("httpGet").filter(|g| g.is_object()) {
                set_in(get, "scheme", json!("HTTP"));
                set_in(get, "path", json!("/"));
            }
        }
    }
    for e in c.get_mut("env").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(f) = e.pointer_mut("/valueFrom/fieldRef").filter(|f| f.is_object()) {
            set_in(f, "apiVersion", json!("v1"));
        }
    }
}

/// `Always` for an image without a tag or with `:latest`, `IfNotPresent` otherwise (a
/// digest pins it), as Kubernetes defaults it.
pub fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // The tag follows the last `:` after the last `/` (a registry port is not a tag).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_gets_the_api_servers_defaults() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "busybox", "ports": [{"containerPort": 80}],
             "readinessProbe": {"httpGet": {"port": 80}}, "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
            {"name": "b", "image": "reg.test:5000/app:1", "imagePullPolicy": "Never"}],
            "volumes": [{"name": "s", "secret": {"secretName": "x"}}, {"name": "e", "emptyDir": {}}]}});
        apply("Pod", &mut pod);
        let spec = &pod["spec"];
        assert_eq!((&spec["restartPolicy"], &spec["dnsPolicy"], &spec["terminationGracePeriodSeconds"]), (&json!("Always"), &json!("ClusterFirst"), &json!(30)));
        assert_eq!((&spec["serviceAccountName"], &spec["serviceAccount"], &spec["schedulerName"]), (&json!("default"), &json!("default"), &json!("default-scheduler")));
        let a = &spec["containers"][0];
        assert_eq!((&a["imagePullPolicy"], &a["ports"][0]["protocol"], &a["terminationMessagePolicy"]), (&json!("Always"), &json!("TCP"), &json!("File")));
        assert_eq!(a["readinessProbe"], json!({"httpGet": {"port": 80, "scheme": "HTTP", "path": "/"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}));
        assert_eq!(a["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(spec["containers"][1]["imagePullPolicy"], "Never", "what is set stays");
        assert_eq!(spec["volumes"][0]["secret"]["defaultMode"], 420);
        assert!(spec["volumes"][1]["emptyDir"].get("defaultMode").is_none());
        let again = {
            let mut p = pod.clone();
            apply("Pod", &mut p);
            p
        };
        assert_eq!(again, pod, "idempotent");
    }

    #[test]
    fn a_named_service_account_is_kept_and_mirrored() {
        let mut pod = json!({"spec": {"serviceAccountName": "robot", "containers": []}});
        apply("Pod", &mut pod);
        assert_eq!((&pod["spec"]["serviceAccountName"], &pod["spec"]["serviceAccount"]), (&json!("robot"), &json!("robot")));
        let mut old = json!({"spec": {"serviceAccount": "legacy", "containers": []}});
        apply("Pod", &mut old);
        assert_eq!(old["spec"]["serviceAccountName"], "legacy");
    }

    #[test]
    fn workloads_get_theirs_and_their_templates() {
        let mut d = json!({"spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "a", "image": "app:1"}]}}}});
        apply("Deployment", &mut d);
        assert_eq!(d["spec"]["strategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}));
        assert_eq!((&d["spec"]["replicas"], &d["spec"]["revisionHistoryLimit"], &d["spec"]["progressDeadlineSeconds"]), (&json!(1), &json!(10), &json!(600)));
        let t = &d["spec"]["template"]["spec"];
        assert_eq!((&t["restartPolicy"], &t["containers"][0]["imagePullPolicy"]), (&json!("Always"), &json!("IfNotPresent")));
        assert!(t.get("serviceAccountName").is_none(), "a template is not admitted as a pod");
        let mut recreate = json!({"spec": {"strategy": {"type": "Recreate"}}});
        apply("Deployment", &mut recreate);
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));

        let mut job = json!({"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": []}}}});
        apply("Job", &mut job);
        assert_eq!((&job["spec"]["completions"], &job["spec"]["parallelism"], &job["spec"]["backoffLimit"]), (&json!(1), &json!(1), &json!(6)));
        assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
        let mut queue = json!({"spec": {"parallelism": 3}});
        apply("Job", &mut queue);
        assert!(queue["spec"].get("completions").is_none(), "a work queue keeps no completions");

        let mut sts = json!({"spec": {}});
        apply("StatefulSet", &mut sts);
        assert_eq!(sts["spec"]["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
        let mut ds = json!({"spec": {}});
        apply("DaemonSet", &mut ds);
        assert_eq!(ds["spec"]["updateStrategy"]["rollingUpdate"], json!({"maxUnavailable": 1, "maxSurge": 0}));
        let mut cj = json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {}}}});
        apply("CronJob", &mut cj);
        assert_eq!((&cj["spec"]["concurrencyPolicy"], &cj["spec"]["jobTemplate"]["spec"]["backoffLimit"]), (&json!("Allow"), &json!(6)));
        let mut ns = json!({"metadata": {"name": "a"}});
        apply("Namespace", &mut ns);
        assert_eq!(ns["status"]["phase"], "Active");
        let mut going = json!({"status": {"phase": "Terminating"}});
        apply("Namespace", &mut going);
        assert_eq!(going["status"]["phase"], "Terminating");
        let mut secret = json!({"data": {}});
        apply("Secret", &mut secret);
        assert_eq!(secret["type"], "Opaque");
    }

    #[test]
    fn pull_policy_reads_the_tag_not_the_registry_port() {
        assert_eq!(pull_policy("busybox"), "Always");
        assert_eq!(pull_policy("busybox:latest"), "Always");
        assert_eq!(pull_policy("reg.test:5000/app"), "Always");
        assert_eq!(pull_policy("reg.test:5000/app:1"), "IfNotPresent");
        assert_eq!(pull_policy(&format!("app@sha256:{}", "a".repeat(64))), "IfNotPresent");
    }
}
