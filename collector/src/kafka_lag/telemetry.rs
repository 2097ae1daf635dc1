//! Instruments of the Kafka lag source, and the health handle `/readyz` reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GroupLabels {
    cluster: String,
    group: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PartitionLabels {
    cluster: String,
    group: String,
    topic: String,
    partition: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    cluster: String,
    request: &'static str,
}

/// The Kafka lag source's instruments, registered once into the app's registry; cheap to clone.
///
/// Metric names are listed in the `kafka_lag` module docs.
#[derive(Debug, Clone)]
pub struct LagTelemetry {
    group_lag_messages: Family<GroupLabels, Gauge>,
    group_lag_seconds: Family<GroupLabels, Gauge<f64, AtomicU64>>,
    group_status: Family<GroupLabels, Gauge>,
    group_members: Family<GroupLabels, Gauge>,
    partition_lag_messages: Family<PartitionLabels, Gauge>,
    partition_lag_seconds: Family<PartitionLabels, Gauge<f64, AtomicU64>>,
    broker_up: Family<ClusterLabels, Gauge>,
    poll_duration: Family<ClusterLabels, Histogram>,
    requests_per_tick: Family<ClusterLabels, Gauge>,
    requests: Family<ClusterLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    status_changes: Family<ClusterLabels, Counter>,
}

impl LagTelemetry {
    /// Creates the instruments and registers them into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let telemetry = Self {
            group_lag_messages: Family::default(),
            group_lag_seconds: Family::default(),
            group_status: Family::default(),
            group_members: Family::default(),
            partition_lag_messages: Family::default(),
            partition_lag_seconds: Family::default(),
            broker_up: Family::default(),
            poll_duration: Family::new_with_constructor(|| {
                Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
            }),
            requests_per_tick: Family::default(),
            requests: Family::default(),
            errors: Family::default(),
            status_changes: Family::default(),
        };
        registry.register(
            "pipewarden_kafka_group_lag_messages",
            "Consumer group lag in messages, summed over its partitions",
            telemetry.group_lag_messages.clone(),
        );
        registry.register(
            "pipewarden_kafka_group_lag_seconds",
            "Consumer group lag in seconds: age of its oldest unconsumed message",
            telemetry.group_lag_seconds.clone(),
        );
        registry.register(
            "pipewarden_kafka_group_status",
            "Consumer group verdict: 0 OK, 1 WARN, 2 REWIND, 3 STALL, 4 STOP, 5 ERR",
            telemetry.group_status.clone(),
        );
        registry.register(
            "pipewarden_kafka_group_members",
            "Live members of the consumer group",
            telemetry.group_members.clone(),
        );
        registry.register(
            "pipewarden_kafka_partition_lag_messages",
            "Partition lag in messages (up to max_partition_series partitions per cluster)",
            telemetry.partition_lag_messages.clone(),
        );
        registry.register(
            "pipewarden_kafka_partition_lag_seconds",
            "Partition lag in seconds (up to max_partition_series partitions per cluster)",
            telemetry.partition_lag_seconds.clone(),
        );
        registry.register(
            "pipewarden_kafka_broker_up",
            "1 when the last poll of the cluster succeeded, else 0",
            telemetry.broker_up.clone(),
        );
        registry.register(
            "pipewarden_kafka_poll_duration_seconds",
            "Wall time of one poll of a cluster",
            telemetry.poll_duration.clone(),
        );
        registry.register(
            "pipewarden_kafka_requests_per_tick",
            "Broker requests made by the last poll of the cluster",
            telemetry.requests_per_tick.clone(),
        );
        registry.register(
            "pipewarden_kafka_requests",
            "Broker requests made by the lag source",
            telemetry.requests.clone(),
        );
        registry.register(
            "pipewarden_kafka_errors",
            "Failed polls and requests, by request kind",
            telemetry.errors.clone(),
        );
        registry.register(
            "pipewarden_kafka_status_changes",
            "Group and partition verdict changes",
            telemetry.status_changes.clone(),
        );
        telemetry
    }

    pub(crate) fn broker_up(&self, cluster: &str, up: bool) {
        self.broker_up
            .get_or_create(&cluster_labels(cluster))
            .set(i64::from(up));
    }

    pub(crate) fn poll_finished(&self, cluster: &str, seconds: f64, requests: u64) {
        let labels = cluster_labels(cluster);
        self.poll_duration.get_or_create(&labels).observe(seconds);
        self.requests_per_tick
            .get_or_create(&labels)
            .set(i64::try_from(requests).unwrap_or(i64::MAX));
        self.requests.get_or_create(&labels).inc_by(requests);
    }

    pub(crate) fn error(&self, cluster: &str, request: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels {
                cluster: cluster.to_owned(),
                request,
            })
            .inc();
    }

    pub(crate) fn status_changes(&self, cluster: &str, count: u64) {
        if count > 0 {
            self.status_changes
                .get_or_create(&cluster_labels(cluster))
                .inc_by(count);
        }
    }

    /// Returns the gauges of a group (created on first use; keep them to skip the lookups).
    pub(crate) fn group_gauges(&self, cluster: &str, group: &str) -> GroupGauges {
        let labels = GroupLabels {
            cluster: cluster.to_owned(),
            group: group.to_owned(),
        };
        GroupGauges {
            lag_messages: self.group_lag_messages.get_or_create(&labels).clone(),
            lag_seconds: self.group_lag_seconds.get_or_create(&labels).clone(),
            status: self.group_status.get_or_create(&labels).clone(),
            members: self.group_members.get_or_create(&labels).clone(),
        }
    }

    pub(crate) fn remove_group(&self, cluster: &str, group: &str) {
        let labels = GroupLabels {
            cluster: cluster.to_owned(),
            group: group.to_owned(),
        };
        self.group_lag_messages.remove(&labels);
        self.group_lag_seconds.remove(&labels);
        self.group_status.remove(&labels);
        self.group_members.remove(&labels);
    }

    /// Returns the gauges of a partition (created on first use; keep them).
    pub(crate) fn partition_gauges(&self, key: &PartitionKey) -> PartitionGauges {
        let labels = key.labels();
        PartitionGauges {
            lag_messages: self.partition_lag_messages.get_or_create(&labels).clone(),
            lag_seconds: self.partition_lag_seconds.get_or_create(&labels).clone(),
        }
    }

    pub(crate) fn remove_partition(&self, key: &PartitionKey) {
        let labels = key.labels();
        self.partition_lag_messages.remove(&labels);
        self.partition_lag_seconds.remove(&labels);
    }
}

