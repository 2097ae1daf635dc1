//! Session workflow model: unsupervised anomaly detection for log sessions (all events sharing a
//! key such as a trace, job or block id), learnt from the event templates of earlier sessions.
//!
//! Fit (on past sessions, labels unused) learns three things about the workflow:
//!
//! - **how common each template is**: the share of sessions that contain it;
//! - **how sessions progress**: for each template, the longest wait observed before the next
//!   event of the same session, and whether sessions commonly end with it;
//! - **count invariants**: pairs of frequent templates whose counts are equal in nearly every
//!   session (each "Receiving block" has its "Received block"), with the longest lag between
//!   them.
//!
//! A session is then assessed at a given time (`now_ms`, an argument), from its events so far:
//!
//! - a template seen in fewer than `novel_fraction` of the training sessions (or never), or an
//!   error-like one (see [`crate::templates`]) in fewer than `rare_fraction`, is a finding;
//! - a session whose last events are not a common ending and that has been idle for more than
//!   `timeout_margin` times the longest wait seen after them has **stalled**;
//! - a count invariant broken after both templates had `timeout_margin` times their longest lag
//!   to catch up is a finding.
//!
//! The session's score is the highest of its findings, each mapped to a raw score of at least 6
//! (an alert with the default threshold) that grows with the evidence, through [`crate::score`].
//! A session that is merely unfinished (idle for less than its workflow allows) is not judged on
//! what has not happened yet, so sessions can be assessed while the stream is still running.

mod algorithm;
mod error;
mod hyperparams;

pub use algorithm::{SessionAssessment, SessionEvent, SessionFinding, SessionSet, SessionWorkflow};
pub use error::{SessionWorkflowError, SessionWorkflowParamsError};
pub use hyperparams::{SessionWorkflowParams, SessionWorkflowValidParams};
