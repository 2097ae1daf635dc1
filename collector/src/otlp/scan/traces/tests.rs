use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, KeyValueList, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use proptest::prelude::*;
use prost::Message;
use prost::encoding::{encode_key, encode_varint};

use super::*;
use crate::otlp::test_support::*;
use crate::otlp::{Encoding, OtlpRequest, SignalKind, decode_request, screen};

/// One span screening keeps, as prost decodes it: resource index, trace id, span id, name,
/// start, end, status code, attributes.
type Flat = (
    usize,
    Vec<u8>,
    Vec<u8>,
    String,
    u64,
    u64,
    Option<i32>,
    Vec<KeyValue>,
);

fn flatten_decoded(request: &ExportTraceServiceRequest) -> Vec<Flat> {
    let mut out = Vec::new();
    for (r, resource) in request.resource_spans.iter().enumerate() {
        for span in resource.scope_spans.iter().flat_map(|s| &s.spans) {
            if span_rejection(&span.trace_id, &span.span_id).is_some() {
                continue;
            }
            out.push((
                r,
                span.trace_id.clone(),
                span.span_id.clone(),
                span.name.clone(),
                span.start_time_unix_nano,
                span.end_time_unix_nano,
                span.status.as_ref().map(|s| s.code),
                span.attributes.clone(),
            ));
        }
    }
    out
}

fn flatten_scanned(raw: &RawTraces) -> Vec<Flat> {
    raw.spans()
        .map(|view| {
            (
                view.resource,
                view.trace_id.to_vec(),
                view.span_id.to_vec(),
                view.name.to_owned(),
                view.start_time_unix_nano,
                view.end_time_unix_nano,
                view.status_code,
                view.decoded_attributes(),
            )
        })
        .collect()
}

/// The value of the first attribute named `key` of a decoded list, as the deriver finds it.
fn decoded_lookup(attributes: &[KeyValue], key: &str) -> Option<any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .clone()
}

fn owned(value: RawValue<'_>) -> any_value::Value {
    match value {
        RawValue::Str(s) => any_value::Value::StringValue(s.to_owned()),
        RawValue::Decoded(value) => value,
    }
}

const LOOKED_UP: [&str; 6] = [
    "pipeline.stage",
    "messaging.destination.name",
    "job.name",
    "k",
    "map",
    "absent",
];

/// Asserts that the scan saw what prost decoded, and that its attribute lookups find what a
/// search of the decoded attributes finds.
fn assert_agrees(raw: &RawTraces, decoded: &ExportTraceServiceRequest) {
    let flat = flatten_decoded(decoded);
    assert_eq!(flatten_scanned(raw), flat);
    for (view, span) in raw.spans().zip(&flat) {
        for key in LOOKED_UP {
            assert_eq!(
                view.attribute(key).map(owned),
                decoded_lookup(&span.7, key),
                "{key}"
            );
        }
    }
    assert_eq!(raw.resource_count(), decoded.resource_spans.len());
    for (i, resource) in decoded.resource_spans.iter().enumerate() {
        assert_eq!(raw.resource(i), resource.resource);
    }
}

