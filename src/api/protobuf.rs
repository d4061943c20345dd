//! Kubernetes' protobuf request encoding, as far as orch reads it today: the envelope (the
//! `k8s\0` magic and a `runtime.Unknown` holding the type and the raw message) and the
//! review specs kubectl sends this way (`kubectl auth can-i` posts a protobuf
//! SelfSubjectAccessReview). Hand-read over protobuf's wire format because the Kubernetes
//! `.proto` files are not part of orch yet; the field numbers are those of
//! `k8s.io/api/authorization/v1`'s generated.proto. Pure.

use serde_json::{json, Value};

use super::status::ApiError;

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

fn bad(what: &str) -> ApiError {
    ApiError::bad_request(format!("malformed protobuf body: {what}"))
}

/// One field of a message: its number and its value (varints and length-delimited only,
/// the two wire types of the fields read here; fixed-width ones are skipped).
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &mut &[u8]) -> Result<u64, ApiError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or_else(|| bad("a varint runs past the end"))?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(bad("a varint is longer than 10 bytes"))
}

fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ApiError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let (number, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Wire::Varint(varint(&mut buf)?),
            2 => {
                let len = usize::try_from(varint(&mut buf)?).map_err(|_| bad("a length does not fit"))?;
                if len > buf.len() {
                    return Err(bad("a field runs past the end"));
                }
                let (v, rest) = buf.split_at(len);
                buf = rest;
                Wire::Bytes(v)
            }
            1 => {
                buf = buf.get(8..).ok_or_else(|| bad("a fixed64 runs past the end"))?;
                continue;
            }
            5 => {
                buf = buf.get(4..).ok_or_else(|| bad("a fixed32 runs past the end"))?;
                continue;
            }
            _ => return Err(bad("an unknown wire type")),
        };
        out.push((number, value));
    }
    Ok(out)
}

fn bytes_of<'a>(msg: &[(u64, Wire<'a>)], number: u64) -> Option<&'a [u8]> {
    msg.iter().rev().find_map(|(n, w)| match w {
        Wire::Bytes(b) if *n == number => Some(*b),
        _ => None,
    })
}

