//! The deriver: turns accepted OTLP requests into [`SignalBatch`]es.
//!
//! # Windows
//!
//! Windows are aligned to wall-clock multiples of `signals.window` and assigned by *arrival*
//! time: an item counts in the window open when the deriver processes it. (Exporters batch for
//! seconds before sending, so a window should be several export intervals long.) When the wall
//! clock passes the end of the open window, the window closes: every stage with activity in it
//! yields a [`StageWindow`] and its series points, stamped with the window end. At shutdown the
//! open window is closed early, ending at the shutdown time.
//!
//! Per stage and window:
//! - `span.count`, `span.throughput_per_s` (count / window seconds), `span.error_ratio`
//!   (status ERROR / count), `span.latency_p50_ms`, `span.latency_p95_ms`,
//!   `span.latency_p99_ms` (nearest rank, exact up to `max_latency_samples` spans, then over a
//!   uniform reservoir sample with a fixed seed) when the stage had spans;
//! - `log.count` with attribute `severity` (`TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`,
//!   `UNSPECIFIED`), one series per severity seen;
//! - `job.success_ratio` with attribute `job`, per job that ran.
//!
//! Emitted as they arrive: every metric data point (gauge and sum as the value, histograms and
//! exponential histograms as `<name>.count` and `<name>.sum`, summaries as `<name>.count`,
//! `<name>.sum` and `<name>.quantile` with attribute `quantile`; timestamp = point time), every
//! log record, and every job run with its `job.runtime_ms` point (timestamp = run end).
//!
//! # Stages
//!
//! The stage is the resource `service.name` (`unknown_service` without one), refined to
//! `service/value` by the first of `signals.stage_attributes` found on the item itself, else by
//! the first found on the resource.
//!
//! # Bounds
//!
//! At most `max_stages` stages per window; items of further stages are dropped (reason
//! `max_stages`). At most `max_series` distinct metric and job series keys; a key unused for
//! [`SERIES_IDLE_WINDOWS`] windows is forgotten; points of new keys beyond the cap are dropped
//! (reason `cardinality`; a job run whose series cannot be admitted still counts as a span but
//! yields no run). Per-stage series (`span.*`, `log.count`) are bounded by `max_stages` and not
//! capped. Latency samples are bounded by `max_latency_samples` per stage. Non-finite metric
//! values are dropped (reason `non_finite`). Output batches hold at most
//! `output_batch_max_points` points and as many log records. Every drop is counted in
//! `pipewarden_collector_dropped_total`.

use std::collections::HashSet;

use foldhash::{HashMap, HashMapExt};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord as OtlpLogRecord;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{Metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::SignalsConfig;
use crate::otlp::scan::{PointView, RawValue, RecordParts, RecordView, SpanView};
use crate::otlp::{Admitted, OtlpRequest, RawLogs, RawMetrics, RawTraces};
use crate::signal::{
    JobRun, JobStatus, LogRecord, Series, SeriesKind, SeriesPoint, SignalBatch, StageWindow,
    series_key,
};
use crate::telemetry::{CollectorTelemetry, Signal};

/// Windows a series key may go unused before it stops counting against `max_series`.
pub(crate) const SERIES_IDLE_WINDOWS: u64 = 60;

/// Severity classes, in the order of [`StageWindow::logs_by_severity`].
const SEVERITIES: [&str; 7] = [
    "TRACE",
    "DEBUG",
    "INFO",
    "WARN",
    "ERROR",
    "FATAL",
    "UNSPECIFIED",
];
const UNSPECIFIED: usize = 6;

/// Seed of the latency reservoir sampler: runs over the same input give the same percentiles.
const RESERVOIR_SEED: u64 = 0x5eed_0f0b_1a5e_0001;

/// Derivation settings taken from `[collector.signals]`.
#[derive(Debug, Clone)]
pub(crate) struct DeriveSettings {
    window_ms: i64,
    stage_attributes: Vec<String>,
    max_series: usize,
    max_stages: usize,
    max_latency_samples: usize,
    output_batch_max_points: usize,
    max_log_records_per_second: u64,
    batch_linger: Duration,
    job_attribute: Option<String>,
    job_span_names: HashSet<String>,
}

impl DeriveSettings {
    pub(crate) fn new(config: &SignalsConfig) -> Self {
        Self {
            window_ms: i64::try_from(config.window.as_millis())
                .unwrap_or(i64::MAX)
                .max(1),
            stage_attributes: config.stage_attributes.clone(),
            max_series: config.max_series,
            max_stages: config.max_stages,
            max_latency_samples: config.max_latency_samples.max(1),
            output_batch_max_points: config.output_batch_max_points.max(1),
            max_log_records_per_second: config.max_log_records_per_second,
            batch_linger: config.batch_linger,
            job_attribute: Some(config.jobs.attribute.clone()).filter(|a| !a.is_empty()),
            job_span_names: config.jobs.span_names.iter().cloned().collect(),
        }
    }
}

/// Wall clock advanced by tokio's clock, so tests can pause and advance time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    wall_ms_at_start: i64,
    start: Instant,
}

impl Clock {
    /// Returns a clock reading the system wall clock now.
    pub(crate) fn system() -> Self {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Self::starting_at(wall_ms)
    }

    /// Returns a clock that reads `wall_ms` now.
    pub(crate) fn starting_at(wall_ms: i64) -> Self {
        Self {
            wall_ms_at_start: wall_ms,
            start: Instant::now(),
        }
    }

    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.wall_ms_at_start.saturating_add(elapsed)
    }

    fn instant_at(&self, wall_ms: i64) -> Instant {
        let offset = u64::try_from(wall_ms.saturating_sub(self.wall_ms_at_start)).unwrap_or(0);
        self.start + Duration::from_millis(offset)
    }
}

/// SplitMix64: a small deterministic generator for reservoir sampling.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a uniform integer in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// What one stage did in the open window.
#[derive(Debug, Default)]
struct StageAccumulator {
    spans: u64,
    span_errors: u64,
    latencies_ms: Vec<f64>,
    metric_points: u64,
    log_records: u64,
    logs_by_severity: [u64; 7],
    /// Job name -> (successful runs, failed runs).
    jobs: HashMap<String, (u64, u64)>,
}

impl StageAccumulator {
    /// Keeps a latency sample: all of them up to `cap`, a uniform reservoir beyond
    /// (algorithm R; `self.spans` already counts this span).
    fn record_latency(&mut self, latency_ms: f64, cap: usize, rng: &mut SplitMix64) {
        if self.latencies_ms.len() < cap {
            self.latencies_ms.push(latency_ms);
        } else {
            let slot = rng.below(self.spans);
            if let Ok(slot) = usize::try_from(slot)
                && slot < cap
            {
                self.latencies_ms[slot] = latency_ms;
            }
        }
    }

