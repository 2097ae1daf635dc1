//! The sink: [`SinkInput`] spools documents (accepted = synced to disk), and
//! [`ElasticsearchSink::run`] checks the cluster, installs the templates, then reads the spool
//! in order, batches by count, bytes and time, keeps up to `max_in_flight` bulk requests going,
//! retries refused items, dead-letters permanent refusals and acknowledges what is done.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use elasticsearch::Elasticsearch;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::{IndexMode, ValidElasticsearchConfig};
use super::document::{EsDocument, rfc3339_millis};
use super::health::{self, HealthHandle, HealthPublisher, HealthState};
use super::retry::{Backoff, SendError, Verdict, classify_status};
use super::service::{self, ItemResult};
use super::spool::{Append, RecordData, Spool, SpoolError, SpooledRecord};
use super::telemetry::EsTelemetry;
use super::templates::{self, Family};

/// A sink failure.
#[derive(Debug, thiserror::Error)]
pub enum ElasticsearchError {
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The client could not be built.
    #[error("elasticsearch client: {0}")]
    Client(String),
    /// A document could not be encoded.
    #[error("encoding a document: {0}")]
    Encode(String),
    /// The sink has stopped and the spool is full: the documents were not accepted.
    #[error("elasticsearch sink stopped with a full spool")]
    Closed,
    /// A blocking task failed.
    #[error("elasticsearch sink task failed: {0}")]
    Join(String),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Shared {
    spool: Mutex<Spool>,
    data: Notify,
    space: Notify,
    closed: AtomicBool,
    telemetry: EsTelemetry,
    redactor: super::redact::Redactor,
    observer: Value,
    dead_letters: Mutex<PathBuf>,
}

impl Shared {
    fn spool(&self) -> Result<MutexGuard<'_, Spool>, SpoolError> {
        self.spool.lock().map_err(|_| SpoolError::Poisoned)
    }

    async fn with_spool<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, ElasticsearchError> {
        let shared = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut spool = shared.spool()?;
            f(&mut spool)
        })
        .await
        .map_err(|err| ElasticsearchError::Join(err.to_string()))?
        .map_err(ElasticsearchError::from)
    }

    fn update_gauges(&self) {
        if let Ok(spool) = self.spool() {
            self.telemetry.spool_bytes.set(spool.used_bytes() as i64);
            let age = spool
                .oldest_enqueued_ms()
                .map_or(0, |ms| (now_ms() - ms).max(0) / 1000);
            self.telemetry.spool_oldest_age_seconds.set(age);
        }
    }
}

/// Cloneable input of the sink.
#[derive(Clone)]
pub struct SinkInput {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SinkInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkInput").finish_non_exhaustive()
    }
}

impl SinkInput {
    /// Redacts and spools `docs`; returns once they are synced to disk (accepted). With
    /// `when_full = "block"` a full spool makes this wait until the cluster confirmed enough.
    ///
    /// # Errors
    /// When the spool cannot be written, or the sink stopped while the spool is full.
    pub async fn send(&self, docs: Vec<EsDocument>) -> Result<(), ElasticsearchError> {
        if docs.is_empty() {
            return Ok(());
        }
        let enqueued_ms = now_ms();
        let mut records = Vec::with_capacity(docs.len());
        for mut doc in docs {
            self.shared.redactor.redact_value(&mut doc.body);
            if let Value::Object(map) = &mut doc.body {
                map.insert("observer".to_owned(), self.shared.observer.clone());
            }
            let body = serde_json::to_vec(&doc.body)
                .map_err(|err| ElasticsearchError::Encode(err.to_string()))?;
            records.push(RecordData {
                enqueued_ms,
                timestamp_ms: doc.timestamp_ms,
                kind: doc.index_kind,
                id: doc.id,
                body,
            });
        }
        let count = records.len() as u64;
        let records = Arc::new(records);
        loop {
            let batch = Arc::clone(&records);
            let before = self.shared.spool()?.dropped_total();
            let outcome = self
                .shared
                .with_spool(move |spool| spool.append(&batch))
                .await?;
            let dropped = self.shared.spool()?.dropped_total().saturating_sub(before);
            if dropped > 0 {
                self.shared
                    .telemetry
                    .dropped
                    .get_or_create(&super::telemetry::ReasonLabel {
                        reason: "spool_full".to_owned(),
                    })
                    .inc_by(dropped);
            }
            match outcome {
                Append::Accepted => break,
                Append::Full if self.shared.closed.load(Ordering::Acquire) => {
                    return Err(ElasticsearchError::Closed);
                }
                Append::Full => {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(200),
                        self.shared.space.notified(),
                    )
                    .await;
                }
            }
        }
        self.shared.telemetry.accepted.inc_by(count);
        self.shared.data.notify_one();
        Ok(())
    }
}

