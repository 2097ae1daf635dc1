//! Integration tests: the real pipewarden binary on free 127.0.0.1 ports, fed by real OTLP clients
//! (the OpenTelemetry Python SDK, hand-built requests) and beside real infrastructure (tansu,
//! osmem-server). Tools come from `tests/install.sh`; see `tests/harness/`.

// Test code: a panic (unwrap, expect, assert) is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../harness/mod.rs"]
mod harness;

mod alerts;
mod bad_input;
mod detector;
mod elasticsearch;
mod infra;
mod kafka_lag;
mod otlp_clients;
mod pipeline_alerts;
mod pipeline_elasticsearch;
mod pipeline_kafka;
mod shutdown;
mod synthetic;
mod ui;