    /// Returns p50, p95 and p99 by nearest rank, or `None` without samples.
    fn percentiles(&mut self) -> Option<[f64; 3]> {
        if self.latencies_ms.is_empty() {
            return None;
        }
        self.latencies_ms.sort_unstable_by(f64::total_cmp);
        let n = self.latencies_ms.len();
        Some([50u128, 95, 99].map(|percent| {
            let rank = (percent * n as u128).div_ceil(100);
            let rank = usize::try_from(rank).unwrap_or(n).clamp(1, n);
            self.latencies_ms[rank - 1]
        }))
    }
}

/// Series keys admitted under the `max_series` cap, with the window each was last used in.
#[derive(Debug)]
struct SeriesTable {
    last_used: HashMap<String, u64>,
    max: usize,
}

impl SeriesTable {
    fn admit(&mut self, key: &str, window: u64) -> bool {
        if let Some(last_used) = self.last_used.get_mut(key) {
            *last_used = window;
            true
        } else if self.last_used.len() < self.max {
            self.last_used.insert(key.to_owned(), window);
            true
        } else {
            false
        }
    }

    fn forget_idle(&mut self, window: u64) {
        self.last_used
            .retain(|_, last_used| window.saturating_sub(*last_used) < SERIES_IDLE_WINDOWS);
    }
}

/// Service name and resource-level stage refinement of one resource.
#[derive(Debug)]
struct ResourceContext {
    service: String,
    refinement: Option<String>,
}

/// The contexts of the resources of scanned requests, by the resource's bytes: a client sends
/// the same resource in every request, and decoding it (with prost, every attribute allocated)
/// cost as much as deriving several of its data points. The stage attributes are fixed for the
/// deriver's life, so the same bytes always give the same context. Bounded: starts over when
/// full.
#[derive(Debug, Default)]
struct ResourceContexts {
    by_bytes: HashMap<Box<[u8]>, Arc<ResourceContext>>,
}

/// Most resource contexts remembered.
const RESOURCE_CONTEXTS_MAX: usize = 256;

impl ResourceContexts {
    /// The contexts of the `count` resources of a scanned request, whose encoded resources
    /// `bytes` gives.
    fn all<'a>(
        &mut self,
        stage_attributes: &[String],
        count: usize,
        bytes: impl Fn(usize) -> Option<&'a [u8]>,
    ) -> Vec<Arc<ResourceContext>> {
        (0..count)
            .map(|i| self.context(stage_attributes, bytes(i)))
            .collect()
    }

    fn context(
        &mut self,
        stage_attributes: &[String],
        bytes: Option<&[u8]>,
    ) -> Arc<ResourceContext> {
        let Some(bytes) = bytes else {
            return Arc::new(ResourceContext::new(stage_attributes, None));
        };
        if let Some(context) = self.by_bytes.get(bytes) {
            return Arc::clone(context);
        }
        // Checked by the scan; a failure cannot happen and reads as no resource.
        let resource = <Resource as prost::Message>::decode(bytes).ok();
        let context = Arc::new(ResourceContext::new(stage_attributes, resource.as_ref()));
        if self.by_bytes.len() >= RESOURCE_CONTEXTS_MAX {
            self.by_bytes.clear();
        }
        self.by_bytes.insert(bytes.into(), Arc::clone(&context));
        context
    }
}

impl ResourceContext {
    fn new(stage_attributes: &[String], resource: Option<&Resource>) -> Self {
        let attributes = resource.map_or(&[][..], |r| &r.attributes);
        let mut service = String::new();
        match attribute(attributes, "service.name") {
            Some(value) => write_value(&mut service, value),
            None => service.push_str("unknown_service"),
        }
        let refinement = first_stage_value(stage_attributes, attributes).map(|value| {
            let mut text = String::new();
            write_value(&mut text, value);
            text
        });
        Self {
            service,
            refinement,
        }
    }
}

/// The windowed deriver: owns all derivation state; driven by [`Deriver::run`].
#[derive(Debug)]
pub(crate) struct Deriver {
    settings: DeriveSettings,
    telemetry: CollectorTelemetry,
    clock: Clock,
    window_start_ms: i64,
    window_index: u64,
    stages: StageTable,
    series: SeriesTable,
    pending: SignalBatch,
    rng: SplitMix64,
    log_records: RecordBudget,
    /// Scratch buffer holding the stage of the item being derived.
    stage: String,
    /// Series of scanned data points, by their raw bytes.
    series_cache: SeriesCache,
    /// Contexts of the resources of scanned requests, by their raw bytes.
    resource_contexts: ResourceContexts,
    output_closed: bool,
}

impl Deriver {
    pub(crate) fn new(
        settings: DeriveSettings,
        telemetry: CollectorTelemetry,
        clock: Clock,
    ) -> Self {
        let now_ms = clock.now_ms();
        Self {
            window_start_ms: align_down(now_ms, settings.window_ms),
            window_index: 0,
            stages: StageTable::new(settings.max_stages),
            series: SeriesTable {
                last_used: HashMap::new(),
                max: settings.max_series,
            },
            pending: SignalBatch::default(),
            rng: SplitMix64(RESERVOIR_SEED),
            log_records: RecordBudget::new(settings.max_log_records_per_second),
            stage: String::new(),
            series_cache: SeriesCache::new(settings.max_series),
            resource_contexts: ResourceContexts::default(),
            output_closed: false,
            settings,
            telemetry,
            clock,
        }
    }

    /// Derives until `stop` is cancelled (or every sender is gone), then drains the queue,
    /// closes the open window and sends everything.
    ///
    /// Cancel `stop` only once the receivers have stopped, so the queue is complete.
    pub(crate) async fn run(
        mut self,
        mut input: mpsc::Receiver<Admitted>,
        output: mpsc::Sender<SignalBatch>,
        stop: CancellationToken,
    ) {
        // When the pending batch must go even if it is not full.
        let mut flush_at: Option<Instant> = None;
        loop {
            let window_closes_at = self.clock.instant_at(self.window_end_ms());
            let linger_ends = flush_at.unwrap_or(window_closes_at);
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                () = tokio::time::sleep_until(window_closes_at) => {
                    self.close_window_if_due(self.clock.now_ms());
                    self.flush(&output).await;
                    flush_at = None;
                }
                () = tokio::time::sleep_until(linger_ends), if flush_at.is_some() => {
                    self.flush(&output).await;
                    flush_at = None;
                }
                admitted = input.recv() => {
                    let Some(admitted) = admitted else { break };
                    self.process(admitted);
                    if self.pending_is_full()
                        || (input.is_empty() && self.settings.batch_linger.is_zero())
                    {
                        self.flush(&output).await;
                        flush_at = None;
                    } else if flush_at.is_none() && !self.pending.is_empty() {
                        flush_at = Some(Instant::now() + self.settings.batch_linger);
                    }
                }
            }
        }

