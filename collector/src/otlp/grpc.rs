//! OTLP/gRPC receiver: the trace, metrics and logs `Export` services (tonic).
//!
//! Gzip-compressed messages are accepted; messages over `otlp.max_body_bytes` are refused by the
//! decoder. Statuses per the OTLP spec: `OK` with `partial_success` when items were rejected,
//! `INVALID_ARGUMENT` for a message that does not decode (tonic's default would be `INTERNAL`,
//! which exporters do not retry either, but which wrongly blames the server), `UNAVAILABLE`
//! with `google.rpc.RetryInfo` when there is no budget or queue space.

use std::future::Future;

use http::HeaderValue;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::util::MapResponseLayer;

use super::{Accepted, Intake, OtlpRequest};
use crate::telemetry::{Outcome, Transport};

/// The three OTLP export services over one [`Intake`].
#[derive(Debug, Clone)]
pub(crate) struct OtlpGrpc {
    intake: Intake,
}

impl OtlpGrpc {
    pub(crate) fn new(intake: Intake) -> Self {
        Self { intake }
    }

    async fn admit(&self, request: OtlpRequest, size_bytes: usize) -> Result<Accepted, Status> {
        let signal = request.kind().signal();
        let telemetry = self.intake.telemetry();
        match self.intake.admit(request, size_bytes).await {
            Ok(accepted) => {
                let outcome = if accepted.rejected > 0 {
                    Outcome::Partial
                } else {
                    Outcome::Success
                };
                telemetry.request(Transport::Grpc, signal, outcome);
                Ok(accepted)
            }
            Err(refusal) => {
                telemetry.request(Transport::Grpc, signal, Outcome::Unavailable);
                Err(Status::with_error_details(
                    Code::Unavailable,
                    refusal.message(),
                    ErrorDetails::with_retry_info(Some(self.intake.retry_after())),
                ))
            }
        }
    }
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let request = request.into_inner();
        let size = request.encoded_len();
        let accepted = self.admit(OtlpRequest::Traces(request), size).await?;
        Ok(Response::new(super::trace_response(&accepted)))
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let request = request.into_inner();
        let size = request.encoded_len();
        let accepted = self.admit(OtlpRequest::Metrics(request), size).await?;
        Ok(Response::new(super::metrics_response(&accepted)))
    }
}

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let request = request.into_inner();
        let size = request.encoded_len();
        let accepted = self.admit(OtlpRequest::Logs(request), size).await?;
        Ok(Response::new(super::logs_response(&accepted)))
    }
}

/// HTTP/2 flow-control window of each gRPC stream (one export request).
const GRPC_STREAM_WINDOW_BYTES: u32 = 1024 * 1024;

/// HTTP/2 flow-control window of each gRPC connection.
const GRPC_CONNECTION_WINDOW_BYTES: u32 = 4 * 1024 * 1024;

