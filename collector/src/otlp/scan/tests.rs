use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValueList, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Histogram, HistogramDataPoint, Metric, Sum, metric, number_data_point,
};
use proptest::prelude::*;

use super::*;
use crate::otlp::test_support::*;
use crate::otlp::{Encoding, OtlpRequest, SignalKind, decode_request};

/// One data point as prost decodes it: resource index, metric name, attributes, time, value.
type Flat = (usize, String, Vec<KeyValue>, u64, Option<f64>);

fn flatten_decoded(request: &ExportMetricsServiceRequest) -> Vec<Flat> {
    let mut out = Vec::new();
    for (r, resource) in request.resource_metrics.iter().enumerate() {
        for scope in &resource.scope_metrics {
            for metric in &scope.metrics {
                let points = match &metric.data {
                    Some(metric::Data::Gauge(g)) => &g.data_points,
                    Some(metric::Data::Sum(s)) => &s.data_points,
                    _ => continue,
                };
                for p in points {
                    let value = p.value.map(|v| match v {
                        number_data_point::Value::AsDouble(d) => d,
                        number_data_point::Value::AsInt(i) => i as f64,
                    });
                    out.push((
                        r,
                        metric.name.clone(),
                        p.attributes.clone(),
                        p.time_unix_nano,
                        value,
                    ));
                }
            }
        }
    }
    out
}

fn flatten_scanned(raw: &RawMetrics) -> Vec<Flat> {
    raw.points()
        .map(|view| {
            (
                view.resource,
                view.name.to_owned(),
                RawMetrics::attributes(view.attributes),
                view.point.time_unix_nano,
                view.point.value,
            )
        })
        .collect()
}

/// NaN-aware comparison of the flattened points.
fn same(a: &[Flat], b: &[Flat]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.0 == y.0
                && x.1 == y.1
                && x.2 == y.2
                && x.3 == y.3
                && x.4.map(f64::to_bits) == y.4.map(f64::to_bits)
        })
}

fn sample() -> ExportMetricsServiceRequest {
    let mut nested = kv("map", "");
    nested.value = Some(AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: vec![kv("inner", "v"), kv("pipeline.stage", "deep")],
        })),
    });
    let mut int_point = gauge_point(vec![kv("b", "2"), kv("a", "1")], 0.0);
    int_point.value = Some(number_data_point::Value::AsInt(-5));
    int_point.time_unix_nano = 7;
    let mut no_value = gauge_point(vec![], 0.0);
    no_value.value = None;
    let mut request = metrics(
        "svc",
        vec![
            gauge(
                "g",
                vec![
                    gauge_point(vec![kv("pipeline.stage", "s"), nested], 1.5),
                    int_point,
                    no_value,
                ],
            ),
            Metric {
                name: "s".to_owned(),
                description: "déjà".to_owned(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: vec![gauge_point(vec![kv("k", "v")], f64::NAN)],
                    aggregation_temporality: 1,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            gauge("", vec![gauge_point(vec![], 1.0), gauge_point(vec![], 2.0)]),
        ],
    );
    request.resource_metrics.extend(
        metrics("other", vec![gauge("h", vec![gauge_point(vec![], 3.0)])]).resource_metrics,
    );
    request
}

#[test]
fn scan_finds_the_points_prost_decodes() {
    let request = sample();
    let body = Bytes::from(request.encode_to_vec());
    let raw = scan_metrics(body).unwrap().unwrap();
    assert!(same(&flatten_scanned(&raw), &flatten_decoded(&request)));
    assert_eq!(raw.point_count(), 7);
    assert_eq!(raw.empty_name_points(), 2);
    assert_eq!(raw.missing_value_points(), 1);
    assert_eq!(raw.resource_count(), 2);
    assert_eq!(raw.resource(1), request.resource_metrics[1].resource);
}

#[test]
fn screening_a_scanned_request_counts_like_a_decoded_one() {
    let request = sample();
    let body = Bytes::from(request.encode_to_vec());
    let mut scanned = decode_request(SignalKind::Metrics, Encoding::Protobuf, body).unwrap();
    assert!(matches!(scanned, OtlpRequest::MetricsRaw(_)));
    let mut decoded = OtlpRequest::Metrics(request);
    assert_eq!(
        crate::otlp::screen(&mut scanned),
        crate::otlp::screen(&mut decoded)
    );
    assert_eq!(scanned.item_count(), decoded.item_count());
    assert_eq!(scanned.item_count(), 4);
}

#[test]
fn histograms_and_merged_fields_are_left_to_prost() {
    let histogram = Metric {
        name: "latency".to_owned(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                count: 3,
                sum: Some(1.0),
                ..Default::default()
            }],
            aggregation_temporality: 1,
        })),
        ..Default::default()
    };
    let body = metrics("svc", vec![histogram]).encode_to_vec();
    assert_eq!(scan_metrics(Bytes::from(body.clone())), Ok(None));
    let decoded = decode_request(SignalKind::Metrics, Encoding::Protobuf, Bytes::from(body));
    assert!(matches!(decoded, Ok(OtlpRequest::Metrics(_))));

    // Two gauge fields on one metric (name, gauge, gauge): prost merges their points.
    let point = gauge_point(vec![], 2.0).encode_to_vec();
    let mut gauge_field = vec![0x0a, point.len() as u8];
    gauge_field.extend(&point);
    let mut metric = vec![0x0a, 1, b'g'];
    for _ in 0..2 {
        metric.push(0x2a);
        metric.push(gauge_field.len() as u8);
        metric.extend(&gauge_field);
    }
    let mut scope = vec![0x12, metric.len() as u8];
    scope.extend(&metric);
    let mut resource_metrics = vec![0x12, scope.len() as u8];
    resource_metrics.extend(&scope);
    let mut body = vec![0x0a, resource_metrics.len() as u8];
    body.extend(&resource_metrics);
    assert_eq!(scan_metrics(Bytes::from(body.clone())), Ok(None));
    let decoded = ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
    assert_eq!(flatten_decoded(&decoded).len(), 2);
}

