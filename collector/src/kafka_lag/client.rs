//! librdkafka calls of one cluster. Every method blocks: callers run them in `spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::config::ValidCluster;
use super::error::KafkaLagError;
use super::protocol::{GroupOffsets, format_address};

/// Group id of the consumer that reads message timestamps: librdkafka needs one to assign
/// partitions, but the consumer never joins the group nor commits, so the group never exists
/// on the brokers. Excluded from the watched groups anyway.
pub(crate) const TIMESTAMP_READER_GROUP: &str = "pipewarden-kafka-lag-timestamps";
/// Largest distance between two wanted offsets of a partition that are read in one pass.
const MAX_OFFSET_GAP: i64 = 100;
/// Concurrent short-lived consumers in `per_group` offset mode.
const PER_GROUP_WORKERS: usize = 8;

/// Brokers and topics of a cluster.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterMetadata {
    /// Broker id -> `host:port`.
    pub(crate) brokers: BTreeMap<i32, String>,
    /// Topic -> partition -> leader broker id.
    pub(crate) topics: BTreeMap<String, BTreeMap<i32, i32>>,
}

/// A consumer group as the coordinators describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupDescription {
    pub(crate) name: String,
    pub(crate) state: String,
    pub(crate) members: usize,
}

/// A partition of a topic.
pub(crate) type TopicPartition = (String, i32);

/// Low and high watermarks per partition, or the error text for that partition.
pub(crate) type Watermarks = HashMap<TopicPartition, Result<(i64, i64), String>>;

/// Message timestamps (Unix ms) per `(topic, partition, offset)`.
pub(crate) type Timestamps = HashMap<(String, i32, i64), i64>;

