//! Kubernetes' field rules for the built-in kinds beyond what their types can say: ranges,
//! uniqueness, allowed values, a workload's selector agreeing with its template, and fields
//! that may not change on update. Each broken rule is one field error with its path, and a
//! write that breaks any is refused with a 422 worded as Kubernetes words it
//! (`Deployment.apps "web" is invalid: spec.replicas: Invalid value: -3: must be greater
//! than or equal to 0`). Pure; applied after the defaults.

use std::collections::BTreeSet;

use serde_json::Value;

/// The field errors of `obj` of kind `kind`.
pub fn check(kind: &str, obj: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let spec = &obj["spec"];
    match kind {
        "Pod" => pod_spec(spec, "spec", &mut errs),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            if kind != "DaemonSet" {
                non_negative(&spec["replicas"], "spec.replicas", &mut errs);
            }
            selector_and_template(spec, &mut errs);
            let restart = &spec["template"]["spec"]["restartPolicy"];
            if restart.is_string() && restart != "Always" {
                errs.push(format!("spec.template.spec.restartPolicy: Unsupported value: {restart}: supported values: \"Always\""));
            }
            if kind == "Deployment" {
                for f in ["revisionHistoryLimit", "progressDeadlineSeconds", "minReadySeconds"] {
                    non_negative(&spec[f], &format!("spec.{f}"), &mut errs);
                }
            }
        }
        "Job" => job_spec(spec, "spec", &mut errs),
        "CronJob" => {
            for f in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit", "startingDeadlineSeconds"] {
                non_negative(&spec[f], &format!("spec.{f}"), &mut errs);
            }
            let policy = &spec["concurrencyPolicy"];
            if policy.is_string() && !matches!(policy.as_str(), Some("Allow" | "Forbid" | "Replace")) {
                errs.push(format!("spec.concurrencyPolicy: Unsupported value: {policy}: supported values: \"Allow\", \"Forbid\", \"Replace\""));
            }
            let job = &spec["jobTemplate"]["spec"];
            if job.is_object() {
                job_spec(job, "spec.jobTemplate.spec", &mut errs);
            }
        }
        _ => {}
    }
    errs
}

/// The field errors of changing `old` into `new`: what Kubernetes keeps immutable.
pub fn check_update(kind: &str, old: &Value, new: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let immutable: &[&str] = match kind {
        "Deployment" | "ReplicaSet" | "DaemonSet" => &["/spec/selector"],
        "StatefulSet" => &["/spec/selector", "/spec/serviceName", "/spec/volumeClaimTemplates"],
        "Job" => &["/spec/selector", "/spec/completions", "/spec/completionMode"],
        _ => &[],
    };
    for path in immutable {
        let (was, is) = (old.pointer(path), new.pointer(path));
        if was.is_some() && was != is {
            let field = path.trim_start_matches('/').replace('/', ".");
            let shown = is.map_or("null".to_string(), Value::to_string);
            errs.push(format!("{field}: Invalid value: {shown}: field is immutable"));
        }
    }
    errs
}

/// Kubernetes' wording of a refused object: one error plain, several in brackets.
pub fn message(kind: &str, group: &str, name: &str, errs: &[String]) -> String {
    let qualified = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
    let list = if errs.len() == 1 { errs[0].clone() } else { format!("[{}]", errs.join(", ")) };
    format!("{qualified} {name:?} is invalid: {list}")
}

fn non_negative(v: &Value, path: &str, errs: &mut Vec<String>) {
    if let Some(n) = v.as_i64().filter(|n| *n < 0) {
        errs.push(format!("{path}: Invalid value: {n}: must be greater than or equal to 0"));
    }
}

fn selector_and_template(spec: &Value, errs: &mut Vec<String>) {
    let sel = &spec["selector"];
    let labels_empty = sel["matchLabels"].as_object().is_none_or(|m| m.is_empty());
    let exprs_empty = sel["matchExpressions"].as_array().is_none_or(|e| e.is_empty());
    if !sel.is_object() {
        errs.push("spec.selector: Required value".to_string());
    } else if labels_empty && exprs_empty {
        errs.push("spec.selector: Invalid value: {}: empty selector is invalid for this kind".to_string());
    } else if !selects(sel, &spec["template"]["metadata"]["labels"]) {
        let labels = &spec["template"]["metadata"]["labels"];
        let shown = if labels.is_object() { labels.to_string() } else { "{}".to_string() };
        errs.push(format!("spec.template.metadata.labels: Invalid value: {shown}: `selector` does not match template `labels`"));
    }
    let template = &spec["template"]["spec"];
    if !template.is_object() {
        errs.push("spec.template.spec: Required value".to_string());
    } else {
        pod_spec(template, "spec.template.spec", errs);
    }
}

