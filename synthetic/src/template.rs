//! Payload templates: text with `{{placeholder}}`s filled per probe event.

/// Values a payload is rendered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateValues<'a> {
    /// Probe name.
    pub probe: &'a str,
    /// Probe event id.
    pub probe_id: &'a str,
    /// Sequence number.
    pub seq: u64,
    /// Partition the event goes to (0 for HTTP).
    pub partition: i32,
    /// Send time, Unix ms.
    pub sent_ms: i64,
    /// Trace id, 32 lowercase hex digits.
    pub trace_id: &'a str,
    /// W3C `traceparent` value.
    pub traceparent: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    Probe,
    ProbeId,
    Seq,
    Partition,
    SentMs,
    TraceId,
    Traceparent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value(Placeholder),
}

/// A parsed payload template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadTemplate {
    parts: Vec<Part>,
}

impl PayloadTemplate {
    /// Parses `text`; placeholders are `{{probe}}`, `{{probe_id}}`, `{{seq}}`, `{{partition}}`,
    /// `{{sent_ms}}`, `{{trace_id}}` and `{{traceparent}}`.
    ///
    /// # Errors
    /// An unknown or unterminated placeholder, or a template without `{{probe_id}}` (the
    /// observer could not recognise the event in a payload).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| "unterminated `{{`".to_owned())?;
            let placeholder = match after[..end].trim() {
                "probe" => Placeholder::Probe,
                "probe_id" => Placeholder::ProbeId,
                "seq" => Placeholder::Seq,
                "partition" => Placeholder::Partition,
                "sent_ms" => Placeholder::SentMs,
                "trace_id" => Placeholder::TraceId,
                "traceparent" => Placeholder::Traceparent,
                other => return Err(format!("unknown placeholder `{{{{{other}}}}}`")),
            };
            parts.push(Part::Value(placeholder));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if !parts.contains(&Part::Value(Placeholder::ProbeId)) {
            return Err("must contain `{{probe_id}}`".to_owned());
        }
        Ok(Self { parts })
    }

    /// Renders the template.
    pub fn render(&self, values: &TemplateValues<'_>) -> String {
        let mut out = String::with_capacity(256);
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Value(p) => match p {
                    Placeholder::Probe => out.push_str(values.probe),
                    Placeholder::ProbeId => out.push_str(values.probe_id),
                    Placeholder::Seq => out.push_str(&values.seq.to_string()),
                    Placeholder::Partition => out.push_str(&values.partition.to_string()),
                    Placeholder::SentMs => out.push_str(&values.sent_ms.to_string()),
                    Placeholder::TraceId => out.push_str(values.trace_id),
                    Placeholder::Traceparent => out.push_str(values.traceparent),
                },
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_PAYLOAD;

    fn values() -> TemplateValues<'static> {
        TemplateValues {
            probe: "orders",
            probe_id: "orders-0000abcd-2-17",
            seq: 17,
            partition: 2,
            sent_ms: 1_767_225_600_123,
            trace_id: "70770000000000000000000000000001",
            traceparent: "00-70770000000000000000000000000001-0000000000000011-01",
        }
    }

    #[test]
    fn default_payload_is_json_with_the_marker_and_every_field() {
        let text = PayloadTemplate::parse(DEFAULT_PAYLOAD)
            .unwrap()
            .render(&values());
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["pipewarden_probe"], true);
        assert_eq!(json["probe"], "orders");
        assert_eq!(json["probe_id"], "orders-0000abcd-2-17");
        assert_eq!(json["seq"], 17);
        assert_eq!(json["partition"], 2);
        assert_eq!(json["sent_ms"], 1_767_225_600_123_i64);
        assert_eq!(
            json["traceparent"],
            "00-70770000000000000000000000000001-0000000000000011-01"
        );
    }

    #[test]
    fn text_templates_and_spaces_inside_braces() {
        let t = PayloadTemplate::parse("id={{ probe_id }};seq={{seq}};t={{trace_id}}").unwrap();
        assert_eq!(
            t.render(&values()),
            "id=orders-0000abcd-2-17;seq=17;t=70770000000000000000000000000001"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        assert_eq!(
            PayloadTemplate::parse("{{probe_id}} {{who}}").unwrap_err(),
            "unknown placeholder `{{who}}`"
        );
        assert_eq!(
            PayloadTemplate::parse("{{probe_id").unwrap_err(),
            "unterminated `{{`"
        );
        assert_eq!(
            PayloadTemplate::parse("{\"seq\": {{seq}}}").unwrap_err(),
            "must contain `{{probe_id}}`"
        );
    }
}
