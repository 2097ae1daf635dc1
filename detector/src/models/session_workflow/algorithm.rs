//! Fit and assessment of the session workflow model.

use std::collections::HashMap;

use linfa::{DatasetBase, dataset::Records, traits::Fit};

use super::error::SessionWorkflowError;
use super::hyperparams::{SessionWorkflowParams, SessionWorkflowValidParams};
use crate::score::Score;
use crate::templates::{TemplateId, TemplateMiner};

/// Raw score of the weakest finding: an alert with the default threshold (score 71).
const FINDING_Z: f64 = 6.0;

/// Most templates that take part in count invariants (the most frequent ones).
const MAX_INVARIANT_TEMPLATES: usize = 64;

/// Share of the sessions containing a template that must end with it for it to be an ending.
const ENDING_SHARE: f64 = 0.5;

/// One event of a session: when it happened and its template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionEvent {
    /// Time of the event, in milliseconds.
    pub timestamp_ms: i64,
    /// Template of the event's message.
    pub template: TemplateId,
}

/// Training sessions and the miner that named their templates: the records `fit` learns from.
#[derive(Debug, Clone, Copy)]
pub struct SessionSet<'a> {
    /// Sessions, each a list of events (in any order).
    pub sessions: &'a [Vec<SessionEvent>],
    /// The miner that produced the template ids.
    pub miner: &'a TemplateMiner,
}

impl Records for SessionSet<'_> {
    type Elem = ();

    fn nsamples(&self) -> usize {
        self.sessions.len()
    }

    fn nfeatures(&self) -> usize {
        self.miner.len()
    }
}

/// Something a session did that its workflow does not.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionFinding {
    /// A template rare in training sessions (or never seen).
    RareTemplate {
        /// The template.
        template: TemplateId,
        /// Share of training sessions that contained it.
        training_share: f64,
        /// Whether it reads like a failure.
        error_like: bool,
    },
    /// The session stopped where sessions do not stop.
    Stalled {
        /// The template the session stopped after.
        after: TemplateId,
        /// How long the session has been idle.
        idle_ms: i64,
        /// The longest idle time allowed after that template.
        limit_ms: i64,
    },
    /// Two templates whose counts are equal in normal sessions are not.
    BrokenInvariant {
        /// First template of the pair.
        first: TemplateId,
        /// Second template of the pair.
        second: TemplateId,
        /// Count of the first in this session.
        first_count: u32,
        /// Count of the second in this session.
        second_count: u32,
    },
}

/// Verdict on one session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionAssessment {
    /// Anomaly score in 0..=100 (0 without findings, at least 71 with one).
    pub score: f64,
    /// What the session did that its workflow does not.
    pub findings: Vec<SessionFinding>,
}

/// A learnt count invariant.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Invariant {
    first: TemplateId,
    second: TemplateId,
    /// Longest lag between the last occurrences of both in a training session.
    lag_ms: i64,
}

/// A fitted session workflow model (see the [module docs](super)).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionWorkflow {
    params: SessionWorkflowValidParams,
    sessions: usize,
    /// Per template id: training sessions containing it.
    template_sessions: Vec<u32>,
    /// Per template id: longest wait before the next event of the same session.
    longest_wait_ms: Vec<Option<i64>>,
    /// Per template id: share of the sessions containing it that end with it.
    ending_share: Vec<f64>,
    invariants: Vec<Invariant>,
}

impl SessionWorkflow {
    /// Returns the default parameters (see [`SessionWorkflowParams::new`]).
    pub fn params() -> SessionWorkflowParams {
        SessionWorkflowParams::new()
    }

    /// Returns the number of training sessions.
    pub fn sessions(&self) -> usize {
        self.sessions
    }

