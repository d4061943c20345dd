//! Kubernetes resource quantities ("500m", "1.5", "64Mi", "1G") as numbers: CPU in
//! millicores, everything else in bytes (or units). Pure.

/// Parse a quantity into its value times `scale` (1000 for millicores, 1 for bytes),
/// rounding up as Kubernetes does. None for malformed input.
fn parse_scaled(q: &str, scale: f64) -> Option<i64> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    let v = (n * mult * scale).ceil();
    (v.is_finite() && v >= 0.0 && v < i64::MAX as f64).then_some(v as i64)
}

/// CPU in millicores ("250m" → 250, "2" → 2000).
pub fn cpu_millis(q: &str) -> Option<i64> {
    parse_scaled(q, 1000.0)
}

/// Memory or storage in bytes ("64Mi" → 67108864).
pub fn bytes(q: &str) -> Option<i64> {
    parse_scaled(q, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_suffixes() {
        assert_eq!(cpu_millis("250m"), Some(250));
        assert_eq!(cpu_millis("1.5"), Some(1500));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(bytes("64Mi"), Some(64 << 20));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("128974848"), Some(128_974_848));
        assert_eq!(bytes("1e3"), Some(1000));
        assert_eq!(bytes("12XB"), None);
        assert_eq!(bytes("-1"), None);
    }
}
