//! Polling cost of the Kafka lag source: 1,000 consumer groups × 20 partitions on a real
//! Kafka-protocol broker (tansu, from the test tools folder).
//!
//! Setup: 50 topics of 20 partitions, 3 records per partition (one per produce request), 20
//! groups per topic (1,000 groups, 20,000 group-partitions); group `i` commits offset `i % 4`
//! on every partition of its topic, so three quarters of the group-partitions lag. The first
//! tick is cold (it reads message timestamps, up to `max_timestamp_reads`); later ticks reuse
//! the timestamps remembered per committed offset.
//!
//! Prints wall time per tick and broker requests per tick (read from the source's own
//! metrics), for the batched offset mode and, over a few ticks, the per-group mode.
//!
//! Run: `cargo bench -p pipewarden-collector --bench kafka_lag` (tools installed by
//! `tests/install.sh`; `PIPEWARDEN_TEST_TOOLS_DIR` points elsewhere). Parameters:
//! `KAFKA_LAG_BENCH_TICKS` (default 10).

// Bench code: a panic (unwrap, expect, assert) is how a setup failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pipewarden_collector::kafka_lag::{
    ClusterConfig, KafkaLagConfig, KafkaLagSource, LagReport, LagTelemetry, OffsetFetchMode,
};
use prometheus_client::registry::Registry;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TOPICS: usize = 50;
const PARTITIONS: i32 = 20;
const GROUPS_PER_TOPIC: usize = 20;
const RECORDS_PER_PARTITION: usize = 3;
const SETUP_THREADS: usize = 8;

/// Stops the broker on drop.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        // tansu ignores SIGTERM; SIGKILL is fine for a throwaway in-memory broker.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tansu_path() -> PathBuf {
    let tools = std::env::var_os("PIPEWARDEN_TEST_TOOLS_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools"));
    let path = tools.join("bin/tansu");
    assert!(
        path.is_file(),
        "{} is missing: run tests/install.sh",
        path.display()
    );
    path
}

fn start_broker() -> (Broker, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let url = format!("tcp://127.0.0.1:{port}");
    let broker = Broker(
        Command::new(tansu_path())
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu"),
    );
    let address = format!("127.0.0.1:{port}");
    for _ in 0..200 {
        if std::net::TcpStream::connect(&address).is_ok() {
            return (broker, address);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("tansu did not listen on {address}");
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config
}

fn topic_name(t: usize) -> String {
    format!("bench-topic-{t:03}")
}

fn group_name(g: usize) -> String {
    format!("bench-group-{g:04}")
}

async fn setup(bootstrap: &str) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().unwrap();
    let names: Vec<String> = (0..TOPICS).map(topic_name).collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    for result in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap();
    }
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            for worker in 0..SETUP_THREADS {
                let bootstrap = &bootstrap;
                scope.spawn(move || {
                    let producer: BaseProducer = client_config(bootstrap)
                        .set("linger.ms", "0")
                        .set("batch.num.messages", "1")
                        .create()
                        .unwrap();
                    for t in (worker..TOPICS).step_by(SETUP_THREADS) {
                        let topic = topic_name(t);
                        for partition in 0..PARTITIONS {
                            for _ in 0..RECORDS_PER_PARTITION {
                                let record = BaseRecord::to(&topic)
                                    .partition(partition)
                                    .payload("x")
                                    .key("k");
                                producer.send(record).map_err(|(err, _)| err).unwrap();
                                producer.flush(Duration::from_secs(10)).unwrap();
                            }
                        }
                    }
                });
            }
        });
        std::thread::scope(|scope| {
            for worker in 0..SETUP_THREADS {
                let bootstrap = &bootstrap;
                scope.spawn(move || {
                    for g in (worker..TOPICS * GROUPS_PER_TOPIC).step_by(SETUP_THREADS) {
                        let consumer: BaseConsumer = client_config(bootstrap)
                            .set("group.id", group_name(g))
                            .set("enable.auto.commit", "false")
                            .create()
                            .unwrap();
                        let topic = topic_name(g / GROUPS_PER_TOPIC);
                        let mut list = TopicPartitionList::new();
                        for partition in 0..PARTITIONS {
                            list.add_partition_offset(
                                &topic,
                                partition,
                                Offset::Offset((g % 4) as i64),
                            )
                            .unwrap();
                        }
                        consumer.commit(&list, CommitMode::Sync).unwrap();
                    }
                });
            }
        });
    })
    .await
    .unwrap();
}