        input.close();
        while let Some(admitted) = input.recv().await {
            self.process(admitted);
            if self.pending_is_full() {
                self.flush(&output).await;
            }
        }
        let end_ms = self
            .clock
            .now_ms()
            .clamp(self.window_start_ms + 1, self.window_end_ms());
        self.close_window(end_ms);
        self.flush(&output).await;
    }

    fn window_end_ms(&self) -> i64 {
        self.window_start_ms.saturating_add(self.settings.window_ms)
    }

    fn pending_is_full(&self) -> bool {
        let max = self.settings.output_batch_max_points;
        self.pending.points.len() >= max || self.pending.logs.len() >= max
    }

    /// Derives one accepted request, then gives its budget back.
    pub(crate) fn process(&mut self, admitted: Admitted) {
        self.telemetry.queue_depth_add(-1);
        let Admitted { request, permit } = admitted;
        let now_ms = self.clock.now_ms();
        match request {
            OtlpRequest::Traces(request) => self.derive_traces(request),
            OtlpRequest::TracesRaw(request) => self.derive_raw_traces(&request),
            OtlpRequest::Metrics(request) => self.derive_metrics(request, now_ms),
            OtlpRequest::MetricsRaw(request) => self.derive_raw_metrics(&request, now_ms),
            OtlpRequest::Logs(request) => self.derive_logs(request, now_ms),
            OtlpRequest::LogsRaw(request) => self.derive_raw_logs(&request, now_ms),
        }
        drop(permit);
        let refused = std::mem::take(&mut self.log_records.refused);
        if refused > 0 {
            self.telemetry
                .dropped(Signal::LogRecords, "record_rate", refused);
        }
    }

    /// Closes the open window when `now_ms` is past its end and opens the window of `now_ms`.
    fn close_window_if_due(&mut self, now_ms: i64) {
        if now_ms >= self.window_end_ms() {
            self.close_window(self.window_end_ms());
            self.window_start_ms = align_down(now_ms, self.settings.window_ms);
        }
    }

    /// Emits the figures of every stage active in the open window, ending it at `end_ms`.
    fn close_window(&mut self, end_ms: i64) {
        let seconds = (end_ms - self.window_start_ms) as f64 / 1000.0;
        let mut stages = self.stages.drain();
        stages.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (stage, mut acc) in stages {
            let percentiles = acc.percentiles();
            let points = &mut self.pending.points;
            let mut push = |name: &str, attributes: Vec<(String, String)>, value: f64| {
                points.push(SeriesPoint::new(&stage, name, attributes, end_ms, value));
            };
            if acc.spans > 0 {
                let spans = acc.spans as f64;
                push("span.count", Vec::new(), spans);
                push("span.throughput_per_s", Vec::new(), spans / seconds);
                push(
                    "span.error_ratio",
                    Vec::new(),
                    acc.span_errors as f64 / spans,
                );
                if let Some([p50, p95, p99]) = percentiles {
                    push("span.latency_p50_ms", Vec::new(), p50);
                    push("span.latency_p95_ms", Vec::new(), p95);
                    push("span.latency_p99_ms", Vec::new(), p99);
                }
            }
            for (severity, count) in SEVERITIES.iter().zip(acc.logs_by_severity) {
                if count > 0 {
                    let attributes = vec![("severity".to_owned(), (*severity).to_owned())];
                    push("log.count", attributes, count as f64);
                }
            }
            let mut jobs: Vec<(String, (u64, u64))> = acc.jobs.into_iter().collect();
            jobs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (job, (ok, failed)) in jobs {
                let ratio = ok as f64 / (ok + failed).max(1) as f64;
                push("job.success_ratio", vec![("job".to_owned(), job)], ratio);
            }
            self.pending.stage_windows.push(StageWindow {
                logs_by_severity: SEVERITIES
                    .iter()
                    .zip(acc.logs_by_severity)
                    .filter(|(_, count)| *count > 0)
                    .map(|(severity, count)| ((*severity).to_owned(), count))
                    .collect(),
                stage,
                window_start_ms: self.window_start_ms,
                window_end_ms: end_ms,
                spans: acc.spans,
                span_errors: acc.span_errors,
                latency_p50_ms: percentiles.map(|p| p[0]),
                latency_p95_ms: percentiles.map(|p| p[1]),
                latency_p99_ms: percentiles.map(|p| p[2]),
                metric_points: acc.metric_points,
                log_records: acc.log_records,
            });
        }
        self.series.forget_idle(self.window_index);
        self.window_index += 1;
    }

    /// Sends the pending batch, split to the size limit; waits while the output is full.
    async fn flush(&mut self, output: &mpsc::Sender<SignalBatch>) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        // The next batch likely holds as many points and records: room for them saves growing
        // step by step (a log record is large to copy).
        let max = self.settings.output_batch_max_points;
        self.pending.points.reserve(batch.points.len().min(max));
        self.pending.logs.reserve(batch.logs.len().min(max));
        for part in split_batch(batch, max) {
            if let Err(mpsc::error::SendError(lost)) = output.send(part).await {
                if !self.output_closed {
                    self.output_closed = true;
                    tracing::warn!("collector output closed, derived signals are dropped");
                }
                self.telemetry
                    .dropped(Signal::LogRecords, "output_closed", lost.logs.len() as u64);
                self.telemetry.dropped(
                    Signal::MetricPoints,
                    "output_closed",
                    lost.points.len() as u64,
                );
                self.telemetry
                    .dropped(Signal::Spans, "output_closed", lost.job_runs.len() as u64);
            }
        }
    }

    fn derive_traces(&mut self, request: ExportTraceServiceRequest) {
        for resource_spans in request.resource_spans {
            let context = ResourceContext::new(
                &self.settings.stage_attributes,
                resource_spans.resource.as_ref(),
            );
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    self.derive_span(&context, span);
                }
            }
        }
    }

    fn derive_span(&mut self, context: &ResourceContext, span: Span) {
        write_stage(
            &mut self.stage,
            &self.settings.stage_attributes,
            context,
            &span.attributes,
        );
        let facts = SpanFacts {
            trace_id: &span.trace_id,
            span_id: &span.span_id,
            start_time_unix_nano: span.start_time_unix_nano,
            end_time_unix_nano: span.end_time_unix_nano,
            failed: span
                .status
                .as_ref()
                .is_some_and(|status| status.code == StatusCode::Error as i32),
        };
        self.count_span(&facts, |settings| job_name(settings, &span));
    }

    /// Derives the spans of a scanned request, like [`Deriver::derive_traces`] does for a
    /// decoded one (same stages, counts, job runs and drops). Spans screened out at the intake
    /// (invalid trace or span id) are skipped.
    fn derive_raw_traces(&mut self, request: &RawTraces) {
        let contexts = self.resource_contexts.all(
            &self.settings.stage_attributes,
            request.resource_count(),
            |i| request.resource_bytes(i),
        );
        for view in request.spans() {
            if let Some(context) = contexts.get(view.resource) {
                self.derive_raw_span(context, &view);
            }
        }
    }

    fn derive_raw_span(&mut self, context: &ResourceContext, span: &SpanView<'_>) {
        write_raw_stage(
            &mut self.stage,
            &self.settings.stage_attributes,
            context,
            |key| span.attribute(key),
        );
        let facts = SpanFacts {
            trace_id: span.trace_id,
            span_id: span.span_id,
            start_time_unix_nano: span.start_time_unix_nano,
            end_time_unix_nano: span.end_time_unix_nano,
            failed: span.status_code == Some(StatusCode::Error as i32),
        };
        self.count_span(&facts, |settings| raw_job_name(settings, span));
    }

    /// Counts a span in the stage written in `self.stage`, and derives its job run if `job`
    /// names one (`job` is asked only for a span that is counted: a job name costs an
    /// allocation).
    fn count_span(
        &mut self,
        span: &SpanFacts<'_>,
        job: impl FnOnce(&DeriveSettings) -> Option<String>,
    ) {
        let Some(acc) = self.stages.entry(&self.stage) else {
            self.telemetry.dropped(Signal::Spans, "max_stages", 1);
            return;
        };
        acc.spans += 1;
        let failed = span.failed;
        if failed {
            acc.span_errors += 1;
        }
        let latency_ms = span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano) as f64
            / 1e6;
        acc.record_latency(latency_ms, self.settings.max_latency_samples, &mut self.rng);

        let Some(job) = job(&self.settings) else {
            return;
        };
        let attributes = vec![("job".to_owned(), job)];
        let runtime_key = series_key(&self.stage, "job.runtime_ms", &attributes);
        let ratio_key = series_key(&self.stage, "job.success_ratio", &attributes);
        if !(self.series.admit(&runtime_key, self.window_index)
            && self.series.admit(&ratio_key, self.window_index))
        {
            self.telemetry.dropped(Signal::Spans, "cardinality", 1);
            return;
        }
        let job = attributes[0].1.clone();
        let runs = acc.jobs.entry(job.clone()).or_default();
        if failed {
            runs.1 += 1;
        } else {
            runs.0 += 1;
        }
        let end_ms = nanos_to_ms(span.end_time_unix_nano);
        self.pending.points.push(SeriesPoint {
            series: Arc::new(Series {
                key: runtime_key,
                stage: self.stage.clone(),
                name: "job.runtime_ms".to_owned(),
                attributes,
                kind: SeriesKind::Reading,
            }),
            timestamp_ms: end_ms,
            value: latency_ms,
            start_ms: 0,
        });
        self.pending.job_runs.push(JobRun {
            job,
            stage: self.stage.clone(),
            trace_id: hex(span.trace_id),
            span_id: hex(span.span_id),
            start_ms: nanos_to_ms(span.start_time_unix_nano),
            end_ms,
            runtime_ms: latency_ms,
            status: if failed {
                JobStatus::Error
            } else {
                JobStatus::Ok
            },
        });
    }

    fn derive_metrics(&mut self, request: ExportMetricsServiceRequest, now_ms: i64) {
        for resource_metrics in request.resource_metrics {
            let context = ResourceContext::new(
                &self.settings.stage_attributes,
                resource_metrics.resource.as_ref(),
            );
            for scope in resource_metrics.scope_metrics {
                for metric in scope.metrics {
                    self.derive_metric(&context, metric, now_ms);
                }
            }
        }
    }

    fn derive_metric(&mut self, context: &ResourceContext, metric: Metric, now_ms: i64) {
        let Metric { name, data, .. } = metric;
        let Some(data) = data else { return };
        match data {
            Data::Gauge(gauge) => {
                for point in gauge.data_points {
                    let value = number_value(point.value);
                    let values = [(name.as_str(), value)];
                    let point_in = PointIn::new(&point.attributes, point.time_unix_nano, now_ms);
                    self.derive_point(point_in, context, SeriesKind::Reading, &values, &[]);
                }
            }
            Data::Sum(sum) => {
                let temporality = i64::from(sum.aggregation_temporality);
                let kind = SeriesKind::of_sum(sum.is_monotonic, temporality);
                for point in sum.data_points {
                    let value = number_value(point.value);
                    let values = [(name.as_str(), value)];
                    let point_in = PointIn::new(&point.attributes, point.time_unix_nano, now_ms)
                        .starting(point.start_time_unix_nano);
                    self.derive_point(point_in, context, kind, &values, &[]);
                }
            }
            Data::Histogram(histogram) => {
                let names = CountSumNames::new(&name);
                let kind = SeriesKind::of_histogram(i64::from(histogram.aggregation_temporality));
                for point in histogram.data_points {
                    let values = names.values(point.count, point.sum);
                    let values = &values[..if point.sum.is_some() { 2 } else { 1 }];
                    let point_in = PointIn::new(&point.attributes, point.time_unix_nano, now_ms)
                        .starting(point.start_time_unix_nano);
                    self.derive_point(point_in, context, kind, values, &[]);
                }
            }
            Data::ExponentialHistogram(histogram) => {
                let names = CountSumNames::new(&name);
                let kind = SeriesKind::of_histogram(i64::from(histogram.aggregation_temporality));
                for point in histogram.data_points {
                    let values = names.values(point.count, point.sum);
                    let values = &values[..if point.sum.is_some() { 2 } else { 1 }];
                    let point_in = PointIn::new(&point.attributes, point.time_unix_nano, now_ms)
                        .starting(point.start_time_unix_nano);
                    self.derive_point(point_in, context, kind, values, &[]);
                }
            }
            Data::Summary(summary) => {
                let names = CountSumNames::new(&name);
                for point in summary.data_points {
                    // A summary's count and sum are cumulative by definition.
                    let values = names.values(point.count, Some(point.sum));
                    let quantiles = point.quantile_values;
                    let quantiles = (names.quantile.as_str(), quantiles.as_slice());
                    let point_in = PointIn::new(&point.attributes, point.time_unix_nano, now_ms);
                    let kind = SeriesKind::RunningTotal;
                    self.derive_point(point_in, context, kind, &values, &[quantiles]);
                }
            }
        }
    }

    /// Derives one metric data point into the series `values` (of `kind`) and summary
    /// `quantiles` (readings).
    fn derive_point(
        &mut self,
        point: PointIn<'_>,
        context: &ResourceContext,
        kind: SeriesKind,
        values: &[(&str, f64)],
        quantiles: &[(&str, &[ValueAtQuantile])],
    ) {
        let PointIn {
            attributes,
            start_time_unix_nano,
            time_unix_nano,
            now_ms,
        } = point;
        write_stage(
            &mut self.stage,
            &self.settings.stage_attributes,
            context,
            attributes,
        );
        let Some(acc) = self.stages.entry(&self.stage) else {
            self.telemetry
                .dropped(Signal::MetricPoints, "max_stages", 1);
            return;
        };
        acc.metric_points += 1;
        let timestamp_ms = if time_unix_nano == 0 {
            now_ms
        } else {
            nanos_to_ms(time_unix_nano)
        };
        let start_ms = increment_start_ms(start_time_unix_nano);
        let series_attributes = series_attributes(attributes);

        let mut over_cap = false;
        let mut non_finite = false;
        let mut emit = |this: &mut Self,
                        name: &str,
                        attributes: Vec<(String, String)>,
                        kind: SeriesKind,
                        value: f64| {
            if !value.is_finite() {
                non_finite = true;
                return;
            }
            let key = series_key(&this.stage, name, &attributes);
            if !this.series.admit(&key, this.window_index) {
                over_cap = true;
                return;
            }
            this.pending.points.push(SeriesPoint {
                series: Arc::new(Series {
                    key,
                    stage: this.stage.clone(),
                    name: name.to_owned(),
                    attributes,
                    kind,
                }),
                timestamp_ms,
                value,
                start_ms: if kind == SeriesKind::Increment {
                    start_ms
                } else {
                    0
                },
            });
        };
        if let ([(name, value)], []) = (values, quantiles) {
            // The common case (a gauge or sum point): the attributes move into the point.
            emit(self, name, series_attributes, kind, *value);
            return self.count_point_drops(over_cap, non_finite);
        }
        for (name, value) in values {
            emit(self, name, series_attributes.clone(), kind, *value);
        }
        for (name, quantiles) in quantiles {
            for quantile in *quantiles {
                let mut attributes = series_attributes.clone();
                attributes.push(("quantile".to_owned(), quantile.quantile.to_string()));
                attributes.sort_by(|a, b| a.0.cmp(&b.0));
                emit(self, name, attributes, SeriesKind::Reading, quantile.value);
            }
        }
        self.count_point_drops(over_cap, non_finite);
    }

    /// Derives the data points of a scanned request, like [`Deriver::derive_metrics`] does for
    /// a decoded one (same series, stages, order and drops). Points screened out at the intake
    /// (metric without a name, point without a value) are skipped.
    fn derive_raw_metrics(&mut self, request: &RawMetrics, now_ms: i64) {
        let contexts = self.resource_contexts.all(
            &self.settings.stage_attributes,
            request.resource_count(),
            |i| request.resource_bytes(i),
        );
        // The prefix of the points of the last metric: (resource, name bytes, kind) and its id.
        // The points of a metric come together and share the name's bytes.
        let mut last_prefix: Option<(MetricIdentity, u32)> = None;
        for view in request.points() {
            let Some(value) = view.point.value else {
                continue;
            };
            if view.name.is_empty() {
                continue;
            }
            let Some(context) = contexts.get(view.resource) else {
                continue;
            };
            let metric = (
                view.resource,
                view.name.as_ptr(),
                view.name.len(),
                view.kind,
            );
            let prefix = match last_prefix {
                Some((last, prefix)) if last == metric => prefix,
                _ => {
                    let prefix = self.series_cache.prefix(context, view.name, view.kind);
                    last_prefix = Some((metric, prefix));
                    prefix
                }
            };
            self.derive_raw_point(context, prefix, &view, value, now_ms);
        }
    }

    fn derive_raw_point(
        &mut self,
        context: &ResourceContext,
        prefix: u32,
        view: &PointView<'_>,
        value: f64,
        now_ms: i64,
    ) {
        let series =
            self.series_cache
                .resolve(&self.settings.stage_attributes, context, prefix, view);
        // The series remembers its stage's slot for the rest of the window.
        let acc = match series.stage_slot.and_then(|slot| self.stages.get(slot)) {
            Some(acc) => acc,
            None => {
                let Some(slot) = self.stages.slot(&series.series.stage) else {
                    self.telemetry
                        .dropped(Signal::MetricPoints, "max_stages", 1);
                    return;
                };
                series.stage_slot = Some(slot);
                &mut self.stages.open[slot.slot].1
            }
        };
        acc.metric_points += 1;
        let time_unix_nano = view.point.time_unix_nano;
        let timestamp_ms = if time_unix_nano == 0 {
            now_ms
        } else {
            nanos_to_ms(time_unix_nano)
        };
        if !value.is_finite() {
            self.telemetry
                .dropped(Signal::MetricPoints, "non_finite", 1);
            return;
        }
        // A key admitted in this window stays in the table until the window closes: admitting
        // it again would change nothing.
        if series.admitted_in != Some(self.window_index) {
            if !self.series.admit(&series.series.key, self.window_index) {
                self.telemetry
                    .dropped(Signal::MetricPoints, "cardinality", 1);
                return;
            }
            series.admitted_in = Some(self.window_index);
        }
        let start_ms = if series.series.kind == SeriesKind::Increment {
            increment_start_ms(view.point.start_time_unix_nano)
        } else {
            0
        };
        self.pending.points.push(SeriesPoint {
            series: Arc::clone(&series.series),
            timestamp_ms,
            value,
            start_ms,
        });
    }

    /// Counts a data point dropped (some of its values) for the cardinality cap or a non-finite
    /// value.
    fn count_point_drops(&self, over_cap: bool, non_finite: bool) {
        if over_cap {
            self.telemetry
                .dropped(Signal::MetricPoints, "cardinality", 1);
        }
        if non_finite {
            self.telemetry
                .dropped(Signal::MetricPoints, "non_finite", 1);
        }
    }

    fn derive_logs(&mut self, request: ExportLogsServiceRequest, now_ms: i64) {
        for resource_logs in request.resource_logs {
            let context = ResourceContext::new(
                &self.settings.stage_attributes,
                resource_logs.resource.as_ref(),
            );
            for scope in resource_logs.scope_logs {
                for record in scope.log_records {
                    self.derive_log(&context, record, now_ms);
                }
            }
        }
    }

    fn derive_log(&mut self, context: &ResourceContext, record: OtlpLogRecord, now_ms: i64) {
        write_stage(
            &mut self.stage,
            &self.settings.stage_attributes,
            context,
            &record.attributes,
        );
        if self.count_log(record.severity_number, &record.severity_text, now_ms) {
            self.pass_log(record, now_ms);
        }
    }

    /// Derives the records of a scanned request: each is counted from its raw bytes (stage and
    /// severity), and only a record passed on whole is read further.
    fn derive_raw_logs(&mut self, request: &RawLogs, now_ms: i64) {
        let contexts = self.resource_contexts.all(
            &self.settings.stage_attributes,
            request.resource_count(),
            |i| request.resource_bytes(i),
        );
        for view in request.records() {
            let Some(context) = contexts.get(view.resource) else {
                continue;
            };
            write_raw_stage(
                &mut self.stage,
                &self.settings.stage_attributes,
                context,
                |key| view.attribute(key),
            );
            if self.count_log(view.severity_number, view.severity_text, now_ms) {
                match view.parts() {
                    Some(parts) => self.pass_raw_log(&view, parts, now_ms),
                    None => self.pass_log(view.decode(), now_ms),
                }
            }
        }
    }

    /// Counts a log record of the stage in `self.stage`; returns whether the record is passed on
    /// whole (within `max_log_records_per_second`).
    fn count_log(&mut self, severity_number: i32, severity_text: &str, now_ms: i64) -> bool {
        let Some(acc) = self.stages.entry(&self.stage) else {
            self.telemetry.dropped(Signal::LogRecords, "max_stages", 1);
            return false;
        };
        acc.log_records += 1;
        acc.logs_by_severity[severity_class(severity_number, severity_text)] += 1;
        if !self.log_records.take(now_ms) {
            // Counted once per request by `process`: a labelled counter per record is costly.
            self.log_records.refused += 1;
            return false;
        }
        true
    }

    /// Passes a scanned record of the stage in `self.stage` on whole, from its `parts` read in
    /// place: the record [`Deriver::pass_log`] makes of the decoded record.
    fn pass_raw_log(&mut self, view: &RecordView<'_>, parts: RecordParts<'_>, now_ms: i64) {
        let body = match parts.body {
            None => String::new(),
            Some(RawValue::Str(text)) => text.to_owned(),
            Some(RawValue::Decoded(value)) => render_body(Some(AnyValue { value: Some(value) })),
        };
        let attributes = parts
            .attributes
            .into_iter()
            .map(|(key, value)| {
                let value = match value {
                    None => serde_json::Value::Null,
                    Some(RawValue::Str(text)) => serde_json::Value::String(text.to_owned()),
                    Some(RawValue::Decoded(value)) => value_into_json(value),
                };
                (key.to_owned(), value)
            })
            .collect();
        self.push_log(PassedLog {
            time_unix_nano: parts.time_unix_nano,
            observed_time_unix_nano: parts.observed_time_unix_nano,
            severity_number: view.severity_number,
            severity_text: view.severity_text.to_owned(),
            body,
            attributes: serde_json::Value::Object(attributes),
            trace_id: parts.trace_id,
            span_id: parts.span_id,
            now_ms,
        });
    }

    /// Passes a record of the stage in `self.stage` on whole.
    fn pass_log(&mut self, record: OtlpLogRecord, now_ms: i64) {
        self.push_log(PassedLog {
            time_unix_nano: record.time_unix_nano,
            observed_time_unix_nano: record.observed_time_unix_nano,
            severity_number: record.severity_number,
            severity_text: record.severity_text,
            body: render_body(record.body),
            attributes: attributes_into_json(record.attributes),
            trace_id: &record.trace_id,
            span_id: &record.span_id,
            now_ms,
        });
    }

    /// Adds a record passed on whole to the pending batch: its time (its own, else when it was
    /// observed, else now) and its severity text (from the number when it has none).
    fn push_log(&mut self, log: PassedLog<'_>) {
        let timestamp_ms = if log.time_unix_nano != 0 {
            nanos_to_ms(log.time_unix_nano)
        } else if log.observed_time_unix_nano != 0 {
            nanos_to_ms(log.observed_time_unix_nano)
        } else {
            log.now_ms
        };
        let severity_text = if log.severity_text.is_empty() {
            SEVERITIES[severity_class(log.severity_number, "")].to_owned()
        } else {
            log.severity_text
        };
        self.pending.logs.push(LogRecord {
            stage: self.stage.clone(),
            timestamp_ms,
            severity_number: log.severity_number,
            severity_text,
            body: log.body,
            attributes: log.attributes,
            trace_id: hex(log.trace_id),
            span_id: hex(log.span_id),
        });
    }
}

