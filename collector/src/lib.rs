#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod config;
mod derive;
pub mod error;
pub mod kafka_lag;
pub mod otlp;
pub mod probe_tap;
pub mod signal;
pub mod telemetry;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::config::{
    CollectorConfig, JobsConfig, OtlpConfig, SignalsConfig, ValidCollectorConfig,
};
pub use crate::error::{CollectorError, ConfigError};
pub use crate::kafka_lag::{
    GroupLag, KafkaLagConfig, KafkaLagError, KafkaLagSource, LagHealth, LagReport, LagState,
    LagStatus, LagTelemetry, PartitionLag, StatusChange, ValidKafkaLagConfig,
};
pub use crate::signal::*;
pub use crate::telemetry::CollectorTelemetry;

use crate::derive::{Clock, DeriveSettings, Deriver};
use crate::otlp::{Intake, IntakeLimits};

/// The OTLP collector: both receivers bound, ready to [`run`](Collector::run).
#[derive(Debug)]
pub struct Collector {
    config: ValidCollectorConfig,
    telemetry: CollectorTelemetry,
    output: mpsc::Sender<SignalBatch>,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    grpc_local_addr: SocketAddr,
    http_local_addr: SocketAddr,
    span_tap: Option<probe_tap::SpanTap>,
}

impl Collector {
    /// Binds the OTLP/gRPC and OTLP/HTTP sockets; derived signals will go to `output`.
    ///
    /// # Errors
    ///
    /// Returns [`CollectorError::Bind`] when a socket cannot be bound.
    pub async fn build(
        config: ValidCollectorConfig,
        telemetry: CollectorTelemetry,
        output: mpsc::Sender<SignalBatch>,
    ) -> Result<Self, CollectorError> {
        let (grpc_listener, grpc_local_addr) = bind("grpc", config.grpc_address).await?;
        let (http_listener, http_local_addr) = bind("http", config.http_address).await?;
        Ok(Self {
            config,
            telemetry,
            output,
            grpc_listener,
            http_listener,
            grpc_local_addr,
            http_local_addr,
            span_tap: None,
        })
    }

    /// Sends a summary of every accepted span whose trace id the tap selects to the tap's queue
    /// (see [`probe_tap`]); derivation is unchanged.
    pub fn with_span_tap(mut self, tap: probe_tap::SpanTap) -> Self {
        self.span_tap = Some(tap);
        self
    }

    /// Returns the address the OTLP/gRPC receiver is bound to (the real port when 0 was asked).
    pub fn grpc_local_addr(&self) -> SocketAddr {
        self.grpc_local_addr
    }

    /// Returns the address the OTLP/HTTP receiver is bound to (the real port when 0 was asked).
    pub fn http_local_addr(&self) -> SocketAddr {
        self.http_local_addr
    }

    /// Receives and derives until `shutdown` is cancelled, then shuts down in order: both
    /// receivers stop taking requests and finish the ones in progress, the deriver derives
    /// everything queued and closes the open window, and the last batches are sent.
    ///
    /// Returns once everything accepted has been sent to the output channel (or counted as
    /// dropped if the channel's receiver is gone).
    ///
    /// # Errors
    ///
    /// Returns [`CollectorError::Serve`] when a receiver fails (the other one is then stopped
    /// and everything accepted is still derived), or [`CollectorError::Task`] when a task
    /// panicked.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), CollectorError> {
        let Self {
            config,
            telemetry,
            output,
            grpc_listener,
            http_listener,
            grpc_local_addr,
            http_local_addr,
            span_tap,
        } = self;
        let otlp = &config.source.otlp;
        let (queue, queue_receiver) = mpsc::channel(otlp.queue_capacity);
        let limits = IntakeLimits {
            max_inflight_bytes: config.max_inflight_bytes,
            max_body_bytes: config.max_body_bytes,
            backpressure_wait: otlp.backpressure_wait,
            retry_after: otlp.retry_after,
        };
        let intake = Intake::new(limits, queue, telemetry.clone());
        let (queue_receiver, tap_task) = match span_tap {
            Some(tap) => {
                let (receiver, task) = probe_tap::interpose(
                    queue_receiver,
                    tap,
                    config.source.signals.stage_attributes.clone(),
                    otlp.queue_capacity,
                );
                (receiver, Some(task))
            }
            None => (queue_receiver, None),
        };

        let deriver = Deriver::new(
            DeriveSettings::new(&config.source.signals),
            telemetry,
            Clock::system(),
        );
        let deriver_stop = CancellationToken::new();
        let deriver_task = tokio::spawn(deriver.run(queue_receiver, output, deriver_stop.clone()));

        // Receivers stop on shutdown, or when the other receiver fails.
        let intake_stop = shutdown.child_token();
        let grpc_task = tokio::spawn(otlp::grpc::serve(
            grpc_listener,
            intake.clone(),
            intake_stop.clone().cancelled_owned(),
        ));
        let http_task = tokio::spawn(otlp::http::serve(
            http_listener,
            intake,
            intake_stop.clone().cancelled_owned(),
        ));
        tracing::info!(grpc = %grpc_local_addr, http = %http_local_addr, "OTLP receivers started");

        let grpc_result = async {
            let result = grpc_task.await;
            intake_stop.cancel();
            match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(CollectorError::Serve {
                    transport: "grpc",
                    address: grpc_local_addr,
                    source: Box::new(err),
                }),
                Err(err) => Err(CollectorError::Task {
                    task: "grpc",
                    source: err,
                }),
            }
        };
        let http_result = async {
            let result = http_task.await;
            intake_stop.cancel();
            match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(CollectorError::Serve {
                    transport: "http",
                    address: http_local_addr,
                    source: Box::new(err),
                }),
                Err(err) => Err(CollectorError::Task {
                    task: "http",
                    source: err,
                }),
            }
        };
        let (grpc_result, http_result) = tokio::join!(grpc_result, http_result);
        tracing::info!("OTLP receivers stopped, deriving what is queued");
        if let Some(task) = tap_task {
            // The receivers held the intake's senders: the tap forwards what they accepted.
            probe_tap::drain(task).await;
        }

        deriver_stop.cancel();
        let deriver_result = deriver_task.await.map_err(|err| CollectorError::Task {
            task: "deriver",
            source: err,
        });
        tracing::info!("collector stopped");
        grpc_result.and(http_result).and(deriver_result)
    }
}

async fn bind(
    transport: &'static str,
    address: SocketAddr,
) -> Result<(TcpListener, SocketAddr), CollectorError> {
    let bind_error = |source| CollectorError::Bind {
        transport,
        address,
        source,
    };
    let listener = TcpListener::bind(address).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

#[cfg(test)]
mod tests;
