//! What `rollwarden ctl` prints: tables and text for people, built from the API's
//! JSON, with every string from the network made safe for a terminal.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::CtlError;
use crate::domain::Decision;

/// Text from the network, safe for a terminal: control characters are escaped.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => clean(s),
        Value::Null => "-".into(),
        other => clean(&other.to_string()),
    }
}

pub(super) fn pretty(v: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}

/// `2026-12-03 04:10:11` from an RFC 3339 time (as given when it does not parse).
fn when(v: &Value) -> String {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map_or_else(
            || text(v),
            |t| {
                t.with_timezone(&Utc)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            },
        )
}

/// Columns padded to their widest cell; the last one is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(&cell);
            } else {
                let _ = write!(out, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.iter().map(|h| (*h).to_string()).collect());
    for row in rows {
        line(row.clone());
    }
    out
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn fired_rules(decision: &Value) -> String {
    let rules: Vec<String> = decision["fired"]
        .as_array()
        .map(|f| f.iter().map(|r| text(&r["rule_id"])).collect())
        .unwrap_or_default();
    if rules.is_empty() {
        "-".into()
    } else {
        rules.join(",")
    }
}

pub(super) fn decisions_table(page: &Value) -> String {
    let rows: Vec<Vec<String>> = page["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|d| {
                    vec![
                        text(&d["id"]),
                        when(&d["decided_at"]),
                        text(&d["verdict"]),
                        text(&d["target_key"]),
                        fired_rules(&d["decision"]),
                        shorten(&text(&d["reason"]), 72),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        return "No decisions.\n".into();
    }
    table(
        &[
            "ID",
            "DECIDED (UTC)",
            "VERDICT",
            "TARGET",
            "RULES",
            "REASON",
        ],
        &rows,
    )
}

pub(super) fn targets_table(items: &[Value]) -> String {
    if items.is_empty() {
        return "No targets decided about yet.\n".into();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|t| {
            let rules: Vec<String> = t["rules"]
                .as_array()
                .map(|r| r.iter().map(text).collect())
                .unwrap_or_default();
            vec![
                text(&t["target"]),
                text(&t["verdict"]),
                if rules.is_empty() {
                    "-".into()
                } else {
                    rules.join(",")
                },
                text(&t["decision_id"]),
                when(&t["decided_at"]),
                shorten(&text(&t["reason"]), 60),
            ]
        })
        .collect();
    table(
        &[
            "TARGET",
            "VERDICT",
            "RULES",
            "DECISION",
            "SINCE (UTC)",
            "REASON",
        ],
        &rows,
    )
}

fn number(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |n| format!("{n}"))
}

fn deploy_line(record: &crate::domain::DeployRecord) -> String {
    let d = &record.deploy;
    format!(
        "{} {} ({}), {}, started {} [deploy {}]",
        d.source.as_str(),
        clean(&d.revision),
        clean(d.version.as_deref().unwrap_or("no version")),
        clean(&d.status),
        d.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        record.id
    )
}

pub(super) fn decision_text(view: &Value) -> Result<String, CtlError> {
    let decision: Decision = serde_json::from_value(view["decision"].clone())
        .map_err(|e| CtlError::Protocol(format!("a decision that does not decode: {e}")))?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Decision {}: {}  {}  ({} UTC, policy {})",
        text(&view["id"]),
        decision.verdict,
        text(&view["target_key"]),
        when(&view["decided_at"]),
        clean(&decision.policy_version),
    );
    if let Some(region) = &decision.region {
        let _ = writeln!(out, "Region: {}", clean(region));
    }
    let _ = writeln!(out, "Reason: {}", clean(&decision.reason));
    if decision.fired.is_empty() {
        let _ = writeln!(out, "Fired rules: none");
    } else {
        let rows: Vec<Vec<String>> = decision
            .fired
            .iter()
            .map(|r| {
                vec![
                    clean(&r.rule_id),
                    r.kind.as_str().to_string(),
                    clean(&r.condition),
                    number(r.observed),
                    number(r.threshold),
                    number(r.baseline),
                    r.duration_secs
                        .map_or_else(|| "-".into(), |s| format!("{s} s")),
                ]
            })
            .collect();
        let _ = writeln!(out, "Fired rules:");
        for line in table(
            &[
                "RULE",
                "SIGNAL",
                "CONDITION",
                "OBSERVED",
                "THRESHOLD",
                "BASELINE",
                "FOR",
            ],
            &rows,
        )
        .lines()
        {
            let _ = writeln!(out, "  {line}");
        }
    }
    if decision.holds.is_empty() {
        let _ = writeln!(out, "Holds: none");
    } else {
        let _ = writeln!(out, "Holds:");
        for hold in &decision.holds {
            let _ = writeln!(out, "  {}", clean(&hold.detail()));
        }
    }
    if let Some(suspect) = &decision.suspect {
        let _ = writeln!(out, "Suspect:      {}", deploy_line(suspect));
    }
    if let Some(good) = &decision.rollback_to {
        let _ = writeln!(out, "Roll back to: {}", deploy_line(good));
    }
    if !decision.recommended.is_empty() {
        // Built by rollwarden with each argument shell-quoted: safe to paste.
        let _ = writeln!(out, "Commands:");
        for command in &decision.recommended {
            let _ = writeln!(out, "  {}", clean(command));
        }
    }
    if let Some(escalate) = &decision.escalate {
        let _ = writeln!(out, "Escalate: {}", clean(escalate));
    }
    out.push_str(&actions_text("Actions:", view));
    Ok(out)
}

