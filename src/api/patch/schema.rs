//! Patch metadata of the built-in kinds: which lists a strategic merge patch merges, and by
//! which key (Kubernetes' `patchStrategy`/`patchMergeKey`, published as the OpenAPI
//! extensions `x-kubernetes-patch-strategy`/`x-kubernetes-patch-merge-key`). Pure.
//!
//! Why a table here: k8s-openapi carries these only as code (its `DeepMerge` impls, which
//! follow the server-side-apply list-map keys, not the patch merge keys) and its schemars
//! output drops the extensions, so no library hands them over as data. The table is small,
//! follows the Go types of Kubernetes 1.32, and a test checks every map-list entry against
//! k8s-openapi's own merge (`DeepMerge`) so that it cannot name a key the types do not.

/// How a strategic merge patch treats a list field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the current one (no `patchStrategy`).
    Replace,
    /// Items are objects matched by this key; matched items are merged, others added.
    MergeByKey(&'static str),
    /// Items are scalars; the patch's items are added to the current ones (a set union).
    MergeScalars,
}

/// The schema node a value sits at: the fields of interest of one Kubernetes type. `Plain`
/// is every type without patch metadata below it (maps merge, lists replace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Plain,
    /// Top-level objects, by the shape of their spec and status.
    Pod,
    Workload,
    CronJob,
    Node,
    Service,
    WithConditions,
    ObjectMeta,
    PodTemplate,
    JobTemplate,
    PodSpec,
    Container,
    PodStatus,
    WorkloadSpec,
    CronJobSpec,
    NodeSpec,
    NodeStatus,
    ServiceSpec,
    Conditions,
}

/// What the schema says of one field: its type, and how a list in it is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub ty: Type,
    pub list: ListStrategy,
}

impl Field {
    const fn of(ty: Type) -> Field {
        Field { ty, list: ListStrategy::Replace }
    }
    const fn merge(key: &'static str, ty: Type) -> Field {
        Field { ty, list: ListStrategy::MergeByKey(key) }
    }
}

/// The schema root of a stored kind.
pub fn root(kind: &str) -> Type {
    match kind {
        "Pod" => Type::Pod,
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" | "Job" => Type::Workload,
        "CronJob" => Type::CronJob,
        "Node" => Type::Node,
        "Service" => Type::Service,
        "Namespace" | "PersistentVolumeClaim" => Type::WithConditions,
        _ => Type::Plain,
    }
}

fn is_root(ty: Type) -> bool {
    matches!(ty, Type::Pod | Type::Workload | Type::CronJob | Type::Node | Type::Service | Type::WithConditions)
}