    /// Returns the learnt count invariants as template pairs.
    pub fn invariants(&self) -> impl Iterator<Item = (TemplateId, TemplateId)> + '_ {
        self.invariants
            .iter()
            .map(|invariant| (invariant.first, invariant.second))
    }

    fn training_share(&self, template: TemplateId) -> f64 {
        let sessions = self
            .template_sessions
            .get(template.0 as usize)
            .copied()
            .unwrap_or(0);
        f64::from(sessions) / self.sessions as f64
    }

    /// Assesses a session from its events so far, at time `now_ms`; `miner` tells which
    /// templates read like failures.
    pub fn assess(
        &self,
        events: &[SessionEvent],
        now_ms: i64,
        miner: &TemplateMiner,
    ) -> SessionAssessment {
        let mut findings = Vec::new();
        let mut strongest: f64 = 0.0;
        let Some(last_ms) = events.iter().map(|event| event.timestamp_ms).max() else {
            return SessionAssessment {
                score: 0.0,
                findings,
            };
        };
        // Per template: count and time of the last occurrence.
        let mut seen: HashMap<TemplateId, (u32, i64)> = HashMap::new();
        for event in events {
            let entry = seen
                .entry(event.template)
                .or_insert((0, event.timestamp_ms));
            entry.0 += 1;
            entry.1 = entry.1.max(event.timestamp_ms);
        }
        let mut templates: Vec<TemplateId> = seen.keys().copied().collect();
        templates.sort_unstable();

        let floor_share = 0.5 / self.sessions as f64;
        for &template in &templates {
            let share = self.training_share(template);
            let error_like = miner.template(template).is_some_and(|t| t.is_error_like());
            let limit = if error_like {
                self.params.rare_fraction
            } else {
                self.params.novel_fraction
            };
            if share < limit || share == 0.0 {
                strongest = strongest.max(FINDING_Z + (limit / share.max(floor_share)).ln());
                findings.push(SessionFinding::RareTemplate {
                    template,
                    training_share: share,
                    error_like,
                });
            }
        }

        if let Some((after, limit_ms)) = self.stall_limit(events, last_ms) {
            let idle_ms = now_ms.saturating_sub(last_ms);
            if idle_ms > limit_ms {
                strongest = strongest.max(FINDING_Z + (idle_ms as f64 / limit_ms as f64).ln());
                findings.push(SessionFinding::Stalled {
                    after,
                    idle_ms,
                    limit_ms,
                });
            }
        }

        for invariant in &self.invariants {
            let (first_count, first_ms) = seen.get(&invariant.first).copied().unwrap_or((0, 0));
            let (second_count, second_ms) = seen.get(&invariant.second).copied().unwrap_or((0, 0));
            if first_count == second_count {
                continue;
            }
            let latest_ms = match (first_count, second_count) {
                (0, _) => second_ms,
                (_, 0) => first_ms,
                _ => first_ms.max(second_ms),
            };
            let allowed =
                self.params.timeout_margin * invariant.lag_ms.max(self.params.min_lag_ms) as f64;
            if now_ms.saturating_sub(latest_ms) as f64 > allowed {
                let gap = f64::from(first_count.abs_diff(second_count));
                strongest = strongest.max(FINDING_Z + gap.ln_1p());
                findings.push(SessionFinding::BrokenInvariant {
                    first: invariant.first,
                    second: invariant.second,
                    first_count,
                    second_count,
                });
            }
        }

        let score = if findings.is_empty() {
            0.0
        } else {
            Score::from_z(strongest).value()
        };
        SessionAssessment { score, findings }
    }

    /// Returns the template the session stopped after and the longest idle time its workflow
    /// allows there, or `None` when the session may end there (or nothing is known about it).
    fn stall_limit(&self, events: &[SessionEvent], last_ms: i64) -> Option<(TemplateId, i64)> {
        let mut limit: Option<(TemplateId, i64)> = None;
        for event in events.iter().filter(|event| event.timestamp_ms == last_ms) {
            let index = event.template.0 as usize;
            let ending = self.ending_share.get(index).copied().unwrap_or(1.0);
            let wait = self.longest_wait_ms.get(index).copied().flatten();
            // A common ending, or a template never followed in training: the session may end here.
            let wait = wait.filter(|_| ending < ENDING_SHARE)?;
            let allowed = (self.params.timeout_margin * wait.max(1) as f64) as i64;
            if limit.is_none_or(|(_, current)| allowed > current) {
                limit = Some((event.template, allowed));
            }
        }
        limit
    }
}

impl<'a, T> Fit<SessionSet<'a>, T, SessionWorkflowError> for SessionWorkflowValidParams {
    type Object = SessionWorkflow;

