//! One poll of one cluster: read offsets, update the windows, judge, and build the report.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::client::{
    ClusterClient, ClusterMetadata, GroupDescription, TIMESTAMP_READER_GROUP, Timestamps,
    TopicPartition,
};
use super::config::{OffsetFetchMode, ValidCluster, ValidKafkaLagConfig};
use super::error::KafkaLagError;
use super::protocol::{GroupOffsets, WireClient};
use super::report::{
    ClusterState, GroupLag, GroupState, LagReport, LagState, PartitionLag, PartitionWindow,
    StatusChange,
};
use super::telemetry::{GroupGauges, LagTelemetry, PartitionGauges, PartitionKey};
use super::verdict::{self, LagStatus, Sample};
use crate::signal::SeriesPoint;

/// Series name of lag in messages.
pub const LAG_MESSAGES: &str = "kafka.lag_messages";
/// Series name of lag in seconds.
pub const LAG_SECONDS: &str = "kafka.lag_seconds";

/// Offsets of one group read this poll: per partition `(offset or -1, error code)`, or the
/// group-level error.
type GroupRead = Result<GroupOffsets, String>;

/// A partition's sample of this poll, or why it could not be taken.
type SampleRead = Result<Sample, String>;

/// Error codes telling that a group's coordinator moved: COORDINATOR_LOAD_IN_PROGRESS,
/// COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR.
const COORDINATOR_ERRORS: [i16; 3] = [14, 15, 16];

/// Polls one cluster and keeps its windows.
#[derive(Debug)]
pub(crate) struct ClusterPoller {
    pub(crate) cluster: ValidCluster,
    config: Arc<ValidKafkaLagConfig>,
    client: Arc<ClusterClient>,
    wire: WireClient,
    /// Group -> coordinator address, from FindCoordinator; dropped on coordinator errors.
    coordinators: HashMap<String, String>,
    state: ClusterState,
    telemetry: LagTelemetry,
    partition_gauges: BTreeMap<PartitionKey, PartitionGauges>,
    group_gauges: BTreeMap<String, GroupGauges>,
}

impl ClusterPoller {
    pub(crate) fn new(
        cluster: ValidCluster,
        config: Arc<ValidKafkaLagConfig>,
        client: ClusterClient,
        state: ClusterState,
        telemetry: LagTelemetry,
    ) -> Self {
        Self {
            cluster,
            config,
            client: Arc::new(client),
            wire: WireClient::default(),
            coordinators: HashMap::new(),
            state,
            telemetry,
            partition_gauges: BTreeMap::new(),
            group_gauges: BTreeMap::new(),
        }
    }