/// The Elasticsearch sink. Build with [`ElasticsearchSink::build`], then [`run`](Self::run).
pub struct ElasticsearchSink {
    config: ValidElasticsearchConfig,
    client: Elasticsearch,
    shared: Arc<Shared>,
    health: HealthPublisher,
    health_handle: HealthHandle,
}

impl std::fmt::Debug for ElasticsearchSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticsearchSink")
            .field("urls", &self.config.urls)
            .finish_non_exhaustive()
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl ElasticsearchSink {
    /// Opens the spool (repairing a torn tail) and builds the client; no network I/O.
    ///
    /// # Errors
    /// When the spool directory cannot be opened or the client cannot be built (CA file).
    pub fn build(
        config: ValidElasticsearchConfig,
        telemetry: EsTelemetry,
    ) -> Result<(Self, SinkInput), ElasticsearchError> {
        let spool = Spool::open(
            &config.spool.dir,
            config.spool.max_spool_bytes,
            config.spool.segment_bytes,
            config.spool.when_full,
        )?;
        let client = service::build_client(&config).map_err(ElasticsearchError::Client)?;
        let (health, health_handle) = HealthPublisher::new();
        let shared = Arc::new(Shared {
            spool: Mutex::new(spool),
            data: Notify::new(),
            space: Notify::new(),
            closed: AtomicBool::new(false),
            telemetry,
            redactor: config.redaction.clone(),
            observer: json!({
                "name": "pipewarden",
                "type": "pipewarden",
                "hostname": hostname(),
                "version": env!("CARGO_PKG_VERSION"),
            }),
            dead_letters: Mutex::new(config.dead_letter_path.clone()),
        });
        shared.update_gauges();
        let input = SinkInput {
            shared: Arc::clone(&shared),
        };
        Ok((
            Self {
                config,
                client,
                shared,
                health,
                health_handle,
            },
            input,
        ))
    }

    /// Returns the health handle for `/readyz`.
    pub fn health(&self) -> HealthHandle {
        self.health_handle.clone()
    }

    /// Runs until `shutdown`: health check and templates (retried until they succeed), then
    /// the send loop; on shutdown keeps sending what is spooled for up to `shutdown_timeout`
    /// and leaves the rest in the spool for the next start.
    ///
    /// # Errors
    /// When the spool fails.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ElasticsearchError> {
        let gauges_stop = shutdown.child_token();
        let gauges = tokio::spawn(update_gauges_every_second(
            Arc::clone(&self.shared),
            gauges_stop.clone(),
        ));
        let result = self.run_inner(&shutdown).await;
        self.shared.closed.store(true, Ordering::Release);
        self.shared.space.notify_waiters();
        gauges_stop.cancel();
        let _ = gauges.await;
        self.shared.update_gauges();
        self.shared.telemetry.ready.set(0);
        info!("elasticsearch sink stopped");
        result
    }

    async fn run_inner(&self, shutdown: &CancellationToken) -> Result<(), ElasticsearchError> {
        info!(urls = ?self.config.urls.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
              mode = ?self.config.mode, namespace = %self.config.namespace,
              "elasticsearch sink started");
        if !self.wait_until_ready(shutdown).await {
            return Ok(());
        }
        let ctx = Arc::new(DeliveryContext {
            client: self.client.clone(),
            shared: Arc::clone(&self.shared),
            config: self.config.clone(),
            health: self.health.clone(),
        });
        let slots = Arc::new(Semaphore::new(self.config.max_in_flight));
        let mut tasks = JoinSet::new();
        let mut retention = tokio::time::interval(Duration::from_secs(3600));
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                _ = retention.tick(), if self.config.mode == IndexMode::Index => {
                    self.run_retention().await;
                    continue;
                }
                permit = Arc::clone(&slots).acquire_owned() => permit,
            };
            let Ok(permit) = permit else { break };
            let batch = tokio::select! {
                () = shutdown.cancelled() => break,
                batch = self.next_batch() => batch?,
            };
            let ctx = Arc::clone(&ctx);
            tasks.spawn(async move {
                let result = deliver(&ctx, batch).await;
                drop(permit);
                result
            });
            while let Some(joined) = tasks.try_join_next() {
                log_delivery(joined);
            }
        }
        self.drain(&slots, &ctx, tasks).await
    }

    async fn wait_until_ready(&self, shutdown: &CancellationToken) -> bool {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            let state = match health::check(&self.client, self.config.mode).await {
                Ok(info) => match templates::install(
                    &self.client,
                    self.config.mode,
                    &self.config.namespace,
                    self.config.retention,
                    self.config.request_timeout,
                )
                .await
                {
                    Ok(()) => {
                        info!(version = %info.version, distribution = %info.distribution,
                              "elasticsearch reachable; templates installed");
                        HealthState::Ready
                    }
                    Err(err) => HealthState::Failing(format!("installing templates: {err}")),
                },
                Err(state) => state,
            };
            let ready = state == HealthState::Ready;
            let message = state.to_string();
            if self.health.publish(state) && !ready {
                warn!(problem = %message, "elasticsearch not usable yet; documents stay in the spool; retrying");
            }
            if ready {
                self.shared.telemetry.ready.set(1);
                return true;
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    async fn run_retention(&self) {
        match templates::delete_expired_indices(
            &self.client,
            &self.config.namespace,
            self.config.retention,
            now_ms(),
            self.config.request_timeout,
        )
        .await
        {
            Ok(deleted) if !deleted.is_empty() => {
                info!(indices = ?deleted, "retention: deleted expired indices");
            }
            Ok(_) => {}
            Err(err) => warn!(error = %err, "retention job failed; will try again"),
        }
    }

    /// Waits for documents and returns a batch: full (count or bytes), or whatever arrived
    /// within `flush_interval` of the first document.
    async fn next_batch(&self) -> Result<Vec<SpooledRecord>, ElasticsearchError> {
        let (max_docs, max_bytes) = (self.config.batch.max_docs, self.config.batch.max_bytes);
        let mut batch: Vec<SpooledRecord> = Vec::new();
        let mut bytes = 0u64;
        let mut deadline: Option<Instant> = None;
        loop {
            let (want_docs, want_bytes) = (max_docs - batch.len(), max_bytes.saturating_sub(bytes));
            let more = self
                .shared
                .with_spool(move |spool| spool.next_batch(want_docs, want_bytes))
                .await?;
            bytes += more.iter().map(|r| r.data.disk_bytes()).sum::<u64>();
            batch.extend(more);
            if batch.len() >= max_docs || bytes >= max_bytes {
                return Ok(batch);
            }
            if !batch.is_empty() && deadline.is_none() {
                deadline = Some(Instant::now() + self.config.batch.flush_interval);
            }
            match deadline {
                Some(at) => {
                    if Instant::now() >= at {
                        return Ok(batch);
                    }
                    let _ = tokio::time::timeout_at(at, self.shared.data.notified()).await;
                }
                None => {
                    let _ = tokio::time::timeout(
                        self.config.batch.flush_interval,
                        self.shared.data.notified(),
                    )
                    .await;
                }
            }
        }
    }

    async fn drain(
        &self,
        slots: &Arc<Semaphore>,
        ctx: &Arc<DeliveryContext>,
        mut tasks: JoinSet<Result<(), ElasticsearchError>>,
    ) -> Result<(), ElasticsearchError> {
        info!("elasticsearch sink draining the spool");
        let deadline = Instant::now() + self.config.shutdown_timeout;
        let drained = tokio::time::timeout_at(deadline, async {
            loop {
                let Ok(permit) = Arc::clone(slots).acquire_owned().await else {
                    break;
                };
                let (docs, bytes) = (self.config.batch.max_docs, self.config.batch.max_bytes);
                let batch = self
                    .shared
                    .with_spool(move |spool| spool.next_batch(docs, bytes))
                    .await?;
                if batch.is_empty() {
                    break;
                }
                let ctx = Arc::clone(ctx);
                tasks.spawn(async move {
                    let result = deliver(&ctx, batch).await;
                    drop(permit);
                    result
                });
            }
            while let Some(joined) = tasks.join_next().await {
                log_delivery(joined);
            }
            Ok::<(), ElasticsearchError>(())
        })
        .await;
        match drained {
            Ok(result) => result,
            Err(_) => {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                self.shared
                    .with_spool(|spool| {
                        spool.rewind();
                        Ok(())
                    })
                    .await?;
                let left = self.shared.spool()?.used_bytes();
                warn!(
                    spool_bytes = left,
                    "shutdown deadline passed; the rest stays in the spool for the next start"
                );
                Ok(())
            }
        }
    }
}

fn log_delivery(joined: Result<Result<(), ElasticsearchError>, tokio::task::JoinError>) {
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(err)) => warn!(error = %err, "bulk delivery failed; documents stay in the spool"),
        Err(err) if err.is_cancelled() => {}
        Err(err) => warn!(error = %err, "bulk delivery task failed"),
    }
}

