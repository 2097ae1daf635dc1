//! Observing probe events downstream: a Kafka consumer of pipewarden's own group reading the
//! output topic, or a poller that searches an Elasticsearch/OpenSearch index (or GETs a URL) for
//! the ids of pending events. Each runs as its own task and reports [`Observation`]s.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{MatchBy, ValidObserve};
use crate::error::BuildError;
use crate::inject::ID_HEADER;

/// A probe event seen downstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Event id text.
    pub id: String,
    /// When it was seen, Unix ms.
    pub received_ms: i64,
    /// How many copies were seen (a search can find several at once).
    pub count: u32,
}

/// A request to a polling observer: look for `id` until `until_ms`.
#[derive(Debug, Clone)]
pub struct Watch {
    /// Event id text.
    pub id: String,
    /// Stop looking after this time, Unix ms.
    pub until_ms: i64,
}

/// A running observer task.
#[derive(Debug)]
pub struct ObserverHandle {
    /// Observations, in arrival order.
    pub observations: mpsc::Receiver<Observation>,
    /// Where pending ids go (polling observers only).
    pub watch: Option<mpsc::Sender<Watch>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ObserverHandle {
    /// Stops the task and waits for it.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(err) = self.task.await {
            warn!(error = %err, "probe observer task failed");
        }
    }
}

/// Returns the wall clock in Unix ms.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Builds the observer of a probe and starts its task. A Kafka observer is assigned every
/// partition of its topic at the current end before this returns, so no event injected
/// afterwards is missed.
///
/// # Errors
/// When the consumer cannot be created, the topic has no partition, or an HTTP client fails.
pub async fn start(
    probe: &str,
    config: &ValidObserve,
    capacity: usize,
) -> Result<ObserverHandle, BuildError> {
    let (tx, rx) = mpsc::channel(capacity);
    let stop = CancellationToken::new();
    match config {
        ValidObserve::Kafka {
            config,
            group_id,
            id_field,
        } => {
            let kafka_error = |source| BuildError::Kafka {
                probe: probe.to_owned(),
                role: "consumer",
                topic: config.topic.clone(),
                source: Box::new(source),
            };
            let mut client = ClientConfig::new();
            client
                .set("bootstrap.servers", &config.bootstrap_servers)
                .set("group.id", group_id)
                .set("client.id", format!("pipewarden-probe-{probe}"))
                .set("enable.auto.commit", "true")
                .set("auto.offset.reset", "latest")
                .set("fetch.wait.max.ms", "10")
                .set("enable.partition.eof", "false");
            for (key, value) in &config.properties {
                client.set(key, value);
            }
            let consumer: StreamConsumer = client.create().map_err(kafka_error)?;
            let topic = config.topic.clone();
            let consumer = tokio::task::spawn_blocking(move || {
                assign_at_end(&consumer, &topic).map(|partitions| (consumer, partitions))
            })
            .await
            .map_err(|err| BuildError::Task {
                probe: probe.to_owned(),
                what: "consumer assignment",
                detail: err.to_string(),
            })?;
            let (consumer, partitions) = consumer.map_err(kafka_error)?;
            if partitions == 0 {
                return Err(BuildError::NoPartitions {
                    probe: probe.to_owned(),
                    topic: config.topic.clone(),
                });
            }
            info!(probe, topic = %config.topic, group = %group_id, partitions, "probe observer assigned");
            let task = tokio::spawn(run_kafka(
                consumer,
                config.match_by,
                id_field.clone(),
                tx,
                stop.clone(),
            ));
            Ok(ObserverHandle {
                observations: rx,
                watch: None,
                stop,
                task,
            })
        }
        ValidObserve::Elasticsearch {
            config,
            id_field,
            poll_interval,
        } => {
            let search = Search::Elasticsearch {
                url: config.url.trim_end_matches('/').to_owned(),
                index: config.index.clone(),
                id_field: id_field.clone(),
                cleanup: config.cleanup,
                auth: config
                    .username
                    .clone()
                    .map(|u| (u, config.password.clone())),
            };
            let poller = Poller {
                client: http_client(probe)?,
                search,
                poll_interval: *poll_interval,
            };
            Ok(poller.spawn(capacity, (tx, rx), stop))
        }
        ValidObserve::Http {
            config,
            poll_interval,
        } => {
            let poller = Poller {
                client: http_client(probe)?,
                search: Search::Http {
                    url: config.url.clone(),
                },
                poll_interval: *poll_interval,
            };
            Ok(poller.spawn(capacity, (tx, rx), stop))
        }
    }
}

