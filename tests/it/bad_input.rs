//! Bad input over real sockets: every bad request gets the OTLP status for its problem and a
//! message naming it, and the receiver keeps serving good requests afterwards.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;

use crate::harness::otlp::{self, HttpAnswer, JSON, PROTOBUF};
use crate::harness::{DEADLINE, Pipewarden, eventually};

/// Bytes that are no valid protobuf: field 1, length-delimited, length 5, but 3 bytes follow.
const NOT_PROTOBUF: &[u8] = &[0x0a, 0x05, b'a', b'b', b'c'];

/// Asserts that `message` (lowercased) contains one of `words`.
fn assert_names_problem(message: &str, words: &[&str], context: &str) {
    let lower = message.to_lowercase();
    assert!(
        words.iter().any(|w| lower.contains(w)),
        "{context}: the error message {message:?} names none of {words:?}"
    );
}

fn good_trace_body(seed: u64) -> Vec<u8> {
    otlp::encode(&otlp::trace_request("bad-input", "check", seed, 1, 0, 5, 0))
}

/// Sends one good span over OTLP/HTTP protobuf and checks the full success answer.
async fn assert_good_http_request(pipewarden: &Pipewarden, seed: u64) {
    let answer = otlp::post(
        pipewarden.client(),
        &pipewarden.http_endpoint(),
        "/v1/traces",
        PROTOBUF,
        None,
        good_trace_body(seed),
    )
    .await;
    assert_eq!(
        answer.status,
        200,
        "good request after bad input: {}",
        answer.text()
    );
    assert!(
        answer.content_type.starts_with(PROTOBUF),
        "response content type {:?} does not match the request's",
        answer.content_type
    );
    let response = ExportTraceServiceResponse::decode(answer.body.as_slice())
        .expect("success body is an ExportTraceServiceResponse");
    if let Some(partial) = response.partial_success {
        assert_eq!(partial.rejected_spans, 0, "good span rejected: {partial:?}");
    }
}

/// Sends one good span over OTLP/gRPC.
async fn assert_good_grpc_request(pipewarden: &Pipewarden, seed: u64) {
    let channel = otlp::grpc_channel(&pipewarden.grpc_endpoint()).await;
    let request = otlp::trace_request("bad-input", "check", seed, 1, 0, 5, 0);
    let response = TraceServiceClient::new(channel)
        .export(request)
        .await
        .unwrap_or_else(|status| panic!("good gRPC request after bad input: {status:?}"))
        .into_inner();
    if let Some(partial) = response.partial_success {
        assert_eq!(partial.rejected_spans, 0, "good span rejected: {partial:?}");
    }
}

/// `accepted_total{signal="spans"}` equals the good spans sent: bad requests accept nothing.
async fn assert_accepted_spans(pipewarden: &Pipewarden, want: u64) {
    eventually("accepted spans", DEADLINE, || async {
        let got = pipewarden.accepted("spans").await?;
        if got == want as f64 {
            Ok(())
        } else {
            Err(format!(
                "accepted_total{{signal=\"spans\"}} is {got}, want {want}"
            ))
        }
    })
    .await;
}

fn assert_status(answer: &HttpAnswer, want: u16, context: &str) {
    assert_eq!(
        answer.status,
        want,
        "{context}: body {:?} (content type {:?})",
        answer.text(),
        answer.content_type
    );
}

#[tokio::test]
async fn http_malformed_protobuf_is_400() {
    let pipewarden = Pipewarden::start().await;
    let answer = otlp::post(
        pipewarden.client(),
        &pipewarden.http_endpoint(),
        "/v1/traces",
        PROTOBUF,
        None,
        NOT_PROTOBUF.to_vec(),
    )
    .await;
    assert_status(&answer, 400, "malformed protobuf");
    assert!(
        answer.content_type.starts_with(PROTOBUF),
        "error content type {:?} does not match the request's",
        answer.content_type
    );
    assert_names_problem(
        &answer.message(),
        &["protobuf", "decode", "invalid", "malformed"],
        "malformed protobuf",
    );
    assert_good_http_request(&pipewarden, 1).await;
    assert_accepted_spans(&pipewarden, 1).await;
}

