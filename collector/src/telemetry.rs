//! Self-telemetry of the collector: every instrument, registered once.
//!
//! | metric | labels | meaning |
//! | --- | --- | --- |
//! | `pipewarden_collector_accepted_total` | `signal` | items answered with success and queued |
//! | `pipewarden_collector_refused_total` | `signal`, `reason` | items answered with an error or rejected in a `partial_success` |
//! | `pipewarden_collector_dropped_total` | `signal`, `reason` | items accepted, then dropped (cardinality cap, stage cap, closed output) |
//! | `pipewarden_collector_requests_total` | `transport`, `signal`, `outcome` | export requests by result |
//! | `pipewarden_collector_inflight_bytes` | | bytes of accepted requests not yet derived |
//! | `pipewarden_collector_queue_depth` | | requests waiting for the deriver |
//!
//! `signal` is one of `spans`, `metric_points`, `log_records`; `transport` is `grpc` or `http`.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Kind of OTLP item, the `signal` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Signal {
    Spans,
    MetricPoints,
    LogRecords,
}

impl Signal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Spans => "spans",
            Self::MetricPoints => "metric_points",
            Self::LogRecords => "log_records",
        }
    }
}

impl EncodeLabelValue for Signal {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Receiver transport, the `transport` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Transport {
    Grpc,
    Http,
}

impl Transport {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Http => "http",
        }
    }
}

impl EncodeLabelValue for Transport {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Result of one export request, the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Outcome {
    /// Everything accepted.
    Success,
    /// Accepted with some items rejected (`partial_success`).
    Partial,
    /// Malformed request (HTTP 400, gRPC `INVALID_ARGUMENT`).
    Invalid,
    /// Body over the limit (HTTP 413).
    TooLarge,
    /// Wrong content type or encoding (HTTP 415).
    UnsupportedMediaType,
    /// Refused for backpressure (HTTP 503, gRPC `UNAVAILABLE`).
    Unavailable,
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::Success => "success",
            Self::Partial => "partial_success",
            Self::Invalid => "invalid",
            Self::TooLarge => "too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unavailable => "unavailable",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SignalLabels {
    signal: Signal,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    signal: Signal,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    transport: Transport,
    signal: Signal,
    outcome: Outcome,
}

/// The collector's instruments, registered once into the app's registry; cheap to clone.
#[derive(Debug, Clone)]
pub struct CollectorTelemetry {
    accepted: Family<SignalLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    dropped: Family<ReasonLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    inflight_bytes: Gauge,
    queue_depth: Gauge,
}

impl CollectorTelemetry {
    /// Creates the instruments and registers them into `registry` (names in the module docs).
    pub fn register(registry: &mut Registry) -> Self {
        let telemetry = Self {
            accepted: Family::default(),
            refused: Family::default(),
            dropped: Family::default(),
            requests: Family::default(),
            inflight_bytes: Gauge::default(),
            queue_depth: Gauge::default(),
        };
        // Every signal shows 0 from the first scrape, not only after its first item.
        for signal in [Signal::Spans, Signal::MetricPoints, Signal::LogRecords] {
            drop(telemetry.accepted.get_or_create(&SignalLabels { signal }));
        }
        // prometheus-client appends `_total` to counter names.
        registry.register(
            "pipewarden_collector_accepted",
            "OTLP items (spans, metric points, log records) accepted and queued for derivation",
            telemetry.accepted.clone(),
        );
        registry.register(
            "pipewarden_collector_refused",
            "OTLP items answered with an error or rejected in a partial success, by reason",
            telemetry.refused.clone(),
        );
        registry.register(
            "pipewarden_collector_dropped",
            "OTLP items accepted and then dropped, by reason",
            telemetry.dropped.clone(),
        );
        registry.register(
            "pipewarden_collector_requests",
            "OTLP export requests by transport, signal and outcome",
            telemetry.requests.clone(),
        );
        registry.register(
            "pipewarden_collector_inflight_bytes",
            "Bytes of accepted OTLP requests not yet derived into signals",
            telemetry.inflight_bytes.clone(),
        );
        registry.register(
            "pipewarden_collector_queue_depth",
            "OTLP requests queued for the deriver",
            telemetry.queue_depth.clone(),
        );
        telemetry
    }