async fn update_gauges_every_second(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {
                let shared = Arc::clone(&shared);
                let _ = tokio::task::spawn_blocking(move || shared.update_gauges()).await;
            }
        }
    }
}

struct DeliveryContext {
    client: Elasticsearch,
    shared: Arc<Shared>,
    config: ValidElasticsearchConfig,
    health: HealthPublisher,
}

/// A record the cluster refused for good.
struct DeadLetter {
    record: SpooledRecord,
    status: u16,
    error_type: String,
    reason: String,
}

/// Sends one batch until every item is confirmed or dead-lettered, acknowledging as it goes.
async fn deliver(
    ctx: &DeliveryContext,
    batch: Vec<SpooledRecord>,
) -> Result<(), ElasticsearchError> {
    let telemetry = &ctx.shared.telemetry;
    let (mode, namespace) = (ctx.config.mode, ctx.config.namespace.as_str());
    let max_attempts = ctx.config.retry.max_item_attempts;
    let mut backoff = Backoff::new(ctx.config.retry.backoff_min, ctx.config.retry.backoff_max);
    let mut remaining: Vec<(SpooledRecord, u32)> = batch.into_iter().map(|r| (r, 0)).collect();
    while !remaining.is_empty() {
        let mut body = Vec::new();
        for (record, _) in &remaining {
            let index =
                Family::Kind(record.data.kind).target(mode, namespace, record.data.timestamp_ms);
            service::encode_create(&mut body, &index, &record.data.id, &record.data.body);
        }
        telemetry.in_flight.inc();
        let answer = service::send_bulk(
            &ctx.client,
            body,
            remaining.len(),
            ctx.config.request_timeout,
        )
        .await;
        telemetry.in_flight.dec();
        let items = match answer {
            Ok(items) => items,
            Err(err) => {
                telemetry.failed(err.reason(), remaining.len() as u64);
                if err.verdict() == Verdict::Permanent {
                    let (status, reason) = match &err {
                        SendError::Status { status, body } => (*status, body.clone()),
                        other => (0, other.to_string()),
                    };
                    let dead = remaining
                        .drain(..)
                        .map(|(record, _)| DeadLetter {
                            record,
                            status,
                            error_type: "request_refused".to_owned(),
                            reason: reason.clone(),
                        })
                        .collect();
                    let seqs = dead_letter(ctx, dead).await?;
                    acknowledge(ctx, seqs).await?;
                    return Ok(());
                }
                if matches!(err, SendError::Transport(_)) {
                    ctx.health
                        .publish(HealthState::Unreachable(err.to_string()));
                }
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        ctx.health.publish(HealthState::Ready);
        backoff.reset();
        let mut done = Vec::new();
        let mut dead = Vec::new();
        let mut retry = Vec::new();
        for ((record, attempts), item) in remaining.drain(..).zip(items) {
            let ItemResult {
                status,
                error_type,
                reason,
            } = item;
            match classify_status(status) {
                Verdict::Done => done.push(record.seq),
                Verdict::Retry if max_attempts == 0 || attempts + 1 < max_attempts => {
                    telemetry.failed(item_reason(status), 1);
                    retry.push((record, attempts + 1));
                }
                Verdict::Retry => {
                    telemetry.failed(item_reason(status), 1);
                    dead.push(DeadLetter {
                        record,
                        status,
                        error_type: "retries_exhausted".to_owned(),
                        reason: format!("{error_type}: {reason}"),
                    });
                }
                Verdict::Permanent => {
                    telemetry.failed(item_reason(status), 1);
                    dead.push(DeadLetter {
                        record,
                        status,
                        error_type,
                        reason,
                    });
                }
            }
        }
        telemetry.sent.inc_by(done.len() as u64);
        if !dead.is_empty() {
            done.extend(dead_letter(ctx, dead).await?);
        }
        acknowledge(ctx, done).await?;
        if retry.is_empty() {
            break;
        }
        telemetry.retried.inc_by(retry.len() as u64);
        remaining = retry;
        tokio::time::sleep(backoff.next_delay()).await;
    }
    Ok(())
}

fn item_reason(status: u16) -> &'static str {
    match status {
        429 => "too_many_requests",
        400 => "mapping",
        401 | 403 => "auth",
        s if s >= 500 => "server_error",
        _ => "refused",
    }
}

async fn acknowledge(ctx: &DeliveryContext, seqs: Vec<u64>) -> Result<(), ElasticsearchError> {
    if seqs.is_empty() {
        return Ok(());
    }
    ctx.shared
        .with_spool(move |spool| spool.acknowledge(&seqs))
        .await?;
    ctx.shared.space.notify_waiters();
    Ok(())
}

/// Writes dead letters to the local file (synced) and, best effort, to the dead-letter index;
/// returns their sequence numbers for acknowledgement.
async fn dead_letter(
    ctx: &DeliveryContext,
    dead: Vec<DeadLetter>,
) -> Result<Vec<u64>, ElasticsearchError> {
    let (mode, namespace) = (ctx.config.mode, ctx.config.namespace.as_str());
    let now = now_ms();
    let mut lines = Vec::new();
    let mut body = Vec::new();
    for d in &dead {
        let target =
            Family::Kind(d.record.data.kind).target(mode, namespace, d.record.data.timestamp_ms);
        let document = String::from_utf8_lossy(&d.record.data.body).into_owned();
        let line = json!({
            "time": rfc3339_millis(now),
            "target": target,
            "id": d.record.data.id,
            "status": d.status,
            "error_type": d.error_type,
            "reason": d.reason,
            "document": serde_json::from_str::<Value>(&document).unwrap_or(Value::String(document.clone())),
        });
        lines.extend_from_slice(line.to_string().as_bytes());
        lines.push(b'\n');
        let source = json!({
            "@timestamp": rfc3339_millis(now),
            "event": {"kind": "pipeline_error", "module": "pipewarden", "dataset": "pipewarden.dead_letter"},
            "error": {"type": d.error_type, "message": d.reason},
            "http": {"response": {"status_code": d.status}},
            "observer": ctx.shared.observer,
            "pipewarden": {"dead_letter": {
                "target": target, "id": d.record.data.id,
                "kind": d.record.data.kind.as_str(), "document": document,
            }},
        });
        let index = Family::DeadLetter.target(mode, namespace, now);
        service::encode_create(
            &mut body,
            &index,
            &d.record.data.id,
            source.to_string().as_bytes(),
        );
    }
    let shared = Arc::clone(&ctx.shared);
    tokio::task::spawn_blocking(move || -> Result<(), SpoolError> {
        let path = shared
            .dead_letters
            .lock()
            .map_err(|_| SpoolError::Poisoned)?;
        append_synced(&path, &lines)
    })
    .await
    .map_err(|err| ElasticsearchError::Join(err.to_string()))??;
    let count = dead.len();
    ctx.shared.telemetry.dead_lettered.inc_by(count as u64);
    warn!(documents = count, first_error = %dead[0].error_type, first_reason = %dead[0].reason,
          "documents refused permanently; written to the dead letters");
    match service::send_bulk(&ctx.client, body, count, ctx.config.request_timeout).await {
        Ok(items) => {
            let failed = items
                .iter()
                .filter(|i| classify_status(i.status) != Verdict::Done)
                .count();
            if failed > 0 {
                ctx.shared
                    .telemetry
                    .failed("dead_letter_index", failed as u64);
            }
        }
        Err(err) => {
            ctx.shared
                .telemetry
                .failed("dead_letter_index", count as u64);
            warn!(error = %err, "dead-letter index not written; the local dead-letter file has them");
        }
    }
    Ok(dead.into_iter().map(|d| d.record.seq).collect())
}

fn append_synced(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let err = |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_data().map_err(err)
}
