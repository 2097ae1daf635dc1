use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use proptest::prelude::*;

use super::*;
use crate::otlp::test_support::*;
use crate::otlp::{Encoding, OtlpRequest, SignalKind, decode_request};

/// The records screening keeps, as prost decodes them: resource index and record.
fn flatten_decoded(request: &ExportLogsServiceRequest) -> Vec<(usize, LogRecord)> {
    let mut out = Vec::new();
    for (index, resource) in request.resource_logs.iter().enumerate() {
        for record in resource.scope_logs.iter().flat_map(|s| &s.log_records) {
            let trace_ok = record.trace_id.is_empty() || record.trace_id.len() == 16;
            let span_ok = record.span_id.is_empty() || record.span_id.len() == 8;
            if trace_ok && span_ok {
                out.push((index, record.clone()));
            }
        }
    }
    out
}

fn flatten_scanned(raw: &RawLogs) -> Vec<(usize, LogRecord)> {
    raw.records()
        .map(|view| {
            let record = view.decode();
            assert_eq!(view.severity_number, record.severity_number);
            assert_eq!(view.severity_text, record.severity_text);
            (view.resource, record)
        })
        .collect()
}

fn sample() -> ExportLogsServiceRequest {
    let mut with_attributes = log(9, "with attributes");
    with_attributes.attributes = vec![kv("pipeline.stage", "load"), kv("user", "u")];
    with_attributes.severity_text = "INFO".to_owned();
    let mut bad_trace = log(17, "bad trace id");
    bad_trace.trace_id = vec![1; 3];
    let mut bad_span = log(17, "bad span id");
    bad_span.span_id = vec![1; 9];
    let mut ids = log(13, "ids");
    ids.trace_id = vec![2; 16];
    ids.span_id = vec![3; 8];
    ids.event_name = "event".to_owned();
    ids.flags = 1;
    let mut request = logs(
        "svc",
        vec![log(5, "first"), with_attributes, bad_trace, bad_span, ids],
    );
    request
        .resource_logs
        .extend(logs("other", vec![log(21, "fatal")]).resource_logs);
    request
}

#[test]
fn scan_finds_the_records_prost_decodes() {
    let request = sample();
    let raw = scan_logs(Bytes::from(request.encode_to_vec()))
        .unwrap()
        .unwrap();
    assert_eq!(flatten_scanned(&raw), flatten_decoded(&request));
    assert_eq!(raw.record_count(), 6);
    assert_eq!((raw.invalid_trace_id(), raw.invalid_span_id()), (1, 1));
    assert_eq!(raw.resource_count(), 2);
    assert_eq!(raw.resource(1), request.resource_logs[1].resource);
}

#[test]
fn screening_a_scanned_request_counts_like_a_decoded_one() {
    let request = sample();
    let body = Bytes::from(request.encode_to_vec());
    let mut scanned = decode_request(SignalKind::Logs, Encoding::Protobuf, body).unwrap();
    assert!(matches!(scanned, OtlpRequest::LogsRaw(_)));
    let mut decoded = OtlpRequest::Logs(request);
    assert_eq!(
        crate::otlp::screen(&mut scanned),
        crate::otlp::screen(&mut decoded)
    );
    assert_eq!(scanned.item_count(), decoded.item_count());
    assert_eq!(scanned.item_count(), 4);
}

#[test]
fn attributes_are_found_in_place_as_a_search_of_the_decoded_list() {
    let int = |value: i64| AnyValue {
        value: Some(any_value::Value::IntValue(value)),
    };
    let mut record = log(9, "r");
    record.attributes = vec![
        kv("a", "1"),
        kv("pipeline.stage", "first"),
        KeyValue {
            key: "n".to_owned(),
            value: Some(int(7)),
            ..Default::default()
        },
        KeyValue {
            key: "none".to_owned(),
            value: None,
            ..Default::default()
        },
        kv("none", "later"),
        kv("pipeline.stage", "second"),
    ];
    let request = logs("svc", vec![record]);
    let raw = scan_logs(Bytes::from(request.encode_to_vec()))
        .unwrap()
        .unwrap();
    let view = raw.records().next().unwrap();
    // The first attribute of a name wins; strings are read in place, other values decoded.
    assert_eq!(
        view.attribute("pipeline.stage"),
        Some(RawValue::Str("first"))
    );
    assert_eq!(
        view.attribute("n"),
        Some(RawValue::Decoded(any_value::Value::IntValue(7)))
    );
    // A first attribute without a value hides later ones, as in the decoded list.
    assert_eq!(view.attribute("none"), None);
    assert_eq!(view.attribute("missing"), None);
}

#[test]
fn a_repeated_resource_is_left_to_prost() {
    // ResourceLogs with two resource fields: prost merges them.
    let resource = resource("svc").unwrap().encode_to_vec();
    let mut resource_logs = Vec::new();
    for _ in 0..2 {
        resource_logs.push(0x0a);
        resource_logs.push(resource.len() as u8);
        resource_logs.extend(&resource);
    }
    let mut body = vec![0x0a, resource_logs.len() as u8];
    body.extend(&resource_logs);
    assert_eq!(scan_logs(Bytes::from(body.clone())), Ok(None));
    let decoded = decode_request(SignalKind::Logs, Encoding::Protobuf, Bytes::from(body));
    assert!(matches!(decoded, Ok(OtlpRequest::Logs(_))));
}

#[test]
fn malformed_records_are_refused_naming_the_field() {
    for (field, expected) in [
        ("severity_text", "LogRecord.severity_text"),
        ("key", "KeyValue.key"),
        ("body", "AnyValue.value"),
    ] {
        let mut record = log(9, if field == "body" { "\u{7f}" } else { "b" });
        match field {
            "severity_text" => record.severity_text = "\u{7f}".to_owned(),
            "key" => record.attributes = vec![kv("\u{7f}", "v")],
            _ => {}
        }
        let mut body = logs("svc", vec![record]).encode_to_vec();
        // Turn the one-byte string into invalid UTF-8.
        let at = body.iter().position(|b| *b == 0x7f).unwrap();
        body[at] = 0xff;
        assert_eq!(
            scan_logs(Bytes::from(body.clone())),
            Err(Malformed),
            "{field}"
        );
        let err = decode_request(SignalKind::Logs, Encoding::Protobuf, Bytes::from(body))
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{field}: {err}");
    }
    let mut body = sample().encode_to_vec();
    body.truncate(body.len() - 3);
    assert_eq!(scan_logs(Bytes::from(body.clone())), Err(Malformed));
    assert!(decode_request(SignalKind::Logs, Encoding::Protobuf, Bytes::from(body)).is_err());
}

proptest! {
    #[test]
    fn scan_agrees_with_prost_on_mutated_bodies(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        truncate in any::<bool>(),
    ) {
        let body = super::super::tests::mutated(sample().encode_to_vec(), &flips, cut, truncate);
        let scanned = scan_logs(Bytes::from(body.clone()));
        let decoded = ExportLogsServiceRequest::decode(body.as_slice());
        if let Ok(Some(raw)) = &scanned {
            // Whatever the scan takes, prost takes, with the same records.
            let decoded = decoded.expect("prost decodes what the scan accepts");
            prop_assert_eq!(flatten_scanned(raw), flatten_decoded(&decoded));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_scan(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(Some(raw)) = scan_logs(Bytes::from(body)) {
            for view in raw.records() {
                let _ = view.attribute("pipeline.stage");
                let _ = view.decode();
            }
        }
    }
}