    pub(crate) fn accepted(&self, signal: Signal, items: u64) {
        if items > 0 {
            self.accepted
                .get_or_create(&SignalLabels { signal })
                .inc_by(items);
        }
    }

    pub(crate) fn refused(&self, signal: Signal, reason: &'static str, items: u64) {
        if items > 0 {
            self.refused
                .get_or_create(&ReasonLabels { signal, reason })
                .inc_by(items);
        }
    }

    pub(crate) fn dropped(&self, signal: Signal, reason: &'static str, items: u64) {
        if items > 0 {
            self.dropped
                .get_or_create(&ReasonLabels { signal, reason })
                .inc_by(items);
        }
    }

    pub(crate) fn request(&self, transport: Transport, signal: Signal, outcome: Outcome) {
        self.requests
            .get_or_create(&RequestLabels {
                transport,
                signal,
                outcome,
            })
            .inc();
    }

    pub(crate) fn inflight_bytes_add(&self, bytes: i64) {
        self.inflight_bytes.inc_by(bytes);
    }

    pub(crate) fn queue_depth_add(&self, requests: i64) {
        self.queue_depth.inc_by(requests);
    }

    #[cfg(test)]
    pub(crate) fn accepted_count(&self, signal: Signal) -> u64 {
        self.accepted.get_or_create(&SignalLabels { signal }).get()
    }

    #[cfg(test)]
    pub(crate) fn refused_count(&self, signal: Signal, reason: &'static str) -> u64 {
        self.refused
            .get_or_create(&ReasonLabels { signal, reason })
            .get()
    }

    #[cfg(test)]
    pub(crate) fn dropped_count(&self, signal: Signal, reason: &'static str) -> u64 {
        self.dropped
            .get_or_create(&ReasonLabels { signal, reason })
            .get()
    }

    #[cfg(test)]
    pub(crate) fn request_count(
        &self,
        transport: Transport,
        signal: Signal,
        outcome: Outcome,
    ) -> u64 {
        self.requests
            .get_or_create(&RequestLabels {
                transport,
                signal,
                outcome,
            })
            .get()
    }

    #[cfg(test)]
    pub(crate) fn inflight_bytes(&self) -> i64 {
        self.inflight_bytes.get()
    }

    #[cfg(test)]
    pub(crate) fn queue_depth(&self) -> i64 {
        self.queue_depth.get()
    }

    /// Returns instruments registered into a throwaway registry (tests and benchmarks).
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        Self::register(&mut Registry::default())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn exposes_the_documented_names() {
        let mut registry = Registry::default();
        let telemetry = CollectorTelemetry::register(&mut registry);
        telemetry.accepted(Signal::Spans, 3);
        telemetry.refused(Signal::Spans, "invalid_trace_id", 1);
        telemetry.dropped(Signal::MetricPoints, "cardinality", 2);
        telemetry.request(Transport::Http, Signal::LogRecords, Outcome::Success);
        telemetry.inflight_bytes_add(10);
        telemetry.queue_depth_add(1);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "pipewarden_collector_accepted_total{signal=\"spans\"} 3",
            "pipewarden_collector_refused_total{signal=\"spans\",reason=\"invalid_trace_id\"} 1",
            "pipewarden_collector_dropped_total{signal=\"metric_points\",reason=\"cardinality\"} 2",
            "pipewarden_collector_requests_total{transport=\"http\",signal=\"log_records\",outcome=\"success\"} 1",
            "pipewarden_collector_inflight_bytes 10",
            "pipewarden_collector_queue_depth 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