/// The librdkafka clients of one cluster: one reader for metadata, groups and watermarks, one
/// consumer (no group, never commits) that reads single messages for their timestamps.
pub(crate) struct ClusterClient {
    cluster: String,
    base: ClientConfig,
    reader: BaseConsumer,
    timestamps: BaseConsumer,
    timeout: Duration,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClient")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl ClusterClient {
    /// Creates the clients (librdkafka connects in the background).
    pub(crate) fn new(cluster: &ValidCluster, timeout: Duration) -> Result<Self, KafkaLagError> {
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", &cluster.bootstrap_servers)
            .set("client.id", "pipewarden-kafka-lag")
            // Reconnect quickly after a broker restart (the librdkafka default backs off to 10s).
            .set("reconnect.backoff.max.ms", "1000")
            .set("enable.auto.commit", "false")
            .set_log_level(RDKafkaLogLevel::Critical);
        for (key, value) in &cluster.client {
            base.set(key, value);
        }
        let client_error = |source| KafkaLagError::Client {
            cluster: cluster.name.clone(),
            source,
        };
        let reader: BaseConsumer = base.create().map_err(client_error)?;
        let mut timestamp_config = base.clone();
        timestamp_config
            .set("group.id", TIMESTAMP_READER_GROUP)
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "20")
            .set("max.partition.fetch.bytes", "4096");
        let timestamps: BaseConsumer = timestamp_config.create().map_err(client_error)?;
        Ok(Self {
            cluster: cluster.name.clone(),
            base,
            reader,
            timestamps,
            timeout,
        })
    }

    fn request_error(&self, request: &'static str, err: impl std::fmt::Display) -> KafkaLagError {
        KafkaLagError::Request {
            cluster: self.cluster.clone(),
            request,
            message: err.to_string(),
        }
    }

    /// Reads brokers and topics (one Metadata request).
    pub(crate) fn metadata(&self) -> Result<ClusterMetadata, KafkaLagError> {
        let metadata = self
            .reader
            .fetch_metadata(None, self.timeout)
            .map_err(|err| self.request_error("metadata", err))?;
        let brokers = metadata
            .brokers()
            .iter()
            .map(|b| (b.id(), format_address(b.host(), b.port())))
            .collect();
        let topics = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| {
                let partitions = t
                    .partitions()
                    .iter()
                    .map(|p| (p.id(), p.leader()))
                    .collect();
                (t.name().to_owned(), partitions)
            })
            .collect();
        Ok(ClusterMetadata { brokers, topics })
    }

    /// Lists and describes every group (ListGroups and DescribeGroups, one each per broker).
    pub(crate) fn groups(&self) -> Result<Vec<GroupDescription>, KafkaLagError> {
        let list = self
            .reader
            .fetch_group_list(None, self.timeout)
            .map_err(|err| self.request_error("list_groups", err))?;
        Ok(list
            .groups()
            .iter()
            .map(|g| GroupDescription {
                name: g.name().to_owned(),
                state: g.state().to_owned(),
                members: g.members().len(),
            })
            .collect())
    }

    /// Reads low and high watermarks of `partitions`: two ListOffsets requests (earliest,
    /// latest) per partition leader, all partitions of a leader in one request.
    ///
    /// Returns per partition `(low, high)` or the error text for that partition.
    pub(crate) fn watermarks(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Watermarks, KafkaLagError> {
        let mut result = Watermarks::new();
        if partitions.is_empty() {
            return Ok(result);
        }
        let list = |offset: Offset| -> Result<TopicPartitionList, KafkaLagError> {
            let mut tpl = TopicPartitionList::with_capacity(partitions.len());
            for (topic, partition) in partitions {
                tpl.add_partition_offset(topic, *partition, offset)
                    .map_err(|err| self.request_error("list_offsets", err))?;
            }
            Ok(tpl)
        };
        // ListOffsets with timestamp -2 answers the earliest offset, -1 the latest.
        let low = self
            .reader
            .offsets_for_times(list(Offset::Beginning)?, self.timeout)
            .map_err(|err| self.request_error("list_offsets", err))?;
        let high = self
            .reader
            .offsets_for_times(list(Offset::End)?, self.timeout)
            .map_err(|err| self.request_error("list_offsets", err))?;
        let mut lows = HashMap::with_capacity(partitions.len());
        for elem in low.elements() {
            let value = match (elem.error(), elem.offset()) {
                (Err(err), _) => Err(err.to_string()),
                (Ok(()), Offset::Offset(offset)) => Ok(offset),
                (Ok(()), other) => Err(format!("no low watermark ({other:?})")),
            };
            lows.insert((elem.topic().to_owned(), elem.partition()), value);
        }
        for elem in high.elements() {
            let key = (elem.topic().to_owned(), elem.partition());
            let high = match (elem.error(), elem.offset()) {
                (Err(err), _) => Err(err.to_string()),
                (Ok(()), Offset::Offset(offset)) => Ok(offset),
                (Ok(()), other) => Err(format!("no high watermark ({other:?})")),
            };
            let low = lows
                .remove(&key)
                .unwrap_or_else(|| Err("no low watermark".to_owned()));
            let value = match (low, high) {
                (Ok(low), Ok(high)) => Ok((low, high)),
                (Err(err), _) | (_, Err(err)) => Err(err),
            };
            result.insert(key, value);
        }
        Ok(result)
    }

    /// Reads the timestamp (Unix ms) of the message at each wanted offset (or of the first
    /// message after it, when that offset holds none).
    ///
    /// Wanted offsets of a partition less than [`MAX_OFFSET_GAP`] apart are read in one pass:
    /// the partition is assigned at the lowest and consumed up to the highest. Each round
    /// assigns every partition at most once; a partition with offsets far apart takes several
    /// rounds. Stops at the request timeout.
    ///
    /// Returns the timestamps found and the number of rounds.
    pub(crate) fn read_timestamps(
        &self,
        wanted: &BTreeSet<(String, i32, i64)>,
    ) -> Result<(Timestamps, u64), KafkaLagError> {
        let mut found = Timestamps::with_capacity(wanted.len());
        let rounds = plan_timestamp_rounds(wanted);
        let deadline = tokio::time::Instant::now() + self.timeout;
        let round_count = rounds.len() as u64;
        for round in rounds {
            let mut assignment = TopicPartitionList::with_capacity(round.len());
            for ((topic, partition), offsets) in &round {
                let first = offsets.first().copied().unwrap_or(0);
                assignment
                    .add_partition_offset(topic, *partition, Offset::Offset(first))
                    .map_err(|err| self.request_error("fetch_timestamps", err))?;
            }
            self.timestamps
                .assign(&assignment)
                .map_err(|err| self.request_error("fetch_timestamps", err))?;
            // Partition -> (offsets still wanted, ascending, as a stack: lowest last).
            let mut pending: HashMap<TopicPartition, Vec<i64>> = round
                .into_iter()
                .map(|(key, mut offsets)| {
                    offsets.reverse();
                    (key, offsets)
                })
                .collect();
            while !pending.is_empty() {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    break;
                }
                let wait = (deadline - now).min(Duration::from_millis(100));
                let message = match self.timestamps.poll(wait) {
                    None | Some(Err(KafkaError::PartitionEOF(_))) => continue,
                    Some(Err(err)) => {
                        tracing::debug!(cluster = %self.cluster, error = %err, "timestamp read failed");
                        continue;
                    }
                    Some(Ok(message)) => message,
                };
                let key = (message.topic().to_owned(), message.partition());
                let Some(offsets) = pending.get_mut(&key) else {
                    continue;
                };
                while let Some(&offset) = offsets.last() {
                    if offset > message.offset() {
                        break;
                    }
                    offsets.pop();
                    if let Some(ms) = message.timestamp().to_millis() {
                        found.insert((key.0.clone(), key.1, offset), ms);
                    }
                }
                if offsets.is_empty() {
                    pending.remove(&key);
                }
            }
            self.timestamps
                .unassign()
                .map_err(|err| self.request_error("fetch_timestamps", err))?;
        }
        Ok((found, round_count))
    }

    /// Reads the committed offsets of each group with a short-lived consumer per group (never
    /// joins): the path for clusters the batched protocol client cannot reach.
    pub(crate) fn committed_per_group(
        &self,
        groups: &[String],
        partitions: &[TopicPartition],
    ) -> HashMap<String, Result<GroupOffsets, String>> {
        let chunk = groups.len().div_ceil(PER_GROUP_WORKERS).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = groups
                .chunks(chunk)
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|group| (group.clone(), self.committed_of(group, partitions)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| {
                    worker
                        .join()
                        .unwrap_or_else(|_| vec![(String::new(), Err("worker panicked".into()))])
                })
                .collect()
        })
    }

    fn committed_of(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<GroupOffsets, String> {
        let mut config = self.base.clone();
        config.set("group.id", group);
        let consumer: BaseConsumer = config.create().map_err(|err| err.to_string())?;
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            tpl.add_partition(topic, *partition);
        }
        let committed = consumer
            .committed_offsets(tpl, self.timeout)
            .map_err(|err| err.to_string())?;
        let mut offsets = GroupOffsets::new();
        for elem in committed.elements() {
            let (offset, error) = match (elem.error(), elem.offset()) {
                (Err(_), _) => (-1, -1),
                (Ok(()), Offset::Offset(offset)) => (offset, 0),
                (Ok(()), _) => (-1, 0),
            };
            offsets.insert((elem.topic().to_owned(), elem.partition()), (offset, error));
        }
        // A partition list from `committed_offsets` must be dropped before its consumer.
        drop(committed);
        drop(consumer);
        Ok(offsets)
    }
}

