//! An optional tap on accepted spans: spans whose trace id starts with a given prefix (the
//! synthetic prober's probe traces) are summarised and sent to a bounded queue, beside normal
//! derivation, which they go through unchanged.
//!
//! The tap sits between the intake queue and the deriver as one extra forwarding task, only when
//! configured: it looks at the first bytes of each span's trace id, and sends with `try_send`
//! (a full queue drops the summary and counts it in [`SpanTap::dropped`]), so the prober never
//! slows intake down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::otlp::scan::RawValue;
use crate::otlp::{Admitted, OtlpRequest, RawTraces};

/// Longest wait for the tap to forward what the receivers accepted at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A span of a tapped trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanSummary {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Span id.
    pub span_id: [u8; 8],
    /// Stage, named as the deriver names it (`service`, or `service/value` with a stage
    /// attribute on the span, else on the resource).
    pub stage: String,
    /// Span name.
    pub name: String,
    /// Start, Unix ns.
    pub start_unix_nano: u64,
    /// End, Unix ns.
    pub end_unix_nano: u64,
}

/// Where tapped spans go, and which trace ids are tapped.
#[derive(Debug, Clone)]
pub struct SpanTap {
    prefix: Vec<u8>,
    sender: mpsc::Sender<SpanSummary>,
    dropped: Arc<AtomicU64>,
}

impl SpanTap {
    /// Taps spans whose trace id starts with `trace_id_prefix` into `sender`.
    pub fn new(trace_id_prefix: &[u8], sender: mpsc::Sender<SpanSummary>) -> Self {
        Self {
            prefix: trace_id_prefix.to_vec(),
            sender,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Returns how many summaries were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn tap(&self, request: &OtlpRequest, stage_attributes: &[String]) {
        match request {
            OtlpRequest::Traces(traces) => self.tap_decoded(traces, stage_attributes),
            OtlpRequest::TracesRaw(traces) => self.tap_scanned(traces, stage_attributes),
            _ => {}
        }
    }

    fn tap_decoded(&self, traces: &ExportTraceServiceRequest, stage_attributes: &[String]) {
        for resource_spans in &traces.resource_spans {
            let resource = resource_spans
                .resource
                .as_ref()
                .map_or(&[][..], |r| &r.attributes[..]);
            for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                if !span.trace_id.starts_with(&self.prefix) {
                    continue;
                }
                let (Ok(trace_id), Ok(span_id)) = (
                    <[u8; 16]>::try_from(span.trace_id.as_slice()),
                    <[u8; 8]>::try_from(span.span_id.as_slice()),
                ) else {
                    continue;
                };
                let stage = stage_of(stage_attributes, resource, |key| {
                    string_attribute(&span.attributes, key).map(str::to_owned)
                });
                self.send(SpanSummary {
                    trace_id,
                    span_id,
                    stage,
                    name: span.name.clone(),
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
                });
            }
        }
    }

    /// Taps a scanned request like [`SpanTap::tap_decoded`] a decoded one: only a tapped span
    /// has its resource decoded and its strings copied.
    fn tap_scanned(&self, traces: &RawTraces, stage_attributes: &[String]) {
        // The attributes of the resource of the last tapped span.
        let mut resource: Option<(usize, Vec<KeyValue>)> = None;
        for span in traces.spans() {
            if !span.trace_id.starts_with(&self.prefix) {
                continue;
            }
            let (Ok(trace_id), Ok(span_id)) = (
                <[u8; 16]>::try_from(span.trace_id),
                <[u8; 8]>::try_from(span.span_id),
            ) else {
                continue;
            };
            let attributes = match &resource {
                Some((index, attributes)) if *index == span.resource => attributes,
                _ => {
                    let attributes = traces
                        .resource(span.resource)
                        .map(|r| r.attributes)
                        .unwrap_or_default();
                    &resource.insert((span.resource, attributes)).1
                }
            };
            let stage = stage_of(stage_attributes, attributes, |key| {
                match span.attribute(key)? {
                    RawValue::Str(s) if !s.is_empty() => Some(s.to_owned()),
                    RawValue::Decoded(any_value::Value::StringValue(s)) if !s.is_empty() => Some(s),
                    _ => None,
                }
            });
            self.send(SpanSummary {
                trace_id,
                span_id,
                stage,
                name: span.name.to_owned(),
                start_unix_nano: span.start_time_unix_nano,
                end_unix_nano: span.end_time_unix_nano,
            });
        }
    }

    fn send(&self, summary: SpanSummary) {
        if self.sender.try_send(summary).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        })
}

/// Names the stage of a span from its resource attributes and `span_string`, which returns the
/// non-empty string value of a span attribute.
fn stage_of(
    stage_attributes: &[String],
    resource: &[KeyValue],
    span_string: impl Fn(&str) -> Option<String>,
) -> String {
    let service = string_attribute(resource, "service.name").unwrap_or("unknown_service");
    let refinement = stage_attributes
        .iter()
        .find_map(|a| span_string(a))
        .or_else(|| {
            stage_attributes
                .iter()
                .find_map(|a| string_attribute(resource, a).map(str::to_owned))
        });
    match refinement {
        Some(value) => format!("{service}/{value}"),
        None => service.to_owned(),
    }
}

