//! The load generator: closed-loop (or paced) senders, each on its own connection, sending
//! pre-encoded OTLP requests over HTTP/1.1 (protobuf) or gRPC (HTTP/2), counting the items of the
//! requests the server accepted.
//!
//! A request counts as accepted when the server answers 2xx (HTTP) or grpc-status 0 (gRPC); items
//! the response reports as rejected (`partial_success`) are subtracted. Any other answer (429,
//! 503, UNAVAILABLE, ...) is a refusal, counted by status and never as throughput. Senders do not
//! back off on refusals: a refusal that comes back at once costs the server little, and
//! `backpressure_wait` already delays the answer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue, TE};
use hyper::{Method, Request, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};

use crate::payload::{ITEMS_PER_REQUEST, Payloads, Signal};

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transport {
    Http,
    Grpc,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Http, Transport::Grpc];

    pub fn name(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Grpc => "grpc",
        }
    }
}

/// What the senders send.
#[derive(Clone, Copy, Debug)]
pub enum Workload {
    /// Every sender sends `signal` over `transport`, as fast as answers come back.
    Saturate {
        signal: Signal,
        transport: Transport,
    },
    /// All senders together send `items_per_s`, rotating over the three signals; even senders use
    /// HTTP, odd ones gRPC.
    Paced { items_per_s: u64 },
}

/// Server addresses.
#[derive(Clone, Copy, Debug)]
pub struct Endpoints {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

/// Counters shared by the senders; read by the measuring task.
#[derive(Default)]
pub struct Counters {
    accepted_items: AtomicU64,
    accepted_requests: AtomicU64,
    refused_requests: AtomicU64,
    rejected_items: AtomicU64,
    errors: AtomicU64,
    /// Refusals by answer ("http 503", "grpc 14") and errors by message.
    kinds: Mutex<BTreeMap<String, u64>>,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    pub accepted_items: u64,
    pub accepted_requests: u64,
    pub refused_requests: u64,
    pub rejected_items: u64,
    pub errors: u64,
}

impl Snapshot {
    pub fn since(self, earlier: Snapshot) -> Snapshot {
        Snapshot {
            accepted_items: self.accepted_items - earlier.accepted_items,
            accepted_requests: self.accepted_requests - earlier.accepted_requests,
            refused_requests: self.refused_requests - earlier.refused_requests,
            rejected_items: self.rejected_items - earlier.rejected_items,
            errors: self.errors - earlier.errors,
        }
    }
}

impl Counters {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            accepted_items: self.accepted_items.load(Ordering::Relaxed),
            accepted_requests: self.accepted_requests.load(Ordering::Relaxed),
            refused_requests: self.refused_requests.load(Ordering::Relaxed),
            rejected_items: self.rejected_items.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    /// Refusals and errors by kind, over the whole run (warm-up included).
    pub fn kinds(&self) -> BTreeMap<String, u64> {
        self.kinds.lock().map(|k| k.clone()).unwrap_or_default()
    }

    fn count_kind(&self, kind: String) {
        if let Ok(mut kinds) = self.kinds.lock() {
            *kinds.entry(kind).or_default() += 1;
        }
    }
}

/// A running load: senders on the current runtime until [`Load::stop`].
pub struct Load {
    pub counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(
        payloads: &Arc<Payloads>,
        endpoints: Endpoints,
        workload: Workload,
        senders: usize,
    ) -> Load {
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..senders)
            .map(|id| {
                let sender = Sender {
                    id,
                    senders,
                    payloads: Arc::clone(payloads),
                    endpoints,
                    workload,
                    counters: Arc::clone(&counters),
                    stop: Arc::clone(&stop),
                };
                tokio::spawn(sender.run())
            })
            .collect();
        Load {
            counters,
            stop,
            tasks,
        }
    }

