//! The scale-up plot, written by hand: the job's processes (right axis) and
//! its jobs in gearmand (left axis) over time, with the ideal drain time and
//! the observed one marked.

use std::fmt::Write as _;

use crate::scaleup::{ideal, Observed, Sample, JOBS, MAX_PROCESSES};

const WIDTH: f64 = 820.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 70.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 60.0;
const QUEUE_COLOUR: &str = "#1f77b4";
const PROCESS_COLOUR: &str = "#d62728";

/// Maps data to pixels.
struct Frame {
    x_max: f64,
    queue_max: f64,
    procs_max: f64,
}

impl Frame {
    fn x(&self, t: f64) -> f64 {
        LEFT + t / self.x_max * (WIDTH - LEFT - RIGHT)
    }

    fn y_queue(&self, q: f64) -> f64 {
        HEIGHT - BOTTOM - q / self.queue_max * (HEIGHT - TOP - BOTTOM)
    }

    fn y_procs(&self, p: f64) -> f64 {
        HEIGHT - BOTTOM - p / self.procs_max * (HEIGHT - TOP - BOTTOM)
    }
}

/// `round` names the cold start plotted, e.g. "round 5 of 5".
pub fn scaleup(o: &Observed, round: &str) -> String {
    let ideal = ideal().as_secs_f64();
    let last = o.samples.last().map_or(0.0, |s| s.t);
    let procs_peak = o.samples.iter().map(|s| s.processes).max().unwrap_or(0);
    let queue_peak = o.samples.iter().map(|s| s.queued).max().unwrap_or(0);
    // Headroom above both peaks, so neither line runs along the frame.
    let frame = Frame {
        x_max: last.max(ideal * 1.15).ceil().max(1.0),
        queue_max: (queue_peak.max(JOBS as u64) as f64 * 1.1 / 50.0).ceil() * 50.0,
        procs_max: (procs_peak.max(MAX_PROCESSES) + 4) as f64,
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">Scale-up, {round}: {JOBS} background jobs of 0.2 s, min 0, max {MAX_PROCESSES}, interval 5 s</text>"#,
        WIDTH / 2.0
    );
    grid(&mut svg, &frame);
    axes(&mut svg, &frame);
    marker(
        &mut svg,
        &frame,
        ideal,
        "ideal drain",
        "#888888",
        Side::Left,
    );
    if let Some(d) = o.drained {
        marker(
            &mut svg,
            &frame,
            d.as_secs_f64(),
            "drained",
            "#2ca02c",
            Side::Right,
        );
    }
    series(&mut svg, &queue_points(&frame, &o.samples), QUEUE_COLOUR);
    series(&mut svg, &process_steps(&frame, &o.samples), PROCESS_COLOUR);
    legend(&mut svg);
    svg.push_str("</svg>\n");
    svg
}

fn axes(svg: &mut String, f: &Frame) {
    let (x0, x1) = (LEFT, WIDTH - RIGHT);
    let (y0, y1) = (HEIGHT - BOTTOM, TOP);
    let _ = writeln!(
        svg,
        r##"<path d="M{x0},{y1} V{y0} H{x1} V{y1}" fill="none" stroke="#333"/>"##
    );
    let step = if f.x_max > 20.0 { 5.0 } else { 1.0 };
    let mut t = 0.0;
    while t <= f.x_max + 1e-9 {
        let x = f.x(t);
        tick(svg, x, y0, x, y0 + 5.0);
        label(svg, x, y0 + 20.0, "middle", &format!("{t:.0}"));
        t += step;
    }
    label(
        svg,
        (x0 + x1) / 2.0,
        HEIGHT - 15.0,
        "middle",
        "seconds since the burst",
    );
    for q in (0..=f.queue_max as u64).step_by(50) {
        let y = f.y_queue(q as f64);
        tick(svg, x0 - 5.0, y, x0, y);
        label(svg, x0 - 8.0, y + 4.0, "end", &q.to_string());
    }
    let procs_step = if f.procs_max > 10.0 { 2 } else { 1 };
    for p in (0..=f.procs_max as usize).step_by(procs_step) {
        let y = f.y_procs(p as f64);
        tick(svg, x1, y, x1 + 5.0, y);
        label(svg, x1 + 8.0, y + 4.0, "start", &p.to_string());
    }
    vertical_label(svg, 20.0, (y0 + y1) / 2.0, "jobs in gearmand", QUEUE_COLOUR);
    vertical_label(
        svg,
        WIDTH - 20.0,
        (y0 + y1) / 2.0,
        "processes",
        PROCESS_COLOUR,
    );
}

