//! Kafka lag source against a real broker (tansu), with real rdkafka producers and consumers.
//!
//! Each test starts its own broker. Offsets are made with commits from a client that never
//! joins the group (fast), or by a consumer that really joins it when membership matters.
//! Records are produced one per request (the broker's watermarks are only right that way).
//! The source polls every 200 ms with a window of 4 samples.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pipewarden_collector::kafka_lag::{
    ClusterConfig, GroupLag, KafkaLagConfig, KafkaLagSource, LagHealth, LagReport, LagState,
    LagStatus, LagTelemetry, LagThreshold, NameFilter, OffsetFetchMode, PartitionLag,
};
use prometheus_client::registry::Registry;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::harness::process::{ChildProcess, Signal};
use crate::harness::{DEADLINE, Tansu, tools};

const POLL: Duration = Duration::from_millis(200);
const WINDOW: usize = 4;

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config
}

pub(crate) async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    for result in results {
        result.unwrap();
    }
}

/// Produces `count` records to one partition, one record per produce request, with the given
/// timestamps (or the current time).
async fn produce(bootstrap: &str, topic: &str, partition: i32, timestamps: Vec<Option<i64>>) {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = client_config(&bootstrap)
            .set("linger.ms", "0")
            .set("batch.num.messages", "1")
            .create()
            .unwrap();
        for timestamp in timestamps {
            let mut record = BaseRecord::to(&topic)
                .partition(partition)
                .payload("x")
                .key("k");
            if let Some(ms) = timestamp {
                record = record.timestamp(ms);
            }
            producer.send(record).map_err(|(err, _)| err).unwrap();
            producer.flush(Duration::from_secs(10)).unwrap();
        }
    })
    .await
    .unwrap();
}

pub(crate) async fn produce_n(bootstrap: &str, topic: &str, partition: i32, count: usize) {
    produce(bootstrap, topic, partition, vec![None; count]).await;
}

/// Commits offsets for `group` from a client that never joins the group.
pub(crate) async fn commit(bootstrap: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let bootstrap = bootstrap.to_owned();
    let group = group.to_owned();
    let topic = topic.to_owned();
    let offsets = offsets.to_vec();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client_config(&bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut list = TopicPartitionList::new();
        for (partition, offset) in offsets {
            list.add_partition_offset(&topic, partition, Offset::Offset(offset))
                .unwrap();
        }
        consumer.commit(&list, CommitMode::Sync).unwrap();
    })
    .await
    .unwrap();
}

pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn cluster(name: &str, bootstrap: &str) -> ClusterConfig {
    ClusterConfig {
        name: name.to_owned(),
        bootstrap_servers: bootstrap.to_owned(),
        ..ClusterConfig::default()
    }
}

fn lag_config(clusters: Vec<ClusterConfig>) -> KafkaLagConfig {
    KafkaLagConfig {
        clusters,
        poll_interval: POLL,
        window_samples: WINDOW,
        request_timeout: Duration::from_secs(2),
        backoff_min: Duration::from_millis(200),
        backoff_max: Duration::from_millis(500),
        ..KafkaLagConfig::default()
    }
}

/// A running source and its output.
struct Running {
    reports: mpsc::Receiver<LagReport>,
    health: LagHealth,
    registry: Registry,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    fn start(config: KafkaLagConfig, restored: Option<LagState>) -> Self {
        let valid = config.validate().unwrap();
        let mut registry = Registry::default();
        let telemetry = LagTelemetry::register(&mut registry);
        let (tx, reports) = mpsc::channel(64);
        let source = KafkaLagSource::build(valid, telemetry, tx, restored).unwrap();
        let health = source.health();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(source.run(shutdown.clone()));
        Self {
            reports,
            health,
            registry,
            shutdown,
            task,
        }
    }