/// What a record passed on whole carries, decoded or read in place.
struct PassedLog<'a> {
    time_unix_nano: u64,
    observed_time_unix_nano: u64,
    severity_number: i32,
    severity_text: String,
    body: String,
    attributes: serde_json::Value,
    trace_id: &'a [u8],
    span_id: &'a [u8],
    /// The deriver's clock, for a record without a time.
    now_ms: i64,
}

/// Token bucket of whole log records passed on per second (one second of burst), refilled from
/// the deriver's clock.
#[derive(Debug)]
struct RecordBudget {
    per_second: u64,
    tokens: f64,
    last_ms: Option<i64>,
    /// Records refused since the last report.
    refused: u64,
}

impl RecordBudget {
    fn new(per_second: u64) -> Self {
        Self {
            per_second,
            tokens: per_second as f64,
            last_ms: None,
            refused: 0,
        }
    }

    /// Takes one token at `now_ms`; false when the bucket is empty. Unlimited when 0.
    fn take(&mut self, now_ms: i64) -> bool {
        if self.per_second == 0 {
            return true;
        }
        let capacity = self.per_second as f64;
        if let Some(last) = self.last_ms
            && now_ms > last
        {
            self.tokens = (self.tokens + (now_ms - last) as f64 * capacity / 1000.0).min(capacity);
        }
        self.last_ms = Some(self.last_ms.map_or(now_ms, |last| last.max(now_ms)));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Names of the `.count`, `.sum` and `.quantile` series of one histogram or summary metric.
struct CountSumNames {
    count: String,
    sum: String,
    quantile: String,
}

impl CountSumNames {
    fn new(name: &str) -> Self {
        Self {
            count: format!("{name}.count"),
            sum: format!("{name}.sum"),
            quantile: format!("{name}.quantile"),
        }
    }

    /// Returns `[(count name, count), (sum name, sum)]`; callers drop the sum when absent.
    fn values(&self, count: u64, sum: Option<f64>) -> [(&str, f64); 2] {
        [
            (self.count.as_str(), count as f64),
            (self.sum.as_str(), sum.unwrap_or(f64::NAN)),
        ]
    }
}

/// The series attributes of a data point: values as text, sorted by key.
fn series_attributes(attributes: &[KeyValue]) -> Vec<(String, String)> {
    let mut series_attributes: Vec<(String, String)> = attributes
        .iter()
        .map(|kv| {
            let mut value = String::new();
            if let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                write_value(&mut value, v);
            }
            (kv.key.clone(), value)
        })
        .collect();
    series_attributes.sort_by(|a, b| a.0.cmp(&b.0));
    series_attributes
}

/// What the points of one series carry, resolved once from the raw bytes of a data point.
#[derive(Debug)]
struct CachedSeries {
    series: Arc<Series>,
    /// The last window the key was admitted in under the `max_series` cap.
    admitted_in: Option<u64>,
    /// The slot of the series' stage, while that generation of the stage table lasts.
    stage_slot: Option<StageSlot>,
}

/// Series of scanned data points by their raw bytes: resource stage context, metric name and the
/// encoded attributes. The same bytes always resolve to the same series (the stage attributes
/// are fixed), so a hit is exact; the cache only saves building the key again. The context and
/// name (the prefix, shared by the points of a metric) are looked up once per metric and stand
/// as a number in the key of each point, which then hashes and compares only the attributes.
/// Bounded: it starts over when full.
#[derive(Debug)]
struct SeriesCache {
    /// Id of each prefix by its bytes.
    prefixes: HashMap<Box<[u8]>, u32>,
    /// The kind of the series of each prefix, by id.
    prefix_kinds: Vec<SeriesKind>,
    /// Index into `series` by prefix id and raw attribute bytes.
    index: HashMap<Box<[u8]>, usize>,
    series: Vec<CachedSeries>,
    max_entries: usize,
    /// Scratch buffer for the lookup keys.
    scratch: Vec<u8>,
}

impl SeriesCache {
    fn new(max_series: usize) -> Self {
        Self {
            prefixes: HashMap::new(),
            prefix_kinds: Vec::new(),
            index: HashMap::new(),
            series: Vec::new(),
            max_entries: max_series.saturating_mul(2).clamp(1024, 1 << 17),
            scratch: Vec::new(),
        }
    }

