//! A small relay stage for synthetic-probe tests: consumes topic `input`, produces every record
//! (payload and headers) to topic `output`, one record per produce request.
//!
//! It can be told to add a delay, drop every Nth record, duplicate every Mth, stop after K
//! records, and stop or resume at any time. When it forwards a record carrying a `traceparent`
//! header, it exports a span of the propagated trace (consume to produce, service `service`) to
//! an OTLP/HTTP endpoint, as an instrumented stage would. Counting starts at 1 with the first
//! record consumed; a record both dropped and duplicated by the rules is dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::otlp::string_attribute;

/// What the relay does to the records it consumes.
#[derive(Debug, Clone, Default)]
pub struct RelayRules {
    /// Time between consuming and producing.
    pub delay: Duration,
    /// Drops every Nth record (0: none).
    pub drop_every: u64,
    /// Produces every Mth record twice (0: none).
    pub duplicate_every: u64,
    /// Stops consuming after this many records (0: never).
    pub stop_after: u64,
}

/// Counters of what the relay did.
#[derive(Debug, Default)]
pub struct RelayCounts {
    /// Records consumed.
    pub consumed: AtomicU64,
    /// Records dropped by the rules.
    pub dropped: AtomicU64,
    /// Extra copies produced.
    pub duplicated: AtomicU64,
    /// Spans exported.
    pub spans: AtomicU64,
}

/// A running relay.
pub struct Relay {
    counts: Arc<RelayCounts>,
    paused: Arc<AtomicBool>,
    otlp_http: Arc<Mutex<Option<String>>>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0_u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Returns (trace id, parent span id) of a `traceparent` value.
fn parse_traceparent(value: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut parts = value.split('-');
    let _version = parts.next()?;
    let trace = parse_hex::<16>(parts.next()?)?;
    let parent = parse_hex::<8>(parts.next()?)?;
    Some((trace, parent))
}

async fn export_span(
    client: reqwest::Client,
    endpoint: String,
    service: String,
    trace_id: [u8; 16],
    parent: [u8; 8],
    start: u64,
    end: u64,
) {
    let mut span_id = [0_u8; 8];
    span_id.copy_from_slice(&unix_nanos().to_be_bytes());
    span_id[0] |= 1;
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_attribute("service.name", &service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: trace_id.to_vec(),
                    span_id: span_id.to_vec(),
                    parent_span_id: parent.to_vec(),
                    name: "relay forward".to_owned(),
                    kind: 5,
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let _ = client
        .post(format!("{endpoint}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await;
}

impl Relay {
    /// Starts relaying `input` (partition 0, from the beginning) to `output` (partition 0) on
    /// the broker at `bootstrap`; spans of service `service` go to the OTLP/HTTP endpoint set
    /// with [`Relay::export_spans_to`].
    pub async fn start(
        bootstrap: &str,
        input: &str,
        output: &str,
        rules: RelayRules,
        service: &str,
    ) -> Self {
        let otlp_http: Arc<Mutex<Option<String>>> = Arc::default();
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("relay-{input}-{output}"))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("relay consumer");
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(input, 0, Offset::Beginning)
            .expect("relay assignment");
        consumer.assign(&assignment).expect("relay assign");
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "0")
            .set("batch.num.messages", "1")
            .create()
            .expect("relay producer");
        let counts = Arc::new(RelayCounts::default());
        let paused = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let http = reqwest::Client::builder().no_proxy().build().expect("http");
        let task = tokio::spawn({
            let counts = Arc::clone(&counts);
            let paused = Arc::clone(&paused);
            let stop = stop.clone();
            let output = output.to_owned();
            let service = service.to_owned();
            let otlp_http = Arc::clone(&otlp_http);
            async move {
                loop {
                    if paused.load(Ordering::SeqCst)
                        || (rules.stop_after > 0
                            && counts.consumed.load(Ordering::SeqCst) >= rules.stop_after)
                    {
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_millis(20)) => continue,
                        }
                    }
                    let message = tokio::select! {
                        () = stop.cancelled() => break,
                        m = consumer.recv() => m,
                    };
                    let Ok(message) = message else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    // Paused while waiting: the record waits too (it is not forwarded until resumed).
                    while paused.load(Ordering::SeqCst) {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_millis(20)) => {}
                        }
                    }
                    let start = unix_nanos();
                    let n = counts.consumed.fetch_add(1, Ordering::SeqCst) + 1;
                    let payload = message.payload().map(<[u8]>::to_vec).unwrap_or_default();
                    let key = message.key().map(<[u8]>::to_vec);
                    let mut headers = OwnedHeaders::new();
                    let mut traceparent = None;
                    if let Some(h) = message.headers() {
                        for header in h.iter() {
                            if header.key == "traceparent" {
                                traceparent = header
                                    .value
                                    .and_then(|v| std::str::from_utf8(v).ok())
                                    .and_then(parse_traceparent);
                            }
                            headers = headers.insert(rdkafka::message::Header {
                                key: header.key,
                                value: header.value,
                            });
                        }
                    }
                    drop(message);
                    tokio::time::sleep(rules.delay).await;
                    if rules.drop_every > 0 && n % rules.drop_every == 0 {
                        counts.dropped.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    let copies = if rules.duplicate_every > 0 && n % rules.duplicate_every == 0 {
                        counts.duplicated.fetch_add(1, Ordering::SeqCst);
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        let mut record = FutureRecord::to(&output)
                            .partition(0)
                            .payload(&payload)
                            .headers(headers.clone());
                        if let Some(key) = &key {
                            record = record.key(key);
                        }
                        producer
                            .send(record, Duration::from_secs(10))
                            .await
                            .expect("relay produce");
                    }
                    let end = unix_nanos();
                    let endpoint = otlp_http.lock().expect("lock").clone();
                    if let (Some(endpoint), Some((trace_id, parent))) = (endpoint, traceparent) {
                        counts.spans.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(export_span(
                            http.clone(),
                            endpoint,
                            service.clone(),
                            trace_id,
                            parent,
                            start,
                            end,
                        ));
                    }
                }
                tokio::task::spawn_blocking(move || drop(consumer))
                    .await
                    .ok();
            }
        });
        Self {
            counts,
            paused,
            otlp_http,
            stop,
            task: Some(task),
        }
    }

    /// Exports a span per forwarded probe record to the OTLP/HTTP endpoint (`http://ADDR`).
    pub fn export_spans_to(&self, endpoint: &str) {
        *self.otlp_http.lock().expect("lock") = Some(endpoint.to_owned());
    }

    /// Returns the counters.
    pub fn counts(&self) -> &RelayCounts {
        &self.counts
    }

    /// Stops consuming (records wait in the input topic).
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    /// Consumes again.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Stops the relay and waits for it.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
