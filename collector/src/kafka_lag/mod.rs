//! Kafka consumer lag read from the brokers: per partition and group, in messages and seconds,
//! with a verdict per partition and group.
//!
//! # Contract
//!
//! [`KafkaLagConfig`] (the `[collector.kafka_lag]` section) → [`KafkaLagConfig::validate`] (no
//! I/O) → [`KafkaLagSource::build`] (creates the librdkafka clients; they connect in the
//! background) → [`KafkaLagSource::run`] until the shutdown token is cancelled. Each successful
//! poll of a cluster sends one [`LagReport`] on the output channel (bounded: a slow consumer
//! delays the next poll, nothing is dropped). [`LagTelemetry::register`] creates the metrics;
//! [`KafkaLagSource::health`] gives the [`LagHealth`] handle `/readyz` reads.
//!
//! ```toml
//! [collector.kafka_lag]
//! poll_interval = "10s"          # default
//! window_samples = 10            # default
//! request_timeout = "5s"         # default
//! backoff_min = "1s"             # default
//! backoff_max = "30s"            # default
//! max_partition_series = 10000   # default
//! max_timestamp_reads = 1000     # default
//!
//! [[collector.kafka_lag.clusters]]
//! name = "main"
//! bootstrap_servers = "kafka-1:9092,kafka-2:9092"
//! client = { "client.id" = "pipewarden" }       # any librdkafka setting
//! groups = { allow = ["billing"], regex = "^etl-" }  # default: every group
//! topics = { regex = "^orders\\." }              # default: every topic
//! offset_fetch = "auto"                          # auto | batched | per_group
//!
//! [[collector.kafka_lag.thresholds]]
//! group = "audit-.*"             # exact name or regex matching the whole name
//! min_lag_messages = 200
//! min_lag_seconds = 0
//! ```
//!
//! librdkafka is built with OpenSSL (rdkafka's `ssl` feature): `security.protocol` may be
//! `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl` (SASL PLAIN and SCRAM); GSSAPI is not
//! built in. Committed offsets over TLS are read per group (see `offset_fetch`).
//!
//! # What a poll reads, and what it costs
//!
//! Per cluster and tick, with B brokers, C coordinator brokers of the watched groups and L
//! leader brokers of the watched partitions:
//!
//! | step | requests |
//! | --- | --- |
//! | Metadata (brokers, topics, partition leaders) | 1 |
//! | ListGroups + DescribeGroups (members, state) | ≤ 2·B |
//! | FindCoordinator v4, all groups whose coordinator is not known yet in one request (coordinators are remembered until an error says they moved) | 0 or 1 |
//! | OffsetFetch v8, all groups of a coordinator in one request, every committed partition | C |
//! | ListOffsets, earliest and latest, all partitions of a leader per request | 2·L |
//! | Fetch of the message at the committed offset, for lag in seconds | ≈ L per round (librdkafka may split or repeat fetches), only for lagging partitions whose committed offset moved (timestamps are remembered per offset), at most `max_timestamp_reads` partitions per tick; offsets of a partition less than 100 apart share one pass |
//!
//! So a steady tick costs 1 + 2B + C + 2L requests (plus one FindCoordinator when new groups
//! appear, plus the timestamp fetches when committed offsets moved), whatever the number of
//! groups and partitions. The count of the last tick is the metric
//! `pipewarden_kafka_requests_per_tick`. FindCoordinator and OffsetFetch are sent by a
//! minimal protocol client of this module (librdkafka only reads offsets of its own group);
//! it needs a plaintext listener and Kafka 3.0+. With `offset_fetch = "per_group"` (the
//! `auto` choice when `client."security.protocol"` is not plaintext) committed offsets come
//! from one short-lived librdkafka consumer per group that never joins the group: about 3
//! requests per group and tick.
//!
//! # Lag
//!
//! - **Messages**, per partition: high watermark − committed offset; a partition without a
//!   commit (or whose committed offset fell below the low watermark) counts from the low
//!   watermark; never negative. Partitions are every partition of each watched topic for which
//!   the group has at least one committed offset. Group lag is the sum over its partitions.
//! - **Seconds**, per partition: the age (poll time − message timestamp) of the next message
//!   the group will read, the one at the committed offset. Its timestamp is read with a
//!   consumer that assigns the partition at that offset (no group, no commit) and is
//!   remembered while the committed offset stays. When it cannot be read (timeout, more than
//!   `max_timestamp_reads` reads in a tick), the estimate is lag ÷ production rate, the rate
//!   being the growth of the high watermark over the window; with nothing produced over the
//!   window the estimate is 0. Estimates are flagged (`seconds_estimated`). A caught-up
//!   partition has 0 seconds. Group lag in seconds is the largest over its partitions.
//!
//! # Verdicts
//!
//! Each partition keeps its newest `window_samples` samples (poll time, committed offset, low
//! and high watermarks). A sample is *lagging* when its lag in messages is above the group's
//! `min_lag_messages` threshold (0 by default) and, when `min_lag_seconds` > 0, the current lag
//! in seconds is above it. Rules, first match wins:
//!
//! 1. **REWIND** when a committed offset in the window is lower than the one before it.
//! 2. **OK** when the newest sample is not lagging. This is where Burrow goes wrong: a
//!    caught-up group on an idle or slow topic commits nothing, and is OK here, never STOP.
//! 3. **OK** while the window is not full (no trend without history).
//! 4. **STALL** when every sample of the window is lagging and the committed offset did not
//!    move, while the group has live members (a consumer is there but stuck);
//!    **STOP** in the same case when the group has no member (the consumer is gone; no
//!    commit for longer than the window while there is lag).
//! 5. **WARN** when the committed offset moved and the lag grew or stayed at every step and
//!    ended higher than it started.
//! 6. **OK** otherwise.
//!
//! **ERR** is the verdict of a partition whose offsets the broker refused (error code) and of a
//! group whose committed offsets could not be read (its windows are kept unchanged).
//! A group's verdict is its worst partition verdict, in the order OK < WARN < REWIND < STALL <
//! STOP < ERR. Groups with no member keep being reported.
//!
//! Status changes are reported only on change: a verdict different from the previous one of
//! the same group or partition, or a first verdict that is not OK. The window state
//! ([`LagState`], in every report) survives a restart when the app persists it and passes it
//! back to [`KafkaLagSource::build`].
//!
//! # Series
//!
//! Per group: `kafka.lag_messages` and `kafka.lag_seconds`, stage `kafka/<cluster>/<group>`,
//! no attribute. Per partition: the same names and stage with attributes `partition` and
//! `topic`, for at most `max_partition_series` partitions per cluster (first come, kept while
//! they exist).
//!
//! # Metrics
//!
//! | metric | labels |
//! | --- | --- |
//! | `pipewarden_kafka_group_lag_messages`, `pipewarden_kafka_group_lag_seconds` | `cluster`, `group` |
//! | `pipewarden_kafka_group_status` (0 OK, 1 WARN, 2 REWIND, 3 STALL, 4 STOP, 5 ERR) | `cluster`, `group` |
//! | `pipewarden_kafka_group_members` | `cluster`, `group` |
//! | `pipewarden_kafka_partition_lag_messages`, `pipewarden_kafka_partition_lag_seconds` (capped by `max_partition_series`) | `cluster`, `group`, `topic`, `partition` |
//! | `pipewarden_kafka_broker_up` (1 after a successful poll) | `cluster` |
//! | `pipewarden_kafka_poll_duration_seconds` (histogram) | `cluster` |
//! | `pipewarden_kafka_requests_per_tick`, `pipewarden_kafka_requests_total` | `cluster` |
//! | `pipewarden_kafka_errors_total` | `cluster`, `request` |
//! | `pipewarden_kafka_status_changes_total` | `cluster` |
//!
//! Gauges of groups and partitions that disappear are removed.
//!
//! # Failures
//!
//! A failed poll (broker down, timeout, refused request) marks the cluster unhealthy
//! ([`LagHealth`], `pipewarden_kafka_broker_up` 0), counts an error, sends no report, and is
//! retried after `backoff_min`, doubling up to `backoff_max`, with fresh librdkafka clients;
//! the first success makes it healthy again and resumes the normal interval. Nothing needs a
//! restart. A cluster is unhealthy until its first successful poll; with no cluster configured
//! the source is healthy and idle.

