//! LimitRange admission (the `Container` limits of a namespace): a pod's containers get the
//! range's default limits and requests where they set none, and a container whose request
//! or limit falls outside the range's `min`/`max` is refused (403 Forbidden, worded as
//! Kubernetes' LimitRanger words it). Pure.

use serde_json::{Map, Value};

use super::quantity;

/// A quantity as a comparable number (CPU in millicores, anything else in units).
fn amount(resource: &str, q: &Value) -> Option<i64> {
    let q = q.as_str().map(String::from).or_else(|| q.as_i64().map(|n| n.to_string()))?;
    if resource == "cpu" {
        quantity::cpu_millis(&q)
    } else {
        quantity::bytes(&q)
    }
}

/// Apply the namespace's LimitRanges to a pod about to be created.
pub fn admit(pod: &mut Value, ranges: &[Value]) -> Result<(), String> {
    let items: Vec<&Value> = ranges
        .iter()
        .flat_map(|r| r["spec"]["limits"].as_array().into_iter().flatten())
        .filter(|l| l["type"] == "Container")
        .collect();
    if items.is_empty() {
        return Ok(());
    }
    for list in ["initContainers", "containers"] {
        let Some(containers) = pod["spec"][list].as_array_mut() else { continue };
        for c in containers {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            for item in &items {
                defaults(c, item);
                check(&name, c, item)?;
            }
        }
    }
    Ok(())
}

fn defaults(c: &mut Value, item: &Value) {
    let set_missing = |target: &mut Value, from: &Value| {
        let Some(from) = from.as_object() else { return };
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        for (k, v) in from {
            if target.get(k).is_none() {
                target[k] = v.clone();
            }
        }
    };
    if !c["resources"].is_object() {
        c["resources"] = Value::Object(Map::new());
    }
    let has_default = item["default"].is_object();
    set_missing(&mut c["resources"]["limits"], &item["default"]);
    // A range without defaultRequest defaults requests to its default limits (Kubernetes
    // defaults the LimitRange so); a request also defaults to the container's own limit.
    let requests_from = if item["defaultRequest"].is_object() { &item["defaultRequest"] } else if has_default { &item["default"] } else { &Value::Null };
    set_missing(&mut c["resources"]["requests"], requests_from);
    let limits = c["resources"]["limits"].clone();
    set_missing(&mut c["resources"]["requests"], &limits);
}

fn check(name: &str, c: &Value, item: &Value) -> Result<(), String> {
    let (requests, limits) = (&c["resources"]["requests"], &c["resources"]["limits"]);
    for (k, min) in item["min"].as_object().into_iter().flatten() {
        let min_n = amount(k, min).ok_or_else(|| format!("the LimitRange's min {k} is not a quantity"))?;
        match requests.get(k).and_then(|q| amount(k, q)) {
            None => return Err(format!("minimum {k} usage per Container is {}, but container {name:?} has no {k} request", show(min))),
            Some(r) if r < min_n => return Err(format!("minimum {k} usage per Container is {}, but request is {}", show(min), show(&requests[k]))),
            _ => {}
        }
    }
    for (k, max) in item["max"].as_object().into_iter().flatten() {
        let max_n = amount(k, max).ok_or_else(|| format!("the LimitRange's max {k} is not a quantity"))?;
        match limits.get(k).and_then(|q| amount(k, q)) {
            None => return Err(format!("maximum {k} usage per Container is {}, but container {name:?} has no {k} limit", show(max))),
            Some(l) if l > max_n => return Err(format!("maximum {k} usage per Container is {}, but limit is {}", show(max), show(&limits[k]))),
            _ => {}
        }
    }
    Ok(())
}

fn show(q: &Value) -> String {
    q.as_str().map(String::from).unwrap_or_else(|| q.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn range(limit: Value) -> Value {
        json!({"kind": "LimitRange", "spec": {"limits": [limit]}})
    }

    fn pod(resources: Value) -> Value {
        json!({"spec": {"containers": [{"name": "app", "resources": resources}]}})
    }

    #[test]
    fn defaults_fill_what_containers_leave_out() {
        let r = range(json!({"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"}, "defaultRequest": {"cpu": "100m"}}));
        let mut p = pod(json!({"limits": {"memory": "64Mi"}}));
        admit(&mut p, &[r]).unwrap();
        let res = &p["spec"]["containers"][0]["resources"];
        assert_eq!(res["limits"], json!({"cpu": "500m", "memory": "64Mi"}), "the container's own limit stays");
        assert_eq!(res["requests"], json!({"cpu": "100m", "memory": "64Mi"}), "memory request from its limit");
        let only_default = range(json!({"type": "Container", "default": {"cpu": "1"}}));
        let mut p = pod(json!({}));
        admit(&mut p, &[only_default]).unwrap();
        assert_eq!(p["spec"]["containers"][0]["resources"]["requests"]["cpu"], "1");
    }

    #[test]
    fn bounds_are_enforced() {
        let r = range(json!({"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1", "memory": "1Gi"}}));
        let ok = admit(&mut pod(json!({"requests": {"cpu": "200m"}, "limits": {"cpu": "1", "memory": "512Mi"}})), &[r.clone()]);
        assert!(ok.is_ok(), "{ok:?}");
        let too_big = admit(&mut pod(json!({"requests": {"cpu": "200m"}, "limits": {"cpu": "2", "memory": "512Mi"}})), &[r.clone()]).unwrap_err();
        assert_eq!(too_big, "maximum cpu usage per Container is 1, but limit is 2");
        let too_small = admit(&mut pod(json!({"requests": {"cpu": "50m"}, "limits": {"cpu": "1", "memory": "1Gi"}})), &[r.clone()]).unwrap_err();
        assert_eq!(too_small, "minimum cpu usage per Container is 100m, but request is 50m");
        assert!(admit(&mut pod(json!({"requests": {"cpu": "200m"}, "limits": {"cpu": "1"}})), &[r]).unwrap_err().contains("no memory limit"));
        // Other kinds of limits (Pod, PersistentVolumeClaim) are not judged here.
        assert!(admit(&mut pod(json!({})), &[range(json!({"type": "Pod", "max": {"cpu": "1"}}))]).is_ok());
    }
}
