//! The prober: builds every probe ([`Prober::build`]), then runs one task per probe
//! ([`Prober::run`]) until shutdown, or for one run each in [`RunMode::Once`].
//!
//! A pipeline probe's loop reads top to bottom: on each scheduled tick it starts a run (one
//! event per partition, each with a fresh trace), records arrivals from its observer and stage
//! spans from the collector, and every few milliseconds decides the runs that are complete or
//! past their timeout, and checks the dead-man's switch.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::check::{http_check, tls_check, tls_client};
use crate::config::{ProbeTarget, ValidProbeConfig, ValidSyntheticConfig};
use crate::error::{BuildError, InjectError};
use crate::inject::{Injector, ProbeEvent};
use crate::observe::{self, Observation, ObserverHandle, Watch, now_ms};
use crate::result::{
    Arrival, DeadManFinding, EventId, ProbeOutput, ProbeResult, ProbeStatus, SequenceTracker,
    StageLatency,
};
use crate::telemetry::{ProbeLabel, RunLabels, SyntheticTelemetry};
use crate::template::TemplateValues;
use crate::trace::{self, StageSpan};

/// How often pending runs and the dead-man's switch are checked.
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// Whether probes keep running on their schedule or run once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// On schedule until shutdown.
    Schedule,
    /// One run per probe, right away; then stop.
    Once,
}

/// A built probe: clients created, observer assigned.
#[derive(Debug)]
struct BuiltProbe {
    index: u16,
    config: ValidProbeConfig,
    kind: BuiltKind,
}

#[derive(Debug)]
enum BuiltKind {
    Pipeline {
        injector: Injector,
        partitions: Vec<i32>,
        observer: ObserverHandle,
    },
    /// An HTTP or TLS check, with its client.
    Check { client: reqwest::Client },
}

/// Every configured probe, built.
#[derive(Debug)]
pub struct Prober {
    probes: Vec<BuiltProbe>,
    instance: u32,
    max_pending_runs: usize,
    sequence_window: u64,
    span_queue_capacity: usize,
    telemetry: SyntheticTelemetry,
}

impl Prober {
    /// Builds the probes of `config` (only the one named `only` when given): creates clients,
    /// reads topic metadata and assigns the observers at the end of their topics.
    ///
    /// # Errors
    /// The first probe that cannot be built.
    pub async fn build(
        config: &ValidSyntheticConfig,
        only: Option<&str>,
        telemetry: SyntheticTelemetry,
    ) -> Result<Self, BuildError> {
        let mut probes = Vec::new();
        for (index, probe) in config.probes.iter().enumerate() {
            if only.is_some_and(|name| name != probe.name) {
                continue;
            }
            let index = u16::try_from(index).unwrap_or(u16::MAX);
            let kind = match &probe.target {
                ProbeTarget::Pipeline { inject, observe } => {
                    let (injector, partitions) =
                        Injector::build(&probe.name, inject, probe.timeout).await?;
                    let observer =
                        observe::start(&probe.name, observe, config.result_queue_capacity.max(64))
                            .await?;
                    BuiltKind::Pipeline {
                        injector,
                        partitions,
                        observer,
                    }
                }
                ProbeTarget::HttpCheck(_) => BuiltKind::Check {
                    client: reqwest::Client::builder()
                        .timeout(probe.timeout)
                        .build()
                        .map_err(|source| BuildError::Http {
                            probe: probe.name.clone(),
                            source,
                        })?,
                },
                ProbeTarget::TlsCheck(_) => BuiltKind::Check {
                    client: tls_client(probe.timeout).map_err(|source| BuildError::Http {
                        probe: probe.name.clone(),
                        source,
                    })?,
                },
            };
            probes.push(BuiltProbe {
                index,
                config: probe.clone(),
                kind,
            });
        }
        Ok(Self {
            probes,
            instance: rand::random(),
            max_pending_runs: config.max_pending_runs,
            sequence_window: config.sequence_window,
            span_queue_capacity: config.span_queue_capacity,
            telemetry,
        })
    }

