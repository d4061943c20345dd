//! The columns `kubectl get` prints for each kind, and their cells computed from an object
//! as Kubernetes' printers compute them (`kubectl get pods` shows `NAME READY STATUS
//! RESTARTS AGE`, `-o wide` adds the priority-1 columns). Every row has a cell for every
//! column, wide or not: kubectl picks the ones it prints. Pure.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{human, labels, none_if_empty, selector, since, Column};

const fn col(name: &'static str, kind: &'static str, priority: u8, description: &'static str) -> Column {
    Column { name, kind, priority, description }
}

const NAME: Column = col("Name", "string", 0, "The object's unique name in its namespace.");
const AGE: Column = col("Age", "string", 0, "How long ago the object was created.");
const CREATED_AT: Column = col("Created At", "date", 0, "When the object was created.");
const CONTAINERS: Column = col("Containers", "string", 1, "The names of the containers of the pod template.");
const IMAGES: Column = col("Images", "string", 1, "The images of the containers of the pod template.");
const SELECTOR: Column = col("Selector", "string", 1, "The label selector of the pods it manages.");

pub fn columns(kind: &str) -> &'static [Column] {
    match kind {
        "Pod" => const { &[
            NAME,
            col("Ready", "string", 0, "Ready containers out of all containers."),
            col("Status", "string", 0, "The pod's phase, or why it is not running."),
            col("Restarts", "string", 0, "Container restarts, and when the last one was."),
            AGE,
            col("IP", "string", 1, "The pod's IP address."),
            col("Node", "string", 1, "The node the pod is bound to."),
            col("Nominated Node", "string", 1, "The node the scheduler nominated for preemption."),
            col("Readiness Gates", "string", 1, "Readiness gates that hold, out of all."),
        ] },
        "Node" => const { &[
            NAME,
            col("Status", "string", 0, "Ready, NotReady or Unknown, and whether scheduling is disabled."),
            col("Roles", "string", 0, "The node's roles, from its node-role labels."),
            AGE,
            col("Version", "string", 0, "The node agent's version."),
            col("Internal-IP", "string", 1, "The node's internal address."),
            col("External-IP", "string", 1, "The node's external address."),
            col("OS-Image", "string", 1, "The node's operating system."),
            col("Kernel-Version", "string", 1, "The node's kernel."),
            col("Container-Runtime", "string", 1, "The node's container runtime."),
        ] },
        "Namespace" => const { &[NAME, col("Status", "string", 0, "Active or Terminating."), AGE] },
        "Service" => const { &[
            NAME,
            col("Type", "string", 0, "ClusterIP, NodePort, LoadBalancer or ExternalName."),
            col("Cluster-IP", "string", 0, "The service's virtual IP."),
            col("External-IP", "string", 0, "Addresses outside the cluster that reach the service."),
            col("Port(s)", "string", 0, "The service's ports (with node ports)."),
            AGE,
            col("Selector", "string", 1, "The labels of the pods that serve it."),
        ] },
        "Endpoints" => const { &[NAME, col("Endpoints", "string", 0, "The ready addresses and ports."), AGE] },
        "Deployment" => const { &[
            NAME,
            col("Ready", "string", 0, "Ready replicas out of desired."),
            col("Up-to-date", "integer", 0, "Replicas of the current template."),
            col("Available", "integer", 0, "Replicas available to users."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ] },
        "ReplicaSet" => const { &[
            NAME,
            col("Desired", "integer", 0, "Replicas asked for."),
            col("Current", "integer", 0, "Replicas that exist."),
            col("Ready", "integer", 0, "Replicas that are ready."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ] },
        "StatefulSet" => const { &[NAME, col("Ready", "string", 0, "Ready replicas out of desired."), AGE, CONTAINERS, IMAGES] },
        "DaemonSet" => const { &[
            NAME,
            col("Desired", "integer", 0, "Nodes that should run the pod."),
            col("Current", "integer", 0, "Nodes that run the pod."),
            col("Ready", "integer", 0, "Nodes whose pod is ready."),
            col("Up-to-date", "integer", 0, "Nodes that run the current template."),
            col("Available", "integer", 0, "Nodes whose pod is available."),
            col("Node Selector", "string", 0, "The labels of the nodes it runs on."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ] },
        "Job" => const { &[
            NAME,
            col("Status", "string", 0, "Complete, Failed, Suspended or Running."),
            col("Completions", "string", 0, "Succeeded pods out of the completions asked for."),
            col("Duration", "string", 0, "How long the job ran."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ] },
        "CronJob" => const { &[
            NAME,
            col("Schedule", "string", 0, "The cron schedule."),
            col("Timezone", "string", 0, "The time zone of the schedule."),
            col("Suspend", "boolean", 0, "Whether new runs are suspended."),
            col("Active", "integer", 0, "Jobs running now."),
            col("Last Schedule", "string", 0, "How long ago a job was last started."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ] },
        "ConfigMap" => const { &[NAME, col("Data", "integer", 0, "The number of entries."), AGE] },
        "Secret" => const { &[NAME, col("Type", "string", 0, "The secret's type."), col("Data", "integer", 0, "The number of entries."), AGE] },
        "ServiceAccount" => const { &[NAME, col("Secrets", "integer", 0, "The number of secrets it names."), AGE] },
        "Event" => const { &[
            col("Last Seen", "string", 0, "How long ago it last happened."),
            col("Type", "string", 0, "Normal or Warning."),
            col("Reason", "string", 0, "Why it happened, in one word."),
            col("Object", "string", 0, "What it is about."),
            col("Subobject", "string", 1, "The part of the object it is about."),
            col("Source", "string", 1, "Who reported it."),
            col("Message", "string", 0, "What happened."),
            col("First Seen", "string", 1, "How long ago it first happened."),
            col("Count", "integer", 1, "How often it happened."),
            col("Name", "string", 1, "The event's name."),
        ] },
        "PersistentVolume" => const { &[
            NAME,
            col("Capacity", "string", 0, "The volume's size."),
            col("Access Modes", "string", 0, "How it may be mounted."),
            col("Reclaim Policy", "string", 0, "What happens to it when released."),
            col("Status", "string", 0, "The volume's phase."),
            col("Claim", "string", 0, "The claim bound to it."),
            col("StorageClass", "string", 0, "Its storage class."),
            col("VolumeAttributesClass", "string", 0, "Its volume attributes class."),
            col("Reason", "string", 0, "Why it is in its phase."),
            AGE,
            col("VolumeMode", "string", 1, "Filesystem or Block."),
        ] },
        "PersistentVolumeClaim" => const { &[
            NAME,
            col("Status", "string", 0, "The claim's phase."),
            col("Volume", "string", 0, "The volume bound to it."),
            col("Capacity", "string", 0, "The bound volume's size."),
            col("Access Modes", "string", 0, "How it may be mounted."),
            col("StorageClass", "string", 0, "Its storage class."),
            col("VolumeAttributesClass", "string", 0, "Its volume attributes class."),
            AGE,
            col("VolumeMode", "string", 1, "Filesystem or Block."),
        ] },
        "ResourceQuota" => const { &[
            NAME,
            AGE,
            col("Request", "string", 0, "Used out of hard, for what is not a limit."),
            col("Limit", "string", 0, "Used out of hard, for limits."),
        ] },
        "PodDisruptionBudget" => const { &[
            NAME,
            col("Min Available", "string", 0, "The healthy pods it keeps at least."),
            col("Max Unavailable", "string", 0, "The pods it lets be unavailable at most."),
            col("Allowed Disruptions", "integer", 0, "Evictions it allows now."),
            AGE,
        ] },
        "LimitRange" | "Role" | "ClusterRole" => const { &[NAME, CREATED_AT] },
        "RoleBinding" | "ClusterRoleBinding" => const { &[
            NAME,
            col("Role", "string", 0, "The role it grants."),
            AGE,
            col("Users", "string", 1, "The users it binds."),
            col("Groups", "string", 1, "The groups it binds."),
            col("ServiceAccounts", "string", 1, "The service accounts it binds."),
        ] },
        _ => const { &[NAME, AGE] },
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn n(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// One field of every container of a pod spec, comma-joined (the CONTAINERS and IMAGES columns).
fn of_containers(pod_spec: &Value, field: &str) -> String {
    list(&pod_spec["containers"]).iter().map(|c| s(&c[field])).collect::<Vec<_>>().join(",")
}

fn or(text: &str, fallback: &str) -> String {
    if text.is_empty() { fallback } else { text }.to_string()
}

/// The cells of `obj`'s row, one per column of `columns(kind)`.
pub fn cells(kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = json!(s(&obj["metadata"]["name"]));
    let age = json!(since(obj.pointer("/metadata/creationTimestamp").and_then(Value::as_str), now));
    let (spec, status) = (&obj["spec"], &obj["status"]);
    let template = &spec["template"]["spec"];
    let containers = || json!(of_containers(template, "name"));
    let images = || json!(of_containers(template, "image"));
    match kind {
        "Pod" => pod(obj, now),
        "Node" => node(obj, age),
        "Namespace" => vec![name, json!(s(&status["phase"])), age],
        "Service" => service(obj, age),
        "Endpoints" => vec![name, json!(endpoints(obj)), age],
        "Deployment" => vec![
            name,
            json!(format!("{}/{}", n(&status["readyReplicas"]), spec["replicas"].as_i64().unwrap_or(1))),
            json!(n(&status["updatedReplicas"])),
            json!(n(&status["availableReplicas"])),
            age,
            containers(),
            images(),
            json!(selector(&spec["selector"])),
        ],
        "ReplicaSet" => vec![
            name,
            json!(spec["replicas"].as_i64().unwrap_or(1)),
            json!(n(&status["replicas"])),
            json!(n(&status["readyReplicas"])),
            age,
            containers(),
            images(),
            json!(selector(&spec["selector"])),
        ],
        "StatefulSet" => vec![
            name,
            json!(format!("{}/{}", n(&status["readyReplicas"]), spec["replicas"].as_i64().unwrap_or(1))),
            age,
            containers(),
            images(),
        ],
        "DaemonSet" => vec![
            name,
            json!(n(&status["desiredNumberScheduled"])),
            json!(n(&status["currentNumberScheduled"])),
            json!(n(&status["numberReady"])),
            json!(n(&status["updatedNumberScheduled"])),
            json!(n(&status["numberAvailable"])),
            json!(labels(&template["nodeSelector"])),
            age,
            containers(),
            images(),
            json!(selector(&spec["selector"])),
        ],
        "Job" => job(obj, now, name, age),
        "CronJob" => {
            let template = &spec["jobTemplate"]["spec"]["template"]["spec"];
            let (names, images) = (of_containers(template, "name"), of_containers(template, "image"));
            let last = match status["lastScheduleTime"].as_str() {
                Some(t) => since(Some(t), now),
                None => "<none>".to_string(),
            };
            vec![
                name,
                json!(s(&spec["schedule"])),
                json!(or(s(&spec["timeZone"]), "<none>")),
                json!(if spec["suspend"] == true { "True" } else { "False" }),
                json!(list(&status["active"]).len()),
                json!(last),
                age,
                json!(names),
                json!(images),
                json!(selector(&spec["jobTemplate"]["spec"]["selector"])),
            ]
        }
        "ConfigMap" => {
            let count = |v: &Value| v.as_object().map_or(0, |m| m.len());
            vec![name, json!(count(&obj["data"]) + count(&obj["binaryData"])), age]
        }
        "Secret" => vec![name, json!(or(s(&obj["type"]), "Opaque")), json!(obj["data"].as_object().map_or(0, |m| m.len())), age],
        "ServiceAccount" => vec![name, json!(list(&obj["secrets"]).len()), age],
        "Event" => event(obj, now),
        "PersistentVolume" => {
            let claim = &spec["claimRef"];
            let claim = if claim.is_object() { format!("{}/{}", s(&claim["namespace"]), s(&claim["name"])) } else { String::new() };
            vec![
                name,
                json!(s(&spec["capacity"]["storage"])),
                json!(access_modes(&spec["accessModes"])),
                json!(or(s(&spec["persistentVolumeReclaimPolicy"]), "Retain")),
                json!(s(&status["phase"])),
                json!(claim),
                json!(s(&spec["storageClassName"])),
                json!(or(s(&spec["volumeAttributesClassName"]), "<unset>")),
                json!(s(&status["reason"])),
                age,
                json!(or(s(&spec["volumeMode"]), "Filesystem")),
            ]
        }
        "PersistentVolumeClaim" => {
            let phase = if obj["metadata"]["deletionTimestamp"].is_string() { "Terminating" } else { s(&status["phase"]) };
            let bound = s(&status["phase"]) == "Bound";
            vec![
                name,
                json!(phase),
                json!(s(&spec["volumeName"])),
                json!(if bound { s(&status["capacity"]["storage"]) } else { "" }),
                json!(if bound { access_modes(&status["accessModes"]) } else { String::new() }),
                json!(s(&spec["storageClassName"])),
                json!(or(s(&spec["volumeAttributesClassName"]), "<unset>")),
                age,
                json!(or(s(&spec["volumeMode"]), "Filesystem")),
            ]
        }
        "ResourceQuota" => {
            let (mut requests, mut limits) = (Vec::new(), Vec::new());
            let mut hard: Vec<(&String, &Value)> = status["hard"].as_object().into_iter().flatten().collect();
            hard.sort_by(|a, b| a.0.cmp(b.0));
            for (resource, h) in hard {
                let used = status["used"][resource.as_str()].as_str().unwrap_or("0");
                let entry = format!("{resource}: {used}/{}", s(h));
                if resource.starts_with("limits") { limits.push(entry) } else { requests.push(entry) }
            }
            vec![name, age, json!(requests.join(", ")), json!(limits.join(", "))]
        }
        "PodDisruptionBudget" => {
            let shown = |v: &Value| match v {
                Value::Null => "N/A".to_string(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vec![name, json!(shown(&spec["minAvailable"])), json!(shown(&spec["maxUnavailable"])), json!(n(&status["disruptionsAllowed"])), age]
        }
        "LimitRange" | "Role" | "ClusterRole" => vec![name, obj["metadata"]["creationTimestamp"].clone()],
        "RoleBinding" | "ClusterRoleBinding" => {
            let subjects = |k: &str| {
                let of: Vec<String> = list(&obj["subjects"])
                    .iter()
                    .filter(|sub| s(&sub["kind"]) == k)
                    .map(|sub| if k == "ServiceAccount" { format!("{}/{}", s(&sub["namespace"]), s(&sub["name"])) } else { s(&sub["name"]).to_string() })
                    .collect();
                json!(of.join(", "))
            };
            let role = format!("{}/{}", s(&obj["roleRef"]["kind"]), s(&obj["roleRef"]["name"]));
            vec![name, json!(role), age, subjects("User"), subjects("Group"), subjects("ServiceAccount")]
        }
        _ => vec![name, age],
    }
}

fn pod(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (spec, status) = (&obj["spec"], &obj["status"]);
    let mut reason = or(s(&status["reason"]), s(&status["phase"]));
    let mut restarts = 0;
    let mut ready = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut note_restart = |c: &Value| {
        if let Some(t) = c.pointer("/lastState/terminated/finishedAt").and_then(Value::as_str).and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
            let t = t.with_timezone(&Utc);
            last_restart = Some(last_restart.map_or(t, |l| l.max(t)));
        }
    };
    let init_specs = list(&spec["initContainers"]);
    let init_total = init_specs.len();
    // Sidecars (init containers that restart) count with the main containers.
    let sidecar = |name: &str| init_specs.iter().any(|c| s(&c["name"]) == name && s(&c["restartPolicy"]) == "Always");
    let total = list(&spec["containers"]).len() + init_specs.iter().filter(|c| s(&c["restartPolicy"]) == "Always").count();
    let mut initializing = false;
    for (i, c) in list(&status["initContainerStatuses"]).iter().enumerate() {
        restarts += n(&c["restartCount"]);
        note_restart(c);
        let state = &c["state"];
        let terminated = &state["terminated"];
        if sidecar(s(&c["name"])) {
            if c["started"] == true {
                if c["ready"] == true {
                    ready += 1;
                }
                continue;
            }
        } else if terminated.is_object() && n(&terminated["exitCode"]) == 0 {
            continue;
        }
        reason = if terminated.is_object() {
            match (s(&terminated["reason"]), n(&terminated["signal"])) {
                ("", 0) => format!("Init:ExitCode:{}", n(&terminated["exitCode"])),
                ("", sig) => format!("Init:Signal:{sig}"),
                (r, _) => format!("Init:{r}"),
            }
        } else if !s(&state["waiting"]["reason"]).is_empty() && s(&state["waiting"]["reason"]) != "PodInitializing" {
            format!("Init:{}", s(&state["waiting"]["reason"]))
        } else {
            format!("Init:{i}/{init_total}")
        };
        initializing = true;
        break;
    }
    let conditions = list(&status["conditions"]);
    let condition = |t: &str| conditions.iter().any(|c| s(&c["type"]) == t && s(&c["status"]) == "True");
    if !initializing || condition("Initialized") {
        restarts = 0;
        let mut running = false;
        for c in list(&status["containerStatuses"]).iter().rev() {
            restarts += n(&c["restartCount"]);
            note_restart(c);
            let (waiting, terminated) = (&c["state"]["waiting"], &c["state"]["terminated"]);
            if !s(&waiting["reason"]).is_empty() {
                reason = s(&waiting["reason"]).to_string();
            } else if !s(&terminated["reason"]).is_empty() {
                reason = s(&terminated["reason"]).to_string();
            } else if terminated.is_object() {
                reason = match n(&terminated["signal"]) {
                    0 => format!("ExitCode:{}", n(&terminated["exitCode"])),
                    sig => format!("Signal:{sig}"),
                };
            } else if c["ready"] == true && c["state"]["running"].is_object() {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && running {
            reason = if condition("Ready") { "Running" } else { "NotReady" }.to_string();
        }
    }
    if obj["metadata"]["deletionTimestamp"].is_string() {
        if s(&status["reason"]) == "NodeLost" {
            reason = "Unknown".to_string();
        } else if !matches!(s(&status["phase"]), "Succeeded" | "Failed") {
            reason = "Terminating".to_string();
        }
    }
    let restarts = match last_restart {
        Some(t) if restarts > 0 => format!("{restarts} ({} ago)", human((now - t).num_seconds())),
        _ => restarts.to_string(),
    };
    let gates = list(&spec["readinessGates"]);
    let gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let held = gates.iter().filter(|g| condition(s(&g["conditionType"]))).count();
        format!("{held}/{}", gates.len())
    };
    vec![
        json!(s(&obj["metadata"]["name"])),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts),
        json!(since(obj.pointer("/metadata/creationTimestamp").and_then(Value::as_str), now)),
        json!(or(s(&status["podIP"]), "<none>")),
        json!(or(s(&spec["nodeName"]), "<none>")),
        json!(or(s(&status["nominatedNodeName"]), "<none>")),
        json!(gates),
    ]
}

fn node(obj: &Value, age: Value) -> Vec<Value> {
    let (spec, status) = (&obj["spec"], &obj["status"]);
    let mut state: Vec<String> = match list(&status["conditions"]).iter().find(|c| s(&c["type"]) == "Ready") {
        Some(c) if s(&c["status"]) == "True" => vec!["Ready".into()],
        Some(_) => vec!["NotReady".into()],
        None => vec!["Unknown".into()],
    };
    if spec["unschedulable"] == true {
        state.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = obj["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) if !role.is_empty() => Some(role.to_string()),
            _ if k == "kubernetes.io/role" && !s(v).is_empty() => Some(s(v).to_string()),
            _ => None,
        })
        .collect();
    roles.sort();
    roles.dedup();
    let address = |t: &str| {
        let found: Vec<&str> = list(&status["addresses"]).iter().filter(|a| s(&a["type"]) == t).map(|a| s(&a["address"])).collect();
        json!(none_if_empty(found.join(",")))
    };
    let info = &status["nodeInfo"];
    vec![
        json!(s(&obj["metadata"]["name"])),
        json!(state.join(",")),
        json!(none_if_empty(roles.join(","))),
        age,
        json!(s(&info["kubeletVersion"])),
        address("InternalIP"),
        address("ExternalIP"),
        json!(or(s(&info["osImage"]), "<unknown>")),
        json!(or(s(&info["kernelVersion"]), "<unknown>")),
        json!(or(s(&info["containerRuntimeVersion"]), "<unknown>")),
    ]
}

fn service(obj: &Value, age: Value) -> Vec<Value> {
    let spec = &obj["spec"];
    let kind = or(s(&spec["type"]), "ClusterIP");
    let external_ips: Vec<&str> = list(&spec["externalIPs"]).iter().map(s).collect();
    let external = match kind.as_str() {
        "ExternalName" => s(&spec["externalName"]).to_string(),
        "LoadBalancer" => {
            let mut ips: Vec<&str> = list(&obj["status"]["loadBalancer"]["ingress"])
                .iter()
                .map(|i| if s(&i["ip"]).is_empty() { s(&i["hostname"]) } else { s(&i["ip"]) })
                .collect();
            ips.extend(&external_ips);
            if ips.is_empty() { "<pending>".to_string() } else { ips.join(",") }
        }
        _ => none_if_empty(external_ips.join(",")),
    };
    let ports: Vec<String> = list(&spec["ports"])
        .iter()
        .map(|p| {
            let proto = or(s(&p["protocol"]), "TCP");
            match p["nodePort"].as_i64() {
                Some(np) if np != 0 => format!("{}:{np}/{proto}", n(&p["port"])),
                _ => format!("{}/{proto}", n(&p["port"])),
            }
        })
        .collect();
    vec![
        json!(s(&obj["metadata"]["name"])),
        json!(kind),
        json!(or(s(&spec["clusterIP"]), "<none>")),
        json!(external),
        json!(none_if_empty(ports.join(","))),
        age,
        json!(labels(&spec["selector"])),
    ]
}

/// The first three `ip:port` pairs, and how many more there are.
fn endpoints(obj: &Value) -> String {
    let mut all = Vec::new();
    for subset in list(&obj["subsets"]) {
        for a in list(&subset["addresses"]) {
            let ports = list(&subset["ports"]);
            if ports.is_empty() {
                all.push(s(&a["ip"]).to_string());
            }
            for p in ports {
                all.push(format!("{}:{}", s(&a["ip"]), n(&p["port"])));
            }
        }
    }
    let shown = all.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    match all.len() {
        0 => "<none>".to_string(),
        1..=3 => shown,
        more => format!("{shown} + {} more...", more - 3),
    }
}

fn job(obj: &Value, now: DateTime<Utc>, name: Value, age: Value) -> Vec<Value> {
    let (spec, status) = (&obj["spec"], &obj["status"]);
    let succeeded = n(&status["succeeded"]);
    let completions = match spec["completions"].as_i64() {
        Some(c) => format!("{succeeded}/{c}"),
        None => match spec["parallelism"].as_i64().unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let time = |f: &str| status[f].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc));
    let duration = match (time("startTime"), time("completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => human((now - start).num_seconds()),
        (Some(start), Some(end)) => human((end - start).num_seconds()),
    };
    let conditions = list(&status["conditions"]);
    let holds = |t: &str| conditions.iter().any(|c| s(&c["type"]) == t && s(&c["status"]) == "True");
    let state = if holds("Complete") {
        "Complete"
    } else if holds("Failed") {
        "Failed"
    } else if obj["metadata"]["deletionTimestamp"].is_string() {
        "Terminating"
    } else if holds("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if holds("FailureTarget") {
        "FailureTarget"
    } else if spec["suspend"] == true {
        "Suspended"
    } else {
        "Running"
    };
    let template = &spec["template"]["spec"];
    vec![
        name,
        json!(state),
        json!(completions),
        json!(duration),
        age,
        json!(of_containers(template, "name")),
        json!(of_containers(template, "image")),
        json!(selector(&spec["selector"])),
    ]
}

fn event(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let at = |f: &str| obj[f].as_str().filter(|t| !t.is_empty());
    let first = since(at("firstTimestamp").or(at("eventTime")), now);
    let mut last = at("lastTimestamp").map_or_else(|| first.clone(), |t| since(Some(t), now));
    let mut count = obj["count"].as_i64().unwrap_or(0);
    if let Some(series) = obj["series"].as_object() {
        last = since(series.get("lastObservedTime").and_then(Value::as_str), now);
        count = series.get("count").and_then(Value::as_i64).unwrap_or(count);
    } else if count == 0 {
        count = 1;
    }
    let involved = &obj["involvedObject"];
    let kind = s(&involved["kind"]).to_ascii_lowercase();
    let target = if s(&involved["name"]).is_empty() { kind } else { format!("{kind}/{}", s(&involved["name"])) };
    let source = &obj["source"];
    let source = match (s(&source["component"]), s(&source["host"])) {
        ("", _) => {
            let (c, i) = (s(&obj["reportingComponent"]), s(&obj["reportingInstance"]));
            if i.is_empty() { c.to_string() } else { format!("{c}, {i}") }
        }
        (c, "") => c.to_string(),
        (c, h) => format!("{c}, {h}"),
    };
    vec![
        json!(last),
        json!(s(&obj["type"])),
        json!(s(&obj["reason"])),
        json!(target),
        json!(s(&involved["fieldPath"])),
        json!(source),
        json!(s(&obj["message"]).trim()),
        json!(first),
        json!(count),
        json!(s(&obj["metadata"]["name"])),
    ]
}

fn access_modes(modes: &Value) -> String {
    let short = |m: &str| match m {
        "ReadWriteOnce" => "RWO",
        "ReadOnlyMany" => "ROX",
        "ReadWriteMany" => "RWX",
        "ReadWriteOncePod" => "RWOP",
        _ => "",
    };
    let mut out: Vec<&str> = Vec::new();
    for m in ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"] {
        if list(modes).iter().any(|v| s(v) == m) {
            out.push(short(m));
        }
    }
    out.join(",")
}
