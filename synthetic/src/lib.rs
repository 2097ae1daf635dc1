#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod check;
pub mod config;
pub mod error;
pub mod inject;
pub mod observe;
pub mod probe;
pub mod result;
pub mod schedule;
pub mod telemetry;
pub mod template;
pub mod trace;

pub use crate::config::{ProbeConfig, SyntheticConfig, ValidProbeConfig, ValidSyntheticConfig};
pub use crate::error::{BuildError, ConfigError, InjectError};
pub use crate::probe::{Prober, RunMode};
pub use crate::result::{
    DeadManFinding, ProbeOutput, ProbeResult, ProbeStatus, SequenceTotals, StageLatency,
};
pub use crate::telemetry::SyntheticTelemetry;
pub use crate::trace::{StageSpan, TRACE_ID_PREFIX};
