//! Deletion's `propagationPolicy` for an owner's dependents (the ReplicaSets, Pods and Jobs
//! whose ownerReferences name it): `Background` (the default) deletes the owner now and
//! leaves its dependents to the garbage collector; `Orphan` first takes the owner out of
//! each dependent's ownerReferences, so they stay; `Foreground` deletes the dependents, then
//! the owner (here within the request rather than behind a finalizer).

use serde_json::Value;

use super::resources::{self, Resource};
use super::status::ApiError;
use super::store::{Consistency, Filter, ObjectStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Orphan,
    Foreground,
}

impl Propagation {
    /// From the query's or the DeleteOptions body's `propagationPolicy` (or the older
    /// `orphanDependents: true`).
    pub fn parse(query: Option<&str>, opts: &Value) -> Result<Propagation, ApiError> {
        let policy = query.or_else(|| opts["propagationPolicy"].as_str());
        match policy {
            None if opts["orphanDependents"] == true => Ok(Propagation::Orphan),
            None | Some("Background") => Ok(Propagation::Background),
            Some("Orphan") => Ok(Propagation::Orphan),
            Some("Foreground") => Ok(Propagation::Foreground),
            Some(other) => Err(ApiError::bad_request(format!("propagationPolicy {other:?}: must be Background, Orphan or Foreground"))),
        }
    }
}

const DEPENDENTS: [(&str, &str); 3] = [("apps", "replicasets"), ("", "pods"), ("batch", "jobs")];

fn owned_by(obj: &Value, uid: &str) -> bool {
    obj["metadata"]["ownerReferences"].as_array().is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
}

/// The dependents of the owner with `uid` in namespace `ns`, with their kinds.
async fn dependents(store: &ObjectStore, ns: Option<&str>, uid: &str) -> Result<Vec<(&'static Resource, Value)>, ApiError> {
    let mut out = vec![];
    for (group, plural) in DEPENDENTS {
        let res = resources::by_plural(group, plural).expect("dependent kinds are registered");
        let (items, _) = store.list(res, ns, &Filter::default(), Consistency::Linearizable).await?;
        out.extend(items.into_iter().filter(|o| owned_by(o, uid)).map(|o| (res, o)));
    }
    Ok(out)
}

/// Apply `policy` to the dependents of `owner` (`res` in `ns`) before it is deleted.
pub async fn before_delete(store: &ObjectStore, res: &Resource, ns: Option<&str>, owner: &Value, policy: Propagation) -> Result<(), ApiError> {
    let Some(uid) = owner["metadata"]["uid"].as_str() else { return Ok(()) };
    if policy == Propagation::Background || !res.namespaced {
        return Ok(());
    }
    for (dep_res, dep) in dependents(store, ns, uid).await? {
        let name = dep["metadata"]["name"].as_str().unwrap_or_default().to_string();
        match policy {
            Propagation::Orphan => {
                let release = |current: &Value| -> Value {
                    let mut next = current.clone();
                    if let Some(refs) = next["metadata"]["ownerReferences"].as_array_mut() {
                        refs.retain(|r| r["uid"] != uid);
                    }
                    next
                };
                // A compare-and-set; a dependent that changed meanwhile is read again.
                let mut current = dep.clone();
                for attempt in 0.. {
                    let rv = current["metadata"]["resourceVersion"].as_str().and_then(|r| r.parse().ok());
                    match store.update(dep_res, ns, &name, release(&current), rv, false).await {
                        Ok(_) => break,
                        Err(e) if e.code == 409 && attempt < 5 => current = store.get(dep_res, ns, &name, Consistency::Linearizable).await?,
                        Err(e) if e.code == 404 => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            Propagation::Foreground => {
                // Its own dependents first (a Deployment's ReplicaSets' pods).
                Box::pin(before_delete(store, dep_res, ns, &dep, Propagation::Foreground)).await?;
                match store.delete_gracefully(dep_res, ns, &name, None, None).await {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Propagation::Background => unreachable!("returned above"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_policy_comes_from_the_query_or_the_body_and_bad_ones_are_refused() {
        assert_eq!(Propagation::parse(None, &Value::Null).unwrap(), Propagation::Background);
        assert_eq!(Propagation::parse(Some("Orphan"), &Value::Null).unwrap(), Propagation::Orphan);
        assert_eq!(Propagation::parse(None, &json!({"propagationPolicy": "Foreground"})).unwrap(), Propagation::Foreground);
        assert_eq!(Propagation::parse(None, &json!({"orphanDependents": true})).unwrap(), Propagation::Orphan);
        let err = Propagation::parse(Some("Sideways"), &Value::Null).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err.to_string().contains("Sideways"), "{err}");
    }
}