    /// Forgets connections and coordinators after a failed poll, and replaces the librdkafka
    /// clients with fresh ones (no stale metadata when the brokers come back; this also keeps
    /// clear of a librdkafka crash on leader hints without topic ids seen after a broker
    /// restart). The old clients are dropped on a blocking thread.
    pub(crate) fn reset_connections(&mut self) {
        self.wire.reset();
        self.coordinators.clear();
        match ClusterClient::new(&self.cluster, self.config.source.request_timeout) {
            Ok(client) => {
                let old = std::mem::replace(&mut self.client, Arc::new(client));
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(err) => {
                tracing::warn!(cluster = %self.cluster.name, error = %err, "cannot recreate the kafka clients");
            }
        }
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, KafkaLagError>
    where
        T: Send + 'static,
        F: FnOnce(&ClusterClient) -> Result<T, KafkaLagError> + Send + 'static,
    {
        let client = Arc::clone(&self.client);
        tokio::task::spawn_blocking(move || f(&client))
            .await
            .map_err(|source| KafkaLagError::Task {
                cluster: self.cluster.name.clone(),
                source,
            })?
    }

    fn request_error(&self, request: &'static str, message: impl ToString) -> KafkaLagError {
        KafkaLagError::Request {
            cluster: self.cluster.name.clone(),
            request,
            message: message.to_string(),
        }
    }

    /// Polls the cluster once; returns the report and the number of broker requests made.
    pub(crate) async fn poll(&mut self, now_ms: i64) -> Result<(LagReport, u64), KafkaLagError> {
        let mut requests = 0u64;
        let mut steps = StepTimer::start();
        let metadata = self.blocking(ClusterClient::metadata).await?;
        requests += 1;
        let broker_count = metadata.brokers.len().max(1) as u64;
        steps.lap("metadata");
        let groups: Vec<GroupDescription> = self
            .blocking(ClusterClient::groups)
            .await?
            .into_iter()
            .filter(|g| g.name != TIMESTAMP_READER_GROUP && self.cluster.groups.matches(&g.name))
            .collect();
        // ListGroups to every broker, DescribeGroups to every broker that has groups.
        requests += broker_count + if groups.is_empty() { 0 } else { broker_count };

        steps.lap("groups");
        let names: Vec<String> = groups.iter().map(|g| g.name.clone()).collect();
        let (mut reads, offset_requests) = self.read_committed(&metadata, &names).await?;
        requests += offset_requests;

        steps.lap("offsets");
        // Partitions to watch: every partition of each watched topic a group committed to.
        let mut group_partitions: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
        let mut all_partitions: BTreeSet<TopicPartition> = BTreeSet::new();
        for group in &names {
            let Some(Ok(offsets)) = reads.get(group) else {
                continue;
            };
            let topics: BTreeSet<&String> = offsets
                .iter()
                .filter(|((topic, _), (offset, _))| {
                    *offset >= 0
                        && self.cluster.topics.matches(topic)
                        && metadata.topics.contains_key(topic)
                })
                .map(|((topic, _), _)| topic)
                .collect();
            let partitions: Vec<TopicPartition> = topics
                .into_iter()
                .flat_map(|topic| {
                    metadata.topics[topic]
                        .keys()
                        .map(move |p| (topic.clone(), *p))
                })
                .collect();
            all_partitions.extend(partitions.iter().cloned());
            group_partitions.insert(group.clone(), partitions);
        }
        let partition_list: Vec<TopicPartition> = all_partitions.into_iter().collect();
        let leaders = distinct_leaders(&metadata, &partition_list);
        let watermarks = if partition_list.is_empty() {
            HashMap::new()
        } else {
            let list = partition_list.clone();
            requests += 2 * leaders;
            self.blocking(move |client| client.watermarks(&list))
                .await?
        };

        steps.lap("watermarks");
        // Samples of this poll.
        let window = self.config.source.window_samples;
        let mut samples: BTreeMap<(String, String, i32), SampleRead> = BTreeMap::new();
        for (group, partitions) in &group_partitions {
            let Some(Ok(offsets)) = reads.get(group) else {
                continue;
            };
            for (topic, partition) in partitions {
                let key = (topic.clone(), *partition);
                let committed = match offsets.get(&key) {
                    Some((_, error)) if *error != 0 => Err(format!("offset error code {error}")),
                    Some((offset, _)) if *offset >= 0 => Ok(Some(*offset)),
                    _ => Ok(None),
                };
                let sample = match (committed, watermarks.get(&key)) {
                    (Ok(committed), Some(Ok((low, high)))) => Ok(Sample {
                        t_ms: now_ms,
                        committed,
                        low: *low,
                        high: *high,
                    }),
                    (Err(err), _) => Err(err),
                    (_, Some(Err(err))) => Err(err.clone()),
                    (_, None) => Err("no watermark".to_owned()),
                };
                samples.insert((group.clone(), topic.clone(), *partition), sample);
            }
        }

        // Message timestamps for lag in seconds, unless known from an earlier poll.
        let mut wanted = BTreeSet::new();
        let mut reading: BTreeSet<(&str, i32)> = BTreeSet::new();
        for ((group, topic, partition), sample) in &samples {
            let Ok(sample) = sample else { continue };
            if sample.lag_messages() == 0 {
                continue;
            }
            let next = sample.next_offset();
            let known = self
                .window(group, topic, *partition)
                .is_some_and(|w| w.read_offset == Some(next) && w.read_timestamp_ms.is_some());
            let room = reading.contains(&(topic.as_str(), *partition))
                || reading.len() < self.config.source.max_timestamp_reads;
            if !known && room {
                reading.insert((topic.as_str(), *partition));
                wanted.insert((topic.clone(), *partition, next));
            }
        }
        let timestamps = if wanted.is_empty() {
            HashMap::new()
        } else {
            let reading_leaders = {
                let list: Vec<TopicPartition> =
                    wanted.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
                distinct_leaders(&metadata, &list)
            };
            let (found, rounds) = self
                .blocking(move |client| client.read_timestamps(&wanted))
                .await?;
            requests += rounds * reading_leaders;
            found
        };

        steps.lap("timestamps");
        let report = self.judge(now_ms, &groups, &mut reads, samples, &timestamps, window);
        steps.lap("judge");
        tracing::debug!(cluster = %self.cluster.name, requests, steps = %steps, "kafka lag poll");
        Ok((report, requests))
    }

    /// Reads committed offsets of `groups`; returns them and the number of requests made.
    async fn read_committed(
        &mut self,
        metadata: &ClusterMetadata,
        groups: &[String],
    ) -> Result<(HashMap<String, GroupRead>, u64), KafkaLagError> {
        if groups.is_empty() {
            return Ok((HashMap::new(), 0));
        }
        match self.cluster.offset_fetch {
            OffsetFetchMode::PerGroup | OffsetFetchMode::Auto => {
                let partitions: Vec<TopicPartition> = metadata
                    .topics
                    .iter()
                    .filter(|(topic, _)| self.cluster.topics.matches(topic))
                    .flat_map(|(topic, partitions)| {
                        partitions.keys().map(move |p| (topic.clone(), *p))
                    })
                    .collect();
                let list = groups.to_vec();
                let reads = self
                    .blocking(move |client| Ok(client.committed_per_group(&list, &partitions)))
                    .await?;
                // Each short-lived consumer: Metadata, FindCoordinator, OffsetFetch.
                Ok((reads, 3 * groups.len() as u64))
            }
            OffsetFetchMode::Batched => self.read_committed_batched(metadata, groups).await,
        }
    }

    /// Batched path: FindCoordinator for groups whose coordinator is not known yet (one
    /// request), then one OffsetFetch per coordinator.
    async fn read_committed_batched(
        &mut self,
        metadata: &ClusterMetadata,
        groups: &[String],
    ) -> Result<(HashMap<String, GroupRead>, u64), KafkaLagError> {
        let timeout = self.config.source.request_timeout;
        let mut requests = 0;
        let mut reads: HashMap<String, GroupRead> = HashMap::new();
        let unknown: Vec<String> = groups
            .iter()
            .filter(|g| !self.coordinators.contains_key(*g))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            let bootstrap = metadata
                .brokers
                .values()
                .next()
                .cloned()
                .ok_or_else(|| self.request_error("find_coordinator", "no broker known"))?;
            requests += 1;
            let found = self
                .wire
                .find_coordinators(&bootstrap, &unknown, timeout)
                .await
                .map_err(|err| self.request_error("find_coordinator", err))?;
            for group in unknown {
                match found.get(&group) {
                    Some(Ok(coordinator)) => {
                        self.coordinators.insert(group, coordinator.address.clone());
                    }
                    Some(Err(code)) => {
                        reads.insert(group, Err(format!("coordinator error code {code}")));
                    }
                    None => {
                        reads.insert(group, Err("no coordinator".to_owned()));
                    }
                }
            }
        }
        let mut by_coordinator: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for group in groups {
            if let Some(address) = self.coordinators.get(group) {
                by_coordinator
                    .entry(address.clone())
                    .or_default()
                    .push(group.clone());
            }
        }
        for (address, members) in by_coordinator {
            requests += 1;
            let fetched = match self.wire.offset_fetch(&address, &members, timeout).await {
                Ok(fetched) => fetched,
                Err(err) => {
                    // The coordinator may have moved: look it up again next poll.
                    self.coordinators.retain(|_, a| *a != address);
                    return Err(self.request_error("offset_fetch", err));
                }
            };
            for group in members {
                let read = match fetched.get(&group) {
                    Some(Ok(offsets)) => Ok(offsets.clone()),
                    Some(Err(code)) => {
                        if COORDINATOR_ERRORS.contains(code) {
                            self.coordinators.remove(&group);
                        }
                        Err(format!("offset fetch error code {code}"))
                    }
                    None => Err("missing from the offset fetch answer".to_owned()),
                };
                reads.insert(group, read);
            }
        }
        // Forget coordinators of groups that are gone.
        let watched: BTreeSet<&String> = groups.iter().collect();
        self.coordinators.retain(|group, _| watched.contains(group));
        Ok((reads, requests))
    }

    fn window(&self, group: &str, topic: &str, partition: i32) -> Option<&PartitionWindow> {
        self.state
            .groups
            .get(group)?
            .topics
            .get(topic)?
            .get(&partition)
    }

    /// Updates windows, gives verdicts, fills telemetry and builds the report.
    fn judge(
        &mut self,
        now_ms: i64,
        groups: &[GroupDescription],
        reads: &mut HashMap<String, GroupRead>,
        samples: BTreeMap<(String, String, i32), SampleRead>,
        timestamps: &Timestamps,
        window: usize,
    ) -> LagReport {
        let cluster = self.cluster.name.clone();
        let mut old = std::mem::take(&mut self.state);
        let mut new_state = ClusterState::default();
        let mut points = Vec::new();
        let mut group_lags = Vec::with_capacity(groups.len());
        let mut changes = Vec::new();
        let mut live_partitions = BTreeSet::new();
        let max_partition_series = self.config.source.max_partition_series;

        let mut samples_by_group: BTreeMap<String, Vec<(TopicPartition, SampleRead)>> =
            BTreeMap::new();
        for ((group, topic, partition), sample) in samples {
            samples_by_group
                .entry(group)
                .or_default()
                .push(((topic, partition), sample));
        }
        let mut sorted_groups: Vec<&GroupDescription> = groups.iter().collect();
        sorted_groups.sort_by(|a, b| a.name.cmp(&b.name));

        for description in sorted_groups {
            let group = &description.name;
            let mut old_group = old.groups.remove(group).unwrap_or_default();
            let stage = format!("kafka/{cluster}/{group}");
            let threshold = self.config.threshold_for(group);
            let has_members = description.members > 0;
            let read_failed = matches!(reads.remove(group), Some(Err(_)) | None);

            let mut group_state = GroupState::default();
            let mut partitions = Vec::new();
            let mut worst = LagStatus::Ok;
            let mut lag_messages = 0i64;
            let mut lag_seconds = 0f64;
            if read_failed {
                // Keep the windows as they were: nothing was learnt this poll.
                group_state.topics = std::mem::take(&mut old_group.topics);
                worst = LagStatus::Err;
            }
            for ((topic, partition), sample) in samples_by_group.remove(group).unwrap_or_default() {
                let mut partition_window = old_group
                    .topics
                    .get_mut(&topic)
                    .and_then(|t| t.remove(&partition))
                    .unwrap_or_default();
                let (status, lag) = match sample {
                    Err(_) => (LagStatus::Err, None),
                    Ok(sample) => {
                        partition_window.samples.push_back(sample);
                        while partition_window.samples.len() > window {
                            partition_window.samples.pop_front();
                        }
                        let (seconds, estimated) = lag_seconds_of(
                            &mut partition_window,
                            &topic,
                            partition,
                            timestamps,
                            window,
                        );
                        let status = verdict::partition_status(
                            &partition_window.samples,
                            window,
                            seconds,
                            has_members,
                            threshold,
                        );
                        (status, Some((sample, seconds, estimated)))
                    }
                };
                if partition_window.status != Some(status)
                    && (partition_window.status.is_some() || status != LagStatus::Ok)
                {
                    changes.push(StatusChange {
                        cluster: cluster.clone(),
                        group: group.clone(),
                        partition: Some((topic.clone(), partition)),
                        from: partition_window.status,
                        to: status,
                    });
                }
                partition_window.status = Some(status);
                worst = worst.max(status);
                let key = PartitionKey {
                    cluster: cluster.clone(),
                    group: group.clone(),
                    topic: topic.clone(),
                    partition,
                };
                if let Some((sample, seconds, estimated)) = lag {
                    let messages = sample.lag_messages();
                    lag_messages += messages;
                    lag_seconds = lag_seconds.max(seconds);
                    let gauges = match self.partition_gauges.get(&key) {
                        Some(gauges) => Some(gauges),
                        None if self.partition_gauges.len() < max_partition_series => {
                            let gauges = self.telemetry.partition_gauges(&key);
                            Some(&*self.partition_gauges.entry(key.clone()).or_insert(gauges))
                        }
                        None => None,
                    };
                    if let Some(gauges) = gauges {
                        gauges.lag_messages.set(messages);
                        gauges.lag_seconds.set(seconds);
                        let attributes = vec![
                            ("partition".to_owned(), partition.to_string()),
                            ("topic".to_owned(), topic.clone()),
                        ];
                        push_points(&mut points, &stage, attributes, now_ms, messages, seconds);
                    }
                    partitions.push(PartitionLag {
                        topic: topic.clone(),
                        partition,
                        committed: sample.committed,
                        low: sample.low,
                        high: sample.high,
                        lag_messages: messages,
                        lag_seconds: seconds,
                        status,
                        seconds_estimated: estimated,
                    });
                }
                live_partitions.insert(key);
                group_state
                    .topics
                    .entry(topic)
                    .or_default()
                    .insert(partition, partition_window);
            }
            if !read_failed {
                push_points(
                    &mut points,
                    &stage,
                    Vec::new(),
                    now_ms,
                    lag_messages,
                    lag_seconds,
                );
            }
            if old_group.status != Some(worst)
                && (old_group.status.is_some() || worst != LagStatus::Ok)
            {
                changes.push(StatusChange {
                    cluster: cluster.clone(),
                    group: group.clone(),
                    partition: None,
                    from: old_group.status,
                    to: worst,
                });
            }
            group_state.status = Some(worst);
            let gauges = self
                .group_gauges
                .entry(group.clone())
                .or_insert_with(|| self.telemetry.group_gauges(&cluster, group));
            gauges.lag_messages.set(lag_messages);
            gauges.lag_seconds.set(lag_seconds);
            gauges.status.set(worst.code());
            gauges
                .members
                .set(i64::try_from(description.members).unwrap_or(i64::MAX));
            group_lags.push(GroupLag {
                cluster: cluster.clone(),
                group: group.clone(),
                members: description.members,
                state: description.state.clone(),
                status: worst,
                lag_messages,
                lag_seconds,
                partitions,
            });
            new_state.groups.insert(group.clone(), group_state);
        }

        // Forget gauges of groups and partitions that are gone.
        let gone: Vec<PartitionKey> = self
            .partition_gauges
            .keys()
            .filter(|key| !live_partitions.contains(*key) && !new_state_keeps(&new_state, key))
            .cloned()
            .collect();
        for key in gone {
            self.telemetry.remove_partition(&key);
            self.partition_gauges.remove(&key);
        }
        let gone_groups: Vec<String> = self
            .group_gauges
            .keys()
            .filter(|g| !new_state.groups.contains_key(*g))
            .cloned()
            .collect();
        for group in gone_groups {
            self.telemetry.remove_group(&cluster, &group);
            self.group_gauges.remove(&group);
        }
        self.telemetry
            .status_changes(&cluster, changes.len() as u64);

        self.state = new_state;
        LagReport {
            timestamp_ms: now_ms,
            cluster: cluster.clone(),
            points,
            groups: group_lags,
            status_changes: changes,
            state: LagState {
                clusters: BTreeMap::from([(cluster, self.state.clone())]),
            },
        }
    }
}

/// Returns true when a partition gauge belongs to a group kept as-is (read failed this poll).
fn new_state_keeps(state: &ClusterState, key: &PartitionKey) -> bool {
    state
        .groups
        .get(&key.group)
        .and_then(|g| g.topics.get(&key.topic))
        .is_some_and(|t| t.contains_key(&key.partition))
}

/// Lag in seconds of the newest sample, and whether it is an estimate.
///
/// The age of the message at the next offset to consume, from a timestamp read this poll or
/// remembered for that offset; else the lag divided by the production rate over the window;
/// else 0 (flagged as an estimate).
fn lag_seconds_of(
    window: &mut PartitionWindow,
    topic: &str,
    partition: i32,
    timestamps: &Timestamps,
    window_samples: usize,
) -> (f64, bool) {
    let Some(sample) = window.samples.back().copied() else {
        return (0.0, true);
    };
    if sample.lag_messages() == 0 {
        return (0.0, false);
    }
    let next = sample.next_offset();
    if let Some(ms) = timestamps.get(&(topic.to_owned(), partition, next)) {
        window.read_offset = Some(next);
        window.read_timestamp_ms = Some(*ms);
    }
    if window.read_offset == Some(next)
        && let Some(ms) = window.read_timestamp_ms
    {
        return (((sample.t_ms - ms) as f64 / 1000.0).max(0.0), false);
    }
    match verdict::estimate_lag_seconds(&window.samples, window_samples) {
        Some(seconds) => (seconds, true),
        None => (0.0, true),
    }
}

fn push_points(
    points: &mut Vec<SeriesPoint>,
    stage: &str,
    attributes: Vec<(String, String)>,
    timestamp_ms: i64,
    lag_messages: i64,
    lag_seconds: f64,
) {
    for (name, value) in [
        (LAG_MESSAGES, lag_messages as f64),
        (LAG_SECONDS, lag_seconds),
    ] {
        points.push(SeriesPoint::new(
            stage,
            name,
            attributes.clone(),
            timestamp_ms,
            value,
        ));
    }
}

/// Wall time of each step of a poll, for the debug log.
struct StepTimer {
    last: tokio::time::Instant,
    laps: Vec<(&'static str, std::time::Duration)>,
}

impl StepTimer {
    fn start() -> Self {
        Self {
            last: tokio::time::Instant::now(),
            laps: Vec::with_capacity(8),
        }
    }

    fn lap(&mut self, step: &'static str) {
        let now = tokio::time::Instant::now();
        self.laps.push((step, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for StepTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (step, elapsed)) in self.laps.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{step}={}ms", elapsed.as_millis())?;
        }
        Ok(())
    }
}

fn distinct_leaders(metadata: &ClusterMetadata, partitions: &[TopicPartition]) -> u64 {
    partitions
        .iter()
        .filter_map(|(topic, partition)| metadata.topics.get(topic)?.get(partition))
        .collect::<BTreeSet<_>>()
        .len()
        .max(1) as u64
}