#[test]
fn malformed_attributes_are_refused_naming_the_field() {
    let mut point = gauge_point(vec![kv("ok", "v")], 1.0);
    point.attributes[0].key = "\u{7f}".to_owned();
    let mut body = metrics("svc", vec![gauge("g", vec![point])]).encode_to_vec();
    // Turn the 1-byte key into invalid UTF-8.
    let at = body.iter().position(|b| *b == 0x7f).unwrap();
    body[at] = 0xff;
    assert_eq!(scan_metrics(Bytes::from(body.clone())), Err(Malformed));
    let err = decode_request(SignalKind::Metrics, Encoding::Protobuf, Bytes::from(body))
        .unwrap_err()
        .to_string();
    assert!(err.contains("KeyValue.key"), "{err}");
    assert!(err.contains("NumberDataPoint.attributes"), "{err}");

    let mut body = metrics("svc", vec![gauge("g", vec![gauge_point(vec![], 1.0)])]).encode_to_vec();
    body.truncate(body.len() - 3);
    assert_eq!(scan_metrics(Bytes::from(body.clone())), Err(Malformed));
    let err = decode_request(SignalKind::Metrics, Encoding::Protobuf, Bytes::from(body))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ExportMetricsServiceRequest.resource_metrics"),
        "{err}"
    );
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
    let mut point = gauge_point(vec![], 1.0);
    point.attributes = vec![KeyValue {
        key: "deep".to_owned(),
        value: Some(value),
        ..Default::default()
    }];
    let body = Bytes::from(metrics("svc", vec![gauge("g", vec![point])]).encode_to_vec());
    assert_eq!(scan_metrics(body.clone()), Err(Malformed));
    // prost refuses it too (its recursion limit), so the request is a bad request.
    assert!(decode_request(SignalKind::Metrics, Encoding::Protobuf, body).is_err());
}

/// `body` with bytes overwritten (`flips`: position modulo the length, new byte) and, when
/// `truncate`, cut at `cut` modulo its length plus one: what the scans' proptests feed them.
pub(super) fn mutated(
    mut body: Vec<u8>,
    flips: &[(usize, u8)],
    cut: usize,
    truncate: bool,
) -> Vec<u8> {
    for &(at, value) in flips {
        let len = body.len();
        body[at % len] = value;
    }
    if truncate {
        body.truncate(cut % (body.len() + 1));
    }
    body
}

