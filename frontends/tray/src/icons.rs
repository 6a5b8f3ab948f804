//! The status icons: one geometry (a coloured disk with a white glyph, on a
//! 22-unit grid) rendered two ways — as the SVG files shipped in
//! `data/icons/` for icon themes, and as ARGB32 pixmaps embedded in the
//! StatusNotifierItem for hosts that find no themed icon.

use crate::view::IconKind;

const GRID: f32 = 22.0;
const CENTER: f32 = 11.0;
const RADIUS: f32 = 10.0;
const STROKE: f32 = 2.4;

/// A glyph stroke: a polyline on the 22-unit grid (one point: a dot).
type Stroke = Vec<(f32, f32)>;

fn color(kind: IconKind) -> [u8; 3] {
    match kind {
        IconKind::InSync => [0x26, 0xa2, 0x69],
        IconKind::Behind => [0xb5, 0x83, 0x00],
        IconKind::Ahead => [0x1c, 0x71, 0xd8],
        IconKind::Diverged => [0xc6, 0x46, 0x00],
        IconKind::Syncing => [0x35, 0x84, 0xe4],
        IconKind::Offline => [0x77, 0x76, 0x7b],
        IconKind::Error => [0xc0, 0x1c, 0x28],
        IconKind::Inactive => [0x9a, 0x99, 0x96],
        IconKind::Unavailable => [0x5e, 0x5c, 0x64],
    }
}

/// Points of a circular arc, angles in degrees (0 = right, clockwise on
/// screen as y grows downwards).
fn arc(r: f32, from: f32, to: f32) -> Stroke {
    let steps = 24;
    (0..=steps)
        .map(|i| {
            let a = (from + (to - from) * i as f32 / steps as f32).to_radians();
            (CENTER + r * a.cos(), CENTER + r * a.sin())
        })
        .collect()
}

fn glyph(kind: IconKind) -> Vec<Stroke> {
    match kind {
        IconKind::InSync => vec![vec![(6.0, 11.5), (9.5, 15.0), (16.0, 7.5)]],
        IconKind::Behind => vec![
            vec![(11.0, 5.0), (11.0, 16.0)],
            vec![(6.5, 11.5), (11.0, 16.0), (15.5, 11.5)],
        ],
        IconKind::Ahead => vec![
            vec![(11.0, 17.0), (11.0, 6.0)],
            vec![(6.5, 10.5), (11.0, 6.0), (15.5, 10.5)],
        ],
        IconKind::Diverged => vec![
            vec![(7.5, 16.0), (7.5, 6.0)],
            vec![(4.8, 8.7), (7.5, 6.0), (10.2, 8.7)],
            vec![(14.5, 6.0), (14.5, 16.0)],
            vec![(11.8, 13.3), (14.5, 16.0), (17.2, 13.3)],
        ],
        IconKind::Syncing => vec![
            arc(5.5, -60.0, 210.0),
            vec![(12.0, 3.8), (14.3, 6.3), (11.6, 8.3)],
        ],
        IconKind::Offline => vec![vec![(6.0, 11.0), (16.0, 11.0)]],
        IconKind::Error => vec![
            vec![(7.0, 7.0), (15.0, 15.0)],
            vec![(15.0, 7.0), (7.0, 15.0)],
        ],
        IconKind::Inactive => vec![arc(4.5, 0.0, 360.0)],
        IconKind::Unavailable => vec![vec![(11.0, 5.5), (11.0, 12.5)], vec![(11.0, 16.2)]],
    }
}

