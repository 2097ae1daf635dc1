//! OTLP/HTTP receiver: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` (axum).
//!
//! Accepts `application/x-protobuf` and `application/json` bodies, plain or with
//! `Content-Encoding: gzip`. The body limit (`otlp.max_body_bytes`) applies twice: to the bytes
//! as sent and to the bytes after decompression. Answers per the OTLP/HTTP spec, in the
//! request's encoding:
//!
//! | case | status | body |
//! | --- | --- | --- |
//! | accepted | 200 | `Export*ServiceResponse`, with `partial_success` when items were rejected |
//! | malformed body or gzip | 400 | `google.rpc.Status` naming the problem |
//! | body over the limit | 413 | `google.rpc.Status` |
//! | other content type | 415 | `google.rpc.Status` as JSON |
//! | no budget or queue space | 503 + `Retry-After` | `google.rpc.Status` |

use std::error::Error as StdError;
use std::future::Future;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prost::Message;
use tokio::net::TcpListener;
use tower::util::MapRequestLayer;
use tower_http::decompression::RequestDecompressionLayer;

use super::{Accepted, Encoding, Intake, SignalKind, decode_request};
use crate::telemetry::{Outcome, Transport};

/// Builds the OTLP/HTTP router over `intake`.
pub(crate) fn router(intake: Intake) -> Router {
    let max_body_bytes = intake.max_body_bytes();
    Router::new()
        .route("/v1/traces", post(export_traces))
        .route("/v1/metrics", post(export_metrics))
        .route("/v1/logs", post(export_logs))
        .with_state(intake)
        // Inner layer: gunzips the body; the handler limits the decompressed size.
        .layer(RequestDecompressionLayer::new())
        // Outer layer: limits the body as sent, before decompression.
        .layer(MapRequestLayer::new(move |request: Request| {
            request.map(|body| Body::new(Limited::new(body, max_body_bytes)))
        }))
}

/// Serves the OTLP/HTTP receiver on `listener` until `shutdown` completes, then finishes the
/// requests in progress.
pub(crate) async fn serve(
    listener: TcpListener,
    intake: Intake,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|stream| {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "failed to set TCP_NODELAY on an OTLP/HTTP connection");
        }
    });
    axum::serve(listener, router(intake))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn export_traces(State(intake): State<Intake>, request: Request) -> Response {
    export(&intake, SignalKind::Traces, request).await
}

async fn export_metrics(State(intake): State<Intake>, request: Request) -> Response {
    export(&intake, SignalKind::Metrics, request).await
}

async fn export_logs(State(intake): State<Intake>, request: Request) -> Response {
    export(&intake, SignalKind::Logs, request).await
}

async fn export(intake: &Intake, kind: SignalKind, request: Request) -> Response {
    let signal = kind.signal();
    let telemetry = intake.telemetry();
    let Some(encoding) = request_encoding(request.headers()) else {
        telemetry.request(Transport::Http, signal, Outcome::UnsupportedMediaType);
        let message = format!(
            "unsupported content type {:?}: use application/x-protobuf or application/json",
            request
                .headers()
                .get(CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default()
        );
        return status_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Encoding::Json,
            tonic::Code::InvalidArgument,
            message,
        );
    };
    let body = match read_body(request.into_body(), intake.max_body_bytes()).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            telemetry.request(Transport::Http, signal, Outcome::TooLarge);
            let message = format!(
                "request body exceeds the limit of {} bytes (compressed or decompressed)",
                intake.max_body_bytes()
            );
            return status_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                encoding,
                tonic::Code::ResourceExhausted,
                message,
            );
        }
        Err(BodyError::Unreadable(message)) => {
            telemetry.request(Transport::Http, signal, Outcome::Invalid);
            return status_response(
                StatusCode::BAD_REQUEST,
                encoding,
                tonic::Code::InvalidArgument,
                message,
            );
        }
    };
    let size = body.len();
    let request = match decode_request(kind, encoding, body) {
        Ok(request) => request,
        Err(err) => {
            telemetry.request(Transport::Http, signal, Outcome::Invalid);
            return status_response(
                StatusCode::BAD_REQUEST,
                encoding,
                tonic::Code::InvalidArgument,
                err.to_string(),
            );
        }
    };
    match intake.admit(request, size).await {
        Ok(accepted) => {
            let outcome = if accepted.rejected > 0 {
                Outcome::Partial
            } else {
                Outcome::Success
            };
            telemetry.request(Transport::Http, signal, outcome);
            export_response(kind, encoding, &accepted)
        }
        Err(refusal) => {
            telemetry.request(Transport::Http, signal, Outcome::Unavailable);
            let mut response = status_response(
                StatusCode::SERVICE_UNAVAILABLE,
                encoding,
                tonic::Code::Unavailable,
                refusal.message().to_owned(),
            );
            let seconds = intake.retry_after().as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
    }
}

