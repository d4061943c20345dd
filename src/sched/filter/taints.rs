//! Filter: every NoSchedule and NoExecute taint of the node is tolerated by the pod.
//! (PreferNoSchedule only lowers the score: `score/taints.rs`.)

use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::{NodeInfo, PodInfo};

/// Does `t` tolerate `taint`? (Kubernetes: empty key with Exists matches every key; an
/// empty effect matches every effect.)
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect_ok = t.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
    let key = t.key.as_deref().unwrap_or("");
    let exists = t.operator.as_deref() == Some("Exists");
    let key_ok = (key.is_empty() && exists) || key == taint.key;
    let value_ok = exists || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("");
    effect_ok && key_ok && value_ok
}

pub fn check(node: &NodeInfo, pod: &PodInfo) -> Result<(), String> {
    let untolerated = node
        .taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .any(|taint| !pod.tolerations.iter().any(|t| tolerates(t, taint)));
    if untolerated {
        return Err("node(s) had untolerated taint(s)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: Some(value.into()), effect: effect.into(), time_added: None }
    }

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some(op.into()),
            value: Some(value.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            toleration_seconds: None,
        }
    }

    #[test]
    fn tolerations_match_key_value_and_effect() {
        let t = taint("gpu", "yes", "NoSchedule");
        assert!(tolerates(&toleration("gpu", "Equal", "yes", "NoSchedule"), &t));
        assert!(tolerates(&toleration("gpu", "Exists", "", ""), &t));
        assert!(tolerates(&toleration("", "Exists", "", ""), &t));
        assert!(!tolerates(&toleration("gpu", "Equal", "no", "NoSchedule"), &t));
        assert!(!tolerates(&toleration("gpu", "Equal", "yes", "NoExecute"), &t));
        let node = NodeInfo { taints: vec![t, taint("soft", "", "PreferNoSchedule")], ..Default::default() };
        assert!(check(&node, &PodInfo::default()).is_err());
        let pod = PodInfo { tolerations: vec![toleration("gpu", "Exists", "", "")], ..Default::default() };
        assert!(check(&node, &pod).is_ok(), "PreferNoSchedule does not filter");
    }
}