/// Reads `(poll duration sum in seconds, poll count, requests per tick)` from the metrics.
fn poll_figures(registry: &Registry) -> (f64, u64, u64) {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (
        value("pipewarden_kafka_poll_duration_seconds_sum{"),
        value("pipewarden_kafka_poll_duration_seconds_count{") as u64,
        value("pipewarden_kafka_requests_per_tick{") as u64,
    )
}

struct Tick {
    seconds: f64,
    requests: u64,
    groups: usize,
    partitions: usize,
}

async fn measure(bootstrap: &str, mode: OffsetFetchMode, ticks: usize) -> Vec<Tick> {
    let config = KafkaLagConfig {
        clusters: vec![ClusterConfig {
            name: "bench".to_owned(),
            bootstrap_servers: bootstrap.to_owned(),
            offset_fetch: mode,
            ..ClusterConfig::default()
        }],
        // Longer than a warm tick: polls do not overlap with this loop reading the metrics.
        poll_interval: Duration::from_millis(2500),
        request_timeout: Duration::from_secs(30),
        max_partition_series: 100_000,
        ..KafkaLagConfig::default()
    };
    let mut registry = Registry::default();
    let telemetry = LagTelemetry::register(&mut registry);
    let (tx, mut rx) = mpsc::channel::<LagReport>(4);
    let source = KafkaLagSource::build(config.validate().unwrap(), telemetry, tx, None).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(source.run(shutdown.clone()));
    let mut results = Vec::with_capacity(ticks);
    let (mut last_sum, mut last_count) = (0.0, 0);
    while results.len() < ticks {
        let report = tokio::time::timeout(Duration::from_secs(300), rx.recv())
            .await
            .expect("a report in time")
            .expect("source running");
        let (sum, count, requests) = poll_figures(&registry);
        assert_eq!(count, last_count + 1, "one poll per report");
        results.push(Tick {
            seconds: sum - last_sum,
            requests,
            groups: report.groups.len(),
            partitions: report.groups.iter().map(|g| g.partitions.len()).sum(),
        });
        (last_sum, last_count) = (sum, count);
    }
    shutdown.cancel();
    task.await.unwrap();
    results
}

fn summary(label: &str, ticks: &[Tick]) {
    let Some(first) = ticks.first() else { return };
    println!(
        "{label}: {} groups, {} group-partitions per tick",
        first.groups, first.partitions
    );
    println!(
        "  tick 1 (cold, reads message timestamps): {:.3} s, {} requests",
        first.seconds, first.requests
    );
    let all: Vec<String> = ticks
        .iter()
        .map(|t| format!("{:.3}s/{}req", t.seconds, t.requests))
        .collect();
    println!("  every tick: {}", all.join(" "));
    let mut warm: Vec<f64> = ticks[1..].iter().map(|t| t.seconds).collect();
    if warm.is_empty() {
        return;
    }
    warm.sort_by(f64::total_cmp);
    let requests: Vec<u64> = ticks[1..].iter().map(|t| t.requests).collect();
    println!(
        "  ticks 2..{} (warm): median {:.3} s, min {:.3} s, max {:.3} s; requests per tick {}..{}",
        ticks.len(),
        warm[warm.len() / 2],
        warm[0],
        warm[warm.len() - 1],
        requests.iter().min().copied().unwrap_or(0),
        requests.iter().max().copied().unwrap_or(0),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that is not ours skips the run.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && a != "kafka_lag")
    {
        return;
    }
    let ticks: usize = std::env::var("KAFKA_LAG_BENCH_TICKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .max(2);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (_broker, bootstrap) = start_broker();
        let started = tokio::time::Instant::now();
        setup(&bootstrap).await;
        println!(
            "setup: {TOPICS} topics x {PARTITIONS} partitions, {} groups, {:.1} s",
            TOPICS * GROUPS_PER_TOPIC,
            started.elapsed().as_secs_f64()
        );
        let batched = measure(&bootstrap, OffsetFetchMode::Batched, ticks).await;
        summary("offset_fetch = batched", &batched);
        let per_group = measure(&bootstrap, OffsetFetchMode::PerGroup, 2).await;
        summary("offset_fetch = per_group", &per_group);
    });
}