    /// Returns the id of the prefix of the points of metric `name` under `context`, whose values
    /// are of `kind`. An id is valid until the next call: starting
    /// over (when full) forgets every series with the ids.
    fn prefix(&mut self, context: &ResourceContext, name: &str, kind: SeriesKind) -> u32 {
        // 0xff never occurs in UTF-8, so the parts cannot run into each other.
        let scratch = &mut self.scratch;
        scratch.clear();
        scratch.extend_from_slice(context.service.as_bytes());
        scratch.push(0xff);
        match &context.refinement {
            Some(refinement) => {
                scratch.push(1);
                scratch.extend_from_slice(refinement.as_bytes());
            }
            None => scratch.push(0),
        }
        scratch.push(0xff);
        scratch.push(kind.code());
        scratch.extend_from_slice(name.as_bytes());
        if let Some(&id) = self.prefixes.get(self.scratch.as_slice()) {
            return id;
        }
        if self.prefixes.len() >= self.max_entries {
            self.prefixes.clear();
            self.prefix_kinds.clear();
            self.index.clear();
            self.series.clear();
        }
        // Below `max_entries`, at most 2^17.
        let id = u32::try_from(self.prefixes.len()).unwrap_or(u32::MAX);
        self.prefixes
            .insert(self.scratch.clone().into_boxed_slice(), id);
        self.prefix_kinds.push(kind);
        id
    }