fn distance_to_segment(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    };
    let (cx, cy) = (a.0 + t * dx, a.1 + t * dy);
    ((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt()
}

fn distance_to_stroke(p: (f32, f32), stroke: &Stroke) -> f32 {
    match stroke.as_slice() {
        [single] => distance_to_segment(p, *single, *single),
        points => points
            .windows(2)
            .map(|w| distance_to_segment(p, w[0], w[1]))
            .fold(f32::MAX, f32::min),
    }
}

/// The icon as `size`×`size` ARGB32 in network byte order, anti-aliased.
pub fn pixmap(kind: IconKind, size: i32) -> ksni::Icon {
    let n = size.max(1);
    let unit = GRID / n as f32;
    let [r, g, b] = color(kind);
    let strokes = glyph(kind);
    let mut data = Vec::with_capacity((n * n * 4) as usize);
    for y in 0..n {
        for x in 0..n {
            let p = ((x as f32 + 0.5) * unit, (y as f32 + 0.5) * unit);
            let from_center = ((p.0 - CENTER).powi(2) + (p.1 - CENTER).powi(2)).sqrt();
            let disk = ((RADIUS - from_center) / unit + 0.5).clamp(0.0, 1.0);
            let near = strokes
                .iter()
                .map(|s| distance_to_stroke(p, s))
                .fold(f32::MAX, f32::min);
            let ink = ((STROKE / 2.0 - near) / unit + 0.5).clamp(0.0, 1.0);
            let mix = |c: u8| (f32::from(c) * (1.0 - ink) + 255.0 * ink).round() as u8;
            data.extend_from_slice(&[(disk * 255.0).round() as u8, mix(r), mix(g), mix(b)]);
        }
    }
    ksni::Icon {
        width: n,
        height: n,
        data,
    }
}

/// The SVG of an icon, as shipped in `data/icons/`.
#[cfg(test)]
pub fn svg(kind: IconKind, disk: [u8; 3]) -> String {
    let [r, g, b] = disk;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"22\" height=\"22\" viewBox=\"0 0 22 22\">\n  \
         <circle cx=\"{CENTER}\" cy=\"{CENTER}\" r=\"{RADIUS}\" fill=\"#{r:02x}{g:02x}{b:02x}\"/>\n  \
         <g fill=\"none\" stroke=\"#ffffff\" stroke-width=\"{STROKE}\" stroke-linecap=\"round\" stroke-linejoin=\"round\">\n"
    );
    for stroke in glyph(kind) {
        let points: Vec<String> = if stroke.len() == 1 {
            // A dot: a zero-length line with round caps.
            vec![format_point(stroke[0]), format_point(stroke[0])]
        } else {
            stroke.iter().copied().map(format_point).collect()
        };
        out.push_str(&format!(
            "    <polyline points=\"{}\"/>\n",
            points.join(" ")
        ));
    }
    out.push_str("  </g>\n</svg>\n");
    out
}

#[cfg(test)]
fn format_point(p: (f32, f32)) -> String {
    format!("{:.2},{:.2}", p.0, p.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The files in `data/icons/` are this module's geometry; set
    /// `PACSYNC_UPDATE_ICONS=1` to rewrite them after changing it.
    #[test]
    fn shipped_svgs_match_the_geometry() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/icons");
        let update = std::env::var("PACSYNC_UPDATE_ICONS").is_ok_and(|v| v == "1");
        let mut files: Vec<(String, String)> = IconKind::ALL
            .iter()
            .map(|k| (format!("{}.svg", k.icon_name()), svg(*k, color(*k))))
            .collect();
        // The application icon: the syncing glyph on the project's blue.
        files.push((
            "pacsync.svg".into(),
            svg(IconKind::Syncing, [0x1a, 0x5f, 0xb4]),
        ));
        for (name, want) in files {
            let path = dir.join(&name);
            if update {
                std::fs::create_dir_all(&dir).expect("icon dir");
                std::fs::write(&path, &want).expect("write icon");
            }
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(
                have, want,
                "{name} differs from the geometry (PACSYNC_UPDATE_ICONS=1 rewrites it)"
            );
        }
    }

    #[test]
    fn pixmaps_are_distinct_and_round() {
        let icons: Vec<ksni::Icon> = IconKind::ALL.iter().map(|k| pixmap(*k, 24)).collect();
        for i in &icons {
            assert_eq!(i.data.len(), 24 * 24 * 4);
            // The corner is outside the disk: transparent.
            assert_eq!(i.data[0], 0);
            // The centre row holds opaque pixels.
            let mid = (12 * 24 + 12) * 4;
            assert_eq!(i.data[mid], 255);
        }
        for (a, ia) in icons.iter().enumerate() {
            for ib in &icons[a + 1..] {
                assert_ne!(ia.data, ib.data);
            }
        }
    }
}