/// Encodes field `tag` holding `bytes` (length-delimited).
fn field(tag: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(tag, WireType::LengthDelimited, &mut out);
    encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// A request of one resource (`resource`, encoded fields) with one scope holding `span` (encoded).
fn request_of(resource: &[u8], span: &[u8]) -> Vec<u8> {
    let scope = field(2, span);
    let mut resource_spans = resource.to_vec();
    resource_spans.extend(field(2, &scope));
    field(1, &resource_spans)
}

#[test]
fn scan_finds_the_spans_prost_decodes() {
    let request = mixed_traces();
    let body = Bytes::from(request.encode_to_vec());
    let raw = scan_traces(body).unwrap().unwrap();
    assert_agrees(&raw, &request);
    assert_eq!(raw.span_count(), 16);
    assert_eq!(raw.invalid_trace_ids(), 1);
    assert_eq!(raw.invalid_span_ids(), 1);
    assert_eq!(raw.spans().count(), 14);
    // The lookups the deriver relies on, spelled out.
    let spans: Vec<SpanView<'_>> = raw.spans().collect();
    assert_eq!(
        spans[0].attribute("pipeline.stage"),
        Some(RawValue::Str("enrich"))
    );
    assert_eq!(
        spans[1].attribute("pipeline.stage"),
        Some(RawValue::Decoded(any_value::Value::IntValue(7)))
    );
    let rich = spans.iter().find(|s| s.name == "déjà vu").unwrap();
    assert_eq!(rich.attribute("k"), Some(RawValue::Str("first")));
    assert_eq!(rich.attribute("pipeline.stage"), Some(RawValue::Str("")));
    assert_eq!(rich.status_code, None);
    // A valueless first attribute hides a later one of the same name.
    let valueless = spans.iter().find(|s| s.name == "span-12").unwrap();
    assert_eq!(valueless.attribute("pipeline.stage"), None);
}

#[test]
fn screening_a_scanned_request_counts_like_a_decoded_one() {
    let request = mixed_traces();
    let body = Bytes::from(request.encode_to_vec());
    let mut scanned = decode_request(SignalKind::Traces, Encoding::Protobuf, body).unwrap();
    assert!(matches!(scanned, OtlpRequest::TracesRaw(_)));
    let mut decoded = OtlpRequest::Traces(request);
    assert_eq!(screen(&mut scanned), screen(&mut decoded));
    assert_eq!(scanned.item_count(), decoded.item_count());
    assert_eq!(scanned.item_count(), 14);
    assert_eq!(scanned.kind(), SignalKind::Traces);
}

#[test]
fn merged_values_and_keys_are_read_as_prost_reads_them() {
    // KeyValue { key: "x", key: "pipeline.stage", value: {string "a"}, value: {int 3} }: prost
    // keeps the last key and merges the values (the int replaces the string).
    let string_value = field(1, b"a");
    let mut int_value = Vec::new();
    encode_key(3, WireType::Varint, &mut int_value);
    encode_varint(3, &mut int_value);
    let mut key_value = field(1, b"x");
    key_value.extend(field(1, b"pipeline.stage"));
    key_value.extend(field(2, &string_value));
    key_value.extend(field(2, &int_value));
    // AnyValue { string "s", int 4 }: the int wins.
    let mut any = field(1, b"s");
    encode_key(3, WireType::Varint, &mut any);
    encode_varint(4, &mut any);
    let mut second = field(1, b"k");
    second.extend(field(2, &any));
    let mut span = Span {
        trace_id: vec![1; 16],
        span_id: vec![1; 8],
        name: "first".to_owned(),
        ..Default::default()
    }
    .encode_to_vec();
    span.extend(field(9, &key_value));
    span.extend(field(9, &second));
    // A second name replaces the first.
    span.extend(field(5, b"second"));
    let body = request_of(&[], &span);
    let raw = scan_traces(Bytes::from(body.clone())).unwrap().unwrap();
    let decoded = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
    assert_agrees(&raw, &decoded);
    let view = raw.spans().next().unwrap();
    assert_eq!(view.name, "second");
    assert_eq!(
        view.attribute("pipeline.stage"),
        Some(RawValue::Decoded(any_value::Value::IntValue(3)))
    );
    assert_eq!(
        view.attribute("k"),
        Some(RawValue::Decoded(any_value::Value::IntValue(4)))
    );
    assert_eq!(view.attribute("x"), None);
}

#[test]
fn repeated_singular_messages_are_left_to_prost() {
    let failed = Status {
        code: 2,
        ..Default::default()
    };
    let described = Status {
        message: "later".to_owned(),
        ..Default::default()
    };
    let mut span = span(0, 1_000, 5, false);
    span.status = Some(failed);
    let mut span = span.encode_to_vec();
    span.extend(field(15, &described.encode_to_vec()));
    let body = request_of(&field(1, &resource("svc").unwrap().encode_to_vec()), &span);
    assert_eq!(scan_traces(Bytes::from(body.clone())), Ok(None));
    let decoded = decode_request(SignalKind::Traces, Encoding::Protobuf, Bytes::from(body));
    let Ok(OtlpRequest::Traces(decoded)) = decoded else {
        panic!("prost decodes it: {decoded:?}")
    };
    // prost merged the statuses: the code of the first, the message of the second.
    let status = decoded.resource_spans[0].scope_spans[0].spans[0]
        .status
        .clone();
    assert_eq!(
        status.map(|s| (s.code, s.message)),
        Some((2, "later".to_owned()))
    );

    let stage = Resource {
        attributes: vec![kv("pipeline.stage", "merged")],
        ..Default::default()
    };
    let mut resource = field(1, &resource("svc").unwrap().encode_to_vec());
    resource.extend(field(1, &stage.encode_to_vec()));
    let body = request_of(
        &resource,
        &crate::otlp::test_support::span(0, 1_000, 5, false).encode_to_vec(),
    );
    assert_eq!(scan_traces(Bytes::from(body.clone())), Ok(None));
    let decoded = decode_request(SignalKind::Traces, Encoding::Protobuf, Bytes::from(body));
    let Ok(OtlpRequest::Traces(decoded)) = decoded else {
        panic!("prost decodes it: {decoded:?}")
    };
    let attributes = decoded.resource_spans[0]
        .resource
        .clone()
        .unwrap()
        .attributes;
    assert_eq!(attributes.len(), 2, "prost merged the resources");
}

/// Bodies prost refuses, each with a fragment of prost's error.
fn malformed_bodies() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut cases = Vec::new();
    // Invalid UTF-8 where a string is: `\u{7f}` marks the byte turned into 0xff.
    let marked = |mutate: &dyn Fn(&mut Span)| {
        let mut span = span(0, 1_000, 5, false);
        mutate(&mut span);
        let mut body = traces("svc", vec![span]).encode_to_vec();
        let at = body.iter().position(|b| *b == 0x7f).unwrap();
        body[at] = 0xff;
        body
    };
    cases.push((
        "name",
        marked(&|s| s.name = "\u{7f}".to_owned()),
        "Span.name",
    ));
    cases.push((
        "trace_state",
        marked(&|s| s.trace_state = "\u{7f}".to_owned()),
        "Span.trace_state",
    ));
    cases.push((
        "attribute key",
        marked(&|s| s.attributes = vec![kv("\u{7f}", "v")]),
        "KeyValue.key",
    ));
    cases.push((
        "attribute value",
        marked(&|s| s.attributes = vec![kv("k", "\u{7f}")]),
        "AnyValue.value",
    ));
    cases.push((
        "nested attribute value",
        marked(&|s| {
            let mut map = kv("map", "");
            map.value = Some(AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![kv("inner", "\u{7f}")],
                })),
            });
            s.attributes = vec![map];
        }),
        "KeyValueList.values",
    ));
    cases.push((
        "status message",
        marked(&|s| {
            if let Some(status) = s.status.as_mut() {
                status.message = "\u{7f}".to_owned();
            }
        }),
        "Status.message",
    ));
    cases.push((
        "event name",
        marked(&|s| {
            s.events = vec![opentelemetry_proto::tonic::trace::v1::span::Event {
                name: "\u{7f}".to_owned(),
                ..Default::default()
            }]
        }),
        "Event.name",
    ));
    cases.push((
        "link attribute",
        marked(&|s| {
            s.links = vec![opentelemetry_proto::tonic::trace::v1::span::Link {
                attributes: vec![kv("\u{7f}", "v")],
                ..Default::default()
            }]
        }),
        "Link.attributes",
    ));
    // Wrong wire types: each known field of a span with a wire type prost refuses.
    let base = span(0, 1_000, 5, false).encode_to_vec();
    for (tag, wire_type, name) in [
        (1, WireType::Varint, "Span.trace_id"),
        (5, WireType::SixtyFourBit, "Span.name"),
        (6, WireType::LengthDelimited, "Span.kind"),
        (7, WireType::Varint, "Span.start_time_unix_nano"),
        (8, WireType::ThirtyTwoBit, "Span.end_time_unix_nano"),
        (9, WireType::Varint, "Span.attributes"),
        (10, WireType::SixtyFourBit, "Span.dropped_attributes_count"),
        (11, WireType::Varint, "Span.events"),
        (13, WireType::Varint, "Span.links"),
        (15, WireType::Varint, "Span.status"),
        (16, WireType::SixtyFourBit, "Span.flags"),
    ] {
        let mut span = base.clone();
        encode_key(tag, wire_type, &mut span);
        span.extend([0; 8]);
        cases.push((name, request_of(&[], &span), name));
    }
    // A status code as a fixed64, and a scope name as a varint.
    let mut status = Vec::new();
    encode_key(3, WireType::SixtyFourBit, &mut status);
    status.extend([0; 8]);
    let mut span = base.clone();
    span.extend(field(15, &status));
    cases.push(("status code", request_of(&[], &span), "Status.code"));
    let mut scope = Vec::new();
    encode_key(1, WireType::Varint, &mut scope);
    scope.push(1);
    let mut scope_spans = field(1, &scope);
    scope_spans.extend(field(2, &base));
    cases.push((
        "scope name",
        field(1, &field(2, &scope_spans)),
        "InstrumentationScope.name",
    ));
    // Truncated.
    let mut body = mixed_traces().encode_to_vec();
    body.truncate(body.len() - 3);
    cases.push((
        "truncated",
        body,
        "ExportTraceServiceRequest.resource_spans",
    ));
    cases
}