    /// Returns the series of a data point of the metric of `prefix` (from [`Self::prefix`]),
    /// resolving it on a miss.
    fn resolve(
        &mut self,
        stage_attributes: &[String],
        context: &ResourceContext,
        prefix: u32,
        view: &PointView<'_>,
    ) -> &mut CachedSeries {
        let scratch = &mut self.scratch;
        scratch.clear();
        scratch.extend_from_slice(&prefix.to_le_bytes());
        scratch.extend_from_slice(view.attributes);
        let slot = match self.index.get(self.scratch.as_slice()) {
            Some(&slot) => slot,
            None => {
                let attributes = RawMetrics::attributes(view.attributes);
                let mut stage = String::new();
                write_stage(&mut stage, stage_attributes, context, &attributes);
                let attributes = series_attributes(&attributes);
                let kind = self
                    .prefix_kinds
                    .get(prefix as usize)
                    .copied()
                    .unwrap_or_default();
                let series = CachedSeries {
                    series: Arc::new(Series {
                        key: series_key(&stage, view.name, &attributes),
                        stage,
                        name: view.name.to_owned(),
                        attributes,
                        kind,
                    }),
                    admitted_in: None,
                    stage_slot: None,
                };
                if self.series.len() >= self.max_entries {
                    // The prefixes stay: their ids remain valid.
                    self.index.clear();
                    self.series.clear();
                }
                self.series.push(series);
                let slot = self.series.len() - 1;
                self.index
                    .insert(self.scratch.clone().into_boxed_slice(), slot);
                slot
            }
        };
        &mut self.series[slot]
    }
}

/// The accumulators of the stages open in the current window, at most `max` of them. A stage's
/// slot stays valid until the window closes ([`StageTable::drain`]), so a caller can remember it
/// with the table's generation and skip the lookup of the stage name.
#[derive(Debug)]
struct StageTable {
    index: HashMap<String, usize>,
    open: Vec<(String, StageAccumulator)>,
    /// Changes at every drain: a slot remembered under another generation is stale.
    generation: u64,
    max: usize,
}

/// A stage's slot in the [`StageTable`] of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StageSlot {
    generation: u64,
    slot: usize,
}

