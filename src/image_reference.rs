//! Image references (`[registry/]repository[:tag][@digest]`) parsed and normalized as the
//! distribution project's `reference` package does (docker.io default registry, `library/`
//! for official images, `latest` when there is neither tag nor digest). Pure.
//!
//! Hand-written, not `oci_client::Reference`'s `FromStr`: that one matches a regex whose tag
//! part is `[\w][\w.-]{0,127}` with Unicode `\w`, which compiles to an automaton of some
//! 184,000 states, 4.4 MB that stayed resident in every node from the first image name
//! parsed (a third of an idle worker's heap). The distribution grammar's `\w` is ASCII.
//! The result is still an `oci_client::Reference`, built from its parts.

use oci_client::Reference;

/// The longest repository name the grammar allows.
const NAME_MAX: usize = 255;

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty image reference")]
    Empty,
    #[error("invalid reference format")]
    Format,
    #[error("repository name longer than {NAME_MAX} characters")]
    NameTooLong,
    #[error("invalid digest (want sha256, sha384 or sha512 and its hex value)")]
    Digest,
}

/// Parse and normalize `s`.
pub fn parse(s: &str) -> Result<Reference, ParseError> {
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(valid_digest(digest)?)),
        None => (s, None),
    };
    // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = tag.len() <= 128 && tag.chars().next().is_some_and(is_word) && tag.chars().all(|c| is_word(c) || c == '.' || c == '-');
        if !ok {
            return Err(ParseError::Format);
        }
    }
    let (registry, repository) = split_domain(name)?;
    if repository.len() > NAME_MAX {
        return Err(ParseError::NameTooLong);
    }
    let reference = match (tag, digest) {
        (Some(t), Some(d)) => Reference::with_tag_and_digest(registry, repository, t.to_string(), d.to_string()),
        (None, Some(d)) => Reference::with_digest(registry, repository, d.to_string()),
        (t, None) => Reference::with_tag(registry, repository, t.unwrap_or("latest").to_string()),
    };
    Ok(reference)
}

/// The grammar's `\w`: ASCII letters, digits and `_`.
fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn valid_digest(d: &str) -> Result<&str, ParseError> {
    let (algorithm, hex) = d.split_once(':').ok_or(ParseError::Digest)?;
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(ParseError::Digest),
    };
    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ParseError::Digest);
    }
    Ok(d)
}

/// `registry` and `repository` of a name (without tag or digest), each part checked.
fn split_domain(name: &str) -> Result<(String, String), ParseError> {
    let (domain, path) = match name.split_once('/') {
        Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => (first, path),
        _ => ("docker.io", name),
    };
    if !valid_domain(domain) || path.is_empty() || !path.split('/').all(valid_path_component) {
        return Err(ParseError::Format);
    }
    let domain = if domain == "index.docker.io" { "docker.io" } else { domain };
    let path = if domain == "docker.io" && !path.contains('/') { format!("library/{path}") } else { path.to_string() };
    Ok((domain.to_string(), path))
}

/// `host[:port]`: dot-separated labels of letters, digits and inner dashes; a numeric port.
fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (d, None),
    };
    let label_ok = |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !l.starts_with('-') && !l.ends_with('-');
    host.split('.').all(label_ok) && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `[a-z0-9]+` runs joined by one of `.`, `_`, `__` or any number of `-`.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (r.registry().to_string(), r.repository().to_string(), r.tag().map(str::to_string), r.digest().map(str::to_string))
    }

    fn p(reg: &str, repo: &str, tag: Option<&str>, digest: Option<&str>) -> (String, String, Option<String>, Option<String>) {
        (reg.into(), repo.into(), tag.map(Into::into), digest.map(Into::into))
    }

    #[test]
    fn names_are_normalized_as_docker_does() {
        let d = format!("sha256:{}", "f".repeat(64));
        for (s, want) in [
            ("busybox", p("docker.io", "library/busybox", Some("latest"), None)),
            ("test.com:tag", p("docker.io", "library/test.com", Some("tag"), None)),
            ("test.com:5000", p("docker.io", "library/test.com", Some("5000"), None)),
            ("foo/foo_bar.com:8080", p("docker.io", "foo/foo_bar.com", Some("8080"), None)),
            ("opensuse/leap:15.3", p("docker.io", "opensuse/leap", Some("15.3"), None)),
            ("lowercase:Uppercase", p("docker.io", "library/lowercase", Some("Uppercase"), None)),
            ("index.docker.io/library/nginx:1.25", p("docker.io", "library/nginx", Some("1.25"), None)),
            ("localhost/app", p("localhost", "app", Some("latest"), None)),
            ("10.0.0.1:5000/team/app:v1.2-rc_1", p("10.0.0.1:5000", "team/app", Some("v1.2-rc_1"), None)),
            ("orch.local/busybox:1.35", p("orch.local", "busybox", Some("1.35"), None)),
            ("a.io/x/y__z---w.v", p("a.io", "x/y__z---w.v", Some("latest"), None)),
        ] {
            assert_eq!(parts(s), want, "{s}");
        }
        assert_eq!(parts(&format!("docker.io/foo/bar:1.2@{d}")), p("docker.io", "foo/bar", Some("1.2"), Some(&d)));
        assert_eq!(parts(&format!("reg:5000/bar@{d}")), p("reg:5000", "bar", None, Some(&d)));
    }

    #[test]
    fn bad_references_are_refused_with_a_reason() {
        let d = "sha256:".to_string() + &"f".repeat(64);
        for (s, want) in [
            ("", ParseError::Empty),
            ("Upper/case", ParseError::Format),
            ("busybox:", ParseError::Format),
            ("busybox:-tag", ParseError::Format),
            ("busybox:t\u{e9}", ParseError::Format),
            ("a..b", ParseError::Format),
            ("reg.io/", ParseError::Format),
            ("-reg.io/x", ParseError::Format),
            ("reg.io:port/x", ParseError::Format),
            ("x/_y", ParseError::Format),
            ("x@sha256:abc", ParseError::Digest),
            ("x@md5:d41d8cd98f00b204e9800998ecf8427e", ParseError::Digest),
        ] {
            assert_eq!(parse(s).unwrap_err(), want, "{s:?}");
        }
        assert_eq!(parse(&format!("x:{}", "t".repeat(129))).unwrap_err(), ParseError::Format);
        assert!(parse(&format!("x:{}", "t".repeat(128))).is_ok());
        assert_eq!(parse(&format!("reg.io/{}", "a".repeat(256))).unwrap_err(), ParseError::NameTooLong);
        assert!(parse(&format!("x@{d}")).is_ok());
    }

    #[test]
    fn agrees_with_oci_client_on_valid_names() {
        for s in ["busybox", "reg.io:443/a/b/c:v1", "localhost:5000/x_y.z:1", "docker.io/library/alpine:3"] {
            let theirs: Reference = s.parse().unwrap();
            assert_eq!(parse(s).unwrap().whole(), theirs.whole(), "{s}");
        }
    }
}
