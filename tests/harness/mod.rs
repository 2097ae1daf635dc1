//! Integration-test harness: starts real processes on free 127.0.0.1 ports and stops them on drop.
//!
//! - [`Pipewarden`]: the app binary under test (`pipewarden run`), a temporary data dir, config
//!   through `PIPEWARDEN_*` environment overrides, ports learnt from its startup line;
//! - [`Tansu`]: a Kafka-protocol broker; [`Osmem`]: an in-memory OpenSearch-compatible server;
//! - [`PythonOtel`]: the real OpenTelemetry Python SDK running the scripts in `tests/fixtures/`;
//! - [`otlp`]: hand-built OTLP requests and raw HTTP/gRPC senders for the bad-input tests.
//!
//! The tools live in `.tools/` at the repository root (or `$PIPEWARDEN_TEST_TOOLS_DIR`), installed by
//! `tests/install.sh`; a missing tool is a panic that says so, never a silent skip.
//! Waits poll with generous deadlines ([`eventually`]); nothing asserts on timing.

// Each test binary that includes the harness uses a subset of it, and in test code a panic is
// how a failure is reported.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod osmem;
pub mod otlp;
pub mod pipewarden;
pub mod process;
pub mod prometheus;
pub mod python;
pub mod relay;
pub mod tansu;
pub mod tools;

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

pub use osmem::Osmem;
pub use pipewarden::{Pipewarden, StageTotals};
pub use python::{Compression, EmitSpec, Protocol, PythonOtel};
pub use tansu::Tansu;

/// Default deadline for something that should happen "soon" on an idle machine; generous because
/// the test machines are small and busy.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `check` every 100 ms until it returns `Ok`, and returns that value.
///
/// # Panics
/// When `timeout` passes first, with `what` and the last error.
pub async fn eventually<T, E, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(err) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}: {err}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Percent-encodes `value` for a URL query (everything but unreserved characters).
pub fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}