    fn fit(
        &self,
        dataset: &DatasetBase<SessionSet<'a>, T>,
    ) -> Result<SessionWorkflow, SessionWorkflowError> {
        let SessionSet { sessions, miner } = *dataset.records();
        if sessions.is_empty() {
            return Err(SessionWorkflowError::NoSessions);
        }
        let templates = miner.len();
        let mut template_sessions = vec![0u32; templates];
        let mut endings = vec![0u32; templates];
        let mut longest_wait_ms: Vec<Option<i64>> = vec![None; templates];
        for session in sessions {
            let mut ordered = session.clone();
            ordered.sort_by_key(|event| event.timestamp_ms);
            let mut distinct: Vec<usize> = ordered
                .iter()
                .map(|event| event.template.0 as usize)
                .filter(|&index| index < templates)
                .collect();
            distinct.sort_unstable();
            distinct.dedup();
            for &index in &distinct {
                template_sessions[index] += 1;
            }
            for pair in ordered.windows(2) {
                let index = pair[0].template.0 as usize;
                if index < templates {
                    let wait = pair[1].timestamp_ms - pair[0].timestamp_ms;
                    longest_wait_ms[index] =
                        Some(longest_wait_ms[index].map_or(wait, |w| w.max(wait)));
                }
            }
            if let Some(last) = ordered.last() {
                let mut ending: Vec<usize> = ordered
                    .iter()
                    .filter(|event| event.timestamp_ms == last.timestamp_ms)
                    .map(|event| event.template.0 as usize)
                    .filter(|&index| index < templates)
                    .collect();
                ending.sort_unstable();
                ending.dedup();
                for index in ending {
                    endings[index] += 1;
                }
            }
        }
        let ending_share = endings
            .iter()
            .zip(&template_sessions)
            .map(|(&ends, &total)| {
                if total == 0 {
                    0.0
                } else {
                    f64::from(ends) / f64::from(total)
                }
            })
            .collect();
        let invariants = mine_invariants(sessions, &template_sessions, self);
        Ok(SessionWorkflow {
            params: self.clone(),
            sessions: sessions.len(),
            template_sessions,
            longest_wait_ms,
            ending_share,
            invariants,
        })
    }
}

/// Returns the pairs of frequent templates whose counts are equal in at least `invariant_hold`
/// of the sessions containing either.
fn mine_invariants(
    sessions: &[Vec<SessionEvent>],
    template_sessions: &[u32],
    params: &SessionWorkflowValidParams,
) -> Vec<Invariant> {
    let needed = params.invariant_support * sessions.len() as f64;
    let mut candidates: Vec<usize> = (0..template_sessions.len())
        .filter(|&index| f64::from(template_sessions[index]) >= needed)
        .collect();
    candidates.sort_by_key(|&index| (std::cmp::Reverse(template_sessions[index]), index));
    candidates.truncate(MAX_INVARIANT_TEMPLATES);
    candidates.sort_unstable();
    let slot: HashMap<usize, usize> = candidates
        .iter()
        .enumerate()
        .map(|(slot, &index)| (index, slot))
        .collect();
    // Per session and candidate: count and time of the last occurrence.
    let profiles: Vec<Vec<(u32, i64)>> = sessions
        .iter()
        .map(|session| {
            let mut profile = vec![(0u32, i64::MIN); candidates.len()];
            for event in session {
                if let Some(&slot) = slot.get(&(event.template.0 as usize)) {
                    profile[slot].0 += 1;
                    profile[slot].1 = profile[slot].1.max(event.timestamp_ms);
                }
            }
            profile
        })
        .collect();
    let mut invariants = Vec::new();
    for a in 0..candidates.len() {
        for b in a + 1..candidates.len() {
            let (mut either, mut equal, mut lag_ms) = (0u32, 0u32, 0i64);
            for profile in &profiles {
                let ((count_a, last_a), (count_b, last_b)) = (profile[a], profile[b]);
                if count_a == 0 && count_b == 0 {
                    continue;
                }
                either += 1;
                if count_a == count_b {
                    equal += 1;
                }
                if count_a > 0 && count_b > 0 {
                    lag_ms = lag_ms.max((last_a - last_b).abs());
                }
            }
            if either > 0 && f64::from(equal) >= params.invariant_hold * f64::from(either) {
                invariants.push(Invariant {
                    first: TemplateId(candidates[a] as u32),
                    second: TemplateId(candidates[b] as u32),
                    lag_ms,
                });
            }
        }
    }
    invariants
}