impl StageTable {
    fn new(max: usize) -> Self {
        Self {
            index: HashMap::new(),
            open: Vec::new(),
            generation: 0,
            max,
        }
    }

    /// Returns the slot of `stage`, opening it unless `max` stages are already open.
    fn slot(&mut self, stage: &str) -> Option<StageSlot> {
        let slot = match self.index.get(stage) {
            Some(&slot) => slot,
            None => {
                if self.open.len() >= self.max {
                    return None;
                }
                self.open
                    .push((stage.to_owned(), StageAccumulator::default()));
                self.index.insert(stage.to_owned(), self.open.len() - 1);
                self.open.len() - 1
            }
        };
        Some(StageSlot {
            generation: self.generation,
            slot,
        })
    }

    /// Returns the accumulator of `stage`, opening it unless `max` stages are already open.
    fn entry(&mut self, stage: &str) -> Option<&mut StageAccumulator> {
        let slot = self.slot(stage)?;
        Some(&mut self.open[slot.slot].1)
    }

    /// Returns the accumulator in `slot` if the slot is of the current generation.
    fn get(&mut self, slot: StageSlot) -> Option<&mut StageAccumulator> {
        if slot.generation != self.generation {
            return None;
        }
        self.open.get_mut(slot.slot).map(|(_, acc)| acc)
    }

    /// Closes every stage: returns them (in opening order) and starts a new generation.
    fn drain(&mut self) -> Vec<(String, StageAccumulator)> {
        self.index.clear();
        self.generation += 1;
        std::mem::take(&mut self.open)
    }
}

/// Writes the stage of an item with `attributes` into `out`.
fn write_stage(
    out: &mut String,
    stage_attributes: &[String],
    context: &ResourceContext,
    attributes: &[KeyValue],
) {
    out.clear();
    out.push_str(&context.service);
    if let Some(value) = first_stage_value(stage_attributes, attributes) {
        out.push('/');
        write_value(out, value);
    } else if let Some(refinement) = &context.refinement {
        out.push('/');
        out.push_str(refinement);
    }
}

/// Returns the value of the first stage attribute present (and non-empty) in `attributes`.
fn first_stage_value<'a>(
    stage_attributes: &[String],
    attributes: &'a [KeyValue],
) -> Option<&'a any_value::Value> {
    if attributes.is_empty() {
        return None;
    }
    stage_attributes
        .iter()
        .find_map(|name| attribute(attributes, name))
}

/// Returns the value of attribute `key`, unless absent or an empty string.
fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    let value = attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    match value {
        any_value::Value::StringValue(s) if s.is_empty() => None,
        value => Some(value),
    }
}

/// What the deriver reads of a span besides its stage and job, decoded or scanned.
struct SpanFacts<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    start_time_unix_nano: u64,
    end_time_unix_nano: u64,
    /// Status ERROR.
    failed: bool,
}

/// Writes the stage of a scanned item into `out`, like [`write_stage`] for a decoded one;
/// `attribute` looks up one of the item's attributes in place.
fn write_raw_stage<'a>(
    out: &mut String,
    stage_attributes: &[String],
    context: &ResourceContext,
    attribute: impl Fn(&str) -> Option<RawValue<'a>>,
) {
    out.clear();
    out.push_str(&context.service);
    if let Some(value) = stage_attributes
        .iter()
        .find_map(|name| non_empty(attribute(name)?))
    {
        out.push('/');
        write_raw_value(out, &value);
    } else if let Some(refinement) = &context.refinement {
        out.push('/');
        out.push_str(refinement);
    }
}