/// Serves the OTLP/gRPC receiver on `listener` until `shutdown` completes, then finishes the
/// requests in progress.
pub(crate) async fn serve(
    listener: TcpListener,
    intake: Intake,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let max_message_bytes = intake.max_body_bytes();
    let service = OtlpGrpc::new(intake);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        // HTTP/2's default 64 KiB windows make a client wait for WINDOW_UPDATEs within every
        // export request of a few hundred KiB; larger windows let a request arrive in one go
        // (memory stays bounded by the intake's byte budget, which admits decoded requests).
        .initial_stream_window_size(Some(GRPC_STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(GRPC_CONNECTION_WINDOW_BYTES))
        .layer(MapResponseLayer::new(decode_errors_as_invalid_argument))
        .add_service(
            TraceServiceServer::new(service.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_message_bytes),
        )
        .add_service(
            MetricsServiceServer::new(service.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_message_bytes),
        )
        .add_service(
            LogsServiceServer::new(service)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max_message_bytes),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Maps tonic's own error answers onto the statuses OTLP clients act on, both in a
/// trailers-only response (status in the headers) and in the trailers of a streamed one.
fn decode_errors_as_invalid_argument<B>(response: http::Response<B>) -> http::Response<GrpcBody<B>>
where
    B: http_body::Body<Data = bytes::Bytes>,
{
    let (mut parts, body) = response.into_parts();
    rewrite_grpc_status(&mut parts.headers);
    let body = http_body_util::BodyExt::map_frame(body, rewrite_trailers as TrailerRewrite);
    http::Response::from_parts(parts, body)
}

type TrailerRewrite = fn(http_body::Frame<bytes::Bytes>) -> http_body::Frame<bytes::Bytes>;

/// Response body of the gRPC receiver: tonic's, with its trailers rewritten.
type GrpcBody<B> = http_body_util::combinators::MapFrame<B, TrailerRewrite>;

fn rewrite_trailers(mut frame: http_body::Frame<bytes::Bytes>) -> http_body::Frame<bytes::Bytes> {
    if let Some(trailers) = frame.trailers_mut() {
        rewrite_grpc_status(trailers);
    }
    frame
}

fn message_contains(headers: &http::HeaderMap, needles: &[&[u8]]) -> bool {
    headers.get("grpc-message").is_some_and(|message| {
        let message = message.as_bytes();
        needles
            .iter()
            .any(|needle| message.windows(needle.len()).any(|w| w == *needle))
    })
}

/// Rewrites two of tonic's answers:
/// - `INTERNAL` for a message that does not decode or decompress becomes `INVALID_ARGUMENT`
///   (the client sent something malformed; retrying cannot help);
/// - `OUT_OF_RANGE` for a message over `max_decoding_message_size` becomes
///   `RESOURCE_EXHAUSTED` without RetryInfo, which OTLP clients do not retry (they would retry
///   OUT_OF_RANGE forever).
fn rewrite_grpc_status(headers: &mut http::HeaderMap) {
    let status = headers.get("grpc-status").cloned();
    let Some(status) = status else {
        return;
    };
    if status == "13"
        && message_contains(
            headers,
            &[
                b"failed to decode Protobuf message",
                b"failed%20to%20decode%20Protobuf%20message",
                b"Error decompressing",
                b"Error%20decompressing",
            ],
        )
    {
        headers.insert(
            "grpc-status",
            HeaderValue::from(Code::InvalidArgument as i32),
        );
    } else if status == "11"
        && message_contains(
            headers,
            &[
                b"decoded message length too large",
                b"decoded%20message%20length%20too%20large",
            ],
        )
    {
        headers.insert(
            "grpc-status",
            HeaderValue::from(Code::ResourceExhausted as i32),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

    use super::*;
    use crate::otlp::test_support::*;
    use crate::telemetry::Signal;

    #[tokio::test]
    async fn export_accepts_and_reports_partial_success() {
        let (intake, mut rx, telemetry) = intake(1 << 20, 8);
        let service = OtlpGrpc::new(intake);
        let mut bad = span(9, 1_000, 1, false);
        bad.span_id = vec![1, 2, 3];
        let request = traces("svc", vec![span(0, 1_000, 5, false), bad]);
        let response = TraceService::export(&service, Request::new(request))
            .await
            .unwrap();
        let partial = response.into_inner().partial_success.unwrap();
        assert_eq!(partial.rejected_spans, 1);
        assert!(
            partial.error_message.contains("span_id"),
            "{}",
            partial.error_message
        );
        assert_eq!(rx.try_recv().unwrap().request.item_count(), 1);
        assert_eq!(
            telemetry.request_count(Transport::Grpc, Signal::Spans, Outcome::Partial),
            1
        );

        let request = logs("svc", vec![log(9, "a")]);
        let response = LogsService::export(&service, Request::new(request))
            .await
            .unwrap();
        assert_eq!(response.into_inner().partial_success, None);
        let request = metrics("svc", vec![gauge("g", vec![gauge_point(vec![], 1.0)])]);
        let response = MetricsService::export(&service, Request::new(request))
            .await
            .unwrap();
        assert_eq!(response.into_inner().partial_success, None);
        assert_eq!(telemetry.accepted_count(Signal::LogRecords), 1);
        assert_eq!(telemetry.accepted_count(Signal::MetricPoints), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_budget_is_unavailable_with_retry_info() {
        let request = logs("svc", vec![log(9, "a"), log(13, "b")]);
        let size = request.encoded_len() as u32;
        let (intake, _rx, telemetry) = intake(size, 8);
        let service = OtlpGrpc::new(intake);
        LogsService::export(&service, Request::new(request.clone()))
            .await
            .unwrap();
        let status = LogsService::export(&service, Request::new(request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        let retry = status.get_details_retry_info().expect("RetryInfo detail");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(2)));
        assert_eq!(
            telemetry.refused_count(Signal::LogRecords, "backpressure"),
            2
        );
    }

    #[test]
    fn decode_failures_become_invalid_argument() {
        let status =
            Status::internal("failed to decode Protobuf message: Span.trace_id: buffer underflow");
        let response = decode_errors_as_invalid_argument(
            status.into_http::<http_body_util::Empty<bytes::Bytes>>(),
        );
        assert_eq!(response.headers()["grpc-status"], "3");
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("Span.trace_id"),
            "{}",
            status.message()
        );

        let gzip =
            Status::internal("Error decompressing: invalid gzip header, while sending request");
        let response = decode_errors_as_invalid_argument(
            gzip.into_http::<http_body_util::Empty<bytes::Bytes>>(),
        );
        assert_eq!(response.headers()["grpc-status"], "3");

        let other =
            Status::internal("something else").into_http::<http_body_util::Empty<bytes::Bytes>>();
        let response = decode_errors_as_invalid_argument(other);
        assert_eq!(response.headers()["grpc-status"], "13");
    }

    #[tokio::test]
    async fn oversize_in_trailers_becomes_resource_exhausted() {
        use http_body_util::BodyExt;
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from(Code::OutOfRange as i32));
        trailers.insert(
            "grpc-message",
            HeaderValue::from_static(
                "Error, decoded message length too large: found 8357 bytes, the limit is: 2048 bytes",
            ),
        );
        let body = http_body_util::StreamBody::new(futures_stream(trailers));
        let response = decode_errors_as_invalid_argument(http::Response::new(body));
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().unwrap();
        assert_eq!(trailers["grpc-status"], "8");

        let mut unrelated = http::HeaderMap::new();
        unrelated.insert("grpc-status", HeaderValue::from(Code::OutOfRange as i32));
        let body = http_body_util::StreamBody::new(futures_stream(unrelated));
        let response = decode_errors_as_invalid_argument(http::Response::new(body));
        let collected = response.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "11");
    }

    fn futures_stream(
        trailers: http::HeaderMap,
    ) -> impl tokio_stream::Stream<Item = Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>>
    {
        tokio_stream::iter(vec![Ok(http_body::Frame::trailers(trailers))])
    }

    #[tokio::test]
    async fn serves_gzip_requests_over_tcp_until_shutdown() {
        let (intake, mut rx, _) = intake(1 << 20, 8);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(serve(listener, intake, stop.clone().cancelled_owned()));
        let mut client = TraceServiceClient::connect(format!("http://{address}"))
            .await
            .unwrap()
            .send_compressed(CompressionEncoding::Gzip);
        let spans = (0..50).map(|i| span(i, 1_000, 5, false)).collect();
        let response = client.export(traces("svc", spans)).await.unwrap();
        assert_eq!(response.into_inner().partial_success, None);
        assert_eq!(rx.recv().await.unwrap().request.item_count(), 50);
        drop(client);
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
