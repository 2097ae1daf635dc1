//! End to end over real sockets: build, receive over both transports, shut down, drain.

use std::io::Write as _;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use prometheus_client::registry::Registry;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::otlp::test_support::{log, logs, span, traces};

fn local_config() -> ValidCollectorConfig {
    let mut config = CollectorConfig::default();
    config.otlp.grpc_address = "127.0.0.1:0".to_owned();
    config.otlp.http_address = "127.0.0.1:0".to_owned();
    config.validate().unwrap()
}

async fn post_gzip(address: SocketAddr, path: &str, body: &[u8]) -> String {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body).unwrap();
    let body = encoder.finish().unwrap();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n\
         content-encoding: gzip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn receives_over_both_transports_and_drains_on_shutdown() {
    let mut registry = Registry::default();
    let telemetry = CollectorTelemetry::register(&mut registry);
    let (output, mut batches) = mpsc::channel(16);
    let collector = Collector::build(local_config(), telemetry, output)
        .await
        .unwrap();
    let grpc = collector.grpc_local_addr();
    let http = collector.http_local_addr();
    assert_ne!(grpc.port(), 0);
    assert_ne!(http.port(), 0);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(collector.run(shutdown.clone()));

    let spans = (0..20).map(|i| span(i, 1_000, 3, i == 0)).collect();
    let answer = post_gzip(http, "/v1/traces", &traces("etl", spans).encode_to_vec()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut client = LogsServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let records = (0..30).map(|i| log(9 + (i % 2), "row loaded")).collect();
    client.export(logs("etl", records)).await.unwrap();
    drop(client);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run returns after shutdown")
        .unwrap()
        .unwrap();
    let mut received = Vec::new();
    while let Some(batch) = batches.recv().await {
        received.push(batch);
    }
    let logs: usize = received.iter().map(|b| b.logs.len()).sum();
    assert_eq!(logs, 30);
    let spans: u64 = received
        .iter()
        .flat_map(|b| &b.stage_windows)
        .map(|w| w.spans)
        .sum();
    assert_eq!(spans, 20);

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("pipewarden_collector_accepted_total{signal=\"spans\"} 20"),
        "{text}"
    );
    assert!(
        text.contains("pipewarden_collector_accepted_total{signal=\"log_records\"} 30"),
        "{text}"
    );
    assert!(
        text.contains("pipewarden_collector_inflight_bytes 0"),
        "{text}"
    );
}

#[tokio::test]
async fn bind_errors_name_the_address() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = CollectorConfig::default();
    config.otlp.grpc_address = taken.local_addr().unwrap().to_string();
    config.otlp.http_address = "127.0.0.1:0".to_owned();
    let telemetry = CollectorTelemetry::register(&mut Registry::default());
    let (output, _batches) = mpsc::channel(1);
    let err = Collector::build(config.validate().unwrap(), telemetry, output)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&taken.local_addr().unwrap().to_string()),
        "{text}"
    );
    assert!(text.contains("grpc"), "{text}");
}