    /// Returns the names of the built probes.
    pub fn probe_names(&self) -> Vec<String> {
        self.probes.iter().map(|p| p.config.name.clone()).collect()
    }

    /// Runs every probe until `shutdown` (or one run each in [`RunMode::Once`]). Stage spans
    /// come from `spans` (probe trace ids only); results and findings go to `output`, whose
    /// sends await (bounded queue).
    pub async fn run(
        self,
        mode: RunMode,
        mut spans: mpsc::Receiver<StageSpan>,
        output: mpsc::Sender<ProbeOutput>,
        shutdown: CancellationToken,
    ) {
        let mut routes: HashMap<u16, mpsc::Sender<StageSpan>> = HashMap::new();
        let mut tasks = JoinSet::new();
        info!(probes = self.probes.len(), instance = %format!("{:08x}", self.instance), "prober started");
        for probe in self.probes {
            let (span_tx, span_rx) = mpsc::channel(self.span_queue_capacity.clamp(16, 4096));
            routes.insert(probe.index, span_tx);
            let context = ProbeContext {
                instance: self.instance,
                mode,
                max_pending_runs: self.max_pending_runs,
                sequence_window: self.sequence_window,
                telemetry: self.telemetry.clone(),
                output: output.clone(),
                shutdown: shutdown.clone(),
            };
            tasks.spawn(run_probe(probe, span_rx, context));
        }
        drop(output);
        let mut spans_open = true;
        loop {
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    None => break,
                    Some(Err(err)) => warn!(error = %err, "probe task failed"),
                    Some(Ok(())) => {}
                },
                span = spans.recv(), if spans_open => match span {
                    None => spans_open = false,
                    Some(span) => {
                        let route = trace::probe_index(&span.trace_id).and_then(|i| routes.get(&i));
                        if let Some(route) = route && route.try_send(span).is_err() {
                            self.telemetry.drop_one("span_queue_full");
                        }
                    }
                },
            }
        }
        info!("prober stopped");
    }
}

struct ProbeContext {
    instance: u32,
    mode: RunMode,
    max_pending_runs: usize,
    sequence_window: u64,
    telemetry: SyntheticTelemetry,
    output: mpsc::Sender<ProbeOutput>,
    shutdown: CancellationToken,
}

impl ProbeContext {
    async fn emit(&self, output: ProbeOutput) -> bool {
        if self.output.send(output).await.is_err() {
            self.telemetry.drop_one("result_queue_closed");
            return false;
        }
        true
    }

    fn count_run(&self, probe: &str, status: ProbeStatus) {
        self.telemetry
            .runs
            .get_or_create(&RunLabels {
                probe: probe.to_owned(),
                status: status.as_str().to_owned(),
            })
            .inc();
    }
}

async fn run_probe(probe: BuiltProbe, spans: mpsc::Receiver<StageSpan>, context: ProbeContext) {
    let BuiltProbe {
        index,
        config,
        kind,
    } = probe;
    match kind {
        BuiltKind::Pipeline {
            injector,
            partitions,
            observer,
        } => {
            let state = PipelineProbe {
                index,
                instance: context.instance,
                tracker: SequenceTracker::new(context.sequence_window),
                started_ms: now_ms(),
                config,
                injector,
                partitions,
                runs: BTreeMap::new(),
                by_trace: HashMap::new(),
                seq: 0,
                pending_duplicates: 0,
                pending_late: 0,
                dead_man: HashMap::new(),
                last_seen: HashMap::new(),
            };
            state.run(observer, spans, context).await;
        }
        BuiltKind::Check { client } => run_check(config, client, context).await,
    }
}

/// One injected event of a pending run.
#[derive(Debug)]
struct RunEvent {
    partition: i32,
    id: String,
    trace_id: [u8; 16],
    sent_ms: i64,
    injected: Option<bool>,
    received_ms: Option<i64>,
    /// Stage -> (start, end) Unix ns.
    spans: HashMap<String, (u64, u64)>,
}