#[cfg(test)]
mod tests {
    use linfa::ParamGuard;

    use super::*;

    const SECOND: i64 = 1000;

    /// A normal write: open, two receive/received pairs a second apart, close an hour later.
    fn write_session(miner: &mut TemplateMiner, start_ms: i64) -> Vec<SessionEvent> {
        let lines = [
            (0, "allocate block for file"),
            (1, "Receiving block from peer one"),
            (1, "Receiving block from peer two"),
            (2, "Received block of size from peer"),
            (2, "Received block of size from peer"),
            (3600, "Deleting block from disk"),
        ];
        lines
            .iter()
            .map(|&(offset, line)| SessionEvent {
                timestamp_ms: start_ms + offset * SECOND,
                template: miner.add(line, 9).id,
            })
            .collect()
    }

    fn fitted() -> (TemplateMiner, SessionWorkflow) {
        let mut miner = TemplateMiner::new(TemplateMiner::params().check().unwrap());
        let sessions: Vec<Vec<SessionEvent>> = (0..300)
            .map(|i| write_session(&mut miner, i * 10 * SECOND))
            .collect();
        let params = SessionWorkflow::params().check().unwrap();
        let set = SessionSet {
            sessions: &sessions,
            miner: &miner,
        };
        let model = params.fit(&DatasetBase::new(set, ())).unwrap();
        (miner, model)
    }

    #[test]
    fn normal_and_unfinished_sessions_have_no_findings() {
        let (mut miner, model) = fitted();
        let session = write_session(&mut miner, 0);
        let done = model.assess(&session, 10_000 * SECOND, &miner);
        assert_eq!(
            done,
            SessionAssessment {
                score: 0.0,
                findings: vec![]
            }
        );
        // Waiting for its deletion, well within the hour the workflow allows.
        let unfinished = model.assess(&session[..5], 1800 * SECOND, &miner);
        assert!(unfinished.findings.is_empty(), "{unfinished:?}");
    }

    #[test]
    fn a_session_stuck_mid_write_stalls() {
        let (mut miner, model) = fitted();
        let session = write_session(&mut miner, 0);
        let stuck = &session[..3];
        assert!(model.assess(stuck, 3 * SECOND, &miner).findings.is_empty());
        let later = model.assess(stuck, 600 * SECOND, &miner);
        assert!(later.score >= 70.0, "{later:?}");
        assert!(
            later
                .findings
                .iter()
                .any(|finding| matches!(finding, SessionFinding::Stalled { .. }))
        );
    }

    #[test]
    fn an_error_template_and_a_broken_count_are_findings() {
        let (mut miner, model) = fitted();
        assert!(model.invariants().count() >= 1);
        let mut session = write_session(&mut miner, 0);
        session.push(SessionEvent {
            timestamp_ms: 3 * SECOND,
            template: miner
                .add("writeBlock received exception while mirroring", 9)
                .id,
        });
        let assessed = model.assess(&session, 10_000 * SECOND, &miner);
        assert!(assessed.findings.iter().any(|finding| matches!(
            finding,
            SessionFinding::RareTemplate {
                error_like: true,
                ..
            }
        )));
        let mut unbalanced = write_session(&mut miner, 0);
        unbalanced.remove(3);
        let assessed = model.assess(&unbalanced, 10_000 * SECOND, &miner);
        assert!(
            assessed
                .findings
                .iter()
                .any(|finding| matches!(finding, SessionFinding::BrokenInvariant { .. })),
            "{assessed:?}"
        );
    }

    #[test]
    fn fit_needs_sessions() {
        let miner = TemplateMiner::new(TemplateMiner::params().check().unwrap());
        let set = SessionSet {
            sessions: &[],
            miner: &miner,
        };
        let params = SessionWorkflow::params().check().unwrap();
        assert!(matches!(
            params.fit(&DatasetBase::new(set, ())),
            Err(SessionWorkflowError::NoSessions)
        ));
    }
}
