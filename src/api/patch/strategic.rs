//! Strategic merge patch, as a Kubernetes API server applies it: maps merge, `null` deletes,
//! lists merge by their schema's strategy (`schema.rs`), and the directives `$patch`
//! (`replace`, `delete`), `$retainKeys`, `$setElementOrder/<list>` and
//! `$deleteFromPrimitiveList/<list>`. The order of a merged list follows apimachinery's
//! rules: `$setElementOrder`, then the patch's order, then the live order. Pure.

use serde_json::{Map, Value};

use super::schema::{ListStrategy, Type};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

/// A patch that cannot be applied: malformed directives, list items without their merge key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError(pub String);

type Result<T> = std::result::Result<T, PatchError>;

fn bad(msg: impl Into<String>) -> PatchError {
    PatchError(msg.into())
}

/// Apply `patch` to `original` (a whole object of the type `ty`).
pub fn apply(original: &Value, patch: &Value, ty: Type) -> Result<Value> {
    let (Some(orig), Some(patch)) = (original.as_object(), patch.as_object()) else {
        return Err(bad("a strategic merge patch must be a JSON object"));
    };
    merge_map(orig.clone(), patch, ty).map(Value::Object)
}

/// Merge a patch map into a live map of type `ty`.
fn merge_map(mut original: Map<String, Value>, patch: &Map<String, Value>, ty: Type) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => strip(patch, ty),
            Some("delete") => Ok(Map::new()),
            _ => Err(bad(format!("unknown patch directive {directive}"))),
        };
    }
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keep: Vec<&str> = retain
            .as_array()
            .and_then(|a| a.iter().map(Value::as_str).collect())
            .ok_or_else(|| bad("$retainKeys must be a list of field names"))?;
        for (k, v) in patch {
            if !v.is_null() && !k.starts_with('$') && !keep.contains(&k.as_str()) {
                return Err(bad(format!("field {k:?} is set by the patch but not listed in $retainKeys")));
            }
        }
        original.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, value) in patch {
        if key == RETAIN_KEYS || key.starts_with(SET_ORDER) {
            continue;
        }
        if let Some(list) = key.strip_prefix(DELETE_FROM) {
            let drop = value.as_array().ok_or_else(|| bad(format!("{key} must be a list")))?;
            if let Some(Value::Array(items)) = original.get_mut(list) {
                items.retain(|v| !drop.contains(v));
            }
            continue;
        }
        if key.starts_with('$') {
            return Err(bad(format!("unknown patch directive {key:?}")));
        }
        if value.is_null() {
            original.remove(key);
            continue;
        }
        let field = ty.field(key);
        let merged = match (original.remove(key), value) {
            (Some(Value::Object(live)), Value::Object(p)) => Value::Object(merge_map(live, p, field.ty)?),
            (_, Value::Object(p)) => Value::Object(merge_map(Map::new(), p, field.ty)?),
            (live, Value::Array(p)) => {
                let live = match live {
                    Some(Value::Array(l)) => l,
                    _ => Vec::new(),
                };
                let order = patch.get(&format!("{SET_ORDER}{key}"));
                Value::Array(merge_list(live, p, field.list, field.ty, order)?)
            }
            (_, v) => v.clone(),
        };
        original.insert(key.clone(), merged);
    }
    // A `$setElementOrder` for a list the patch does not change reorders the live list.
    for (key, order) in patch {
        if let Some(list) = key.strip_prefix(SET_ORDER) {
            if !patch.contains_key(list) && ty.field(list).list != ListStrategy::Replace {
                if let Some(Value::Array(live)) = original.remove(list) {
                    let strategy = ty.field(list).list;
                    original.insert(list.to_string(), Value::Array(merge_list(live, &[], strategy, Type::Plain, Some(order))?));
                }
            }
        }
    }
    Ok(original)
}

/// A patch value written into a place with nothing to merge with: its directives removed.
fn strip(patch: &Map<String, Value>, ty: Type) -> Result<Map<String, Value>> {
    let mut rest = patch.clone();
    rest.remove(DIRECTIVE);
    merge_map(Map::new(), &rest, ty)
}

