//! Builds the components, owns the channels and tasks, and runs the shutdown order:
//! receivers stop intake, the collector flushes its windows, the detector drains, the store
//! commits, then the web server stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use pipewarden_collector::{
    Collector, CollectorTelemetry, KafkaLagSource, LagTelemetry, SignalBatch,
};
use pipewarden_detector::SeriesBank;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::alert::{AlertService, AlertTelemetry};
use crate::config::ValidConfig;
use crate::detect;
use crate::features;
use crate::lag;
use crate::probe;
use crate::sink::elasticsearch::{ElasticsearchSink, EsTelemetry};
use crate::sink::local::{ProbeStore, StoreBatch, StoreLimits, StoreReader, StoreWriter};
use crate::telemetry::AppTelemetry;
use crate::web;

/// What `/readyz` reports, per component.
#[derive(Debug, Default)]
pub struct Readiness {
    /// The OTLP receivers are bound and serving.
    pub otlp: AtomicBool,
    /// The store writer is running.
    pub store_writer: AtomicBool,
    /// The synthetic prober (`disabled` without probes).
    pub probes: Arc<probe::ProbeReadiness>,
}

/// Addresses the running process actually bound (port 0 in config resolves here).
#[derive(Debug, Clone, Copy)]
pub struct BoundAddresses {
    /// OTLP/gRPC.
    pub grpc: SocketAddr,
    /// OTLP/HTTP.
    pub http: SocketAddr,
    /// API, UI and `/metrics`.
    pub web: SocketAddr,
}

