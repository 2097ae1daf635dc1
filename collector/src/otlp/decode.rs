//! Decoding of OTLP/HTTP bodies: binary protobuf and OTLP/JSON.
//!
//! Protobuf is decoded with prost straight from the body's [`Bytes`], except metrics and traces,
//! which are scanned in place (see [`super::scan`]) unless the scan leaves them to prost.
//! OTLP/JSON is decoded with the serde support of `opentelemetry-proto`, which follows the
//! OTLP/JSON rules the SDKs use: lowerCamelCase keys, trace and span ids as hex strings, enums as
//! integers, 64-bit integers as strings or numbers, unknown fields ignored. Errors name the offending field: prost reports
//! the message path (`Span.trace_id: ...`), serde the JSON path
//! (`resourceSpans[0].scopeSpans[0].spans[0].kind: ...`).

use bytes::Bytes;
use prost::Message;
use serde::de::DeserializeOwned;

use super::{Encoding, OtlpRequest, SignalKind};

/// A body that is not a valid OTLP export request; the message names what is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid OTLP/{encoding} {kind} request: {detail}")]
pub struct DecodeError {
    encoding: &'static str,
    kind: &'static str,
    detail: String,
}

/// Decodes an export request of `kind` encoded as `encoding`.
///
/// # Errors
///
/// Returns a [`DecodeError`] naming the malformed field when `body` is not a valid request.
pub fn decode_request(
    kind: SignalKind,
    encoding: Encoding,
    body: Bytes,
) -> Result<OtlpRequest, DecodeError> {
    let decoded = match (encoding, kind) {
        (Encoding::Protobuf, SignalKind::Traces) => match super::scan::scan_traces(body.clone()) {
            Ok(Some(raw)) => Ok(OtlpRequest::TracesRaw(raw)),
            // Left to prost, or malformed: prost's error names the field.
            Ok(None) | Err(_) => decode_protobuf(body).map(OtlpRequest::Traces),
        },
        (Encoding::Protobuf, SignalKind::Metrics) => {
            match super::scan::scan_metrics(body.clone()) {
                Ok(Some(raw)) => Ok(OtlpRequest::MetricsRaw(raw)),
                // Left to prost, or malformed: prost's error names the field.
                Ok(None) | Err(_) => decode_protobuf(body).map(OtlpRequest::Metrics),
            }
        }
        (Encoding::Protobuf, SignalKind::Logs) => match super::scan::scan_logs(body.clone()) {
            Ok(Some(raw)) => Ok(OtlpRequest::LogsRaw(raw)),
            // Left to prost, or malformed: prost's error names the field.
            Ok(None) | Err(_) => decode_protobuf(body).map(OtlpRequest::Logs),
        },
        (Encoding::Json, SignalKind::Traces) => decode_json(&body).map(OtlpRequest::Traces),
        (Encoding::Json, SignalKind::Metrics) => decode_json(&body).map(OtlpRequest::Metrics),
        (Encoding::Json, SignalKind::Logs) => decode_json(&body).map(OtlpRequest::Logs),
    };
    decoded.map_err(|detail| DecodeError::new(encoding, kind, detail))
}

impl DecodeError {
    fn new(encoding: Encoding, kind: SignalKind, detail: String) -> Self {
        Self {
            encoding: match encoding {
                Encoding::Protobuf => "protobuf",
                Encoding::Json => "JSON",
            },
            kind: kind.as_str(),
            detail,
        }
    }
}

fn decode_protobuf<M: Message + Default>(body: Bytes) -> Result<M, String> {
    // prost's message reads "failed to decode Protobuf message: Span.trace_id: ...".
    M::decode(body).map_err(|err| err.to_string())
}