/// A LabelSelector (matchLabels and matchExpressions) against a label map.
pub fn selects(sel: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let by_labels = sel["matchLabels"].as_object().into_iter().flatten().all(|(k, v)| label(k) == v.as_str());
    let by_exprs = sel["matchExpressions"].as_array().into_iter().flatten().all(|e| {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        match e["operator"].as_str() {
            Some("In") => label(key).is_some_and(|v| values.contains(&v)),
            Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
            Some("Exists") => label(key).is_some(),
            Some("DoesNotExist") => label(key).is_none(),
            _ => false,
        }
    });
    by_labels && by_exprs
}

fn job_spec(spec: &Value, path: &str, errs: &mut Vec<String>) {
    for f in ["parallelism", "completions", "backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"] {
        non_negative(&spec[f], &format!("{path}.{f}"), errs);
    }
    let restart = &spec["template"]["spec"]["restartPolicy"];
    if !matches!(restart.as_str(), Some("OnFailure" | "Never")) {
        let shown = if restart.is_string() { format!("Unsupported value: {restart}") } else { "Required value".to_string() };
        errs.push(format!("{path}.template.spec.restartPolicy: {shown}: supported values: \"OnFailure\", \"Never\""));
    }
    let template = &spec["template"]["spec"];
    if template.is_object() {
        pod_spec(template, &format!("{path}.template.spec"), errs);
    }
}

fn pod_spec(spec: &Value, path: &str, errs: &mut Vec<String>) {
    let containers = spec["containers"].as_array().map_or(&[][..], Vec::as_slice);
    if containers.is_empty() {
        errs.push(format!("{path}.containers: Required value"));
    }
    let mut names = BTreeSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            let at = format!("{path}.{list}[{i}]");
            match c["name"].as_str() {
                None | Some("") => errs.push(format!("{at}.name: Required value")),
                Some(n) => {
                    if let Err(why) = super::object::validate_name(n, true) {
                        errs.push(format!("{at}.name: Invalid value: {n:?}: {why}"));
                    }
                    if !names.insert(n.to_string()) {
                        errs.push(format!("{at}.name: Duplicate value: {n:?}"));
                    }
                }
            }
            if c["image"].as_str().is_none_or(|i| i.trim().is_empty()) {
                errs.push(format!("{at}.image: Required value"));
            }
            let mut port_names = BTreeSet::new();
            for (j, p) in c["ports"].as_array().into_iter().flatten().enumerate() {
                let port = p["containerPort"].as_i64().unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    errs.push(format!("{at}.ports[{j}].containerPort: Invalid value: {port}: must be between 1 and 65535, inclusive"));
                }
                if let Some(n) = p["name"].as_str().filter(|n| !n.is_empty()) {
                    if !port_names.insert(n.to_string()) {
                        errs.push(format!("{at}.ports[{j}].name: Duplicate value: {n:?}"));
                    }
                }
            }
        }
    }
    let one_of = |field: &str, allowed: &[&str], errs: &mut Vec<String>| {
        if let Some(v) = spec[field].as_str().filter(|v| !allowed.contains(v)) {
            let list = allowed.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ");
            errs.push(format!("{path}.{field}: Unsupported value: {v:?}: supported values: {list}"));
        }
    };
    one_of("restartPolicy", &["Always", "OnFailure", "Never"], errs);
    one_of("dnsPolicy", &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"], errs);
    non_negative(&spec["terminationGracePeriodSeconds"], &format!("{path}.terminationGracePeriodSeconds"), errs);
    let mut volumes = BTreeSet::new();
    for (i, v) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        if let Some(n) = v["name"].as_str() {
            if !volumes.insert(n.to_string()) {
                errs.push(format!("{path}.volumes[{i}].name: Duplicate value: {n:?}"));
            }
        }
    }
}

#[cfg(test)]
mod tests;