/// Runs pipewarden until `shutdown` is cancelled, then drains and flushes everything.
///
/// # Errors
/// When a component cannot be built (bind, store) or fails while running.
pub async fn run(config: ValidConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let collector_telemetry = CollectorTelemetry::register(&mut registry);
    let telemetry = AppTelemetry::register(&mut registry);
    let readiness = Arc::new(Readiness::default());

    let writer = StoreWriter::open(
        &config.store.path,
        StoreLimits {
            max_batches_per_transaction: config.store.max_batches_per_transaction,
            retention: config.store.retention,
            point_resolution: config.store.point_resolution,
            commit_delay: config.store.commit_delay,
            point_flush_interval: config.store.point_flush_interval,
        },
        telemetry.clone(),
    )
    .context("opening the local store")?;
    let reader = StoreReader::open(&config.store.path).context("opening the local store")?;

    let capacity = config.pipeline.queue_capacity;
    let (signal_tx, signal_rx) = mpsc::channel::<SignalBatch>(capacity);
    let lag_signal_tx = signal_tx.clone();
    let (store_tx, store_rx) = mpsc::channel::<StoreBatch>(capacity);
    let store_thread = writer.spawn(store_rx);
    readiness.store_writer.store(true, Ordering::Relaxed);

    let mut es_health = None;
    let mut es_input = None;
    let es_stop = CancellationToken::new();
    let mut es_task = None;
    if config.elasticsearch.enabled() {
        let (sink, input) = ElasticsearchSink::build(
            config.elasticsearch.clone(),
            EsTelemetry::register(&mut registry),
        )
        .context("starting the Elasticsearch sink")?;
        es_health = Some(sink.health());
        es_input = Some(input);
        es_task = Some(tokio::spawn(sink.run(es_stop.clone())));
    }

    let (alerts, alert_input) = AlertService::build(
        config.alert.clone(),
        &config.store.path,
        AlertTelemetry::register(&mut registry),
    )
    .context("starting alerting")?;
    let alerts = match &es_input {
        Some(input) => alerts.with_elasticsearch(input.clone()),
        None => alerts,
    };
    let alert_handle = alerts.handle();
    let alert_stop = CancellationToken::new();
    let alert_task = tokio::spawn(alerts.run(alert_stop.clone()));

    let bank = SeriesBank::new(features::bank_params(&config.detector)?);
    let detect = detect::build(
        &config,
        &mut registry,
        store_tx.clone(),
        alert_input.clone(),
        es_input.clone(),
    )
    .await?;
    let probe_store = ProbeStore::open(&config.store.path, config.store.retention)
        .context("opening the probe tables of the local store")?;
    let probes = probe::start(
        &config.synthetic,
        &mut registry,
        probe::ProbeSinks {
            store: probe_store.clone(),
            detector: signal_tx.clone(),
            alerts: alert_input.clone(),
            elasticsearch: es_input.clone(),
        },
        shutdown.child_token(),
        Arc::clone(&readiness.probes),
    )
    .await
    .context("starting the synthetic probes")?;
    let collector = Collector::build(config.collector.clone(), collector_telemetry, signal_tx)
        .await
        .context("starting the OTLP receivers")?;
    let (collector, probe_tasks) = match probes {
        Some(running) => (collector.with_span_tap(running.tap), running.tasks),
        None => (collector, Vec::new()),
    };
    let web_listener = tokio::net::TcpListener::bind(config.web_address)
        .await
        .with_context(|| format!("binding web.address {}", config.web_address))?;
    let bound = BoundAddresses {
        grpc: collector.grpc_local_addr(),
        http: collector.http_local_addr(),
        web: web_listener
            .local_addr()
            .context("reading the web address")?,
    };
    // The one line scripts and the test harness read to learn the bound ports.
    println!(
        "pipewarden listening grpc={} http={} web={}",
        bound.grpc, bound.http, bound.web
    );
    info!(grpc = %bound.grpc, http = %bound.http, web = %bound.web, "pipewarden started");
    readiness.otlp.store(true, Ordering::Relaxed);

    // Kafka lag: a second source beside OTLP, when clusters are configured.
    let lag_enabled = !config.collector.config().kafka_lag.clusters.is_empty();
    let mut lag_tasks = Vec::new();
    let mut lag_health = None;
    if lag_enabled {
        let restored = reader
            .kafka_lag_state()
            .await
            .context("reading the saved Kafka lag state")?;
        let (lag_tx, lag_rx) = mpsc::channel(capacity);
        let source = KafkaLagSource::build(
            config.collector.kafka_lag().clone(),
            LagTelemetry::register(&mut registry),
            lag_tx,
            restored,
        )
        .context("starting the Kafka lag source")?;
        lag_health = Some(source.health());
        lag_tasks.push(tokio::spawn(source.run(shutdown.child_token())));
        lag_tasks.push(tokio::spawn(lag::run_lag_forwarder(
            lag_rx,
            lag_signal_tx.clone(),
            store_tx.clone(),
            alert_input.clone(),
            es_input.clone(),
        )));
    }
    drop(lag_signal_tx);

    let intake_stop = shutdown.child_token();
    let mut collector_task = tokio::spawn(collector.run(intake_stop.clone()));
    let detector_task = tokio::spawn(features::run_detector(features::DetectorLoop {
        bank,
        input: signal_rx,
        output: store_tx,
        alerts: alert_input,
        log_limit: features::LogRateLimit::new(config.store.max_log_records_per_second),
        elasticsearch: es_input,
        redactor: config.redactor.clone(),
        telemetry: telemetry.clone(),
        logs: detect.log_feed,
        suppressor: Some(detect.suppressor.clone()),
        stages: detect.stage_scorer,
    }));
    let web_stop = CancellationToken::new();
    let state = web::AppState {
        reader,
        registry: Arc::new(registry),
        readiness: Arc::clone(&readiness),
        alerts: alert_handle,
        kafka: lag_health,
        elasticsearch: es_health,
        max_rows: config.web.max_rows,
    };
    let web_task = tokio::spawn(web::serve(
        web_listener,
        web::router(state)
            .merge(detect::feedback::routes(
                detect.suppressor,
                config.web.max_rows,
            ))
            .merge(probe::api_router(probe_store, config.web.max_rows)),
        web_stop.clone(),
    ));

    let mut result = Ok(());
    let mut collector_done = false;
    tokio::select! {
        biased;
        () = shutdown.cancelled() => info!("shutdown requested; draining"),
        joined = &mut collector_task => {
            collector_done = true;
            readiness.otlp.store(false, Ordering::Relaxed);
            result = flatten("collector", joined);
            // The intake token is a child of `shutdown`: a collector that returns because
            // shutdown began is the normal path, not a failure.
            if shutdown.is_cancelled() {
                info!("shutdown requested; draining");
            } else {
                error!("collector stopped unexpectedly; shutting down");
            }
            intake_stop.cancel();
        }
    }
    intake_stop.cancel();
    if !collector_done {
        // Waits for intake to stop and every accepted item to be derived and sent on.
        result = result.and(flatten("collector", collector_task.await));
    }
    readiness.otlp.store(false, Ordering::Relaxed);
    for task in lag_tasks {
        if let Err(err) = task.await {
            result = result.and(Err(anyhow::anyhow!("kafka lag task failed: {err}")));
        }
    }
    // Probes stopped with intake; their forwarder was a sender of the detector and alerting.
    for task in probe_tasks {
        if let Err(err) = task.await {
            result = result.and(Err(anyhow::anyhow!("probe task failed: {err}")));
        }
    }
    if let Err(err) = detector_task.await {
        result = result.and(Err(anyhow::anyhow!("detector task failed: {err}")));
    }
    // The pipeline held the log detector's only sender: it drains what is queued, then stops.
    if let Some(task) = detect.log_task
        && let Err(err) = task.await
    {
        result = result.and(Err(anyhow::anyhow!("log detector task failed: {err}")));
    }
    // The detector was the last sender of alert inputs: evaluate what is queued, then stop.
    alert_stop.cancel();
    result = result.and(flatten("alerting", alert_task.await));
    // The detector and alerting were the last senders to the Elasticsearch spool: flush by
    // its deadline; what is left stays in the spool for the next start.
    es_stop.cancel();
    if let Some(task) = es_task {
        result = result.and(flatten("elasticsearch sink", task.await));
    }
    let joined = tokio::task::spawn_blocking(move || store_thread.join()).await;
    readiness.store_writer.store(false, Ordering::Relaxed);
    if !matches!(joined, Ok(Ok(()))) {
        result = result.and(Err(anyhow::anyhow!("store writer failed during shutdown")));
    }
    web_stop.cancel();
    if let Ok(Err(err)) = web_task.await {
        error!(error = %err, "web server failed");
    }
    info!("pipewarden stopped");
    result
}

fn flatten<E: std::fmt::Display>(
    what: &str,
    joined: Result<Result<(), E>, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    match joined {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(anyhow::anyhow!("{what} failed: {err}")),
        Err(err) => Err(anyhow::anyhow!("{what} task failed: {err}")),
    }
}