/// Splits wanted offsets into rounds: per partition, runs of offsets less than
/// [`MAX_OFFSET_GAP`] apart; round `k` holds the `k`-th run of every partition.
fn plan_timestamp_rounds(
    wanted: &BTreeSet<(String, i32, i64)>,
) -> Vec<BTreeMap<TopicPartition, Vec<i64>>> {
    let mut rounds: Vec<BTreeMap<TopicPartition, Vec<i64>>> = Vec::new();
    let mut current: Option<(TopicPartition, usize)> = None;
    for (topic, partition, offset) in wanted {
        let key = (topic.clone(), *partition);
        let round = match &current {
            Some((last_key, round)) if *last_key == key => {
                let run_last = rounds[*round]
                    .get(&key)
                    .and_then(|offsets| offsets.last().copied())
                    .unwrap_or(*offset);
                if offset - run_last < MAX_OFFSET_GAP {
                    *round
                } else {
                    round + 1
                }
            }
            _ => 0,
        };
        if rounds.len() <= round {
            rounds.push(BTreeMap::new());
        }
        rounds[round].entry(key.clone()).or_default().push(*offset);
        current = Some((key, round));
    }
    rounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_offsets_share_a_pass_and_far_ones_take_another_round() {
        let wanted: BTreeSet<(String, i32, i64)> = [
            ("a", 0, 1),
            ("a", 0, 5),
            ("a", 0, 500),
            ("a", 1, 7),
            ("b", 0, 0),
        ]
        .into_iter()
        .map(|(t, p, o)| (t.to_owned(), p, o))
        .collect();
        let rounds = plan_timestamp_rounds(&wanted);
        assert_eq!(rounds.len(), 2);
        assert_eq!(rounds[0][&("a".to_owned(), 0)], vec![1, 5]);
        assert_eq!(rounds[0][&("a".to_owned(), 1)], vec![7]);
        assert_eq!(rounds[0][&("b".to_owned(), 0)], vec![0]);
        assert_eq!(rounds[1].len(), 1);
        assert_eq!(rounds[1][&("a".to_owned(), 0)], vec![500]);
    }
}
