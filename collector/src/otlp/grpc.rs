//! OTLP/gRPC receiver: the trace, metrics and logs `Export` services (tonic).
//!
//! Gzip-compressed messages are accepted; messages over `otlp.max_body_bytes` are refused by the
//! decoder. Statuses per the OTLP spec: `OK` with `partial_success` when items were rejected,
//! `INVALID_ARGUMENT` for a message that does not decode (tonic's default would be `INTERNAL`,
//! which exporters do not retry either, but which wrongly blames the server), `UNAVAILABLE`
//! with `google.rpc.RetryInfo` when there is no budget or queue space.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;

use http::HeaderValue;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsService;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::util::MapResponseLayer;

use super::{Accepted, Encoding, Intake, OtlpRequest, SignalKind, decode_request};
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
        .add_service(ExportServer::<TraceExport>::new(
            service.clone(),
            max_message_bytes,
        ))
        .add_service(ExportServer::<MetricsExport>::new(
            service.clone(),
            max_message_bytes,
        ))
        .add_service(ExportServer::<LogsExport>::new(service, max_message_bytes))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// One of the three OTLP export services, as [`ExportServer`] serves it.
pub(crate) trait ExportKind: Send + Sync + 'static {
    /// Full gRPC service name.
    const NAME: &'static str;
    /// Which requests it takes.
    const KIND: SignalKind;
    /// Its response message.
    type Response: Message + Default + Send + 'static;
    /// Returns the response to an accepted request.
    fn response(accepted: &Accepted) -> Self::Response;
}

/// `TraceService`.
#[derive(Debug)]
pub(crate) struct TraceExport;
/// `MetricsService`.
#[derive(Debug)]
pub(crate) struct MetricsExport;
/// `LogsService`.
#[derive(Debug)]
pub(crate) struct LogsExport;

impl ExportKind for TraceExport {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const KIND: SignalKind = SignalKind::Traces;
    type Response = ExportTraceServiceResponse;
    fn response(accepted: &Accepted) -> Self::Response {
        super::trace_response(accepted)
    }
}

impl ExportKind for MetricsExport {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const KIND: SignalKind = SignalKind::Metrics;
    type Response = ExportMetricsServiceResponse;
    fn response(accepted: &Accepted) -> Self::Response {
        super::metrics_response(accepted)
    }
}

impl ExportKind for LogsExport {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const KIND: SignalKind = SignalKind::Logs;
    type Response = ExportLogsServiceResponse;
    fn response(accepted: &Accepted) -> Self::Response {
        super::logs_response(accepted)
    }
}

/// An OTLP export service that takes the request message as bytes and decodes it with the
/// same decoder as the HTTP receiver (so metrics get the zero-copy scan, and the request size is
/// the message length instead of a walk over the decoded message). Same protocol as the
/// generated servers: unary `Export`, gzip accepted, `max_decoding_message_size` enforced by
/// tonic; a message that does not decode is `INVALID_ARGUMENT` naming the field.
#[derive(Debug)]
pub(crate) struct ExportServer<K> {
    service: OtlpGrpc,
    max_message_bytes: usize,
    kind: PhantomData<K>,
}

impl<K> Clone for ExportServer<K> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            max_message_bytes: self.max_message_bytes,
            kind: PhantomData,
        }
    }
}

impl<K: ExportKind> ExportServer<K> {
    pub(crate) fn new(service: OtlpGrpc, max_message_bytes: usize) -> Self {
        Self {
            service,
            max_message_bytes,
            kind: PhantomData,
        }
    }
}

impl<K: ExportKind> NamedService for ExportServer<K> {
    const NAME: &'static str = K::NAME;
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

impl<K, B> tower::Service<http::Request<B>> for ExportServer<K>
where
    K: ExportKind,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let is_export = request
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|path| path.strip_prefix(K::NAME))
            == Some("/Export");
        if !is_export {
            return Box::pin(async {
                Ok(Status::unimplemented("unknown method").into_http::<tonic::body::Body>())
            });
        }
        let method = ExportMethod::<K> {
            service: self.service.clone(),
            kind: PhantomData,
        };
        let max_message_bytes = self.max_message_bytes;
        Box::pin(async move {
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(ExportCodec::<K>(PhantomData))
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(max_message_bytes), None);
            Ok(grpc.unary(method, request).await)
        })
    }
}

/// The `Export` method of one service: decodes and admits the request bytes.
struct ExportMethod<K> {
    service: OtlpGrpc,
    kind: PhantomData<K>,
}

impl<K: ExportKind> tonic::server::UnaryService<bytes::Bytes> for ExportMethod<K> {
    type Response = K::Response;
    type Future = BoxFuture<Response<K::Response>, Status>;

    fn call(&mut self, request: Request<bytes::Bytes>) -> Self::Future {
        let service = self.service.clone();
        Box::pin(async move {
            let body = request.into_inner();
            let size = body.len();
            let request = match decode_request(K::KIND, Encoding::Protobuf, body) {
                Ok(request) => request,
                Err(err) => {
                    service.intake.telemetry().request(
                        Transport::Grpc,
                        K::KIND.signal(),
                        Outcome::Invalid,
                    );
                    return Err(Status::invalid_argument(err.to_string()));
                }
            };
            let accepted = service.admit(request, size).await?;
            Ok(Response::new(K::response(&accepted)))
        })
    }
}

/// Codec of [`ExportServer`]: the request message as bytes, the response with prost.
struct ExportCodec<K>(PhantomData<K>);