#[test]
fn malformed_bodies_are_refused_like_prost_refuses_them() {
    for (case, body, field) in malformed_bodies() {
        assert_eq!(
            scan_traces(Bytes::from(body.clone())),
            Err(Malformed),
            "{case}"
        );
        let err = decode_request(SignalKind::Traces, Encoding::Protobuf, Bytes::from(body))
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{case}: {err}");
    }
}

#[test]
fn deeply_nested_values_do_not_overflow() {
    let mut value = AnyValue {
        value: Some(any_value::Value::StringValue("leaf".to_owned())),
    };
    for _ in 0..200 {
        value = AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "k".to_owned(),
                    value: Some(value),
                    ..Default::default()
                }],
            })),
        };
    }
    let deep = KeyValue {
        key: "deep".to_owned(),
        value: Some(value),
        ..Default::default()
    };
    let mut in_span = span(0, 1_000, 5, false);
    in_span.attributes = vec![deep.clone()];
    let mut in_event = span(0, 1_000, 5, false);
    in_event.events = vec![opentelemetry_proto::tonic::trace::v1::span::Event {
        attributes: vec![deep],
        ..Default::default()
    }];
    for span in [in_span, in_event] {
        let body = Bytes::from(traces("svc", vec![span]).encode_to_vec());
        assert_eq!(scan_traces(body.clone()), Err(Malformed));
        // prost refuses it too (its recursion limit), so the request is a bad request.
        assert!(decode_request(SignalKind::Traces, Encoding::Protobuf, body).is_err());
    }
}