mod client;
mod config;
mod error;
mod poll;
mod protocol;
mod report;
mod telemetry;
mod verdict;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use self::config::{
    ClusterConfig, KafkaLagConfig, LagThreshold, NameFilter, OffsetFetchMode, ValidKafkaLagConfig,
};
pub use self::error::KafkaLagError;
pub use self::poll::{LAG_MESSAGES, LAG_SECONDS};
pub use self::report::{GroupLag, LagReport, LagState, PartitionLag, StatusChange};
pub use self::telemetry::{LagHealth, LagTelemetry};
pub use self::verdict::LagStatus;

use self::client::ClusterClient;
use self::poll::ClusterPoller;

/// The Kafka lag source: one poller per configured cluster.
#[derive(Debug)]
pub struct KafkaLagSource {
    pollers: Vec<ClusterPoller>,
    config: Arc<ValidKafkaLagConfig>,
    telemetry: LagTelemetry,
    output: mpsc::Sender<LagReport>,
    health: LagHealth,
}

impl KafkaLagSource {
    /// Creates the librdkafka clients of every cluster (they connect in the background) and
    /// restores the window state of clusters found in `restored`.
    ///
    /// # Errors
    ///
    /// [`KafkaLagError::Client`] when librdkafka refuses to create a client.
    pub fn build(
        config: ValidKafkaLagConfig,
        telemetry: LagTelemetry,
        output: mpsc::Sender<LagReport>,
        restored: Option<LagState>,
    ) -> Result<Self, KafkaLagError> {
        let config = Arc::new(config);
        let mut restored = restored.unwrap_or_default();
        let mut pollers = Vec::with_capacity(config.clusters.len());
        for cluster in &config.clusters {
            let client = ClusterClient::new(cluster, config.source.request_timeout)?;
            let state = restored.clusters.remove(&cluster.name).unwrap_or_default();
            pollers.push(ClusterPoller::new(
                cluster.clone(),
                Arc::clone(&config),
                client,
                state,
                telemetry.clone(),
            ));
        }
        let health = LagHealth::new(config.cluster_names());
        Ok(Self {
            pollers,
            config,
            telemetry,
            output,
            health,
        })
    }

