//! The chaos timeline picture: operation latency over time (one dot per operation,
//! coloured by outcome) above shaded fault windows. Written as SVG (plain text, made here),
//! then rasterized to PNG with resvg.

use std::fmt::Write;
use std::path::Path;

use super::nemesis::FaultKind;
use super::Fault;

/// One operation for the picture.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub start_ms: f64,
    /// None: outcome unknown (drawn as a tick at the top).
    pub latency_ms: Option<f64>,
    pub write: bool,
    pub ok: bool,
}

const W: f64 = 1400.0;
const H: f64 = 560.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 70.0;

fn colour(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::KillLeader => "#e45756",
        FaultKind::KillRandom => "#f58518",
        FaultKind::Pause => "#b279a2",
        FaultKind::IsolateLeader => "#4c78a8",
        FaultKind::SplitMajority => "#72b7b2",
        FaultKind::Bridge => "#54a24b",
        FaultKind::Flap => "#9d755d",
    }
}

/// Latency axis: log scale from 0.5 ms to 10 s.
fn y_of(ms: f64) -> f64 {
    let (lo, hi) = (0.5f64.log10(), 10_000f64.log10());
    let f = ((ms.max(0.5).log10() - lo) / (hi - lo)).clamp(0.0, 1.0);
    H - BOTTOM - f * (H - TOP - BOTTOM)
}

pub fn svg(title: &str, samples: &[Sample], faults: &[Fault], seconds: f64) -> String {
    let span = (seconds * 1000.0).max(1.0);
    let x_of = |ms: f64| LEFT + (ms / span).clamp(0.0, 1.0) * (W - LEFT - RIGHT);
    let mut s = String::new();
    let _ = write!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="DejaVu Sans, sans-serif" font-size="12">"#);
    let _ = write!(s, r##"<rect width="{W}" height="{H}" fill="#ffffff"/><text x="{LEFT}" y="24" font-size="15">{title}</text>"##);
    for f in faults {
        let (x0, x1) = (x_of(f.start_ms), x_of(f.end_ms));
        let _ = write!(s, r#"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="0.18"/>"#, (x1 - x0).max(1.5), H - TOP - BOTTOM, colour(f.kind));
    }
    // Thin the dots to at most 30,000 (every k-th), keeping every unknown.
    let k = (samples.len() / 30_000).max(1);
    for (i, p) in samples.iter().enumerate() {
        let x = x_of(p.start_ms);
        match p.latency_ms {
            None => {
                let _ = write!(s, r##"<line x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{}" stroke="#d62728" stroke-width="1"/>"##, TOP - 8.0, TOP - 2.0);
            }
            Some(ms) if i % k == 0 => {
                let fill = match (p.ok, p.write) {
                    (true, true) => "#2ca02c",
                    (true, false) => "#1f77b4",
                    (false, _) => "#999999",
                };
                let _ = write!(s, r#"<circle cx="{x:.1}" cy="{:.1}" r="1.4" fill="{fill}"/>"#, y_of(ms));
            }
            Some(_) => {}
        }
    }
    // Axes and ticks.
    let (x0, x1, y0) = (LEFT, W - RIGHT, H - BOTTOM);
    let _ = write!(s, r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/><line x1="{x0}" y1="{TOP}" x2="{x0}" y2="{y0}" stroke="#333"/>"##);
    for ms in [1.0, 10.0, 100.0, 1000.0, 10_000.0] {
        let y = y_of(ms);
        let label = if ms >= 1000.0 { format!("{} s", ms / 1000.0) } else { format!("{ms} ms") };
        let _ = write!(s, r##"<line x1="{x0}" x2="{x1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##, x0 - 6.0, y + 4.0);
    }
    let step = [1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0].into_iter().find(|st| seconds / st <= 12.0).unwrap_or(600.0);
    let mut t = 0.0;
    while t <= seconds {
        let x = x_of(t * 1000.0);
        let _ = write!(s, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{t:.0} s</text>"#, y0 + 16.0);
        t += step;
    }
    // Legend.
    let mut lx = LEFT;
    let ly = H - 22.0;
    let mut item = |s: &mut String, fill: &str, label: &str, band: bool| {
        let opacity = if band { "0.35" } else { "1" };
        let _ = write!(s, r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{fill}" fill-opacity="{opacity}"/><text x="{}" y="{ly}">{label}</text>"#, ly - 10.0, lx + 16.0);
        lx += 28.0 + 7.0 * label.len() as f64;
    };
    item(&mut s, "#2ca02c", "write ok", false);
    item(&mut s, "#1f77b4", "read ok", false);
    item(&mut s, "#999999", "refused (409/404)", false);
    item(&mut s, "#d62728", "unknown outcome (tick at top)", false);
    for kind in [FaultKind::KillLeader, FaultKind::KillRandom, FaultKind::Pause, FaultKind::IsolateLeader, FaultKind::SplitMajority, FaultKind::Bridge, FaultKind::Flap] {
        item(&mut s, colour(kind), &format!("{kind:?}"), true);
    }
    s.push_str("</svg>");
    s
}

/// Rasterize `svg` to a PNG file.
pub fn write_png(svg: &str, path: &Path) -> anyhow::Result<()> {
    let mut opts = resvg::usvg::Options::default();
    opts.fontdb_mut().load_system_fonts();
    let tree = resvg::usvg::Tree::from_str(svg, &opts)?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).ok_or_else(|| anyhow::anyhow!("empty picture"))?;
    resvg::render(&tree, resvg::tiny_skia::Transform::identity(), &mut pixmap.as_mut());
    pixmap.save_png(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_fault_and_renders() {
        let faults = vec![Fault { kind: FaultKind::KillLeader, start_ms: 1000.0, end_ms: 2000.0, targets: vec![], minority: vec![], new_leader_ms: None, unavailable_ms: None }];
        let samples = vec![
            Sample { start_ms: 10.0, latency_ms: Some(5.0), write: true, ok: true },
            Sample { start_ms: 1500.0, latency_ms: None, write: true, ok: false },
        ];
        let doc = svg("t", &samples, &faults, 3.0);
        assert_eq!(doc.matches("fill-opacity=\"0.18\"").count(), 1);
        assert_eq!(doc.matches("<circle").count(), 1);
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("t.png");
        write_png(&doc, &png).unwrap();
        assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    }
}