proptest! {
    #[test]
    fn scan_agrees_with_prost_on_mutated_bodies(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        truncate in any::<bool>(),
    ) {
        let body = super::super::tests::mutated(mixed_traces().encode_to_vec(), &flips, cut, truncate);
        let scanned = scan_traces(Bytes::from(body.clone()));
        let decoded = ExportTraceServiceRequest::decode(body.as_slice());
        if let Ok(Some(raw)) = &scanned {
            // Whatever the scan takes, prost takes, with the same spans and lookups.
            let decoded = decoded.expect("prost decodes what the scan accepts");
            assert_agrees(raw, &decoded);
        }
    }

    /// Spans with extra fields appended, known ones repeated (prost keeps the last, merges the
    /// messages) and unknown ones: the scan reads them as prost does, or leaves them to it.
    #[test]
    fn scan_agrees_with_prost_on_repeated_fields(
        extra in proptest::collection::vec((0u32..20, 0usize..4, any::<u8>()), 0..8),
    ) {
        let mut span = span(0, 1_000, 5, false);
        span.attributes = vec![kv("pipeline.stage", "a"), kv("k", "v")];
        let mut bytes = span.encode_to_vec();
        for (tag, shape, byte) in extra {
            let tag = tag + 1;
            match shape {
                0 => {
                    encode_key(tag, WireType::Varint, &mut bytes);
                    encode_varint(u64::from(byte), &mut bytes);
                }
                1 => {
                    encode_key(tag, WireType::SixtyFourBit, &mut bytes);
                    bytes.extend([byte; 8]);
                }
                2 => {
                    encode_key(tag, WireType::ThirtyTwoBit, &mut bytes);
                    bytes.extend([byte; 4]);
                }
                _ => {
                    // A string, a stage attribute or a status, as the tag's type fits.
                    let content = match tag {
                        9 => kv("pipeline.stage", &byte.to_string()).encode_to_vec(),
                        15 => Status { code: i32::from(byte % 3), ..Default::default() }
                            .encode_to_vec(),
                        1 | 2 => vec![byte; 16 - usize::from(byte % 2) * 8],
                        _ => vec![b'a' + byte % 26],
                    };
                    bytes.extend(field(tag, &content));
                }
            }
        }
        let body = request_of(&[], &bytes);
        let scanned = scan_traces(Bytes::from(body.clone()));
        let decoded = ExportTraceServiceRequest::decode(body.as_slice());
        match (&scanned, &decoded) {
            (Ok(Some(raw)), Ok(decoded)) => assert_agrees(raw, decoded),
            (Ok(Some(_)), Err(err)) => prop_assert!(false, "scan took what prost refused: {err}"),
            (Err(_), Ok(_)) => prop_assert!(false, "scan refused what prost took"),
            _ => {}
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_scan(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(Some(raw)) = scan_traces(Bytes::from(body)) {
            for view in raw.spans() {
                let _ = view.decoded_attributes();
                let _ = view.attribute("pipeline.stage");
            }
        }
    }
}