    /// Returns the health handle (one flag per cluster) for `/readyz`.
    pub fn health(&self) -> LagHealth {
        self.health.clone()
    }

    /// Polls every cluster every `poll_interval` until `shutdown` is cancelled (or the output
    /// channel closes). Failed polls are retried with backoff; they never end the source.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.pollers.is_empty() {
            // Disabled (no cluster): nothing to poll, but run until shutdown like any component.
            shutdown.cancelled().await;
            return;
        }
        let mut tasks = JoinSet::new();
        for (index, poller) in self.pollers.into_iter().enumerate() {
            let cluster = ClusterLoop {
                index,
                poller,
                config: Arc::clone(&self.config),
                telemetry: self.telemetry.clone(),
                output: self.output.clone(),
                health: self.health.clone(),
            };
            tasks.spawn(cluster.run(shutdown.clone()));
        }
        drop(self.output);
        while let Some(result) = tasks.join_next().await {
            if let Err(err) = result {
                tracing::error!(error = %err, "kafka lag cluster task ended abnormally");
            }
        }
    }
}

/// The poll loop of one cluster.
struct ClusterLoop {
    index: usize,
    poller: ClusterPoller,
    config: Arc<ValidKafkaLagConfig>,
    telemetry: LagTelemetry,
    output: mpsc::Sender<LagReport>,
    health: LagHealth,
}

impl ClusterLoop {
    async fn run(mut self, shutdown: CancellationToken) {
        let cluster = self.poller.cluster.name.clone();
        let interval = self.config.source.poll_interval;
        let (backoff_min, backoff_max) = (
            self.config.source.backoff_min,
            self.config.source.backoff_max,
        );
        let mut backoff = backoff_min;
        let mut failures = 0u64;
        let mut next_poll = Instant::now();
        tracing::info!(cluster = %cluster, "kafka lag source started");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(next_poll) => {}
            }
            let started = Instant::now();
            let result = tokio::select! {
                () = shutdown.cancelled() => break,
                result = self.poller.poll(unix_ms()) => result,
            };
            match result {
                Ok((report, requests)) => {
                    let elapsed = started.elapsed();
                    self.telemetry
                        .poll_finished(&cluster, elapsed.as_secs_f64(), requests);
                    self.telemetry.broker_up(&cluster, true);
                    self.health.set(self.index, true);
                    if failures > 0 {
                        tracing::info!(cluster = %cluster, failures, "kafka cluster reachable again");
                    }
                    failures = 0;
                    backoff = backoff_min;
                    next_poll = (started + interval).max(Instant::now());
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        sent = self.output.send(report) => if sent.is_err() {
                            tracing::info!(cluster = %cluster, "kafka lag output closed");
                            break;
                        },
                    }
                }
                Err(err) => {
                    self.telemetry.error(&cluster, err.kind());
                    self.telemetry.broker_up(&cluster, false);
                    self.health.set(self.index, false);
                    self.poller.reset_connections();
                    failures += 1;
                    // Log the first failure and then every 10th, not every retry.
                    if failures == 1 || failures.is_multiple_of(10) {
                        tracing::warn!(
                            cluster = %cluster,
                            failures,
                            retry_in = ?backoff,
                            error = %err,
                            "kafka lag poll failed"
                        );
                    }
                    next_poll = Instant::now() + backoff;
                    backoff = (backoff * 2).min(backoff_max);
                }
            }
        }
        tracing::info!(cluster = %cluster, "kafka lag source stopped");
    }
}

/// Returns the wall clock, Unix milliseconds.
fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis()
        .try_into()
        .unwrap_or(i64::MAX)
}
