//! Fans Kafka lag reports out: lag series to the detector (so an unusual lag is an anomaly even
//! while the verdict is OK), group verdicts to alerting, and groups, verdict changes and the
//! window state to the store (so verdicts carry on across a restart).

use pipewarden_collector::SignalBatch;
use pipewarden_collector::kafka_lag::LagReport;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::alert::{AlertEvent, AlertInput, LagVerdictInput};
use crate::sink::elasticsearch::{EsDocument, LagReading, SinkInput};
use crate::sink::local::StoreBatch;

/// One document per group (its total, no topic) and one per partition.
fn lag_documents(report: &LagReport) -> Vec<EsDocument> {
    let mut docs = Vec::new();
    for group in &report.groups {
        docs.push(EsDocument::lag(&LagReading {
            cluster: &group.cluster,
            group: &group.group,
            topic: "",
            partition: None,
            lag_messages: group.lag_messages,
            lag_seconds: group.lag_seconds,
            status: group.status.as_str(),
            timestamp_ms: report.timestamp_ms,
        }));
        for p in &group.partitions {
            docs.push(EsDocument::lag(&LagReading {
                cluster: &group.cluster,
                group: &group.group,
                topic: &p.topic,
                partition: Some(p.partition),
                lag_messages: p.lag_messages,
                lag_seconds: p.lag_seconds,
                status: p.status.as_str(),
                timestamp_ms: report.timestamp_ms,
            }));
        }
    }
    docs
}

/// Forwards every report from `reports` until the lag source stops; sends await (bounded
/// queues), so a slow detector or store slows the polls down instead of losing reports.
pub async fn run_lag_forwarder(
    mut reports: mpsc::Receiver<LagReport>,
    detector: mpsc::Sender<SignalBatch>,
    store: mpsc::Sender<StoreBatch>,
    alerts: AlertInput,
    elasticsearch: Option<SinkInput>,
) {
    info!("kafka lag forwarder started");
    while let Some(mut report) = reports.recv().await {
        let verdicts: Vec<AlertEvent> = report
            .groups
            .iter()
            .map(|group| {
                AlertEvent::Lag(LagVerdictInput {
                    cluster: group.cluster.clone(),
                    group: group.group.clone(),
                    status: group.status.as_str().to_owned(),
                    timestamp_ms: report.timestamp_ms,
                })
            })
            .collect();
        if alerts.send(verdicts).await.is_err() {
            warn!("alerting stopped before the lag source; verdicts are not evaluated");
        }
        for change in &report.status_changes {
            info!(
                cluster = %change.cluster,
                group = %change.group,
                partition = ?change.partition,
                from = ?change.from.map(|s| s.as_str()),
                to = change.to.as_str(),
                "consumer lag verdict changed"
            );
        }
        if let Some(es) = &elasticsearch
            && let Err(err) = es.send(lag_documents(&report)).await
        {
            warn!(error = %err, "elasticsearch spool refused lag documents");
        }
        let points = std::mem::take(&mut report.points);
        if !points.is_empty()
            && detector
                .send(SignalBatch {
                    points,
                    ..SignalBatch::default()
                })
                .await
                .is_err()
        {
            warn!("detector stopped before the lag source; lag series are not scored");
        }
        let batch = StoreBatch {
            lag: vec![report],
            ..StoreBatch::default()
        };
        if store.send(batch).await.is_err() {
            warn!("store stopped before the lag source; lag verdicts are not stored");
        }
    }
    info!("kafka lag forwarder drained");
}