pub(super) fn actions_text(title: &str, view: &Value) -> String {
    let actions = view["actions"].as_array().cloned().unwrap_or_default();
    if actions.is_empty() {
        return format!("{title} none\n");
    }
    let rows: Vec<Vec<String>> = actions
        .iter()
        .map(|a| {
            vec![
                text(&a["id"]),
                text(&a["kind"]),
                text(&a["mode"]),
                text(&a["state"]),
                match (&a["approved_by"], &a["approval_comment"]) {
                    (Value::String(by), Value::String(c)) => {
                        format!("{} ({})", clean(by), clean(c))
                    }
                    (Value::String(by), _) => clean(by),
                    _ => "-".into(),
                },
            ]
        })
        .collect();
    let mut out = format!("{title}\n");
    for line in table(&["ACTION", "KIND", "MODE", "STATE", "BY"], &rows).lines() {
        let _ = writeln!(out, "  {line}");
    }
    out
}

pub(super) fn freeze_text(what: &str, freeze: &Value) -> String {
    format!(
        "freeze {} {what}: scope {}, reason {:?}, until {}\n",
        text(&freeze["id"]),
        text(&freeze["scope"]),
        text(&freeze["reason"]),
        match &freeze["expires_at"] {
            Value::Null => "lifted".to_string(),
            v => when(v),
        },
    )
}

pub(super) fn event_line(event: &Value) -> String {
    let details = &event["details"];
    let about = match event["kind"].as_str() {
        Some("decision.recorded") => format!(
            "{} {}: {}",
            text(&details["target"]),
            text(&details["verdict"]),
            shorten(&text(&details["reason"]), 80)
        ),
        Some(kind) if kind.starts_with("freeze.") => format!(
            "scope {} ({})",
            text(&details["scope"]),
            shorten(&text(&details["reason"]), 60)
        ),
        _ => details
            .get("comment")
            .map(|c| format!("comment {}", text(c)))
            .unwrap_or_default(),
    };
    format!(
        "{}  {:<18} {:<14} by {:<12} {}\n",
        when(&event["at"]),
        text(&event["kind"]),
        text(&event["subject"]),
        text(&event["actor"]),
        about
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_every_column_but_the_last() {
        let t = table(
            &["ID", "VERDICT", "REASON"],
            &[
                vec!["7".into(), "rollback".into(), "M2".into()],
                vec!["12".into(), "ok".into(), "".into()],
            ],
        );
        assert_eq!(
            t,
            "ID  VERDICT   REASON\n7   rollback  M2\n12  ok        \n"
        );
        assert_eq!(shorten("abcdef", 4), "abc…");
    }
}