#[tokio::test]
async fn http_truncated_gzip_is_400() {
    let pipewarden = Pipewarden::start().await;
    let compressed = otlp::gzip(&otlp::encode(&otlp::trace_request(
        "bad-input",
        "check",
        2,
        20,
        0,
        5,
        0,
    )));
    let truncated = compressed[..compressed.len() / 2].to_vec();
    let answer = otlp::post(
        pipewarden.client(),
        &pipewarden.http_endpoint(),
        "/v1/traces",
        PROTOBUF,
        Some("gzip"),
        truncated,
    )
    .await;
    assert_status(&answer, 400, "truncated gzip body");
    assert_names_problem(
        &answer.message(),
        &["gzip", "compress", "corrupt", "eof", "truncated", "body"],
        "truncated gzip body",
    );
    assert_good_http_request(&pipewarden, 3).await;
    assert_accepted_spans(&pipewarden, 1).await;
}

#[tokio::test]
async fn http_wrong_content_type_is_415() {
    let pipewarden = Pipewarden::start().await;
    let answer = otlp::post(
        pipewarden.client(),
        &pipewarden.http_endpoint(),
        "/v1/traces",
        "text/plain",
        None,
        good_trace_body(4),
    )
    .await;
    assert_status(&answer, 415, "text/plain body");
    assert_names_problem(
        &answer.message(),
        &["content-type", "content type", "media type", "unsupported"],
        "text/plain body",
    );
    assert_good_http_request(&pipewarden, 5).await;
    assert_accepted_spans(&pipewarden, 1).await;
}

#[tokio::test]
async fn oversize_bodies_are_refused() {
    let pipewarden =
        Pipewarden::start_with_env(&[("PIPEWARDEN_COLLECTOR__OTLP__MAX_BODY_BYTES", "2048")]).await;
    let big = otlp::encode(&otlp::trace_request("bad-input", "check", 6, 1, 0, 5, 8192));
    assert!(big.len() > 8192);
    let problem_words = ["too large", "exceed", "limit", "max_body_bytes", "size"];

    // Plain body over the limit.
    let answer = otlp::post(
        pipewarden.client(),
        &pipewarden.http_endpoint(),
        "/v1/traces",
        PROTOBUF,
        None,
        big.clone(),
    )
    .await;
    assert_status(&answer, 413, "body over max_body_bytes");
    assert_names_problem(
        &answer.message(),
        &problem_words,
        "body over max_body_bytes",
    );
    assert_good_http_request(&pipewarden, 7).await;

    // Small gzip body that inflates over the limit.
    let compressed = otlp::gzip(&big);
    assert!(compressed.len() < 2048, "padding compresses well");
    let answer = otlp::post(
        pipewarden.client(),
        &pipewarden.http_endpoint(),
        "/v1/traces",
        PROTOBUF,
        Some("gzip"),
        compressed,
    )
    .await;
    assert_status(&answer, 413, "gzip body inflating over max_body_bytes");
    assert_names_problem(
        &answer.message(),
        &problem_words,
        "gzip body inflating over the limit",
    );
    assert_good_http_request(&pipewarden, 8).await;

    // gRPC message over the limit.
    let channel = otlp::grpc_channel(&pipewarden.grpc_endpoint()).await;
    let status = otlp::grpc_raw_unary(channel, otlp::GRPC_TRACES, big)
        .await
        .expect_err("gRPC message over max_body_bytes must fail");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_good_grpc_request(&pipewarden, 9).await;

    assert_accepted_spans(&pipewarden, 3).await;
}