fn grid(svg: &mut String, f: &Frame) {
    for q in (50..=f.queue_max as u64).step_by(50) {
        let y = f.y_queue(q as f64);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#eeeeee"/>"##,
            WIDTH - RIGHT
        );
    }
}

fn tick(svg: &mut String, x1: f64, y1: f64, x2: f64, y2: f64) {
    let _ = writeln!(
        svg,
        r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#333"/>"##
    );
}

fn label(svg: &mut String, x: f64, y: f64, anchor: &str, text: &str) {
    let _ = writeln!(
        svg,
        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}">{text}</text>"#
    );
}

fn vertical_label(svg: &mut String, x: f64, y: f64, text: &str, colour: &str) {
    let _ = writeln!(
        svg,
        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="middle" fill="{colour}" transform="rotate(-90 {x:.1} {y:.1})">{text}</text>"#
    );
}

/// Which side of its line a marker's label goes, so two close markers'
/// labels do not overlap.
enum Side {
    Left,
    Right,
}

fn marker(svg: &mut String, f: &Frame, t: f64, text: &str, colour: &str, side: Side) {
    let x = f.x(t);
    let (label_x, anchor) = match side {
        Side::Left => (x - 4.0, "end"),
        Side::Right => (x + 4.0, "start"),
    };
    let _ = writeln!(
        svg,
        r#"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="{colour}" stroke-dasharray="5,4"/>"#,
        HEIGHT - BOTTOM
    );
    let _ = writeln!(
        svg,
        r#"<text x="{label_x:.1}" y="{}" text-anchor="{anchor}" fill="{colour}">{text} {t:.2} s</text>"#,
        TOP + 14.0
    );
}

fn queue_points(f: &Frame, samples: &[Sample]) -> Vec<(f64, f64)> {
    samples
        .iter()
        .map(|s| (f.x(s.t), f.y_queue(s.queued as f64)))
        .collect()
}

/// A staircase: a process count holds until the next sample.
fn process_steps(f: &Frame, samples: &[Sample]) -> Vec<(f64, f64)> {
    let mut points = Vec::with_capacity(samples.len() * 2);
    for (i, s) in samples.iter().enumerate() {
        let y = f.y_procs(s.processes as f64);
        if i > 0 {
            points.push((f.x(s.t), points.last().map_or(y, |p: &(f64, f64)| p.1)));
        }
        points.push((f.x(s.t), y));
    }
    points
}

fn series(svg: &mut String, points: &[(f64, f64)], colour: &str) {
    if points.is_empty() {
        return;
    }
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = writeln!(
        svg,
        r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
        path.join(" ")
    );
}

fn legend(svg: &mut String) {
    let y = 44.0;
    for (i, (text, colour)) in [
        ("jobs in gearmand (queued or running)", QUEUE_COLOUR),
        ("processes (console status)", PROCESS_COLOUR),
    ]
    .iter()
    .enumerate()
    {
        let x = LEFT + 10.0 + i as f64 * 290.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" y1="{}" x2="{}" y2="{}" stroke="{colour}" stroke-width="2"/>"#,
            y - 4.0,
            x + 24.0,
            y - 4.0
        );
        label(svg, x + 30.0, y, "start", text);
    }
}