/// The gauges of one group.
#[derive(Debug, Clone)]
pub(crate) struct GroupGauges {
    pub(crate) lag_messages: Gauge,
    pub(crate) lag_seconds: Gauge<f64, AtomicU64>,
    pub(crate) status: Gauge,
    pub(crate) members: Gauge,
}

/// The gauges of one partition of one group.
#[derive(Debug, Clone)]
pub(crate) struct PartitionGauges {
    pub(crate) lag_messages: Gauge,
    pub(crate) lag_seconds: Gauge<f64, AtomicU64>,
}

/// Identity of a partition-level gauge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PartitionKey {
    pub(crate) cluster: String,
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) partition: i32,
}

impl PartitionKey {
    fn labels(&self) -> PartitionLabels {
        PartitionLabels {
            cluster: self.cluster.clone(),
            group: self.group.clone(),
            topic: self.topic.clone(),
            partition: self.partition.to_string(),
        }
    }
}

fn cluster_labels(cluster: &str) -> ClusterLabels {
    ClusterLabels {
        cluster: cluster.to_owned(),
    }
}

/// Cloneable view of the source's health for `/readyz`: one flag per cluster, true after a
/// successful poll, false after a failed one (and before the first poll).
#[derive(Debug, Clone, Default)]
pub struct LagHealth {
    clusters: Arc<Vec<(String, AtomicBool)>>,
}

impl LagHealth {
    pub(crate) fn new(clusters: Vec<String>) -> Self {
        Self {
            clusters: Arc::new(
                clusters
                    .into_iter()
                    .map(|name| (name, AtomicBool::new(false)))
                    .collect(),
            ),
        }
    }

    /// Returns true when the last poll of every cluster succeeded (true with no cluster).
    pub fn is_healthy(&self) -> bool {
        self.clusters
            .iter()
            .all(|(_, up)| up.load(Ordering::Acquire))
    }

    /// Returns each cluster's name and whether its last poll succeeded, in configured order.
    pub fn clusters(&self) -> Vec<(String, bool)> {
        self.clusters
            .iter()
            .map(|(name, up)| (name.clone(), up.load(Ordering::Acquire)))
            .collect()
    }

    pub(crate) fn set(&self, index: usize, healthy: bool) {
        if let Some((_, up)) = self.clusters.get(index) {
            up.store(healthy, Ordering::Release);
        }
    }
}