fn string(msg: &[(u64, Wire<'_>)], number: u64) -> Result<String, ApiError> {
    match bytes_of(msg, number) {
        None => Ok(String::new()),
        Some(b) => String::from_utf8(b.to_vec()).map_err(|_| bad("a string is not UTF-8")),
    }
}

fn strings(msg: &[(u64, Wire<'_>)], number: u64) -> Result<Vec<String>, ApiError> {
    msg.iter()
        .filter_map(|(n, w)| match w {
            Wire::Bytes(b) if *n == number => Some(String::from_utf8(b.to_vec()).map_err(|_| bad("a string is not UTF-8"))),
            _ => None,
        })
        .collect()
}

/// The `(apiVersion, kind, raw message)` of an enveloped body.
pub fn unwrap(body: &[u8]) -> Result<(String, String, Vec<u8>), ApiError> {
    let inner = body.strip_prefix(MAGIC).ok_or_else(|| bad("it does not start with the k8s magic"))?;
    let unknown = fields(inner)?;
    let type_meta = fields(bytes_of(&unknown, 1).unwrap_or_default())?;
    let raw = bytes_of(&unknown, 2).unwrap_or_default().to_vec();
    if !string(&unknown, 3)?.is_empty() {
        return Err(ApiError::new(415, "UnsupportedMediaType", "a content encoding inside the protobuf envelope is not supported"));
    }
    Ok((string(&type_meta, 1)?, string(&type_meta, 2)?, raw))
}

/// The JSON `spec` of an authorization review sent as protobuf.
pub fn review_spec(kind: &str, raw: &[u8]) -> Result<Value, ApiError> {
    let review = fields(raw)?;
    let spec = fields(bytes_of(&review, 2).unwrap_or_default())?;
    let resource = |msg: &[(u64, Wire<'_>)]| -> Result<Value, ApiError> {
        if bytes_of(msg, 8).is_some() || bytes_of(msg, 9).is_some() {
            return Err(ApiError::bad_request("field and label selectors in resourceAttributes are not supported"));
        }
        Ok(json!({"namespace": string(msg, 1)?, "verb": string(msg, 2)?, "group": string(msg, 3)?, "version": string(msg, 4)?,
            "resource": string(msg, 5)?, "subresource": string(msg, 6)?, "name": string(msg, 7)?}))
    };
    let attributes = |spec: &[(u64, Wire<'_>)], mut out: Value| -> Result<Value, ApiError> {
        if let Some(r) = bytes_of(spec, 1) {
            out["resourceAttributes"] = resource(&fields(r)?)?;
        }
        if let Some(n) = bytes_of(spec, 2) {
            let n = fields(n)?;
            out["nonResourceAttributes"] = json!({"path": string(&n, 1)?, "verb": string(&n, 2)?});
        }
        Ok(out)
    };
    match kind {
        "SelfSubjectAccessReview" => attributes(&spec, json!({})),
        "SubjectAccessReview" => attributes(&spec, json!({"user": string(&spec, 3)?, "groups": strings(&spec, 4)?})),
        "SelfSubjectRulesReview" => Ok(json!({"namespace": string(&spec, 1)?})),
        // TokenRequestSpec: audiences = 1, boundObjectRef = 3 (kind 1, apiVersion 2, name 3,
        // uid 4), expirationSeconds = 4.
        "TokenRequest" => {
            let mut out = json!({"audiences": strings(&spec, 1)?});
            if let Some(secs) = spec.iter().rev().find_map(|(n, w)| match w {
                Wire::Varint(v) if *n == 4 => Some(*v as i64),
                _ => None,
            }) {
                out["expirationSeconds"] = secs.into();
            }
            if let Some(r) = bytes_of(&spec, 3) {
                let r = fields(r)?;
                out["boundObjectRef"] = json!({"kind": string(&r, 1)?, "apiVersion": string(&r, 2)?, "name": string(&r, 3)?, "uid": string(&r, 4)?});
            }
            Ok(out)
        }
        other => Err(ApiError::new(415, "UnsupportedMediaType", format!("{CONTENT_TYPE} bodies of kind {other:?} are not supported yet; send JSON"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3 | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    fn envelope(kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, b"authorization.k8s.io/v1"), field(2, kind.as_bytes())].concat();
        let unknown = [field(1, &type_meta), field(2, raw)].concat();
        [MAGIC.to_vec(), unknown].concat()
    }

    #[test]
    fn a_self_subject_access_review_as_kubectl_sends_it() {
        let attrs = [field(1, b"team"), field(2, b"list"), field(5, b"pods")].concat();
        let review = field(2, &field(1, &attrs));
        let body = envelope("SelfSubjectAccessReview", &review);
        let (api_version, kind, raw) = unwrap(&body).unwrap();
        assert_eq!((api_version.as_str(), kind.as_str()), ("authorization.k8s.io/v1", "SelfSubjectAccessReview"));
        let spec = review_spec(&kind, &raw).unwrap();
        assert_eq!(spec["resourceAttributes"]["namespace"], "team");
        assert_eq!(spec["resourceAttributes"]["verb"], "list");
        assert_eq!(spec["resourceAttributes"]["resource"], "pods");
        let rules = review_spec("SelfSubjectRulesReview", &field(2, &field(1, b"dev"))).unwrap();
        assert_eq!(rules["namespace"], "dev");
    }

    #[test]
    fn malformed_bodies_are_400s() {
        for bad_body in [&b"not k8s"[..], b"k8s\0\x0a\x7f", b"k8s\0\x0a\x02\x0a", b"k8s\0\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"] {
            assert_eq!(unwrap(bad_body).unwrap_err().code, 400, "{bad_body:?}");
        }
        assert_eq!(review_spec("Pod", &[]).unwrap_err().code, 415);
    }
}
