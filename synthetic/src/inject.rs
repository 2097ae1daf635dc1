//! Injecting probe events: produce to Kafka (with the marker and trace headers) or POST over
//! HTTP, with a few attempts and exponential backoff.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use crate::config::{HttpInjectConfig, KafkaInjectConfig, ValidInject};
use crate::error::{BuildError, InjectError};

/// Kafka header / HTTP header marking a probe event (value `1`). Stages drop such events before
/// a real sink.
pub const MARKER_HEADER: &str = "pipewarden-probe";
/// HTTP header marking a probe event (value `1`).
pub const HTTP_MARKER_HEADER: &str = "X-Pipewarden-Probe";
/// Kafka header / HTTP header carrying the probe event id.
pub const ID_HEADER: &str = "pipewarden-probe-id";
/// W3C trace context header.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// One probe event ready to send.
#[derive(Debug, Clone)]
pub struct ProbeEvent {
    /// Event id text.
    pub id: String,
    /// Partition (Kafka) or 0.
    pub partition: i32,
    /// `traceparent` value.
    pub traceparent: String,
    /// Rendered payload.
    pub payload: String,
}

/// Where events go; cheap to clone (clients are shared).
#[derive(Clone)]
pub enum Injector {
    /// A Kafka producer.
    Kafka {
        /// Producer.
        producer: FutureProducer,
        /// Topic.
        topic: String,
        /// Attempts per event.
        attempts: u32,
    },
    /// An HTTP POST.
    Http {
        /// Client.
        client: reqwest::Client,
        /// The section.
        config: HttpInjectConfig,
    },
}

impl std::fmt::Debug for Injector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kafka { topic, .. } => write!(f, "Injector::Kafka({topic})"),
            Self::Http { config, .. } => write!(f, "Injector::Http({})", config.url),
        }
    }
}

impl Injector {
    /// Builds the client and returns the partitions events go to (`[0]` for HTTP).
    ///
    /// # Errors
    /// When the producer cannot be created or the topic has no partition.
    pub async fn build(
        probe: &str,
        config: &ValidInject,
        timeout: Duration,
    ) -> Result<(Self, Vec<i32>), BuildError> {
        match config {
            ValidInject::Kafka(kafka) => build_kafka(probe, kafka, timeout).await,
            ValidInject::Http(http) => {
                let client = reqwest::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(|source| BuildError::Http {
                        probe: probe.to_owned(),
                        source,
                    })?;
                Ok((
                    Self::Http {
                        client,
                        config: http.clone(),
                    },
                    vec![0],
                ))
            }
        }
    }

    /// Sends `event`, retrying retriable failures with backoff (100 ms, doubling). Returns the
    /// number of failed attempts before success.
    ///
    /// # Errors
    /// The last error when every attempt failed, or the first permanent one.
    pub async fn send(&self, event: &ProbeEvent) -> Result<u32, (u32, InjectError)> {
        let attempts = match self {
            Self::Kafka { attempts, .. } => *attempts,
            Self::Http { config, .. } => config.attempts,
        }
        .max(1);
        let mut delay = Duration::from_millis(100);
        let mut failed = 0;
        loop {
            match self.send_once(event).await {
                Ok(()) => return Ok(failed),
                Err(err) => {
                    failed += 1;
                    if failed >= attempts || !err.is_retriable() {
                        return Err((failed, err));
                    }
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }

    async fn send_once(&self, event: &ProbeEvent) -> Result<(), InjectError> {
        match self {
            Self::Kafka {
                producer, topic, ..
            } => {
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: MARKER_HEADER,
                        value: Some("1"),
                    })
                    .insert(Header {
                        key: ID_HEADER,
                        value: Some(event.id.as_str()),
                    })
                    .insert(Header {
                        key: TRACEPARENT_HEADER,
                        value: Some(event.traceparent.as_str()),
                    });
                let record = FutureRecord::to(topic)
                    .partition(event.partition)
                    .key(event.id.as_str())
                    .payload(event.payload.as_str())
                    .headers(headers);
                producer
                    .send(record, Duration::from_secs(0))
                    .await
                    .map(|_| ())
                    .map_err(|(source, _)| InjectError::Kafka {
                        topic: topic.clone(),
                        partition: event.partition,
                        source,
                    })
            }
            Self::Http { client, config } => {
                let mut request = client
                    .post(&config.url)
                    .header(HTTP_MARKER_HEADER, "1")
                    .header(ID_HEADER, &event.id)
                    .header(TRACEPARENT_HEADER, &event.traceparent)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        config.content_type.as_deref().unwrap_or("application/json"),
                    )
                    .body(event.payload.clone());
                for (name, value) in &config.headers {
                    request = request.header(name, value);
                }
                let response = request.send().await.map_err(|source| InjectError::Http {
                    url: config.url.clone(),
                    source,
                })?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(InjectError::HttpStatus {
                        url: config.url.clone(),
                        status: status.as_u16(),
                    })
                }
            }
        }
    }
}

async fn build_kafka(
    probe: &str,
    kafka: &KafkaInjectConfig,
    timeout: Duration,
) -> Result<(Injector, Vec<i32>), BuildError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("client.id", format!("pipewarden-probe-{probe}"))
        // One event per request: probe events are few, and latency matters more than batching.
        .set("linger.ms", "0")
        .set(
            "message.timeout.ms",
            timeout.as_millis().clamp(1000, 300_000).to_string(),
        );
    for (key, value) in &kafka.properties {
        client.set(key, value);
    }
    let kafka_error = |source| BuildError::Kafka {
        probe: probe.to_owned(),
        role: "producer",
        topic: kafka.topic.clone(),
        source: Box::new(source),
    };
    let producer: FutureProducer = client.create().map_err(kafka_error)?;
    let partitions = if kafka.partitions.is_empty() {
        let metadata_producer = producer.clone();
        let topic = kafka.topic.clone();
        let metadata = tokio::task::spawn_blocking(move || {
            metadata_producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
        })
        .await
        .map_err(|err| BuildError::Task {
            probe: probe.to_owned(),
            what: "metadata",
            detail: err.to_string(),
        })?
        .map_err(kafka_error)?;
        let mut partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == kafka.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        partitions.sort_unstable();
        partitions
    } else {
        kafka.partitions.clone()
    };
    if partitions.is_empty() {
        return Err(BuildError::NoPartitions {
            probe: probe.to_owned(),
            topic: kafka.topic.clone(),
        });
    }
    Ok((
        Injector::Kafka {
            producer,
            topic: kafka.topic.clone(),
            attempts: kafka.attempts,
        },
        partitions,
    ))
}