/// A polling observer (Elasticsearch search or HTTP URL) before it starts.
struct Poller {
    client: reqwest::Client,
    search: Search,
    poll_interval: Duration,
}

impl Poller {
    fn spawn(
        self,
        capacity: usize,
        (tx, rx): (mpsc::Sender<Observation>, mpsc::Receiver<Observation>),
        stop: CancellationToken,
    ) -> ObserverHandle {
        let (watch_tx, watch_rx) = mpsc::channel(capacity);
        let task = tokio::spawn(run_poller(
            self.client,
            self.search,
            self.poll_interval,
            watch_rx,
            tx,
            stop.clone(),
        ));
        ObserverHandle {
            observations: rx,
            watch: Some(watch_tx),
            stop,
            task,
        }
    }
}

fn http_client(probe: &str) -> Result<reqwest::Client, BuildError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|source| BuildError::Http {
            probe: probe.to_owned(),
            source,
        })
}

/// Assigns every partition of `topic` at its high watermark; returns the partition count.
fn assign_at_end(consumer: &StreamConsumer, topic: &str) -> rdkafka::error::KafkaResult<usize> {
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut list = TopicPartitionList::new();
    for partition in &partitions {
        let (_, high) = consumer.fetch_watermarks(topic, *partition, timeout)?;
        list.add_partition_offset(topic, *partition, Offset::Offset(high))?;
    }
    if !partitions.is_empty() {
        consumer.assign(&list)?;
    }
    Ok(partitions.len())
}

/// Returns the probe event id of a record, by header and/or payload field.
pub fn recognise(
    headers: Option<&rdkafka::message::BorrowedHeaders>,
    payload: Option<&[u8]>,
    match_by: MatchBy,
    id_field: &[String],
) -> Option<String> {
    if matches!(match_by, MatchBy::Either | MatchBy::Header)
        && let Some(headers) = headers
        && let Some(id) = headers
            .iter()
            .find(|h| h.key == ID_HEADER)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    {
        return Some(id.to_owned());
    }
    if matches!(match_by, MatchBy::Either | MatchBy::Payload) {
        return payload_id(payload?, id_field);
    }
    None
}

/// Returns the string at `path` in a JSON object payload.
pub fn payload_id(payload: &[u8], path: &[String]) -> Option<String> {
    // Cheap pre-check: most records of a real topic are not probe events.
    let last = path.last()?;
    if !payload.windows(last.len()).any(|w| w == last.as_bytes()) {
        return None;
    }
    let value: Value = serde_json::from_slice(payload).ok()?;
    let mut current = &value;
    for key in path {
        current = current.get(key)?;
    }
    current.as_str().map(str::to_owned)
}