/// Merge a patch list into a live list.
fn merge_list(live: Vec<Value>, patch: &[Value], strategy: ListStrategy, item_ty: Type, order: Option<&Value>) -> Result<Vec<Value>> {
    let order = match order {
        Some(o) => Some(o.as_array().ok_or_else(|| bad("$setElementOrder must be a list"))?.as_slice()),
        None => None,
    };
    match strategy {
        ListStrategy::Replace => patch
            .iter()
            .map(|v| match v {
                Value::Object(m) => strip(m, item_ty).map(Value::Object),
                v => Ok(v.clone()),
            })
            .collect(),
        ListStrategy::MergeScalars => {
            if patch.iter().chain(&live).any(|v| v.is_object() || v.is_array()) {
                return Err(bad("a list of scalars holds an object or a list"));
            }
            let mut merged = live.clone();
            for v in patch {
                if !merged.contains(v) {
                    merged.push(v.clone());
                }
            }
            let patch_order = order.unwrap_or(patch);
            let (in_patch, server_only): (Vec<Value>, Vec<Value>) = merged.into_iter().partition(|v| patch_order.contains(v));
            Ok(interleave(sorted(in_patch, patch_order, |v| v.clone()), server_only, &live, |v| v.clone()))
        }
        ListStrategy::MergeByKey(key) => merge_keyed(live, patch, key, item_ty, order),
    }
}

fn merge_keyed(live: Vec<Value>, patch: &[Value], key: &str, item_ty: Type, order: Option<&[Value]>) -> Result<Vec<Value>> {
    let as_map = |v: &Value| v.as_object().cloned().ok_or_else(|| bad(format!("a list merged by {key:?} holds a non-object item {v}")));
    let key_of = |m: &Map<String, Value>| {
        m.get(key).cloned().ok_or_else(|| bad(format!("an item of a list merged by {key:?} has no {key:?}: {}", Value::Object(m.clone()))))
    };
    let mut live: Vec<Map<String, Value>> = live.iter().map(as_map).collect::<Result<_>>()?;
    // Special items first: deletions, and a `replace` that discards the live list.
    let mut items = Vec::new();
    for p in patch {
        let m = as_map(p)?;
        match m.get(DIRECTIVE).map(Value::as_str) {
            None => items.push(m),
            Some(Some("delete")) => {
                let k = key_of(&m)?;
                live.retain(|l| l.get(key) != Some(&k));
            }
            Some(Some("replace")) => live.clear(),
            Some(_) => return Err(bad(format!("unsupported directive in a list item: {p}"))),
        }
    }
    let server_order: Vec<Value> = live.iter().map(key_of).collect::<Result<_>>()?;
    let mut merged = live;
    for m in &items {
        let k = key_of(m)?;
        match merged.iter().position(|l| l.get(key) == Some(&k)) {
            Some(i) => merged[i] = merge_map(std::mem::take(&mut merged[i]), m, item_ty)?,
            None => merged.push(merge_map(Map::new(), m, item_ty)?),
        }
    }
    let patch_keys: Vec<Value> = match order {
        Some(o) => o.iter().map(|v| as_map(v).and_then(|m| key_of(&m))).collect::<Result<_>>()?,
        None => items.iter().map(key_of).collect::<Result<_>>()?,
    };
    let item_key = |v: &Value| v.get(key).cloned().unwrap_or(Value::Null);
    let (in_patch, server_only): (Vec<Value>, Vec<Value>) =
        merged.into_iter().map(Value::Object).partition(|v| patch_keys.contains(&item_key(v)));
    Ok(interleave(sorted(in_patch, &patch_keys, item_key), server_only, &server_order, item_key))
}

/// `items` stably sorted by the position of their key in `order` (unlisted ones keep their
/// place relative to each other, after the listed ones).
fn sorted(mut items: Vec<Value>, order: &[Value], key: impl Fn(&Value) -> Value) -> Vec<Value> {
    let pos = |v: &Value| order.iter().position(|o| *o == key(v)).unwrap_or(usize::MAX);
    items.sort_by_key(|v| pos(v));
    items
}

/// Merge the patch's items and the server-only items into one list: a server-only item
/// goes before a patch item only when both are in the live list and it came first there
/// (apimachinery's `mergeSortedSlice`), so new items lead.
fn interleave(patch: Vec<Value>, server_only: Vec<Value>, live_order: &[Value], key: impl Fn(&Value) -> Value) -> Vec<Value> {
    let pos = |v: &Value| live_order.iter().position(|o| *o == key(v));
    let mut out = Vec::with_capacity(patch.len() + server_only.len());
    let (mut left, mut right) = (server_only.into_iter().peekable(), patch.into_iter().peekable());
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => return out,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!((pos(l), pos(r)), (Some(a), Some(b)) if a < b),
        };
        out.push(if take_left { left.next() } else { right.next() }.expect("peeked"));
    }
}

#[cfg(test)]
mod tests;
