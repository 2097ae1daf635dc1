//! What the source emits after each successful poll of a cluster, and the window state it keeps.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::verdict::{LagStatus, Sample};
use crate::signal::SeriesPoint;

/// The result of one poll of one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LagReport {
    /// Poll time, Unix milliseconds.
    pub timestamp_ms: i64,
    /// Cluster name.
    pub cluster: String,
    /// Lag series for the detector: `kafka.lag_messages` and `kafka.lag_seconds` per group
    /// (no attribute) and per partition (attributes `partition`, `topic`), stage
    /// `kafka/<cluster>/<group>`.
    pub points: Vec<SeriesPoint>,
    /// Every watched group, sorted by name, with its partitions.
    pub groups: Vec<GroupLag>,
    /// Verdicts that changed in this poll (group-level and partition-level); empty when
    /// nothing changed.
    pub status_changes: Vec<StatusChange>,
    /// Window state of this cluster after the poll, to persist and hand back as `restored`
    /// at the next start (merge the states of several clusters with [`LagState::merge`]).
    pub state: LagState,
}

/// Lag and verdict of one consumer group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupLag {
    /// Cluster name.
    pub cluster: String,
    /// Group name.
    pub group: String,
    /// Live members of the group (0: no consumer; the group is still reported).
    pub members: usize,
    /// Group state as the coordinator reports it (`Stable`, `Empty`, ...).
    pub state: String,
    /// Worst partition verdict, or ERR when the group's offsets could not be read.
    pub status: LagStatus,
    /// Lag in messages, summed over the partitions.
    pub lag_messages: i64,
    /// Lag in seconds: the largest partition lag in seconds.
    pub lag_seconds: f64,
    /// Partitions of every watched topic the group has committed offsets for, sorted by topic
    /// and partition.
    pub partitions: Vec<PartitionLag>,
}

/// Lag and verdict of one partition for one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionLag {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Committed offset (`None`: the group never committed this partition).
    pub committed: Option<i64>,
    /// Low watermark.
    pub low: i64,
    /// High watermark.
    pub high: i64,
    /// High watermark − committed offset (from the low watermark without a commit), ≥ 0.
    pub lag_messages: i64,
    /// Age of the message at the committed offset, seconds (0 when caught up).
    pub lag_seconds: f64,
    /// Verdict from the window of samples.
    pub status: LagStatus,
    /// True when `lag_seconds` is an estimate from the production rate (the message could not
    /// be read this poll).
    pub seconds_estimated: bool,
}

/// A verdict that changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    /// Cluster name.
    pub cluster: String,
    /// Group name.
    pub group: String,
    /// Topic and partition for a partition verdict, `None` for the group verdict.
    pub partition: Option<(String, i32)>,
    /// Previous verdict (`None` when first seen).
    pub from: Option<LagStatus>,
    /// New verdict.
    pub to: LagStatus,
}

/// Window state of the source: recent samples and last verdicts per group and partition.
///
/// Serializable (serde) so the app can persist it; pass it back to
/// [`KafkaLagSource::build`](super::KafkaLagSource::build) so verdicts and "only on change"
/// notifications carry on across a restart. A [`LagReport`] carries the state of its cluster
/// only; [`LagState::merge`] combines clusters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LagState {
    pub(crate) clusters: BTreeMap<String, ClusterState>,
}

impl LagState {
    /// Adds the clusters of `other`, replacing clusters of the same name.
    pub fn merge(&mut self, other: LagState) {
        self.clusters.extend(other.clusters);
    }

    /// Returns true when the state holds no cluster.
    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
    }

    /// Returns the names of the clusters in the state.
    pub fn cluster_names(&self) -> Vec<String> {
        self.clusters.keys().cloned().collect()
    }
}

/// State of one cluster: per group, its last verdict and per-partition windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClusterState {
    pub(crate) groups: BTreeMap<String, GroupState>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct GroupState {
    pub(crate) status: Option<LagStatus>,
    /// Topic -> partition -> window.
    pub(crate) topics: BTreeMap<String, BTreeMap<i32, PartitionWindow>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartitionWindow {
    pub(crate) samples: VecDeque<Sample>,
    pub(crate) status: Option<LagStatus>,
    /// Offset whose message timestamp is known, and that timestamp (Unix ms).
    pub(crate) read_offset: Option<i64>,
    pub(crate) read_timestamp_ms: Option<i64>,
}
