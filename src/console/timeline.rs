//! The Target page's picture of the last hours, laid out on the server: deploys as
//! markers by source, each signal as a bar from its start to its end (or now) in a
//! lane of its kind, decisions as verdict markers, actions as rollback markers. Pure:
//! the template draws what this computes, so the page needs no script to show it.

use chrono::{DateTime, Duration, Timelike, Utc};
use serde::Serialize;

/// The drawing's coordinate system (the SVG's `viewBox`): a gutter for the lane
/// labels, then the plot.
const WIDTH: f64 = 1000.0;
const GUTTER: f64 = 150.0;
/// Room right of the plot, for the last tick's label and a marker at `to`.
const MARGIN: f64 = 20.0;
const LANE: f64 = 28.0;
const TOP: f64 = 22.0;

/// A deploy: when it started, where it came from, what it rolled out.
pub struct DeployMark {
    pub at: DateTime<Utc>,
    pub source: String,
    pub version: String,
}

/// A signal: its kind, when it began and ended (`None`: still going on).
pub struct SignalSpan {
    pub kind: String,
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
    pub summary: String,
}

/// A decision or an action, at one instant.
pub struct Point {
    pub at: DateTime<Utc>,
    /// What it is, for the colour (`rollback`, `hold`, `succeeded`…).
    pub class: String,
    pub title: String,
    pub href: String,
}

#[derive(Debug, Serialize)]
pub struct Timeline {
    pub width: f64,
    pub height: f64,
    pub gutter: f64,
    pub lanes: Vec<Lane>,
    pub ticks: Vec<Tick>,
    pub bars: Vec<Bar>,
    pub marks: Vec<Mark>,
}

#[derive(Debug, Serialize)]
pub struct Lane {
    pub label: String,
    /// The lane's middle.
    pub y: f64,
}

#[derive(Debug, Serialize)]
pub struct Tick {
    pub x: f64,
    pub label: String,
}

#[derive(Debug, Serialize)]
pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub class: String,
    pub title: String,
}

#[derive(Debug, Serialize)]
pub struct Mark {
    pub x: f64,
    pub y: f64,
    /// `deploy`, `decision` or `action`: the marker's shape.
    pub shape: &'static str,
    pub class: String,
    pub title: String,
    pub href: Option<String>,
}