/// Returns `value` unless it is an empty string (like [`attribute`]).
fn non_empty(value: RawValue<'_>) -> Option<RawValue<'_>> {
    match value {
        RawValue::Str("") => None,
        RawValue::Decoded(any_value::Value::StringValue(s)) if s.is_empty() => None,
        value => Some(value),
    }
}

fn write_raw_value(out: &mut String, value: &RawValue<'_>) {
    match value {
        RawValue::Str(s) => out.push_str(s),
        RawValue::Decoded(value) => write_value(out, value),
    }
}

/// Returns the job a scanned span is a run of, if any (like [`job_name`]).
fn raw_job_name(settings: &DeriveSettings, span: &SpanView<'_>) -> Option<String> {
    if let Some(value) = settings
        .job_attribute
        .as_deref()
        .and_then(|key| non_empty(span.attribute(key)?))
    {
        let mut job = String::new();
        write_raw_value(&mut job, &value);
        return Some(job);
    }
    if settings.job_span_names.contains(span.name) {
        return Some(span.name.to_owned());
    }
    None
}

/// Returns the job a span is a run of, if any.
fn job_name(settings: &DeriveSettings, span: &Span) -> Option<String> {
    if let Some(value) = settings
        .job_attribute
        .as_deref()
        .and_then(|key| attribute(&span.attributes, key))
    {
        let mut job = String::new();
        write_value(&mut job, value);
        return Some(job);
    }
    if settings.job_span_names.contains(&span.name) {
        return Some(span.name.clone());
    }
    None
}

/// A scanned metric as the points of a request name it: its resource, the address and length of
/// its name's bytes, and the kind of its values.
type MetricIdentity = (usize, *const u8, usize, SeriesKind);

/// The attributes and time of a decoded data point, and the time it is taken at when it has
/// none.
#[derive(Debug, Clone, Copy)]
struct PointIn<'a> {
    attributes: &'a [KeyValue],
    /// Start of the interval of a point of a sum or histogram (0: none).
    start_time_unix_nano: u64,
    time_unix_nano: u64,
    now_ms: i64,
}

impl<'a> PointIn<'a> {
    fn new(attributes: &'a [KeyValue], time_unix_nano: u64, now_ms: i64) -> Self {
        Self {
            attributes,
            start_time_unix_nano: 0,
            time_unix_nano,
            now_ms,
        }
    }

    fn starting(self, start_time_unix_nano: u64) -> Self {
        Self {
            start_time_unix_nano,
            ..self
        }
    }
}

/// The start of an increment's interval in Unix milliseconds (0, unknown, when not sent).
fn increment_start_ms(start_time_unix_nano: u64) -> i64 {
    if start_time_unix_nano == 0 {
        0
    } else {
        nanos_to_ms(start_time_unix_nano)
    }
}

fn number_value(value: Option<number_data_point::Value>) -> f64 {
    match value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        // Screened out at the intake; kept total here.
        None => f64::NAN,
    }
}

/// Classifies a log severity into an index of [`SEVERITIES`], by number, else by text.
fn severity_class(number: i32, text: &str) -> usize {
    match number {
        1..=24 => ((number - 1) / 4) as usize,
        _ => {
            // Bytes, not chars: slicing a str inside a multi-byte char would panic.
            let text = text.trim().as_bytes();
            let starts = |prefix: &str| {
                text.len() >= prefix.len()
                    && text[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            };
            if starts("trace") {
                0
            } else if starts("debug") {
                1
            } else if starts("info") || starts("notice") {
                2
            } else if starts("warn") {
                3
            } else if starts("err") {
                4
            } else if starts("fatal") || starts("crit") || starts("alert") || starts("emerg") {
                5
            } else {
                UNSPECIFIED
            }
        }
    }
}

fn nanos_to_ms(nanos: u64) -> i64 {
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

fn align_down(ms: i64, window_ms: i64) -> i64 {
    ms - ms.rem_euclid(window_ms)
}

/// Splits a batch so no part has more than `max` points or `max` log records.
fn split_batch(batch: SignalBatch, max: usize) -> Vec<SignalBatch> {
    if batch.points.len() <= max && batch.logs.len() <= max {
        return vec![batch];
    }
    let SignalBatch {
        points,
        stage_windows,
        logs,
        job_runs,
    } = batch;
    let parts = points.len().div_ceil(max).max(logs.len().div_ceil(max));
    let mut points = points.into_iter();
    let mut logs = logs.into_iter();
    let mut batches = Vec::with_capacity(parts);
    let mut first = Some((stage_windows, job_runs));
    for _ in 0..parts {
        let (stage_windows, job_runs) = first.take().unwrap_or_default();
        batches.push(SignalBatch {
            points: points.by_ref().take(max).collect(),
            stage_windows,
            logs: logs.by_ref().take(max).collect(),
            job_runs,
        });
    }
    batches
}

/// Writes an attribute value as text: strings as-is, scalars in their usual form, bytes as
/// lowercase hex, arrays and maps as JSON.
fn write_value(out: &mut String, value: &any_value::Value) {
    // Writing into a String cannot fail.
    match value {
        any_value::Value::StringValue(s) => out.push_str(s),
        any_value::Value::BoolValue(b) => out.push_str(if *b { "true" } else { "false" }),
        any_value::Value::IntValue(i) => {
            let _ = write!(out, "{i}");
        }
        any_value::Value::DoubleValue(d) => {
            let _ = write!(out, "{d}");
        }
        any_value::Value::BytesValue(bytes) => write_hex(out, bytes),
        other => out.push_str(&value_into_json(other.clone()).to_string()),
    }
}

fn render_body(body: Option<AnyValue>) -> String {
    match body.and_then(|b| b.value) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s,
        Some(other) => value_into_json(other).to_string(),
    }
}

/// Converts attributes into a JSON object, moving their strings.
fn attributes_into_json(attributes: Vec<KeyValue>) -> serde_json::Value {
    let map = attributes
        .into_iter()
        .map(|kv| {
            let value = kv
                .value
                .and_then(|v| v.value)
                .map_or(serde_json::Value::Null, value_into_json);
            (kv.key, value)
        })
        .collect();
    serde_json::Value::Object(map)
}

/// Converts an attribute value into JSON, moving its strings.
fn value_into_json(value: any_value::Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        any_value::Value::StringValue(s) => Json::String(s),
        any_value::Value::BoolValue(b) => Json::Bool(b),
        any_value::Value::IntValue(i) => Json::from(i),
        any_value::Value::DoubleValue(d) => serde_json::Number::from_f64(d)
            .map_or_else(|| Json::String(d.to_string()), Json::Number),
        any_value::Value::BytesValue(bytes) => Json::String(hex(&bytes)),
        any_value::Value::ArrayValue(array) => Json::Array(
            array
                .values
                .into_iter()
                .map(|v| v.value.map_or(Json::Null, value_into_json))
                .collect(),
        ),
        any_value::Value::KvlistValue(list) => attributes_into_json(list.values),
        // A dictionary index, meaningful only inside profiles; rendered as the number.
        any_value::Value::StringValueStrindex(index) => Json::from(index),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    write_hex(&mut out, bytes);
    out
}

fn write_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

#[cfg(test)]
mod tests;