#[derive(Debug)]
struct PendingRun {
    seq: u64,
    started_ms: i64,
    deadline: Instant,
    arrived_at: Option<Instant>,
    events: Vec<RunEvent>,
    error: Option<String>,
}

struct PipelineProbe {
    index: u16,
    instance: u32,
    config: ValidProbeConfig,
    injector: Injector,
    partitions: Vec<i32>,
    tracker: SequenceTracker,
    started_ms: i64,
    runs: BTreeMap<u64, PendingRun>,
    by_trace: HashMap<[u8; 16], (u64, usize)>,
    seq: u64,
    pending_duplicates: u64,
    pending_late: u64,
    /// Subject -> active finding.
    dead_man: HashMap<String, bool>,
    /// Subject -> last time seen, Unix ms.
    last_seen: HashMap<String, i64>,
}

type Injected = (u64, usize, Result<u32, (u32, InjectError)>);

impl PipelineProbe {
    async fn run(
        mut self,
        mut observer: ObserverHandle,
        mut spans: mpsc::Receiver<StageSpan>,
        context: ProbeContext,
    ) {
        let name = self.config.name.clone();
        info!(probe = %name, partitions = ?self.partitions, "pipeline probe started");
        let mut injections: JoinSet<Injected> = JoinSet::new();
        let start = now_ms();
        let mut next_run_ms = match context.mode {
            RunMode::Once => Some(start),
            RunMode::Schedule => self.config.schedule.first_run_ms(start),
        };
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut spans_open = true;
        let mut emitted = 0_u64;
        loop {
            let until_next =
                next_run_ms.map(|t| Duration::from_millis((t - now_ms()).max(0) as u64));
            tokio::select! {
                biased;
                () = context.shutdown.cancelled() => break,
                () = sleep_or_never(until_next) => {
                    let scheduled = next_run_ms.unwrap_or_else(now_ms);
                    self.start_run(&mut injections, &observer, &context).await;
                    next_run_ms = match context.mode {
                        RunMode::Once => None,
                        RunMode::Schedule => self.config.schedule.next_run_ms(scheduled, now_ms()),
                    };
                }
                Some(joined) = injections.join_next() => match joined {
                    Ok((seq, event, result)) => self.injected(seq, event, result, &context),
                    Err(err) => warn!(probe = %name, error = %err, "probe injection task failed"),
                },
                observation = observer.observations.recv() => match observation {
                    Some(observation) => self.observed(&observation, &context),
                    None => {
                        warn!(probe = %name, "probe observer stopped");
                        break;
                    }
                },
                span = spans.recv(), if spans_open => match span {
                    Some(span) => self.span(span),
                    None => spans_open = false,
                },
                _ = check.tick() => {
                    for result in self.decide(Instant::now()) {
                        context.count_run(&name, result.status);
                        emitted += 1;
                        if !context.emit(ProbeOutput::Result(Box::new(result))).await {
                            break;
                        }
                    }
                    if context.mode == RunMode::Once && emitted > 0 {
                        break;
                    }
                    if context.mode == RunMode::Schedule {
                        for finding in self.dead_man_check(now_ms()) {
                            context.emit(ProbeOutput::DeadMan(finding)).await;
                        }
                    }
                }
            }
        }
        injections.abort_all();
        observer.stop().await;
        info!(probe = %name, "pipeline probe stopped");
    }