/// Returns the encoding named by the `Content-Type` header, ignoring parameters.
fn request_encoding(headers: &HeaderMap) -> Option<Encoding> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/x-protobuf") {
        Some(Encoding::Protobuf)
    } else if essence.eq_ignore_ascii_case("application/json") {
        Some(Encoding::Json)
    } else {
        None
    }
}

enum BodyError {
    TooLarge,
    Unreadable(String),
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if is_length_limit(err.as_ref()) => Err(BodyError::TooLarge),
        Err(err) => Err(BodyError::Unreadable(format!(
            "failed to read the request body: {}",
            error_chain(err.as_ref())
        ))),
    }
}

/// Returns true when a body error comes, at any depth, from a size limit.
///
/// `io::Error::source` skips the error it wraps, so wrapped I/O errors are opened explicitly.
fn is_length_limit(err: &(dyn StdError + 'static)) -> bool {
    if err.is::<LengthLimitError>() {
        return true;
    }
    if let Some(inner) = err
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        return is_length_limit(inner);
    }
    err.source().is_some_and(is_length_limit)
}

/// Renders an error and its distinct causes as `outer: inner: ...`.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut current = err;
    loop {
        let next = current.source().or_else(|| {
            current
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|inner| inner as &(dyn StdError + 'static))
        });
        let Some(next) = next else { break };
        let next_text = next.to_string();
        if !text.ends_with(&next_text) {
            text.push_str(": ");
            text.push_str(&next_text);
        }
        current = next;
    }
    text
}

fn export_response(kind: SignalKind, encoding: Encoding, accepted: &Accepted) -> Response {
    let body = match encoding {
        Encoding::Protobuf => match kind {
            SignalKind::Traces => super::trace_response(accepted).encode_to_vec(),
            SignalKind::Metrics => super::metrics_response(accepted).encode_to_vec(),
            SignalKind::Logs => super::logs_response(accepted).encode_to_vec(),
        },
        Encoding::Json if accepted.rejected == 0 => b"{}".to_vec(),
        Encoding::Json => {
            let field = match kind {
                SignalKind::Traces => "rejectedSpans",
                SignalKind::Metrics => "rejectedDataPoints",
                SignalKind::Logs => "rejectedLogRecords",
            };
            let mut partial = serde_json::Map::new();
            // int64 fields are strings in OTLP/JSON.
            partial.insert(field.to_owned(), accepted.rejected.to_string().into());
            partial.insert("errorMessage".to_owned(), accepted.message.clone().into());
            serde_json::json!({ "partialSuccess": partial })
                .to_string()
                .into_bytes()
        }
    };
    ([(CONTENT_TYPE, encoding.content_type())], body).into_response()
}