    /// Stops the senders and waits (up to `grace`) for their requests in flight.
    pub async fn stop(self, grace: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + grace;
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

struct Sender {
    id: usize,
    senders: usize,
    payloads: Arc<Payloads>,
    endpoints: Endpoints,
    workload: Workload,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl Sender {
    async fn run(self) {
        let transport = match self.workload {
            Workload::Saturate { transport, .. } => transport,
            Workload::Paced { .. } => Transport::ALL[self.id % 2],
        };
        let mut pacer = match self.workload {
            Workload::Saturate { .. } => None,
            Workload::Paced { items_per_s } => {
                // Each sender sends one request every `period`; starts are staggered so the
                // senders together send evenly.
                let per_sender = items_per_s.max(1) as f64 / self.senders as f64;
                let period = Duration::from_secs_f64(ITEMS_PER_REQUEST as f64 / per_sender);
                let offset = period.mul_f64(self.id as f64 / self.senders as f64);
                let mut interval = tokio::time::interval_at(Instant::now() + offset, period);
                interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
                Some(interval)
            }
        };
        let mut connection: Option<Connection> = None;
        // Sender `id` sends the requests `id`, `id + senders`, ... of the pool, in order: with
        // the default eight senders, one service each (as each exporter sends its own), so every
        // series arrives in time order (a counter's totals rise from point to point) until the
        // pool starts over.
        let mut index = self.id;
        while !self.stop.load(Ordering::Relaxed) {
            if let Some(pacer) = pacer.as_mut() {
                pacer.tick().await;
                if self.stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            let signal = match self.workload {
                Workload::Saturate { signal, .. } => signal,
                Workload::Paced { .. } => Signal::ALL[(index + self.id) % 3],
            };
            let conn = match connection.as_mut() {
                Some(conn) => conn,
                None => match Connection::open(transport, self.endpoints).await {
                    Ok(conn) => connection.insert(conn),
                    Err(err) => {
                        self.record_error(&err);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
            };
            let encoded = self.payloads.get(signal);
            let result = match transport {
                Transport::Http => {
                    let body = &encoded.http[index % encoded.http.len()];
                    conn.send(signal, body.clone()).await
                }
                Transport::Grpc => {
                    let body = &encoded.grpc[index % encoded.grpc.len()];
                    conn.send(signal, body.clone()).await
                }
            };
            index += self.senders;
            match result {
                Ok(Answer::Accepted { rejected_items }) => {
                    let c = &self.counters;
                    let accepted = ITEMS_PER_REQUEST.saturating_sub(rejected_items);
                    c.accepted_items.fetch_add(accepted, Ordering::Relaxed);
                    c.accepted_requests.fetch_add(1, Ordering::Relaxed);
                    if rejected_items > 0 {
                        c.rejected_items
                            .fetch_add(rejected_items, Ordering::Relaxed);
                        c.count_kind("partial_success".to_owned());
                    }
                }
                Ok(Answer::Refused(kind)) => {
                    self.counters
                        .refused_requests
                        .fetch_add(1, Ordering::Relaxed);
                    self.counters.count_kind(kind);
                }
                Err(err) => {
                    self.record_error(&err);
                    connection = None;
                }
            }
        }
    }

    fn record_error(&self, err: &anyhow::Error) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.counters.count_kind(format!("error: {err:#}"));
    }
}

enum Answer {
    Accepted { rejected_items: u64 },
    Refused(String),
}

enum Connection {
    Http1 {
        sender: http1::SendRequest<Full<Bytes>>,
        host: HeaderValue,
    },
    Http2 {
        sender: http2::SendRequest<Full<Bytes>>,
        authority: String,
    },
}

impl Connection {
    async fn open(transport: Transport, endpoints: Endpoints) -> Result<Connection> {
        let addr = match transport {
            Transport::Http => endpoints.http,
            Transport::Grpc => endpoints.grpc,
        };
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        let io = TokioIo::new(stream);
        match transport {
            Transport::Http => {
                let (sender, conn) = http1::handshake(io).await.context("http/1.1 handshake")?;
                tokio::spawn(conn);
                Ok(Connection::Http1 {
                    sender,
                    host: HeaderValue::from_str(&addr.to_string())?,
                })
            }
            Transport::Grpc => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .context("http/2 handshake")?;
                tokio::spawn(conn);
                Ok(Connection::Http2 {
                    sender,
                    authority: addr.to_string(),
                })
            }
        }
    }

    async fn send(&mut self, signal: Signal, body: Bytes) -> Result<Answer> {
        match self {
            Connection::Http1 { sender, host } => {
                sender.ready().await.context("connection closed")?;
                let request = Request::builder()
                    .method(Method::POST)
                    .uri(signal.http_path())
                    .header(HOST, host.clone())
                    .header(CONTENT_TYPE, "application/x-protobuf")
                    .body(Full::new(body))?;
                let response = sender.send_request(request).await.context("http request")?;
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .context("http body")?
                    .to_bytes();
                if status.is_success() {
                    Ok(Answer::Accepted {
                        rejected_items: rejected_items(signal, body),
                    })
                } else {
                    Ok(Answer::Refused(format!("http {}", status.as_u16())))
                }
            }
            Connection::Http2 { sender, authority } => {
                sender.ready().await.context("connection closed")?;
                let uri = Uri::builder()
                    .scheme("http")
                    .authority(authority.as_str())
                    .path_and_query(signal.grpc_path())
                    .build()?;
                let request = Request::builder()
                    .method(Method::POST)
                    .uri(uri)
                    .header(CONTENT_TYPE, "application/grpc")
                    .header(TE, "trailers")
                    .body(Full::new(body))?;
                let response = sender.send_request(request).await.context("grpc request")?;
                let (parts, body) = response.into_parts();
                if !parts.status.is_success() {
                    return Ok(Answer::Refused(format!(
                        "grpc http {}",
                        parts.status.as_u16()
                    )));
                }
                let collected = body.collect().await.context("grpc body")?;
                // Trailers-only answers carry grpc-status in the headers.
                let status = collected
                    .trailers()
                    .and_then(|t| t.get("grpc-status"))
                    .or_else(|| parts.headers.get("grpc-status"))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("grpc answer without grpc-status"))?;
                if status != "0" {
                    return Ok(Answer::Refused(format!("grpc {status}")));
                }
                let mut message = collected.to_bytes();
                if message.len() >= 5 {
                    message.advance(5);
                } else if !message.is_empty() {
                    bail!("grpc answer shorter than a frame header");
                }
                Ok(Answer::Accepted {
                    rejected_items: rejected_items(signal, message),
                })
            }
        }
    }
}

/// Items an export response reports as rejected (`partial_success`); 0 for an empty body.
fn rejected_items(signal: Signal, body: Bytes) -> u64 {
    if body.is_empty() {
        return 0;
    }
    let rejected = match signal {
        Signal::Logs => ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_log_records),
        Signal::Spans => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_spans),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| p.rejected_data_points),
    };
    u64::try_from(rejected).unwrap_or(0)
}
