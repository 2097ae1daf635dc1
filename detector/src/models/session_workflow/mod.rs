//! Session workflow model: unsupervised anomaly detection for log sessions (all events sharing a
//! key such as a trace, job or block id), learnt from the event templates of earlier sessions.
//!
//! Fit (on past sessions, labels unused) learns three things about the workflow:
//!
//! - **how common each template is**: the share of sessions that contain it;
//! - **how sessions progress**: for each workflow state (the n-th occurrence of a template in
//!   a session, so "the first Receiving" and "the third Receiving" are different states), the
//!   longest wait observed before the next event of the same session, and whether sessions
//!   commonly end there. A state reached by fewer than `min_state_sessions` training sessions
//!   falls back to the figures of its template over all its occurrences;
//! - **count invariants**: pairs of frequent templates whose counts are equal in nearly every
//!   session (each "Receiving block" has its "Received block"), refined by the sessions they
//!   do not hold in: the template (coefficient 1 or 2, either sign) that explains most of those
//!   exceptions is added while it strictly reduces them, up to `max_refinement_terms` (each
//!   "Deleting block" has its "ask to delete", or else a re-replication), as invariant mining
//!   looks for sparse linear relations between event counts (Lou et al., USENIX ATC 2010).
//!   Each invariant keeps the longest time a training session that ends balanced was out of
//!   balance (its lag).
//!
//! A session is then assessed at a given time (`now_ms`, an argument), from its events so far:
//!
//! - a template seen in fewer than `novel_fraction` of the training sessions (or never), or an
//!   error-like one (see [`crate::templates`]) in fewer than `rare_fraction`, is a finding;
//! - so is any template seen in fewer than `rare_fraction` of the training sessions once the
//!   session has finished (its current states are a common ending, or it has stalled): an
//!   uncommon detour (a re-replication, a retry) is judged on the completed session, while a
//!   session still in progress is judged only on what no continuation can make normal;
//! - a session whose current states (its events at its last timestamp) are not a common ending
//!   and that has been idle for more than `timeout_margin` times the longest wait seen there
//!   has **stalled**;
//! - a count invariant still broken `timeout_margin` times its lag after the last event of its
//!   templates is a finding.
//!
//! The session's score is the highest of its findings, each mapped to a raw score of at least 6
//! (an alert with the default threshold) that grows with the evidence, through [`crate::score`].
//! A session that is merely unfinished (idle for less than its workflow allows) is not judged on
//! what has not happened yet, so sessions can be assessed while the stream is still running.
//! Version 3 ([`SessionWorkflow::VERSION`]) judges uncommon templates at `rare_fraction` in
//! finished sessions (version 2: at `novel_fraction` unless error-like). Version 2 added the
//! workflow states, the refinement and the imbalance lag (version 1: template-level waits,
//! pairs, lag between last occurrences).

mod algorithm;
mod error;
mod hyperparams;

pub use algorithm::{
    InvariantTerm, SessionAssessment, SessionEvent, SessionFinding, SessionSet, SessionWorkflow,
};
pub use error::{SessionWorkflowError, SessionWorkflowParamsError};
pub use hyperparams::{SessionWorkflowParams, SessionWorkflowValidParams};