/// Lays out everything between `from` and `to`; what started before `from` is drawn
/// from the left edge.
pub fn layout(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    deploys: &[DeployMark],
    signals: &[SignalSpan],
    decisions: &[Point],
    actions: &[Point],
) -> Timeline {
    let span = (to - from).num_milliseconds().max(1) as f64;
    let x = |t: DateTime<Utc>| {
        let t = t.clamp(from, to);
        GUTTER + (WIDTH - GUTTER - MARGIN) * ((t - from).num_milliseconds() as f64 / span)
    };
    let mut kinds: Vec<&str> = signals.iter().map(|s| s.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut lanes = Vec::new();
    let mut lane = |label: String| {
        let y = TOP + LANE * (lanes.len() as f64 + 0.5);
        lanes.push(Lane { label, y });
        y
    };
    let deploy_y = lane("deploys".into());
    let kind_y: Vec<(&str, f64)> = kinds
        .iter()
        .map(|kind| (*kind, lane(format!("signal: {kind}"))))
        .collect();
    let decision_y = lane("decisions".into());
    let action_y = lane("actions".into());

    let mut marks: Vec<Mark> = deploys
        .iter()
        .filter(|d| d.at >= from && d.at <= to)
        .map(|d| Mark {
            x: x(d.at),
            y: deploy_y,
            shape: "deploy",
            class: css_word(&d.source),
            title: format!("{} deploy {} at {}", d.source, d.version, stamp(d.at)),
            href: None,
        })
        .collect();
    let bars = signals
        .iter()
        .filter(|s| s.from <= to && s.to.is_none_or(|end| end >= from))
        .filter_map(|s| {
            let y = kind_y.iter().find(|(k, _)| *k == s.kind)?.1;
            let left = x(s.from);
            let right = x(s.to.unwrap_or(to));
            let until = s.to.map_or_else(|| "now".to_string(), stamp);
            Some(Bar {
                x: left,
                y: y - LANE * 0.3,
                // Visible however short.
                width: (right - left).max(2.0),
                height: LANE * 0.6,
                class: css_word(&s.kind),
                title: format!(
                    "{}: {} from {} to {until}",
                    s.kind,
                    s.summary,
                    stamp(s.from)
                ),
            })
        })
        .collect();
    for (points, y, shape) in [
        (decisions, decision_y, "decision"),
        (actions, action_y, "action"),
    ] {
        marks.extend(
            points
                .iter()
                .filter(|p| p.at >= from && p.at <= to)
                .map(|p| Mark {
                    x: x(p.at),
                    y,
                    shape,
                    class: css_word(&p.class),
                    title: p.title.clone(),
                    href: Some(p.href.clone()),
                }),
        );
    }
    Timeline {
        width: WIDTH,
        height: TOP + LANE * lanes.len() as f64 + 8.0,
        gutter: GUTTER,
        ticks: ticks(from, to)
            .into_iter()
            .map(|t| Tick {
                x: x(t),
                label: t.format("%H:%M").to_string(),
            })
            .collect(),
        lanes,
        bars,
        marks,
    }
}

/// Whole hours (or every 2, 3, 6, 12 hours: at most 12 ticks) inside the window.
fn ticks(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let hours = (to - from).num_hours().max(1);
    let step = [1, 2, 3, 6, 12, 24]
        .into_iter()
        .find(|step| hours / step <= 12)
        .unwrap_or(24);
    let Some(mut t) = from
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
    else {
        return Vec::new();
    };
    while t < from || t.hour() as i64 % step != 0 {
        t += Duration::hours(1);
    }
    let mut out = Vec::new();
    while t <= to {
        out.push(t);
        t += Duration::hours(step);
    }
    out
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// A CSS class from text that came from the network: lower-case letters, digits and
/// `-` only; anything else becomes `-`.
fn css_word(text: &str) -> String {
    text.chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        format!("2026-12-03T{h:02}:{m:02}:00Z").parse().unwrap()
    }

    fn point(t: DateTime<Utc>, class: &str) -> Point {
        Point {
            at: t,
            class: class.into(),
            title: class.into(),
            href: "/decisions/1".into(),
        }
    }

    #[test]
    fn times_map_onto_the_plot_and_outside_ones_are_clamped_or_dropped() {
        let (from, to) = (at(6, 0), at(12, 0));
        let t = layout(
            from,
            to,
            &[
                DeployMark {
                    at: at(9, 0),
                    source: "kubernetes".into(),
                    version: "v2".into(),
                },
                DeployMark {
                    at: at(5, 0),
                    source: "helm".into(),
                    version: "old".into(),
                },
            ],
            &[
                SignalSpan {
                    kind: "error_rate".into(),
                    from: at(5, 0),
                    to: Some(at(7, 30)),
                    summary: "5xx".into(),
                },
                SignalSpan {
                    kind: "latency".into(),
                    from: at(11, 0),
                    to: None,
                    summary: "p99".into(),
                },
            ],
            &[point(at(10, 0), "rollback")],
            &[point(at(13, 0), "succeeded")],
        );
        let labels: Vec<&str> = t.lanes.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "deploys",
                "signal: error_rate",
                "signal: latency",
                "decisions",
                "actions"
            ]
        );
        // The deploy at 09:00 sits in the middle of the plot; the one at 05:00 and the
        // action at 13:00 fall outside the window.
        let plot = WIDTH - GUTTER - MARGIN;
        assert_eq!(t.marks.len(), 2);
        assert!((t.marks[0].x - (GUTTER + plot / 2.0)).abs() < 1e-9);
        assert_eq!(t.marks[1].class, "rollback");
        // A bar that began before the window starts at its edge; one still going on
        // runs to its end.
        assert!((t.bars[0].x - GUTTER).abs() < 1e-9);
        assert!((t.bars[0].width - plot / 4.0).abs() < 1e-9);
        assert!((t.bars[1].x + t.bars[1].width - (WIDTH - MARGIN)).abs() < 1e-9);
        assert!(t.bars[1].title.ends_with("to now"));
        // Hourly ticks, 06:00 to 12:00.
        let ticks: Vec<&str> = t.ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(
            ticks,
            [
                "06:00", "07:00", "08:00", "09:00", "10:00", "11:00", "12:00"
            ]
        );
    }

    #[test]
    fn long_windows_tick_less_often() {
        let ticks = ticks(at(0, 30), at(0, 30) + Duration::hours(48));
        assert!(ticks.len() <= 12, "{}", ticks.len());
        assert!(ticks.iter().all(|t| t.minute() == 0 && t.hour() % 6 == 0));
    }

    #[test]
    fn network_text_becomes_a_harmless_class() {
        assert_eq!(css_word("Error Rate\"><script>"), "error-rate---script-");
        assert_eq!(css_word("CI"), "ci");
    }
}