async fn run_kafka(
    consumer: StreamConsumer,
    match_by: MatchBy,
    id_field: Vec<String>,
    out: mpsc::Sender<Observation>,
    stop: CancellationToken,
) {
    let mut errors = 0_u64;
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => break,
            received = consumer.recv() => received,
        };
        match received {
            Ok(message) => {
                let received_ms = now_ms();
                let id = recognise(message.headers(), message.payload(), match_by, &id_field);
                drop(message);
                if let Some(id) = id {
                    let observation = Observation {
                        id,
                        received_ms,
                        count: 1,
                    };
                    if out.send(observation).await.is_err() {
                        break;
                    }
                }
            }
            Err(err) => {
                errors += 1;
                // Rate-limited: the first error, then every hundredth.
                if errors % 100 == 1 {
                    warn!(error = %err, errors, "probe observer consumer error");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // Closing commits offsets and leaves; it blocks, so not on a runtime worker.
    if tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .is_err()
    {
        warn!("closing the probe observer consumer failed");
    }
}

enum Search {
    Elasticsearch {
        url: String,
        index: String,
        id_field: String,
        cleanup: bool,
        auth: Option<(String, Option<String>)>,
    },
    Http {
        url: String,
    },
}

impl Search {
    /// Returns the copies of `id` visible now: their `(index, _id)` for Elasticsearch (empty
    /// when none yet), one empty pair for an HTTP URL that shows it.
    async fn find(
        &self,
        client: &reqwest::Client,
        id: &str,
    ) -> Result<Vec<(String, String)>, String> {
        match self {
            Self::Elasticsearch {
                url,
                index,
                id_field,
                auth,
                ..
            } => {
                let body = json!({
                    "size": 100,
                    "_source": false,
                    "query": { "term": { id_field.as_str(): id } },
                });
                let mut request = client.post(format!("{url}/{index}/_search")).json(&body);
                if let Some((user, password)) = auth {
                    request = request.basic_auth(user, password.as_ref());
                }
                let response = request.send().await.map_err(|e| e.to_string())?;
                let status = response.status();
                if status == reqwest::StatusCode::NOT_FOUND {
                    return Ok(Vec::new());
                }
                let body: Value = response.json().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!("status {status}: {body}"));
                }
                let hits = body["hits"]["hits"]
                    .as_array()
                    .ok_or_else(|| format!("no hits in {body}"))?;
                Ok(hits
                    .iter()
                    .map(|h| {
                        let text = |k: &str| h[k].as_str().unwrap_or_default().to_owned();
                        (text("_index"), text("_id"))
                    })
                    .collect())
            }
            Self::Http { url } => {
                let response = client
                    .get(url.replace("{{probe_id}}", id))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !response.status().is_success() {
                    return Ok(Vec::new());
                }
                let body = response.text().await.map_err(|e| e.to_string())?;
                Ok(if body.contains(id) {
                    vec![(String::new(), String::new())]
                } else {
                    Vec::new()
                })
            }
        }
    }

    /// Deletes the probe documents found (Elasticsearch with `cleanup` only).
    async fn cleanup(&self, client: &reqwest::Client, found: &[(String, String)]) {
        let Self::Elasticsearch {
            url,
            cleanup: true,
            auth,
            ..
        } = self
        else {
            return;
        };
        for (index, doc_id) in found {
            let mut request = client.delete(format!("{url}/{index}/_doc/{doc_id}"));
            if let Some((user, password)) = auth {
                request = request.basic_auth(user, password.as_ref());
            }
            match request.send().await {
                Ok(r) if r.status().is_success() => debug!(index, doc_id, "probe document deleted"),
                Ok(r) => warn!(status = %r.status(), index, "deleting a probe document failed"),
                Err(err) => warn!(error = %err, index, "deleting a probe document failed"),
            }
        }
    }
}

async fn run_poller(
    client: reqwest::Client,
    search: Search,
    poll_interval: Duration,
    mut watch: mpsc::Receiver<Watch>,
    out: mpsc::Sender<Observation>,
    stop: CancellationToken,
) {
    let mut watched: HashMap<String, i64> = HashMap::new();
    let mut tick = tokio::time::interval(poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut errors = 0_u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            request = watch.recv() => match request {
                Some(w) => { watched.insert(w.id, w.until_ms); }
                None => break,
            },
            _ = tick.tick() => {
                let now = now_ms();
                watched.retain(|_, until| *until >= now);
                let ids: Vec<String> = watched.keys().cloned().collect();
                for id in ids {
                    match search.find(&client, &id).await {
                        Ok(found) if found.is_empty() => {}
                        Ok(found) => {
                            watched.remove(&id);
                            let count = u32::try_from(found.len()).unwrap_or(u32::MAX);
                            let observation = Observation { id: id.clone(), received_ms: now_ms(), count };
                            if out.send(observation).await.is_err() {
                                return;
                            }
                            search.cleanup(&client, &found).await;
                        }
                        Err(err) => {
                            errors += 1;
                            if errors % 100 == 1 {
                                warn!(error = %err, errors, "probe observer search failed");
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_ids_are_read_from_a_dotted_path() {
        let path = vec!["meta".to_owned(), "probe_id".to_owned()];
        assert_eq!(
            payload_id(br#"{"meta":{"probe_id":"p-0000000a-0-1"}}"#, &path),
            Some("p-0000000a-0-1".to_owned())
        );
        assert_eq!(payload_id(br#"{"probe_id":"x"}"#, &path), None);
        assert_eq!(payload_id(b"not json probe_id", &path), None);
        assert_eq!(payload_id(br#"{"meta":{"probe_id":3}}"#, &path), None);
    }
}