impl<K: ExportKind> Codec for ExportCodec<K> {
    type Encode = K::Response;
    type Decode = bytes::Bytes;
    type Encoder = ResponseEncoder<K::Response>;
    type Decoder = MessageBytes;

    fn encoder(&mut self) -> Self::Encoder {
        ResponseEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageBytes
    }
}

/// Encodes a response message with prost.
struct ResponseEncoder<M>(PhantomData<M>);

impl<M: Message> Encoder for ResponseEncoder<M> {
    type Item = M;
    type Error = Status;

    fn encode(&mut self, item: M, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|err| Status::internal(err.to_string()))
    }
}

/// Takes a request message (already decompressed and size-checked by tonic) as bytes.
struct MessageBytes;

impl Decoder for MessageBytes {
    type Item = bytes::Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<bytes::Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
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
    async fn scanned_metrics_over_tcp_get_partial_success_and_bad_ones_invalid_argument() {
        use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;

        let (intake, mut rx, telemetry) = intake(1 << 20, 8);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(serve(listener, intake, stop.clone().cancelled_owned()));
        let mut client = MetricsServiceClient::connect(format!("http://{address}"))
            .await
            .unwrap()
            .send_compressed(CompressionEncoding::Gzip);
        let mut no_value = gauge_point(vec![], 1.0);
        no_value.value = None;
        let request = metrics(
            "svc",
            vec![gauge(
                "g",
                vec![gauge_point(vec![kv("k", "v")], 1.0), no_value],
            )],
        );
        let response = client.export(request).await.unwrap().into_inner();
        let partial = response.partial_success.unwrap();
        assert_eq!(partial.rejected_data_points, 1);
        assert!(
            partial
                .error_message
                .contains("neither as_double nor as_int"),
            "{}",
            partial.error_message
        );
        let admitted = rx.recv().await.unwrap();
        assert!(matches!(admitted.request, OtlpRequest::MetricsRaw(_)));
        assert_eq!(admitted.request.item_count(), 1);
        assert_eq!(telemetry.accepted_count(Signal::MetricPoints), 1);

        // A message with an invalid UTF-8 attribute key.
        let mut body = metrics(
            "svc",
            vec![gauge("g", vec![gauge_point(vec![kv("\u{7f}", "v")], 1.0)])],
        )
        .encode_to_vec();
        let at = body.iter().position(|b| *b == 0x7f).unwrap();
        body[at] = 0xff;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_static(
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        );
        let status = grpc
            .unary::<_, ExportMetricsServiceResponse, _>(
                Request::new(bytes::Bytes::from(body)),
                path,
                RawClientCodec,
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("KeyValue.key"),
            "{}",
            status.message()
        );
        assert_eq!(
            telemetry.request_count(Transport::Grpc, Signal::MetricPoints, Outcome::Invalid),
            1
        );

        // An unknown method of a known service.
        let path = http::uri::PathAndQuery::from_static(
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Other",
        );
        grpc.ready().await.unwrap();
        let status = grpc
            .unary::<_, ExportMetricsServiceResponse, _>(
                Request::new(bytes::Bytes::new()),
                path,
                RawClientCodec,
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented);
        drop(client);
        stop.cancel();
        server.await.unwrap().unwrap();
    }

    /// Client codec sending raw bytes and decoding a metrics response.
    #[derive(Default)]
    struct RawClientCodec;

    impl Codec for RawClientCodec {
        type Encode = bytes::Bytes;
        type Decode = ExportMetricsServiceResponse;
        type Encoder = RawBytesEncoder;
        type Decoder = MetricsResponseDecoder;

        fn encoder(&mut self) -> Self::Encoder {
            RawBytesEncoder
        }

        fn decoder(&mut self) -> Self::Decoder {
            MetricsResponseDecoder
        }
    }

    struct RawBytesEncoder;

    impl Encoder for RawBytesEncoder {
        type Item = bytes::Bytes;
        type Error = Status;

        fn encode(&mut self, item: bytes::Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            bytes::BufMut::put(dst, item);
            Ok(())
        }
    }

    struct MetricsResponseDecoder;

    impl Decoder for MetricsResponseDecoder {
        type Item = ExportMetricsServiceResponse;
        type Error = Status;

        fn decode(
            &mut self,
            src: &mut DecodeBuf<'_>,
        ) -> Result<Option<ExportMetricsServiceResponse>, Status> {
            ExportMetricsServiceResponse::decode(src)
                .map(Some)
                .map_err(|err| Status::internal(err.to_string()))
        }
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
        let admitted = rx.recv().await.unwrap();
        assert!(matches!(admitted.request, OtlpRequest::TracesRaw(_)));
        assert_eq!(admitted.request.item_count(), 50);
        // A rejected span of a scanned request is reported like one of a decoded request.
        let mut bad = span(9, 1_000, 1, false);
        bad.trace_id = vec![0; 16];
        let request = traces("svc", vec![span(0, 1_000, 5, false), bad]);
        let response = client.export(request).await.unwrap().into_inner();
        let partial = response.partial_success.unwrap();
        assert_eq!(partial.rejected_spans, 1);
        assert!(
            partial.error_message.contains("trace_id"),
            "{}",
            partial.error_message
        );
        let admitted = rx.recv().await.unwrap();
        assert!(matches!(admitted.request, OtlpRequest::TracesRaw(_)));
        assert_eq!(admitted.request.item_count(), 1);
        drop(client);
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