    /// Returns the first report for which `check` returns true.
    async fn report_where(&mut self, what: &str, check: impl Fn(&LagReport) -> bool) -> LagReport {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut last = None;
        loop {
            let report = tokio::time::timeout_at(deadline, self.reports.recv())
                .await
                .unwrap_or_else(|_| panic!("no report with {what} in time; last: {last:#?}"))
                .expect("the source stopped");
            if check(&report) {
                return report;
            }
            last = Some(report.groups);
        }
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the source stops on shutdown")
            .unwrap();
    }
}

fn group<'a>(report: &'a LagReport, name: &str) -> Option<&'a GroupLag> {
    report.groups.iter().find(|g| g.group == name)
}

fn status_of(report: &LagReport, name: &str) -> Option<LagStatus> {
    group(report, name).map(|g| g.status)
}

fn partition<'a>(group: &'a GroupLag, topic: &str, partition: i32) -> &'a PartitionLag {
    group
        .partitions
        .iter()
        .find(|p| p.topic == topic && p.partition == partition)
        .unwrap_or_else(|| panic!("partition {topic}/{partition} missing in {group:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_lag_and_verdicts_for_committed_groups() {
    let tansu = Tansu::start().await;
    let bootstrap = tansu.bootstrap_servers();
    create_topic(&bootstrap, "orders", 2).await;
    produce_n(&bootstrap, "orders", 0, 5).await;
    produce_n(&bootstrap, "orders", 1, 3).await;
    // caught-up: at the end of both partitions, on a topic nobody writes to any more.
    commit(&bootstrap, "caught-up", "orders", &[(0, 5), (1, 3)]).await;
    // behind: 3 behind on partition 0, partition 1 never committed (counts from the start).
    commit(&bootstrap, "behind", "orders", &[(0, 2)]).await;
    // tolerated: behind as much, but under its threshold.
    commit(&bootstrap, "tolerated", "orders", &[(0, 2)]).await;
    // rewound: commits 4, then goes back to 1.
    commit(&bootstrap, "rewound", "orders", &[(0, 4), (1, 3)]).await;

    let mut config = lag_config(vec![cluster("local", &bootstrap)]);
    config.thresholds = vec![LagThreshold {
        group: "toler.*".to_owned(),
        min_lag_messages: 10,
        min_lag_seconds: 0.0,
    }];
    let mut running = Running::start(config.clone(), None);

    let first = running
        .report_where("the four groups", |r| r.groups.len() == 4)
        .await;
    assert_eq!(first.cluster, "local");
    let caught_up = group(&first, "caught-up").unwrap();
    assert_eq!(
        caught_up.members, 0,
        "a group with no members is still reported"
    );
    assert_eq!((caught_up.lag_messages, caught_up.lag_seconds), (0, 0.0));
    assert_eq!(caught_up.status, LagStatus::Ok);
    let behind = group(&first, "behind").unwrap();
    assert_eq!(behind.lag_messages, 6);
    let p0 = partition(behind, "orders", 0);
    assert_eq!(
        (p0.committed, p0.low, p0.high, p0.lag_messages),
        (Some(2), 0, 5, 3)
    );
    let p1 = partition(behind, "orders", 1);
    assert_eq!(
        (p1.committed, p1.low, p1.high, p1.lag_messages),
        (None, 0, 3, 3)
    );
    assert!(p0.lag_seconds > 0.0 && !p0.seconds_estimated, "{p0:?}");
    assert_eq!(
        behind.status,
        LagStatus::Ok,
        "no verdict before the window is full"
    );
    let points: Vec<_> = first
        .points
        .iter()
        .filter(|p| p.series.stage == "kafka/local/behind")
        .collect();
    let group_point = points
        .iter()
        .find(|p| p.series.name == "kafka.lag_messages" && p.series.attributes.is_empty())
        .unwrap();
    assert_eq!(group_point.value, 6.0);
    assert!(points.iter().any(|p| p.series.name == "kafka.lag_seconds"
        && p.series.attributes
            == [
                ("partition".into(), "1".into()),
                ("topic".into(), "orders".into())
            ]));

    commit(&bootstrap, "rewound", "orders", &[(0, 1)]).await;
    let rewind = running
        .report_where("REWIND", |r| {
            status_of(r, "rewound") == Some(LagStatus::Rewind)
        })
        .await;
    assert!(
        rewind
            .status_changes
            .iter()
            .any(|c| c.group == "rewound" && c.partition.is_none() && c.to == LagStatus::Rewind)
    );

    // Nothing moves from here on: the window fills.
    let settled = running
        .report_where("STOP for the group left behind", |r| {
            status_of(r, "behind") == Some(LagStatus::Stop)
        })
        .await;
    assert_eq!(status_of(&settled, "caught-up"), Some(LagStatus::Ok));
    assert_eq!(status_of(&settled, "tolerated"), Some(LagStatus::Ok));
    // Caught up on an idle topic stays OK however long nothing happens (Burrow says STOP).
    for _ in 0..2 * WINDOW {
        let report = running.report_where("any report", |_| true).await;
        assert_eq!(status_of(&report, "caught-up"), Some(LagStatus::Ok));
        assert_eq!(status_of(&report, "tolerated"), Some(LagStatus::Ok));
        assert_eq!(status_of(&report, "behind"), Some(LagStatus::Stop));
        assert!(
            report
                .status_changes
                .iter()
                .all(|c| c.group != "behind" && c.group != "caught-up"),
            "notifications only on change: {:?}",
            report.status_changes
        );
    }
    assert!(running.health.is_healthy());
    let metrics = running.metrics();
    assert!(
        metrics
            .contains(r#"pipewarden_kafka_group_lag_messages{cluster="local",group="behind"} 6"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"pipewarden_kafka_group_status{cluster="local",group="behind"} 4"#));
    assert!(metrics.contains(r#"pipewarden_kafka_broker_up{cluster="local"} 1"#));
    assert!(metrics.contains(
        r#"pipewarden_kafka_partition_lag_messages{cluster="local",group="behind",topic="orders",partition="1"} 3"#
    ));

    // The window state survives a restart: no new notification for unchanged verdicts.
    let last = running.report_where("any report", |_| true).await;
    running.stop().await;
    let mut restarted = Running::start(config, Some(last.state));
    let report = restarted
        .report_where("the four groups", |r| r.groups.len() == 4)
        .await;
    assert_eq!(status_of(&report, "behind"), Some(LagStatus::Stop));
    assert!(
        report.status_changes.iter().all(|c| c.group != "behind"),
        "{:?}",
        report.status_changes
    );
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_group_offset_mode_reads_the_same_lag() {
    let tansu = Tansu::start().await;
    let bootstrap = tansu.bootstrap_servers();
    create_topic(&bootstrap, "events", 2).await;
    produce_n(&bootstrap, "events", 0, 4).await;
    produce_n(&bootstrap, "events", 1, 2).await;
    commit(&bootstrap, "reader", "events", &[(0, 1), (1, 2)]).await;
    let mut cluster = cluster("local", &bootstrap);
    cluster.offset_fetch = OffsetFetchMode::PerGroup;
    cluster.groups = NameFilter {
        allow: vec!["reader".to_owned()],
        regex: None,
    };
    let mut running = Running::start(lag_config(vec![cluster]), None);
    let report = running
        .report_where("the reader group", |r| group(r, "reader").is_some())
        .await;
    let reader = group(&report, "reader").unwrap();
    assert_eq!(reader.lag_messages, 3);
    assert_eq!(partition(reader, "events", 0).lag_messages, 3);
    assert_eq!(partition(reader, "events", 1).lag_messages, 0);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_growing_while_consuming_is_warn() {
    let tansu = Tansu::start().await;
    let bootstrap = tansu.bootstrap_servers();
    create_topic(&bootstrap, "clicks", 1).await;
    produce_n(&bootstrap, "clicks", 0, 2).await;
    commit(&bootstrap, "slow", "clicks", &[(0, 1)]).await;
    let mut running = Running::start(lag_config(vec![cluster("local", &bootstrap)]), None);
    running
        .report_where("the slow group", |r| group(r, "slow").is_some())
        .await;
    // The producer writes 3 records for every record the group commits.
    let writer = {
        let bootstrap = bootstrap.clone();
        tokio::spawn(async move {
            let mut committed = 1;
            loop {
                produce_n(&bootstrap, "clicks", 0, 3).await;
                committed += 1;
                commit(&bootstrap, "slow", "clicks", &[(0, committed)]).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let report = running
        .report_where("WARN", |r| status_of(r, "slow") == Some(LagStatus::Warn))
        .await;
    writer.abort();
    let slow = group(&report, "slow").unwrap();
    let p0 = partition(slow, "clicks", 0);
    assert_eq!(p0.lag_messages, p0.high - p0.committed.unwrap());
    assert!(p0.lag_messages > 1);
    running.stop().await;
}

/// A consumer that joins `group`, consumes without ever committing, until dropped.
struct StuckConsumer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl StuckConsumer {
    fn start(bootstrap: &str, group: &str, topic: &str) -> Self {
        let consumer: BaseConsumer = client_config(bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Acquire) {
                let _ = consumer.poll(Duration::from_millis(100));
            }
            // Dropping the consumer leaves the group.
            drop(consumer);
        });
        Self { stop, thread }
    }

    /// Leaves the group (closes the consumer), with a deadline.
    async fn leave(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let thread = self.thread;
        tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || thread.join()),
        )
        .await
        .expect("the consumer closes in time")
        .unwrap()
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_consumer_is_stall_then_stop_when_it_is_gone() {
    let tansu = Tansu::start().await;
    let bootstrap = tansu.bootstrap_servers();
    create_topic(&bootstrap, "payments", 1).await;
    produce_n(&bootstrap, "payments", 0, 10).await;
    commit(&bootstrap, "stuck", "payments", &[(0, 2)]).await;
    let consumer = StuckConsumer::start(&bootstrap, "stuck", "payments");
    let mut running = Running::start(lag_config(vec![cluster("local", &bootstrap)]), None);

    let stall = running
        .report_where("STALL", |r| status_of(r, "stuck") == Some(LagStatus::Stall))
        .await;
    let stuck = group(&stall, "stuck").unwrap();
    assert_eq!(stuck.members, 1);
    assert_eq!(stuck.lag_messages, 8);

    consumer.leave().await;
    let stop = running
        .report_where("STOP", |r| status_of(r, "stuck") == Some(LagStatus::Stop))
        .await;
    let stuck = group(&stop, "stuck").unwrap();
    assert_eq!((stuck.members, stuck.lag_messages), (0, 8));
    assert!(stop.status_changes.iter().any(|c| c.group == "stuck"
        && c.partition.is_none()
        && c.from == Some(LagStatus::Stall)
        && c.to == LagStatus::Stop));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_seconds_is_the_age_of_the_message_at_the_committed_offset() {
    let tansu = Tansu::start().await;
    let bootstrap = tansu.bootstrap_servers();
    create_topic(&bootstrap, "audit", 1).await;
    let now = unix_ms();
    let timestamps = [now - 90_000, now - 40_000, now - 10_000];
    produce(
        &bootstrap,
        "audit",
        0,
        timestamps.iter().map(|t| Some(*t)).collect(),
    )
    .await;
    commit(&bootstrap, "auditor", "audit", &[(0, 1)]).await;
    let mut running = Running::start(lag_config(vec![cluster("local", &bootstrap)]), None);
    let report = running
        .report_where("the auditor group", |r| group(r, "auditor").is_some())
        .await;
    let auditor = group(&report, "auditor").unwrap();
    let p0 = partition(auditor, "audit", 0);
    assert_eq!(p0.lag_messages, 2);
    assert!(!p0.seconds_estimated);
    let truth = (report.timestamp_ms - timestamps[1]) as f64 / 1000.0;
    assert!(
        (p0.lag_seconds - truth).abs() < 1.0,
        "{} vs {truth}",
        p0.lag_seconds
    );
    assert_eq!(auditor.lag_seconds, p0.lag_seconds);

    // The group moves on: the age follows the new committed offset.
    commit(&bootstrap, "auditor", "audit", &[(0, 2)]).await;
    let report = running
        .report_where("the new commit", |r| {
            group(r, "auditor").is_some_and(|g| g.lag_messages == 1)
        })
        .await;
    let p0 = partition(group(&report, "auditor").unwrap(), "audit", 0);
    let truth = (report.timestamp_ms - timestamps[2]) as f64 / 1000.0;
    assert!(
        (p0.lag_seconds - truth).abs() < 1.0,
        "{} vs {truth}",
        p0.lag_seconds
    );
    running.stop().await;
}

/// A tansu broker on a chosen port, so it can be restarted where clients expect it.
fn start_tansu_on(port: u16) -> ChildProcess {
    let url = format!("tcp://127.0.0.1:{port}");
    let mut command = Command::new(tools::tansu());
    command
        .arg("broker")
        .args(["--listener-url", &url])
        .args(["--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    ChildProcess::spawn("tansu-restartable", command, Signal::Int)
}

async fn wait_listening(port: u16) {
    crate::harness::eventually("tansu listening", DEADLINE, || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map(drop)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_makes_the_source_unhealthy_until_it_is_back() {
    let port = tools::free_port();
    let bootstrap = format!("127.0.0.1:{port}");
    let mut broker = start_tansu_on(port);
    wait_listening(port).await;
    create_topic(&bootstrap, "jobs", 1).await;
    produce_n(&bootstrap, "jobs", 0, 3).await;
    commit(&bootstrap, "worker", "jobs", &[(0, 1)]).await;
    let mut running = Running::start(lag_config(vec![cluster("local", &bootstrap)]), None);
    running
        .report_where("the worker group", |r| group(r, "worker").is_some())
        .await;
    assert!(running.health.is_healthy());

    broker.signal(Signal::Int);
    if broker.wait_exit(Duration::from_secs(10)).await.is_none() {
        broker.kill();
    }
    let health = running.health.clone();
    crate::harness::eventually("the source to report unhealthy", DEADLINE, || {
        let health = health.clone();
        async move {
            if health.is_healthy() {
                Err("still healthy")
            } else {
                Ok(())
            }
        }
    })
    .await;
    assert_eq!(running.health.clusters(), vec![("local".to_owned(), false)]);
    assert!(
        running
            .metrics()
            .contains(r#"pipewarden_kafka_broker_up{cluster="local"} 0"#)
    );
    // Reports already queued before the broker stopped do not count.
    while running.reports.try_recv().is_ok() {}

    // Same port, empty broker (memory storage): recreate the data, the same source recovers.
    let _broker = start_tansu_on(port);
    wait_listening(port).await;
    create_topic(&bootstrap, "jobs", 1).await;
    produce_n(&bootstrap, "jobs", 0, 5).await;
    commit(&bootstrap, "worker", "jobs", &[(0, 1)]).await;
    let report = running
        .report_where("the worker group after the restart", |r| {
            group(r, "worker").is_some_and(|g| g.lag_messages == 4)
        })
        .await;
    assert_eq!(report.cluster, "local");
    assert!(running.health.is_healthy());
    assert!(
        running
            .metrics()
            .contains(r#"pipewarden_kafka_broker_up{cluster="local"} 1"#)
    );
    running.stop().await;
}

#[test]
fn bad_config_names_the_key() {
    let mut config = lag_config(vec![cluster("local", "")]);
    assert_eq!(
        config.validate().unwrap_err().field,
        "clusters[0].bootstrap_servers"
    );
    config.clusters[0].bootstrap_servers = "127.0.0.1:9092".to_owned();
    config.clusters[0].groups.regex = Some("(unclosed".to_owned());
    assert_eq!(
        config.validate().unwrap_err().field,
        "clusters[0].groups.regex"
    );
    let parsed: Result<KafkaLagConfig, _> = toml::from_str("[[clusters]]\nnmae = \"x\"\n");
    assert!(parsed.is_err());
}