impl Type {
    /// The metadata of field `name` of a value of this type.
    pub fn field(self, name: &str) -> Field {
        use Type::*;
        let plain = Field::of(Plain);
        if name == "metadata" && (is_root(self) || matches!(self, PodTemplate | JobTemplate)) {
            return Field::of(ObjectMeta);
        }
        match (self, name) {
            (ObjectMeta, "finalizers") => Field { ty: Plain, list: ListStrategy::MergeScalars },
            (ObjectMeta, "ownerReferences") => Field::merge("uid", Plain),
            (Pod, "spec") | (PodTemplate, "spec") => Field::of(PodSpec),
            (Pod, "status") => Field::of(PodStatus),
            (Workload, "spec") | (JobTemplate, "spec") => Field::of(WorkloadSpec),
            (Workload | Service | WithConditions, "status") => Field::of(Conditions),
            (CronJob, "spec") => Field::of(CronJobSpec),
            (Node, "spec") => Field::of(NodeSpec),
            (Node, "status") => Field::of(NodeStatus),
            (Service, "spec") => Field::of(ServiceSpec),
            (WorkloadSpec, "template") => Field::of(PodTemplate),
            (CronJobSpec, "jobTemplate") => Field::of(JobTemplate),
            (PodSpec, "containers" | "initContainers" | "ephemeralContainers") => Field::merge("name", Container),
            (PodSpec, "volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates") => Field::merge("name", Plain),
            (PodSpec, "hostAliases") => Field::merge("ip", Plain),
            (PodSpec, "topologySpreadConstraints") => Field::merge("topologyKey", Plain),
            (Container, "ports") => Field::merge("containerPort", Plain),
            (Container, "env") => Field::merge("name", Plain),
            (Container, "volumeMounts") => Field::merge("mountPath", Plain),
            (Container, "volumeDevices") => Field::merge("devicePath", Plain),
            (PodStatus | Conditions | NodeStatus, "conditions") => Field::merge("type", Plain),
            (PodStatus, "podIPs" | "hostIPs") => Field::merge("ip", Plain),
            (PodStatus, "resourceClaimStatuses") => Field::merge("name", Plain),
            (NodeStatus, "addresses") => Field::merge("type", Plain),
            (NodeSpec, "podCIDRs") => Field { ty: Plain, list: ListStrategy::MergeScalars },
            (ServiceSpec, "ports") => Field::merge("port", Plain),
            _ => plain,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each map-list entry checked against k8s-openapi's merge of the typed objects: two
    //! items sharing the declared key must merge into one, two with different keys stay two.

    use k8s_openapi::DeepMerge;
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use serde_json::{json, Value};

    use super::*;

    /// Merge two documents as k8s-openapi's typed `DeepMerge` does.
    fn deep_merge<T: DeserializeOwned + Serialize + DeepMerge>(a: &Value, b: &Value) -> Value {
        let mut a: T = serde_json::from_value(a.clone()).unwrap();
        a.merge_from(serde_json::from_value(b.clone()).unwrap());
        serde_json::to_value(a).unwrap()
    }

    /// A document with one item in the list at `path`, and the item's key set to `key`.
    fn doc(path: &[&str], item: Value) -> Value {
        path.iter().rev().fold(json!([item]), |inner, seg| {
            let mut m = serde_json::Map::new();
            m.insert(seg.to_string(), inner);
            Value::Object(m)
        })
    }

    fn list_len(v: &Value, path: &[&str]) -> usize {
        path.iter().fold(v, |v, seg| &v[*seg]).as_array().map_or(0, Vec::len)
    }

    /// Follow `path` from `root`, returning the strategy of the last field.
    fn strategy(root: Type, path: &[&str]) -> ListStrategy {
        let mut ty = root;
        let mut last = ListStrategy::Replace;
        for seg in path {
            let f = ty.field(seg);
            ty = f.ty;
            last = f.list;
        }
        last
    }

    /// `a` and `b` share the declared key and differ elsewhere: a keyed merge makes one item
    /// of them (a set would keep both); with the key changed they stay two (an atomic list
    /// would keep one).
    macro_rules! check {
        ($t:ty, $kind:literal, $path:expr, $a:expr, $b:expr) => {{
            let path: &[&str] = $path;
            let ListStrategy::MergeByKey(key) = strategy(root($kind), path) else { panic!("{:?} is not a keyed list", path) };
            let (a, mut b): (Value, Value) = ($a, $b);
            let same = deep_merge::<$t>(&doc(path, a.clone()), &doc(path, b.clone()));
            assert_eq!(list_len(&same, path), 1, "{:?}: items of the same {key} should merge", path);
            b[key] = if a[key].is_number() { json!(2) } else { json!("other") };
            let different = deep_merge::<$t>(&doc(path, a), &doc(path, b));
            assert_eq!(list_len(&different, path), 2, "{:?}: items of different {key} should not merge", path);
        }};
    }

    #[test]
    fn keyed_lists_agree_with_k8s_openapi() {
        use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
        let c1 = || json!({"name": "c", "image": "one"});
        let c2 = || json!({"name": "c", "image": "two"});
        for list in ["containers", "initContainers"] {
            check!(core::Pod, "Pod", &["spec", list], c1(), c2());
        }
        check!(core::Pod, "Pod", &["spec", "volumes"], json!({"name": "v", "emptyDir": {}}), json!({"name": "v", "hostPath": {"path": "/"}}));
        check!(core::Pod, "Pod", &["spec", "hostAliases"], json!({"ip": "10.0.0.1", "hostnames": ["a"]}), json!({"ip": "10.0.0.1", "hostnames": ["b"]}));
        let spread = |skew: i32| json!({"topologyKey": "zone", "maxSkew": skew, "whenUnsatisfiable": "DoNotSchedule"});
        check!(core::Pod, "Pod", &["spec", "topologySpreadConstraints"], spread(1), spread(2));
        check!(core::Pod, "Pod", &["status", "conditions"], json!({"type": "Ready", "status": "True"}), json!({"type": "Ready", "status": "False"}));
        let owner = |name: &str| json!({"uid": "u", "apiVersion": "v1", "kind": "K", "name": name});
        check!(core::Pod, "Pod", &["metadata", "ownerReferences"], owner("a"), owner("b"));
        let in_container = |field: &str, item: Value| {
            let mut c = json!({"name": "c", "image": "i"});
            c[field] = json!([item]);
            json!({"spec": {"containers": [c]}})
        };
        for (field, item, other) in [
            ("ports", json!({"containerPort": 80, "name": "a"}), json!({"containerPort": 80, "name": "b"})),
            ("env", json!({"name": "E", "value": "a"}), json!({"name": "E", "value": "b"})),
            ("volumeMounts", json!({"mountPath": "/m", "name": "a"}), json!({"mountPath": "/m", "name": "b"})),
        ] {
            // One container in each document, the list inside it.
            let ListStrategy::MergeByKey(key) = Type::Container.field(field).list else { panic!("{field}") };
            let mut other = other;
            let merged = deep_merge::<core::Pod>(&in_container(field, item.clone()), &in_container(field, other.clone()));
            assert_eq!(merged["spec"]["containers"][0][field].as_array().unwrap().len(), 1, "{field} by {key}");
            other[key] = if other[key].is_number() { json!(81) } else { json!("/other") };
            let merged = deep_merge::<core::Pod>(&in_container(field, item), &in_container(field, other));
            assert_eq!(merged["spec"]["containers"][0][field].as_array().unwrap().len(), 2, "{field} by {key}");
        }
        check!(apps::Deployment, "Deployment", &["spec", "template", "spec", "containers"], c1(), c2());
        let cond = |s: &str| json!({"type": "Available", "status": s});
        check!(apps::Deployment, "Deployment", &["status", "conditions"], cond("True"), cond("False"));
        check!(batch::CronJob, "CronJob", &["spec", "jobTemplate", "spec", "template", "spec", "containers"], c1(), c2());
        check!(core::Node, "Node", &["status", "conditions"], cond("True"), cond("False"));
        check!(core::Service, "Service", &["spec", "ports"], json!({"port": 80, "name": "a"}), json!({"port": 80, "name": "b"}));
    }

    #[test]
    fn unlisted_fields_replace() {
        assert_eq!(strategy(root("Pod"), &["spec", "tolerations"]), ListStrategy::Replace);
        assert_eq!(strategy(root("ConfigMap"), &["data"]), ListStrategy::Replace);
        assert_eq!(strategy(root("Pod"), &["metadata", "finalizers"]), ListStrategy::MergeScalars);
        assert_eq!(strategy(root("Node"), &["spec", "podCIDRs"]), ListStrategy::MergeScalars);
    }
}