    async fn start_run(
        &mut self,
        injections: &mut JoinSet<Injected>,
        observer: &ObserverHandle,
        context: &ProbeContext,
    ) {
        if self.runs.len() >= context.max_pending_runs {
            context.telemetry.drop_one("max_pending_runs");
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        let started_ms = now_ms();
        let mut events = Vec::with_capacity(self.partitions.len());
        for (event_index, partition) in self.partitions.iter().copied().enumerate() {
            let trace_id = trace::new_trace_id(self.index);
            let span_id = trace::new_span_id();
            let id = EventId {
                probe: self.config.name.clone(),
                instance: context.instance,
                partition,
                seq,
            }
            .render();
            let traceparent = trace::traceparent(&trace_id, &span_id);
            let sent_ms = now_ms();
            let payload = self.config.payload.render(&TemplateValues {
                probe: &self.config.name,
                probe_id: &id,
                seq,
                partition,
                sent_ms,
                trace_id: &trace::hex(&trace_id),
                traceparent: &traceparent,
            });
            let event = ProbeEvent {
                id: id.clone(),
                partition,
                traceparent,
                payload,
            };
            // Counted as sent before the send: a fast pipeline may deliver the event before the
            // producer's acknowledgement. A failed send is taken back.
            self.tracker.sent(partition, seq);
            self.by_trace.insert(trace_id, (seq, event_index));
            if let Some(watch) = &observer.watch {
                let until_ms = started_ms + 3 * duration_ms(self.config.timeout);
                if watch
                    .send(Watch {
                        id: id.clone(),
                        until_ms,
                    })
                    .await
                    .is_err()
                {
                    warn!(probe = %self.config.name, "probe observer stopped taking ids");
                }
            }
            let injector = self.injector.clone();
            injections.spawn(async move { (seq, event_index, injector.send(&event).await) });
            events.push(RunEvent {
                partition,
                id,
                trace_id,
                sent_ms,
                injected: None,
                received_ms: None,
                spans: HashMap::new(),
            });
        }
        self.runs.insert(
            seq,
            PendingRun {
                seq,
                started_ms,
                deadline: Instant::now() + self.config.timeout,
                arrived_at: None,
                events,
                error: None,
            },
        );
    }

    fn injected(
        &mut self,
        seq: u64,
        event_index: usize,
        result: Result<u32, (u32, InjectError)>,
        context: &ProbeContext,
    ) {
        let label = ProbeLabel {
            probe: self.config.name.clone(),
        };
        let Some(run) = self.runs.get_mut(&seq) else {
            return;
        };
        let Some(event) = run.events.get_mut(event_index) else {
            return;
        };
        match result {
            Ok(failed) => {
                event.injected = Some(true);
                context.telemetry.events_sent.get_or_create(&label).inc();
                if failed > 0 {
                    context
                        .telemetry
                        .events_send_failed
                        .get_or_create(&label)
                        .inc_by(u64::from(failed));
                }
            }
            Err((failed, err)) => {
                event.injected = Some(false);
                self.tracker.cancel(event.partition, seq);
                context
                    .telemetry
                    .events_send_failed
                    .get_or_create(&label)
                    .inc_by(u64::from(failed));
                warn!(probe = %self.config.name, seq, error = %err, "probe event not injected");
                run.error.get_or_insert_with(|| format!("inject: {err}"));
            }
        }
    }

    fn observed(&mut self, observation: &Observation, context: &ProbeContext) {
        let Some(id) = EventId::parse(&observation.id) else {
            context.telemetry.drop_one("foreign_event");
            return;
        };
        if id.probe != self.config.name || id.instance != context.instance {
            context.telemetry.drop_one("foreign_event");
            return;
        }
        context
            .telemetry
            .events_received
            .get_or_create(&ProbeLabel {
                probe: self.config.name.clone(),
            })
            .inc_by(u64::from(observation.count));
        self.last_seen
            .insert("probe".to_owned(), observation.received_ms);
        for _ in 0..observation.count.max(1) {
            match self.tracker.observe(id.partition, id.seq) {
                Arrival::First => {
                    if let Some(run) = self.runs.get_mut(&id.seq)
                        && let Some(event) = run.events.iter_mut().find(|e| e.id == observation.id)
                    {
                        event.received_ms = Some(observation.received_ms);
                    }
                }
                Arrival::Late => self.pending_late += 1,
                Arrival::Duplicate => self.pending_duplicates += 1,
                Arrival::Stale => {}
            }
        }
    }

    fn span(&mut self, span: StageSpan) {
        if !self.config.stages.contains(&span.stage) {
            return;
        }
        let end_ms = i64::try_from(span.end_unix_nano / 1_000_000).unwrap_or(i64::MAX);
        let last = self
            .last_seen
            .entry(format!("stage:{}", span.stage))
            .or_default();
        *last = (*last).max(end_ms);
        let Some((seq, event_index)) = self.by_trace.get(&span.trace_id).copied() else {
            return;
        };
        if let Some(event) = self
            .runs
            .get_mut(&seq)
            .and_then(|run| run.events.get_mut(event_index))
        {
            event
                .spans
                .insert(span.stage, (span.start_unix_nano, span.end_unix_nano));
        }
    }

    /// Returns the results of the runs that are complete (every event in, and every expected
    /// stage's span, or `span_wait` over) or past their timeout.
    fn decide(&mut self, now: Instant) -> Vec<ProbeResult> {
        let mut done = Vec::new();
        for run in self.runs.values_mut() {
            let injected_all = run.events.iter().all(|e| e.injected.is_some());
            let arrived = run
                .events
                .iter()
                .all(|e| e.received_ms.is_some() || e.injected == Some(false));
            if arrived && injected_all && run.arrived_at.is_none() {
                run.arrived_at = Some(now);
            }
            let spans_complete = run.events.iter().all(|e| {
                e.injected == Some(false)
                    || self.config.stages.iter().all(|s| e.spans.contains_key(s))
            });
            let complete = run.arrived_at.is_some_and(|at| {
                spans_complete || now.duration_since(at) >= self.config.span_wait
            });
            if complete || now >= run.deadline {
                done.push(run.seq);
            }
        }
        let mut results = Vec::with_capacity(done.len());
        for seq in done {
            if let Some(run) = self.runs.remove(&seq) {
                results.push(self.result_of(run));
            }
        }
        results
    }

    fn result_of(&mut self, run: PendingRun) -> ProbeResult {
        let mut losses = 0;
        let mut received = 0_u32;
        let mut latency: Option<f64> = None;
        for event in &run.events {
            self.by_trace.remove(&event.trace_id);
            if event.injected == Some(false) {
                continue;
            }
            match event.received_ms {
                Some(at) => {
                    received += 1;
                    let ms = (at - event.sent_ms) as f64;
                    latency = Some(latency.map_or(ms, |l| l.max(ms)));
                }
                None => {
                    if self.tracker.expire(event.partition, run.seq) {
                        losses += 1;
                    }
                }
            }
        }
        let injected = run
            .events
            .iter()
            .filter(|e| e.injected == Some(true))
            .count();
        let status = if run.error.is_some() || injected == 0 {
            ProbeStatus::Down
        } else if losses > 0 || received < injected as u32 {
            ProbeStatus::Timeout
        } else {
            ProbeStatus::Up
        };
        let error = run.error.clone().or_else(|| {
            (status == ProbeStatus::Timeout).then(|| {
                format!(
                    "{losses} of {injected} events not observed within {}",
                    humantime_serde::re::humantime::format_duration(self.config.timeout)
                )
            })
        });
        let stages = self
            .config
            .stages
            .iter()
            .map(|stage| stage_latency(stage, &run.events))
            .collect();
        ProbeResult {
            probe: self.config.name.clone(),
            kind: "pipeline".to_owned(),
            run_id: format!(
                "{}-{}",
                run_prefix(&self.config.name, self.instance),
                run.seq
            ),
            seq: run.seq,
            status,
            started_ms: run.started_ms,
            finished_ms: now_ms(),
            latency_ms: if status == ProbeStatus::Up {
                latency
            } else {
                None
            },
            stages,
            events: u32::try_from(run.events.len()).unwrap_or(u32::MAX),
            received,
            losses,
            duplicates: std::mem::take(&mut self.pending_duplicates),
            late: std::mem::take(&mut self.pending_late),
            totals: self.tracker.totals(),
            http_status: None,
            tls_days_left: None,
            error,
        }
    }

    /// Returns dead-man's switch changes at `now_ms`: the probe (nothing observed) and every
    /// expected stage (no span) silent for `dead_man_intervals` periods, or no longer silent.
    fn dead_man_check(&mut self, now_ms: i64) -> Vec<DeadManFinding> {
        let intervals = self.config.dead_man_intervals;
        if intervals == 0 {
            return Vec::new();
        }
        let limit = self
            .config
            .schedule
            .period_ms(now_ms)
            .saturating_mul(i64::from(intervals));
        let mut subjects = vec!["probe".to_owned()];
        subjects.extend(self.config.stages.iter().map(|s| format!("stage:{s}")));
        let mut findings = Vec::new();
        for subject in subjects {
            let last = self
                .last_seen
                .get(&subject)
                .copied()
                .unwrap_or(self.started_ms);
            let silent = now_ms - last >= limit;
            let active = self.dead_man.get(&subject).copied().unwrap_or(false);
            if silent == active {
                continue;
            }
            self.dead_man.insert(subject.clone(), silent);
            let what = match subject.strip_prefix("stage:") {
                Some(stage) => format!("stage {stage} sent no span for probe {}", self.config.name),
                None => format!("probe {} observed no event", self.config.name),
            };
            let message = if silent {
                format!("{what} for {intervals} intervals")
            } else {
                format!("{what} for a while; it is back")
            };
            findings.push(DeadManFinding {
                probe: self.config.name.clone(),
                subject,
                active: silent,
                last_seen_ms: last,
                timestamp_ms: now_ms,
                intervals,
                message,
            });
        }
        findings
    }
}

fn run_prefix(probe: &str, instance: u32) -> String {
    format!("{probe}-{instance:08x}")
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn stage_latency(stage: &str, events: &[RunEvent]) -> StageLatency {
    let mut seen = true;
    let mut duration: Option<f64> = None;
    let mut offset: Option<f64> = None;
    for event in events.iter().filter(|e| e.injected != Some(false)) {
        match event.spans.get(stage) {
            None => seen = false,
            Some((start, end)) => {
                let d = end.saturating_sub(*start) as f64 / 1e6;
                let o = *end as f64 / 1e6 - event.sent_ms as f64;
                duration = Some(duration.map_or(d, |x| x.max(d)));
                offset = Some(offset.map_or(o, |x| x.max(o)));
            }
        }
    }
    StageLatency {
        stage: stage.to_owned(),
        seen: seen && duration.is_some(),
        duration_ms: duration,
        offset_ms: offset,
    }
}

async fn sleep_or_never(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

async fn run_check(config: ValidProbeConfig, client: reqwest::Client, context: ProbeContext) {
    let (kind, http, tls) = match &config.target {
        ProbeTarget::HttpCheck(check) => ("http", Some(check), None),
        ProbeTarget::TlsCheck(check) => ("tls", None, Some(check)),
        ProbeTarget::Pipeline { .. } => return,
    };
    info!(probe = %config.name, kind, "check started");
    let start = now_ms();
    let mut next_run_ms = match context.mode {
        RunMode::Once => Some(start),
        RunMode::Schedule => config.schedule.first_run_ms(start),
    };
    let mut seq = 0_u64;
    let instance = context.instance;
    while let Some(scheduled) = next_run_ms {
        let wait = Duration::from_millis((scheduled - now_ms()).max(0) as u64);
        tokio::select! {
            biased;
            () = context.shutdown.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
        seq += 1;
        let started_ms = now_ms();
        let outcome = tokio::select! {
            biased;
            () = context.shutdown.cancelled() => break,
            outcome = async {
                match (http, tls) {
                    (_, Some(check)) => tls_check(&client, check, config.timeout, now_ms()).await,
                    (Some(check), None) => http_check(&client, check, config.timeout).await,
                    (None, None) => std::future::pending().await,
                }
            } => outcome,
        };
        let result = ProbeResult {
            probe: config.name.clone(),
            kind: kind.to_owned(),
            run_id: format!("{}-{seq}", run_prefix(&config.name, instance)),
            seq,
            status: outcome.status,
            started_ms,
            finished_ms: now_ms(),
            latency_ms: outcome.latency_ms,
            stages: Vec::new(),
            events: 0,
            received: 0,
            losses: 0,
            duplicates: 0,
            late: 0,
            totals: Default::default(),
            http_status: outcome.http_status,
            tls_days_left: outcome.tls_days_left,
            error: outcome.error,
        };
        context.count_run(&config.name, result.status);
        if !context.emit(ProbeOutput::Result(Box::new(result))).await {
            break;
        }
        next_run_ms = match context.mode {
            RunMode::Once => None,
            RunMode::Schedule => config.schedule.next_run_ms(scheduled, now_ms()),
        };
    }
    info!(probe = %config.name, kind, "check stopped");
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};

    use super::*;
    use crate::config::SyntheticConfig;
    use crate::result::ProbeStatus;

    /// An HTTP "pipeline": POST /ingest stores the payload under its probe id (the first POST
    /// answers 503 to exercise the retry); GET /seen/{id} returns it.
    #[derive(Clone, Default)]
    struct Pipeline {
        stored: Arc<Mutex<HashMap<String, String>>>,
        posts: Arc<Mutex<u32>>,
        markers: Arc<Mutex<Vec<(String, String)>>>,
    }

    async fn ingest(State(p): State<Pipeline>, headers: HeaderMap, body: String) -> StatusCode {
        let mut posts = p.posts.lock().unwrap();
        *posts += 1;
        if *posts == 1 {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        p.markers
            .lock()
            .unwrap()
            .push((header("x-pipewarden-probe"), header("traceparent")));
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let id = json["probe_id"].as_str().unwrap().to_owned();
        p.stored.lock().unwrap().insert(id, body);
        StatusCode::ACCEPTED
    }

    async fn seen(State(p): State<Pipeline>, Path(id): Path<String>) -> (StatusCode, String) {
        match p.stored.lock().unwrap().get(&id) {
            Some(body) => (StatusCode::OK, body.clone()),
            None => (StatusCode::NOT_FOUND, String::new()),
        }
    }

    #[tokio::test]
    async fn http_inject_and_http_observe_run_once_with_a_retry() {
        let pipeline = Pipeline::default();
        let app = axum::Router::new()
            .route("/ingest", post(ingest))
            .route("/seen/{id}", get(seen))
            .with_state(pipeline.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let config: SyntheticConfig = toml::from_str(&format!(
            r#"
            [[probes]]
            name = "web-pipeline"
            timeout = "5s"
            [probes.inject.http]
            url = "http://{addr}/ingest"
            [probes.observe.http]
            url = "http://{addr}/seen/{{{{probe_id}}}}"
            poll_interval = "20ms"
            "#
        ))
        .unwrap();
        let valid = config.validate().unwrap();
        let telemetry = SyntheticTelemetry::default();
        let prober = Prober::build(&valid, None, telemetry.clone())
            .await
            .unwrap();
        let (_spans_tx, spans_rx) = mpsc::channel(1);
        let (out_tx, mut out_rx) = mpsc::channel(8);
        let task =
            tokio::spawn(prober.run(RunMode::Once, spans_rx, out_tx, CancellationToken::new()));
        let Some(ProbeOutput::Result(result)) = out_rx.recv().await else {
            panic!("a result");
        };
        task.await.unwrap();
        assert!(out_rx.recv().await.is_none(), "one run only");
        assert_eq!(result.status, ProbeStatus::Up, "{result:?}");
        assert_eq!((result.events, result.received, result.losses), (1, 1, 0));
        assert!(result.latency_ms.is_some_and(|l| l >= 100.0), "{result:?}");
        assert_eq!(result.run_id.rsplit('-').next(), Some("1"));
        let label = ProbeLabel {
            probe: "web-pipeline".into(),
        };
        assert_eq!(telemetry.events_send_failed.get_or_create(&label).get(), 1);
        assert_eq!(telemetry.events_sent.get_or_create(&label).get(), 1);
        let markers = pipeline.markers.lock().unwrap().clone();
        assert_eq!(markers.len(), 1);
        assert_eq!(markers[0].0, "1");
        assert!(markers[0].1.starts_with("00-70777062"), "{markers:?}");
        server.abort();
    }
}
