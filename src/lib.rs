//! pipewarden: an observability and anomaly sidecar for data pipelines.
//!
//! ```text
//!  OTLP gRPC :4317 ─┐                        ┌─> SQLite store ──> JSON API, UI, /metrics (:9464)
//!  OTLP HTTP :4318 ─┴> collector (decode,    │
//!                       per-stage windows) ──┴─ detector (online score per series, anomalies)
//! ```
//!
//! The binary (`main.rs`) only handles arguments, configuration, logging and signals;
//! [`app::run`] builds the components, wires bounded queues between them and runs the shutdown
//! order (intake stops, collector flushes, detector drains, store commits, web stops).

pub mod alert;
pub mod anomaly;
pub mod app;
pub mod config;
pub mod detect;
pub mod features;
pub mod lag;
pub mod probe;
pub mod replay;
pub mod shared_series;
pub mod sink;
pub mod telemetry;
pub mod web;