fn decode_json<M: DeserializeOwned>(body: &[u8]) -> Result<M, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let request = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        if path == "." {
            err.inner().to_string()
        } else {
            format!("{path}: {}", err.inner())
        }
    })?;
    deserializer.end().map_err(|err| err.to_string())?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::number_data_point;
    use proptest::prelude::*;

    use super::*;
    use crate::otlp::test_support::*;

    /// What the JavaScript SDK's OTLP/JSON trace exporter sends (shape of
    /// `@opentelemetry/otlp-transformer` JSON output): hex ids, enum ints, times as strings,
    /// `intValue` as a number.
    const JS_TRACES: &str = r#"{
      "resourceSpans": [{
        "resource": {
          "attributes": [
            {"key": "service.name", "value": {"stringValue": "orders"}},
            {"key": "telemetry.sdk.language", "value": {"stringValue": "nodejs"}},
            {"key": "process.pid", "value": {"intValue": 4242}}
          ],
          "droppedAttributesCount": 0
        },
        "scopeSpans": [{
          "scope": {"name": "orders-worker", "version": "1.0.0"},
          "spans": [{
            "traceId": "5B8EFFF798038103D269B633813FC60C",
            "spanId": "EEE19B7EC3C1B174",
            "parentSpanId": "",
            "name": "process order",
            "kind": 5,
            "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": "1700000000250000000",
            "attributes": [
              {"key": "pipeline.stage", "value": {"stringValue": "enrich"}},
              {"key": "batch.size", "value": {"intValue": "100"}},
              {"key": "retry", "value": {"boolValue": false}},
              {"key": "ratio", "value": {"doubleValue": 0.5}}
            ],
            "droppedAttributesCount": 0,
            "events": [{"timeUnixNano": "1700000000100000000", "name": "checkpoint", "attributes": []}],
            "droppedEventsCount": 0,
            "status": {"code": 2, "message": "boom"},
            "links": [],
            "droppedLinksCount": 0,
            "someFutureField": {"ignored": true}
          }]
        }]
      }]
    }"#;

    const JS_METRICS: &str = r#"{
      "resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "orders"}}]},
        "scopeMetrics": [{
          "scope": {"name": "m"},
          "metrics": [
            {"name": "queue.depth", "unit": "1", "gauge": {"dataPoints": [
              {"attributes": [{"key": "queue", "value": {"stringValue": "q1"}}],
               "timeUnixNano": "1700000000000000000", "asInt": "17"}]}},
            {"name": "rows", "sum": {"aggregationTemporality": 2, "isMonotonic": true, "dataPoints": [
              {"startTimeUnixNano": "1699999990000000000", "timeUnixNano": "1700000000000000000", "asDouble": 12.5}]}},
            {"name": "latency", "histogram": {"aggregationTemporality": 1, "dataPoints": [
              {"timeUnixNano": "1700000000000000000", "count": "3", "sum": 7.5,
               "bucketCounts": ["1", "2"], "explicitBounds": [5.0]}]}}
          ]
        }]
      }]
    }"#;

    const JS_LOGS: &str = r#"{
      "resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "orders"}}]},
        "scopeLogs": [{
          "scope": {"name": "logger"},
          "logRecords": [{
            "timeUnixNano": "1700000000000000000",
            "observedTimeUnixNano": "1700000000000000001",
            "severityNumber": 17,
            "severityText": "ERROR",
            "body": {"stringValue": "payment failed"},
            "attributes": [{"key": "order.id", "value": {"intValue": 12}}],
            "droppedAttributesCount": 0,
            "flags": 1,
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174"
          }]
        }]
      }]
    }"#;

    #[test]
    fn decodes_sdk_style_otlp_json_traces() {
        let request = decode_request(SignalKind::Traces, Encoding::Json, Bytes::from(JS_TRACES));
        let OtlpRequest::Traces(request) = request.unwrap() else {
            panic!("wrong kind")
        };
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id[0], 0x5b);
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.span_id.len(), 8);
        assert!(span.parent_span_id.is_empty());
        assert_eq!(span.kind, 5);
        assert_eq!(
            span.end_time_unix_nano - span.start_time_unix_nano,
            250_000_000
        );
        assert_eq!(span.status.as_ref().unwrap().code, 2);
        let batch_size = span.attributes[1]
            .value
            .as_ref()
            .unwrap()
            .value
            .as_ref()
            .unwrap();
        assert_eq!(batch_size, &Value::IntValue(100));
        let pid = &request.resource_spans[0]
            .resource
            .as_ref()
            .unwrap()
            .attributes[2];
        assert_eq!(
            pid.value.as_ref().unwrap().value,
            Some(Value::IntValue(4242))
        );
    }

    #[test]
    fn decodes_sdk_style_otlp_json_metrics_and_logs() {
        let request = decode_request(SignalKind::Metrics, Encoding::Json, Bytes::from(JS_METRICS));
        let OtlpRequest::Metrics(request) = request.unwrap() else {
            panic!("wrong kind")
        };
        let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
        let Some(Data::Gauge(gauge)) = &metrics[0].data else {
            panic!("gauge expected")
        };
        assert_eq!(
            gauge.data_points[0].value,
            Some(number_data_point::Value::AsInt(17))
        );
        let Some(Data::Sum(sum)) = &metrics[1].data else {
            panic!("sum expected")
        };
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsDouble(12.5))
        );
        let Some(Data::Histogram(histogram)) = &metrics[2].data else {
            panic!("histogram expected")
        };
        assert_eq!(histogram.data_points[0].count, 3);
        assert_eq!(histogram.data_points[0].bucket_counts, [1, 2]);

        let request = decode_request(SignalKind::Logs, Encoding::Json, Bytes::from(JS_LOGS));
        let OtlpRequest::Logs(request) = request.unwrap() else {
            panic!("wrong kind")
        };
        let record = &request.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.severity_number, 17);
        assert_eq!(record.trace_id.len(), 16);
        assert_eq!(record.span_id.len(), 8);
    }

    #[test]
    fn json_with_wrong_types_names_the_field() {
        let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"fast"}]}]}]}"#;
        let err =
            decode_request(SignalKind::Traces, Encoding::Json, Bytes::from(body)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("invalid OTLP/JSON traces request: "),
            "{text}"
        );
        assert!(
            text.contains("resourceSpans[0].scopeSpans[0].spans[0].kind"),
            "{text}"
        );

        let body = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zz"}]}]}]}"#;
        let err = decode_request(SignalKind::Logs, Encoding::Json, Bytes::from(body)).unwrap_err();
        assert!(err.to_string().contains("logRecords[0].traceId"), "{err}");

        let err =
            decode_request(SignalKind::Metrics, Encoding::Json, Bytes::from("{} x")).unwrap_err();
        assert!(err.to_string().contains("trailing characters"), "{err}");
    }

    #[test]
    fn malformed_protobuf_names_the_problem() {
        let mut body = traces("svc", vec![span(0, 1_000, 5, false)]).encode_to_vec();
        body.truncate(body.len() - 3);
        let err =
            decode_request(SignalKind::Traces, Encoding::Protobuf, Bytes::from(body)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("invalid OTLP/protobuf traces request: "),
            "{text}"
        );
        assert!(
            text.contains("ExportTraceServiceRequest.resource_spans"),
            "{text}"
        );
    }

    #[test]
    fn protobuf_round_trips() {
        let request = logs("svc", vec![log(9, "hello"), log(17, "boom")]);
        let body = Bytes::from(request.encode_to_vec());
        let decoded = decode_request(SignalKind::Logs, Encoding::Protobuf, body).unwrap();
        // Protobuf logs are scanned; each record decodes as sent.
        let OtlpRequest::LogsRaw(raw) = decoded else {
            panic!("not scanned: {decoded:?}");
        };
        let records: Vec<_> = raw.records().map(|view| view.decode()).collect();
        assert_eq!(records, request.resource_logs[0].scope_logs[0].log_records);
        assert_eq!(raw.resource(0), request.resource_logs[0].resource);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoders(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let body = Bytes::from(body);
            for kind in [SignalKind::Traces, SignalKind::Metrics, SignalKind::Logs] {
                for encoding in [Encoding::Protobuf, Encoding::Json] {
                    let _ = decode_request(kind, encoding, body.clone());
                }
            }
        }

        #[test]
        fn mutated_valid_protobuf_never_panics(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut body = traces("svc", vec![span(0, 1_000, 5, true), span(1, 2_000, 7, false)])
                .encode_to_vec();
            for (at, value) in flips {
                let len = body.len();
                body[at % len] = value;
            }
            let _ = decode_request(SignalKind::Traces, Encoding::Protobuf, Bytes::from(body));
        }
    }
}
