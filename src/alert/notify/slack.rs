//! A Slack-compatible incoming webhook body: `text` (the fallback every compatible service
//! shows) and, unless disabled, Block Kit `blocks`.

use serde_json::{Value, json};

use crate::alert::config::SlackReceiverConfig;
use crate::alert::model::{Alert, AlertStatus, Notification};

/// Slack accepts at most 50 blocks; keep room for the header and the overflow note.
const MAX_ALERT_BLOCKS: usize = 45;

fn line(alert: &Alert) -> String {
    let summary = alert
        .annotations
        .get("summary")
        .cloned()
        .unwrap_or_else(|| alert.name().to_owned());
    let status = if alert.status == AlertStatus::Resolved {
        "resolved: "
    } else {
        ""
    };
    match alert.annotations.get("ui_url") {
        Some(url) if !url.is_empty() => format!("• {status}{summary} (<{url}|open>)"),
        _ => format!("• {status}{summary}"),
    }
}

/// Returns the body for a Slack receiver, or `None` when nothing is left to send.
pub(crate) fn body(notification: &Notification, receiver: &SlackReceiverConfig) -> Option<Value> {
    let alerts: Vec<&Alert> = notification
        .alerts
        .iter()
        .filter(|a| receiver.send_resolved || a.status != AlertStatus::Resolved)
        .collect();
    if alerts.is_empty() {
        return None;
    }
    let firing = alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Firing)
        .count();
    let group: Vec<&str> = notification
        .group_labels
        .values()
        .map(String::as_str)
        .collect();
    let title = if firing > 0 {
        format!("[FIRING:{firing}] {}", group.join(" "))
    } else {
        format!("[RESOLVED] {}", group.join(" "))
    };
    let lines: Vec<String> = alerts.iter().map(|a| line(a)).collect();
    let mut body = json!({ "text": format!("{title}\n{}", lines.join("\n")) });
    if receiver.blocks {
        let mut blocks = vec![json!({
            "type": "header",
            "text": { "type": "plain_text", "text": truncate(&title, 150) },
        })];
        for l in lines.iter().take(MAX_ALERT_BLOCKS) {
            blocks.push(json!({
                "type": "section",
                "text": { "type": "mrkdwn", "text": truncate(l, 3000) },
            }));
        }
        if lines.len() > MAX_ALERT_BLOCKS {
            blocks.push(json!({
                "type": "context",
                "elements": [{ "type": "mrkdwn",
                    "text": format!("and {} more", lines.len() - MAX_ALERT_BLOCKS) }],
            }));
        }
        body["blocks"] = Value::Array(blocks);
    }
    if let Some(channel) = &receiver.channel {
        body["channel"] = json!(channel);
    }
    if let Some(username) = &receiver.username {
        body["username"] = json!(username);
    }
    Some(body)
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