#[tokio::test]
async fn http_json_with_wrong_types_is_400() {
    let pipewarden = Pipewarden::start().await;
    let wrong = serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": "not a list"},
            "scopeSpans": [{"spans": [{"name": 42, "startTimeUnixNano": {"x": 1}}]}]
        }]
    });
    let answer = otlp::post(
        pipewarden.client(),
        &pipewarden.http_endpoint(),
        "/v1/traces",
        JSON,
        None,
        wrong.to_string().into_bytes(),
    )
    .await;
    assert_status(&answer, 400, "OTLP/JSON with wrong types");
    assert!(
        answer.content_type.starts_with(JSON),
        "error content type {:?} does not match the request's",
        answer.content_type
    );
    assert_names_problem(
        &answer.message(),
        &["json", "invalid type", "expected", "decode"],
        "OTLP/JSON with wrong types",
    );

    // A good OTLP/JSON request afterwards (ids in hex, times as strings, as the spec says).
    let end = otlp::now_unix_nanos();
    let good = serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "bad-input"}}
            ]},
            "scopeSpans": [{"spans": [{
                "traceId": "5b8efff798038103d269b633813fc60c",
                "spanId": "eee19b7ec3c1b174",
                "name": "json-ok",
                "kind": 1,
                "startTimeUnixNano": (end - 5_000_000).to_string(),
                "endTimeUnixNano": end.to_string(),
                "attributes": [{"key": "pipeline.stage", "value": {"stringValue": "check"}}]
            }]}]
        }]
    });
    let answer = otlp::post(
        pipewarden.client(),
        &pipewarden.http_endpoint(),
        "/v1/traces",
        JSON,
        None,
        good.to_string().into_bytes(),
    )
    .await;
    assert_status(&answer, 200, "good OTLP/JSON after bad JSON");
    assert!(
        answer.content_type.starts_with(JSON),
        "{:?}",
        answer.content_type
    );
    let body: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON success body");
    assert!(body.is_object(), "{body}");
    assert_good_http_request(&pipewarden, 10).await;
    assert_accepted_spans(&pipewarden, 2).await;
}

#[tokio::test]
async fn grpc_garbage_is_invalid_argument() {
    let pipewarden = Pipewarden::start().await;
    for path in [otlp::GRPC_TRACES, otlp::GRPC_METRICS, otlp::GRPC_LOGS] {
        let channel = otlp::grpc_channel(&pipewarden.grpc_endpoint()).await;
        let status = otlp::grpc_raw_unary(channel, path, NOT_PROTOBUF.to_vec())
            .await
            .expect_err("garbage must be refused");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{path}: {status:?}"
        );
        assert_names_problem(
            status.message(),
            &["protobuf", "decode", "invalid", "malformed"],
            path,
        );
    }
    assert_good_grpc_request(&pipewarden, 11).await;
    assert_good_http_request(&pipewarden, 12).await;
    assert_accepted_spans(&pipewarden, 2).await;
}

/// A span with a trace id of the wrong length is rejected alone: 2xx with partial_success.
#[tokio::test]
async fn invalid_trace_id_gives_partial_success() {
    let pipewarden = Pipewarden::start().await;
    let mut request = otlp::trace_request("bad-input", "check", 13, 3, 0, 5, 0);
    request.resource_spans[0].scope_spans[0].spans[1].trace_id = vec![1, 2, 3, 4, 5];
    let answer = otlp::post(
        pipewarden.client(),
        &pipewarden.http_endpoint(),
        "/v1/traces",
        PROTOBUF,
        None,
        otlp::encode(&request),
    )
    .await;
    assert_status(&answer, 200, "request with one bad span");
    let response = ExportTraceServiceResponse::decode(answer.body.as_slice())
        .expect("ExportTraceServiceResponse");
    let partial = response
        .partial_success
        .clone()
        .unwrap_or_else(|| panic!("no partial_success: {response:?}"));
    assert_eq!(partial.rejected_spans, 1, "{partial:?}");
    assert_names_problem(
        &partial.error_message,
        &["trace id", "trace_id", "traceid"],
        "partial_success message",
    );

    let channel = otlp::grpc_channel(&pipewarden.grpc_endpoint()).await;
    let mut request = otlp::trace_request("bad-input", "check", 14, 3, 0, 5, 0);
    request.resource_spans[0].scope_spans[0].spans[2].trace_id = vec![7; 3];
    let response = TraceServiceClient::new(channel)
        .export(request)
        .await
        .expect("gRPC request with one bad span is accepted")
        .into_inner();
    let partial = response
        .partial_success
        .clone()
        .unwrap_or_else(|| panic!("no partial_success over gRPC: {response:?}"));
    assert_eq!(partial.rejected_spans, 1, "{partial:?}");
    assert_accepted_spans(&pipewarden, 4).await;
}