fn status_response(
    status: StatusCode,
    encoding: Encoding,
    code: tonic::Code,
    message: String,
) -> Response {
    let body = match encoding {
        Encoding::Protobuf => tonic_types::pb::Status {
            code: code as i32,
            message,
            details: Vec::new(),
        }
        .encode_to_vec(),
        Encoding::Json => serde_json::json!({ "code": code as i32, "message": message })
            .to_string()
            .into_bytes(),
    };
    (status, [(CONTENT_TYPE, encoding.content_type())], body).into_response()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    use tower::ServiceExt;

    use super::*;
    use crate::otlp::test_support::*;
    use crate::otlp::{Admitted, OtlpRequest};
    use crate::telemetry::Signal;

    fn post(path: &str, content_type: &str, body: impl Into<Body>) -> Request {
        Request::builder()
            .method("POST")
            .uri(path)
            .header(CONTENT_TYPE, content_type)
            .body(body.into())
            .unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    async fn body_of(response: Response) -> Bytes {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
    }

    fn status_of(body: &[u8]) -> tonic_types::pb::Status {
        tonic_types::pb::Status::decode(body).unwrap()
    }

    fn three_spans() -> Vec<u8> {
        let spans = (0..3).map(|i| span(i, 1_000, 5, false)).collect();
        traces("svc", spans).encode_to_vec()
    }

    #[tokio::test]
    async fn accepts_protobuf_and_answers_an_empty_response() {
        let (intake, mut rx, telemetry) = intake(1 << 20, 8);
        let response = router(intake)
            .oneshot(post("/v1/traces", "application/x-protobuf", three_spans()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/x-protobuf");
        let answer = ExportTraceServiceResponse::decode(body_of(response).await).unwrap();
        assert_eq!(answer.partial_success, None);
        let Admitted { request, .. } = rx.try_recv().unwrap();
        assert!(matches!(request, OtlpRequest::TracesRaw(_)));
        assert_eq!(request.item_count(), 3);
        assert_eq!(telemetry.accepted_count(Signal::Spans), 3);
        assert_eq!(
            telemetry.request_count(Transport::Http, Signal::Spans, Outcome::Success),
            1
        );
    }

    #[tokio::test]
    async fn accepts_otlp_json_and_answers_json() {
        let (intake, mut rx, _) = intake(1 << 20, 8);
        let body = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},"scopeLogs":[{"logRecords":[{"timeUnixNano":"1700000000000000000","severityNumber":9,"body":{"stringValue":"hi"},"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}]}"#;
        let response = router(intake)
            .oneshot(post("/v1/logs", "application/json; charset=utf-8", body))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(body_of(response).await, "{}");
        assert!(matches!(
            rx.try_recv().unwrap().request,
            OtlpRequest::Logs(_)
        ));
    }

    #[tokio::test]
    async fn accepts_gzip_bodies() {
        let (intake, mut rx, _) = intake(1 << 20, 8);
        let mut request = post("/v1/traces", "application/x-protobuf", gzip(&three_spans()));
        request
            .headers_mut()
            .insert("content-encoding", HeaderValue::from_static("gzip"));
        let response = router(intake).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(rx.try_recv().unwrap().request.item_count(), 3);
    }

    #[tokio::test]
    async fn truncated_gzip_is_a_bad_request() {
        let (intake, _rx, _) = intake(1 << 20, 8);
        let mut compressed = gzip(&three_spans());
        compressed.truncate(compressed.len() / 2);
        let mut request = post("/v1/traces", "application/x-protobuf", compressed);
        request
            .headers_mut()
            .insert("content-encoding", HeaderValue::from_static("gzip"));
        let response = router(intake).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let status = status_of(&body_of(response).await);
        assert_eq!(status.code, tonic::Code::InvalidArgument as i32);
        assert!(
            status
                .message
                .starts_with("failed to read the request body"),
            "{}",
            status.message
        );
    }

    #[tokio::test]
    async fn malformed_protobuf_is_a_bad_request_naming_the_problem() {
        let (intake, _rx, telemetry) = intake(1 << 20, 8);
        let mut body = three_spans();
        body.truncate(body.len() - 4);
        let response = router(intake)
            .oneshot(post("/v1/traces", "application/x-protobuf", body))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let status = status_of(&body_of(response).await);
        assert!(
            status
                .message
                .contains("ExportTraceServiceRequest.resource_spans"),
            "{}",
            status.message
        );
        assert_eq!(
            telemetry.request_count(Transport::Http, Signal::Spans, Outcome::Invalid),
            1
        );
    }

    #[tokio::test]
    async fn json_with_wrong_types_is_a_bad_request() {
        let (intake, _rx, _) = intake(1 << 20, 8);
        let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":7}]}]}]}"#;
        let response = router(intake)
            .oneshot(post("/v1/metrics", "application/json", body))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let status: serde_json::Value = serde_json::from_slice(&body_of(response).await).unwrap();
        assert_eq!(status["code"], 3);
        let message = status["message"].as_str().unwrap();
        assert!(
            message.contains("resourceMetrics[0].scopeMetrics[0].metrics[0].name"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn wrong_content_type_is_unsupported() {
        let (intake, _rx, _) = intake(1 << 20, 8);
        let response = router(intake)
            .oneshot(post("/v1/logs", "text/plain", "hello"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let (intake, _rx, _) = super::super::test_support::intake(1 << 20, 8);
        let request = Request::builder()
            .method("POST")
            .uri("/v1/logs")
            .body(Body::from("x"))
            .unwrap();
        let response = router(intake).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[tokio::test]
    async fn oversize_bodies_are_refused_before_and_after_decompression() {
        let (intake, _rx, telemetry) = intake(64, 8);
        let big = three_spans();
        assert!(big.len() > 64);
        let response = router(intake.clone())
            .oneshot(post("/v1/traces", "application/x-protobuf", big.clone()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            status_of(&body_of(response).await).code,
            tonic::Code::ResourceExhausted as i32
        );

        // Small when compressed, too big once decompressed.
        let zeros = vec![0u8; 10_000];
        let compressed = gzip(&zeros);
        assert!(compressed.len() < 64, "{}", compressed.len());
        let mut request = post("/v1/traces", "application/x-protobuf", compressed);
        request
            .headers_mut()
            .insert("content-encoding", HeaderValue::from_static("gzip"));
        let response = router(intake.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

        // Too big as sent, small enough once decompressed: only the limit on the bytes as
        // sent catches it (decoding 60 bytes of noise would answer 400).
        let noise: Vec<u8> = (0..60u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let compressed = gzip(&noise);
        assert!(compressed.len() > 64, "{}", compressed.len());
        let mut request = post("/v1/traces", "application/x-protobuf", compressed);
        request
            .headers_mut()
            .insert("content-encoding", HeaderValue::from_static("gzip"));
        let response = router(intake).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            telemetry.request_count(Transport::Http, Signal::Spans, Outcome::TooLarge),
            3
        );
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_budget_answers_503_with_retry_after() {
        let body = three_spans();
        let (intake, _rx, telemetry) = intake(body.len() as u32, 8);
        let app = router(intake);
        let first = app
            .clone()
            .oneshot(post("/v1/traces", "application/x-protobuf", body.clone()))
            .await
            .unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        // The first request still holds the whole budget: the deriver has not processed it.
        let second = app
            .oneshot(post("/v1/traces", "application/x-protobuf", body))
            .await
            .unwrap();
        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(second.headers()[RETRY_AFTER], "2");
        let status = status_of(&body_of(second).await);
        assert_eq!(status.code, tonic::Code::Unavailable as i32);
        assert_eq!(telemetry.refused_count(Signal::Spans, "backpressure"), 3);
        assert_eq!(
            telemetry.request_count(Transport::Http, Signal::Spans, Outcome::Unavailable),
            1
        );
    }

    #[tokio::test]
    async fn partial_success_counts_rejected_items() {
        let (intake, _rx, telemetry) = intake(1 << 20, 8);
        let mut bad = log(9, "bad");
        bad.trace_id = vec![1; 5];
        let body = logs("svc", vec![log(9, "ok"), bad.clone(), bad]).encode_to_vec();
        let response = router(intake.clone())
            .oneshot(post("/v1/logs", "application/x-protobuf", body))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let answer = ExportLogsServiceResponse::decode(body_of(response).await).unwrap();
        let partial = answer.partial_success.unwrap();
        assert_eq!(partial.rejected_log_records, 2);
        assert!(
            partial.error_message.contains("trace_id"),
            "{}",
            partial.error_message
        );
        assert_eq!(telemetry.accepted_count(Signal::LogRecords), 1);
        assert_eq!(
            telemetry.refused_count(Signal::LogRecords, "invalid_trace_id"),
            2
        );

        let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"","spanId":"eee19b7ec3c1b174"}]}]}]}"#;
        let response = router(intake)
            .oneshot(post("/v1/traces", "application/json", json))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let answer: serde_json::Value = serde_json::from_slice(&body_of(response).await).unwrap();
        assert_eq!(answer["partialSuccess"]["rejectedSpans"], "1");
        assert!(
            answer["partialSuccess"]["errorMessage"]
                .as_str()
                .unwrap()
                .contains("trace_id")
        );
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_refused() {
        let (intake, _rx, _) = intake(1 << 20, 8);
        let response = router(intake.clone())
            .oneshot(post("/v1/profiles", "application/x-protobuf", Vec::new()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let request = Request::builder()
            .uri("/v1/traces")
            .body(Body::empty())
            .unwrap();
        let response = router(intake).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn serves_over_tcp_until_shutdown() {
        let (intake, mut rx, _) = intake(1 << 20, 8);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(serve(listener, intake, stop.clone().cancelled_owned()));
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let body = three_spans();
        let head = format!(
            "POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        assert_eq!(rx.recv().await.unwrap().request.item_count(), 3);
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