/// Puts `tap` between the intake queue and the deriver: returns the deriver's new input and
/// the forwarding task, which ends once every sender of `input` is gone and all is forwarded.
pub(crate) fn interpose(
    mut input: mpsc::Receiver<Admitted>,
    tap: SpanTap,
    stage_attributes: Vec<String>,
    capacity: usize,
) -> (mpsc::Receiver<Admitted>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let task = tokio::spawn(async move {
        while let Some(admitted) = input.recv().await {
            tap.tap(&admitted.request, &stage_attributes);
            if tx.send(admitted).await.is_err() {
                break;
            }
        }
    });
    (rx, task)
}

/// Waits (at most [`DRAIN_TIMEOUT`]) for the forwarding task to hand everything accepted to the
/// deriver; called after the receivers stopped and before the deriver is told to stop.
pub(crate) async fn drain(task: JoinHandle<()>) {
    match tokio::time::timeout(DRAIN_TIMEOUT, task).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "span tap task failed"),
        Err(_) => tracing::warn!("span tap still forwarding after the drain timeout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::test_support::{kv, traces};
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn span(trace_id: &[u8], stage: Option<&str>) -> Span {
        Span {
            trace_id: trace_id.to_vec(),
            span_id: vec![0, 0, 0, 0, 0, 0, 0, 9],
            name: "forward".into(),
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 5_000,
            attributes: stage
                .map(|s| vec![kv("pipeline.stage", s)])
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    #[test]
    fn only_prefixed_trace_ids_are_tapped_with_the_deriver_stage_name() {
        let (tx, mut rx) = mpsc::channel(8);
        let tap = SpanTap::new(b"pwpb", tx);
        let mut probe = b"pwpb".to_vec();
        probe.extend_from_slice(&[1; 12]);
        let request = OtlpRequest::Traces(traces(
            "relay",
            vec![
                span(&[7; 16], None),
                span(&probe, None),
                span(&probe, Some("enrich")),
            ],
        ));
        tap.tap(&request, &["pipeline.stage".to_owned()]);
        let first = rx.try_recv().unwrap();
        assert_eq!(first.stage, "relay");
        assert_eq!(first.trace_id[..4], *b"pwpb");
        assert_eq!((first.start_unix_nano, first.end_unix_nano), (1_000, 5_000));
        assert_eq!(rx.try_recv().unwrap().stage, "relay/enrich");
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn interposed_tap_forwards_everything_before_the_drain_returns() {
        use crate::otlp::test_support::admitted;
        use crate::telemetry::CollectorTelemetry;

        let telemetry = CollectorTelemetry::for_tests();
        let (tap_tx, mut tap_rx) = mpsc::channel(8);
        let (intake_tx, intake_rx) = mpsc::channel(8);
        let (mut deriver_rx, task) =
            interpose(intake_rx, SpanTap::new(b"pwpb", tap_tx), Vec::new(), 8);
        let mut probe = b"pwpb".to_vec();
        probe.extend_from_slice(&[2; 12]);
        for trace_id in [probe.clone(), vec![3; 16], probe] {
            let request = OtlpRequest::Traces(traces("relay", vec![span(&trace_id, None)]));
            intake_tx.send(admitted(request, &telemetry)).await.unwrap();
        }
        // The receivers stop: their senders are gone; the drain waits for the forwarding.
        drop(intake_tx);
        drain(task).await;
        deriver_rx.close();
        let mut forwarded = 0;
        while deriver_rx.recv().await.is_some() {
            forwarded += 1;
        }
        assert_eq!(forwarded, 3, "every accepted request reaches the deriver");
        assert_eq!(tap_rx.recv().await.unwrap().stage, "relay");
        assert_eq!(tap_rx.recv().await.unwrap().stage, "relay");
        assert!(
            tap_rx.try_recv().is_err(),
            "only the two probe spans are tapped"
        );
    }

    #[test]
    fn a_scanned_request_is_tapped_like_a_decoded_one() {
        use crate::otlp::test_support::mixed_traces;
        use crate::otlp::{Encoding, SignalKind, decode_request, screen};
        use prost::Message;

        let summaries = |mut request: OtlpRequest| {
            screen(&mut request);
            let (tx, mut rx) = mpsc::channel(64);
            SpanTap::new(b"pwpb", tx).tap(&request, &["pipeline.stage".to_owned()]);
            let mut out = Vec::new();
            while let Ok(summary) = rx.try_recv() {
                out.push(summary);
            }
            out
        };
        let request = mixed_traces();
        let body = bytes::Bytes::from(request.encode_to_vec());
        let scanned = decode_request(SignalKind::Traces, Encoding::Protobuf, body).unwrap();
        assert!(matches!(scanned, OtlpRequest::TracesRaw(_)));
        let decoded = summaries(OtlpRequest::Traces(request));
        assert_eq!(summaries(scanned), decoded);
        let stages: Vec<&str> = decoded.iter().map(|s| s.stage.as_str()).collect();
        assert_eq!(stages, ["orders/enrich", "orders"]);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = mpsc::channel(1);
        let tap = SpanTap::new(b"pwpb", tx);
        let mut probe = b"pwpb".to_vec();
        probe.extend_from_slice(&[1; 12]);
        let request = OtlpRequest::Traces(traces(
            "relay",
            vec![span(&probe, None), span(&probe, None), span(&probe, None)],
        ));
        tap.tap(&request, &[]);
        assert_eq!(tap.dropped(), 2);
    }
}