proptest! {
    #[test]
    fn scan_agrees_with_prost_on_mutated_bodies(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        truncate in any::<bool>(),
    ) {
        let body = mutated(sample().encode_to_vec(), &flips, cut, truncate);
        let scanned = scan_metrics(Bytes::from(body.clone()));
        let decoded = ExportMetricsServiceRequest::decode(body.as_slice());
        if let Ok(Some(raw)) = &scanned {
            // Whatever the scan takes, prost takes, with the same points.
            let decoded = decoded.expect("prost decodes what the scan accepts");
            prop_assert!(same(&flatten_scanned(raw), &flatten_decoded(&decoded)));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_scan(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(Some(raw)) = scan_metrics(Bytes::from(body)) {
            for view in raw.points() {
                let _ = RawMetrics::attributes(view.attributes);
            }
        }
    }
}

#[test]
fn short_strings_are_ascii_exactly_when_std_says_so() {
    for len in 0..40 {
        let ascii = vec![b'a'; len];
        assert!(is_ascii(&ascii));
        for at in 0..len {
            let mut bytes = ascii.clone();
            bytes[at] = 0x80 | (at as u8);
            assert_eq!(is_ascii(&bytes), bytes.is_ascii(), "{bytes:?}");
        }
    }
}

/// Encoded attributes of the usual shapes (the fast path's) and near them, and every one-byte
/// change and every cut of them: checked in one pass or by the general walk, they are taken or
/// refused alike, and prost takes every one taken.
#[test]
fn plain_attributes_are_checked_like_any_other() {
    let long = "k".repeat(130);
    let mut values = vec![
        None,
        Some(any_value::Value::BoolValue(true)),
        Some(any_value::Value::BytesValue(vec![0xff, 0])),
        Some(any_value::Value::DoubleValue(-0.5)),
    ];
    for int in [0, 1, 127, 128, 300, 16_383, 16_384, -1, i64::MAX] {
        values.push(Some(any_value::Value::IntValue(int)));
    }
    for string in ["", "x", "enrich", "déjà", "pipeline.stage", long.as_str()] {
        values.push(Some(any_value::Value::StringValue(string.to_owned())));
    }
    let mut bodies = Vec::new();
    for key in ["", "partition", "pipeline.stage", "ключ", long.as_str()] {
        for value in &values {
            let mut kv = kv(key, "");
            kv.value = Some(AnyValue {
                value: value.clone(),
            });
            bodies.push(kv.encode_to_vec());
        }
    }
    let mut cases = Vec::new();
    for body in &bodies {
        cases.push(body.clone());
        for cut in 0..body.len() {
            cases.push(body[..cut].to_vec());
        }
        for at in 0..body.len() {
            for byte in [
                0x00, 0x01, 0x08, 0x0a, 0x10, 0x12, 0x18, 0x21, 0x7f, 0x80, 0xc3, 0xff,
            ] {
                let mut changed = body.clone();
                changed[at] = byte;
                cases.push(changed);
            }
        }
    }
    for case in &cases {
        let fast = check_attribute(case, 0..case.len());
        assert_eq!(fast, check_key_value(case, 0..case.len(), 0), "{case:?}");
        if fast.is_ok() {
            assert!(KeyValue::decode(case.as_slice()).is_ok(), "{case:?}");
        }
        if is_plain_attribute(case) {
            assert!(KeyValue::decode(case.as_slice()).is_ok(), "{case:?}");
        }
    }
    // The usual shapes do take the fast path.
    assert!(is_plain_attribute(
        &kv("pipeline.stage", "enrich").encode_to_vec()
    ));
}

/// Long requests (two-byte lengths and varints) and a vector reserved from the first point.
#[test]
fn large_requests_are_scanned_like_prost_decodes_them() {
    let points = (0..300)
        .map(|i| {
            let mut point = gauge_point(vec![kv("pipeline.stage", &"s".repeat(i % 200))], 0.5);
            if i % 3 == 0 {
                point.value = Some(number_data_point::Value::AsInt(i as i64));
            }
            point
        })
        .collect();
    let request = metrics("svc", vec![gauge("g", points), gauge("h", vec![])]);
    let raw = scan_metrics(Bytes::from(request.encode_to_vec()))
        .unwrap()
        .unwrap();
    assert!(same(&flatten_scanned(&raw), &flatten_decoded(&request)));
    assert_eq!(raw.point_count(), 300);
}

#[test]
fn a_resource_checked_before_is_taken_again_and_a_changed_one_is_checked_anew() {
    let request = metrics("shop", vec![gauge("g", vec![gauge_point(vec![], 1.0)])]);
    let body = request.encode_to_vec();
    // The service name's bytes, made invalid UTF-8.
    let at = body
        .windows(4)
        .position(|w| w == b"shop")
        .expect("the resource holds the service name");
    let mut broken = body.clone();
    broken[at] = 0xff;
    for _ in 0..2 {
        let raw = scan_metrics(Bytes::from(body.clone())).unwrap().unwrap();
        assert_eq!(raw.resource(0), request.resource_metrics[0].resource);
        assert_eq!(scan_metrics(Bytes::from(broken.clone())), Err(Malformed));
    }
    // Prost refuses the broken one too, naming the field.
    let err = decode_request(SignalKind::Metrics, Encoding::Protobuf, Bytes::from(broken))
        .unwrap_err()
        .to_string();
    assert!(err.contains("Resource.attributes"), "{err}");
}

#[test]
fn the_usual_point_shape_is_read_as_the_field_loop_reads_it() {
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    use opentelemetry_proto::tonic::metrics::v1::{Exemplar, NumberDataPoint};
    let partition = KeyValue {
        key: "partition".to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(3)),
        }),
        ..Default::default()
    };
    let plain = vec![kv("pipeline.stage", "load"), partition];
    let nested = KeyValue {
        key: "tags".to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue::default())),
        }),
        ..Default::default()
    };
    let point = |attributes: Vec<KeyValue>, value, start, time, flags, exemplars| NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: time,
        value,
        flags,
        exemplars,
    };
    let double = Some(number_data_point::Value::AsDouble(2.5));
    let int = Some(number_data_point::Value::AsInt(-7));
    let mut encodings: Vec<(Vec<u8>, bool)> = [
        (point(plain.clone(), double, 1, 2, 0, vec![]), true),
        (point(plain.clone(), int, 0, 2, 1, vec![]), true),
        (point(vec![], None, 0, 0, 0, vec![]), true),
        (point(plain.clone(), None, 5, 0, 0, vec![]), true),
        // Not the usual shape: the field loop reads them.
        (point(vec![nested], double, 1, 2, 0, vec![]), false),
        (
            point(plain.clone(), double, 1, 2, 0, vec![Exemplar::default()]),
            false,
        ),
        (point(plain.clone(), double, 1, 2, 300, vec![]), false),
    ]
    .into_iter()
    .map(|(point, usual)| (point.encode_to_vec(), usual))
    .collect();
    // Fields out of number order, and a time sent twice (the last one counts).
    let mut reordered = point(vec![], double, 0, 9, 0, vec![]).encode_to_vec();
    reordered.extend(point(plain.clone(), None, 0, 0, 0, vec![]).encode_to_vec());
    reordered.extend(point(vec![], None, 0, 4, 0, vec![]).encode_to_vec());
    encodings.push((reordered, false));
    for (i, (bytes, usual)) in encodings.iter().enumerate() {
        let range = 0..bytes.len();
        let read = any_number_point(bytes, 0, range.clone()).expect("a valid point");
        let fast = plain_number_point(bytes, 0, range.clone());
        assert_eq!(fast.is_some(), *usual, "encoding {i}");
        if let Some(fast) = fast {
            assert_eq!(fast, read, "encoding {i}");
        }
        assert_eq!(
            number_data_point(bytes, 0, range).unwrap(),
            read,
            "encoding {i}"
        );
    }
}
