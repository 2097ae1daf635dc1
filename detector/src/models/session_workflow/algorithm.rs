//! Fit and assessment of the session workflow model.

use std::collections::{HashMap, HashSet};

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

/// Coefficients tried for a template added to an invariant: a step of a workflow logs one or
/// two lines per occurrence of another.
const REFINEMENT_COEFFICIENTS: [i64; 4] = [1, -1, 2, -2];

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

/// A further template of a refined count invariant, as found in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvariantTerm {
    /// The template.
    pub template: TemplateId,
    /// Its coefficient in the invariant.
    pub coefficient: i64,
    /// Its count in the session.
    pub count: u32,
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
        /// The share below which it counts: `rare_fraction` for an error-like template or a
        /// finished session, `novel_fraction` otherwise.
        limit: f64,
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
    /// A count invariant of normal sessions does not hold: `first_count - second_count +
    /// sum(coefficient * count over terms)` is 0 in normal sessions, and not in this one.
    BrokenInvariant {
        /// First template of the pair.
        first: TemplateId,
        /// Second template of the pair.
        second: TemplateId,
        /// Count of the first in this session.
        first_count: u32,
        /// Count of the second in this session.
        second_count: u32,
        /// Further templates of a refined invariant (empty for a pair).
        terms: Vec<InvariantTerm>,
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

/// A learnt count invariant: `count(first) - count(second) + sum(coefficient * count(term))`
/// is 0 in (nearly) every training session.
#[derive(Debug, Clone, PartialEq)]
struct Invariant {
    first: TemplateId,
    second: TemplateId,
    /// Further templates and their coefficients (a refined pair).
    terms: Vec<(TemplateId, i64)>,
    /// Longest time a training session that ends balanced was unbalanced.
    lag_ms: i64,
}

impl Invariant {
    /// Returns every template of the invariant with its coefficient.
    fn coefficients(&self) -> impl Iterator<Item = (TemplateId, i64)> + '_ {
        [(self.first, 1), (self.second, -1)]
            .into_iter()
            .chain(self.terms.iter().copied())
    }
}

/// What training sessions did at one workflow state: the n-th occurrence of a template.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct StateStats {
    /// Training sessions that reached the state.
    sessions: u32,
    /// Of those, the ones that ended there.
    endings: u32,
    /// Longest wait before the next event of the same session.
    longest_wait_ms: Option<i64>,
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
    /// Per (template, occurrence) reached by at least `min_state_sessions` training sessions.
    states: StateTable,
    invariants: Vec<Invariant>,
}

/// Workflow states by (template, occurrence); only looked up, so a fixed hasher keeps fits
/// deterministic.
type StateTable = HashMap<(TemplateId, u32), StateStats, foldhash::fast::FixedState>;

/// Per template of a session (sorted by template): count and time of the last occurrence.
struct Seen(Vec<(TemplateId, u32, i64)>);

impl Seen {
    fn new(events: &[SessionEvent]) -> Seen {
        let mut sorted: Vec<(TemplateId, i64)> = events
            .iter()
            .map(|event| (event.template, event.timestamp_ms))
            .collect();
        sorted.sort_unstable();
        let mut seen: Vec<(TemplateId, u32, i64)> = Vec::new();
        for (template, at_ms) in sorted {
            match seen.last_mut() {
                Some(last) if last.0 == template => {
                    last.1 += 1;
                    last.2 = at_ms;
                }
                _ => seen.push((template, 1, at_ms)),
            }
        }
        Seen(seen)
    }

    fn templates(&self) -> impl Iterator<Item = TemplateId> + '_ {
        self.0.iter().map(|&(template, _, _)| template)
    }

    fn get(&self, template: TemplateId) -> Option<(u32, i64)> {
        self.0
            .binary_search_by_key(&template, |&(t, _, _)| t)
            .ok()
            .map(|at| (self.0[at].1, self.0[at].2))
    }
}

impl SessionWorkflow {
    /// Version of the model's scoring, reported with its anomalies (3: uncommon templates
    /// judged at `rare_fraction` in finished sessions; 2: workflow states and refined count
    /// invariants).
    pub const VERSION: u32 = 3;

    /// Returns the default parameters (see [`SessionWorkflowParams::new`]).
    pub fn params() -> SessionWorkflowParams {
        SessionWorkflowParams::new()
    }

    /// Returns the number of training sessions.
    pub fn sessions(&self) -> usize {
        self.sessions
    }

    /// Returns the learnt count invariants as template pairs (a refined invariant by the pair
    /// it refines).
    pub fn invariants(&self) -> impl Iterator<Item = (TemplateId, TemplateId)> + '_ {
        self.invariants
            .iter()
            .map(|invariant| (invariant.first, invariant.second))
    }

    /// Returns the number of workflow states with their own statistics.
    pub fn states(&self) -> usize {
        self.states.len()
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
        let seen = Seen::new(events);
        let idle_ms = now_ms.saturating_sub(last_ms);
        let stall = self.stall_limit(events, last_ms, &seen);
        // A session that may end where it stands, or has stalled, is judged as a whole: an
        // uncommon template counts at `rare_fraction`. One still in progress is judged only on
        // what no continuation can make usual: a novel (or error-like) template.
        let finished = stall.is_none_or(|(_, limit_ms)| idle_ms > limit_ms);

        let floor_share = 0.5 / self.sessions as f64;
        for template in seen.templates() {
            let share = self.training_share(template);
            let error_like = miner.template(template).is_some_and(|t| t.is_error_like());
            let limit = if error_like || finished {
                self.params.rare_fraction
            } else {
                self.params.novel_fraction
            };
            if share < limit || share == 0.0 {
                strongest = strongest.max(FINDING_Z + (limit / share.max(floor_share)).ln());
                findings.push(SessionFinding::RareTemplate {
                    template,
                    training_share: share,
                    limit,
                    error_like,
                });
            }
        }

        if let Some((after, limit_ms)) = stall
            && idle_ms > limit_ms
        {
            strongest = strongest.max(FINDING_Z + (idle_ms as f64 / limit_ms as f64).ln());
            findings.push(SessionFinding::Stalled {
                after,
                idle_ms,
                limit_ms,
            });
        }

        for invariant in &self.invariants {
            let mut residual = 0i64;
            let mut latest_ms = i64::MIN;
            for (template, coefficient) in invariant.coefficients() {
                if let Some((count, at_ms)) = seen.get(template) {
                    residual += coefficient * i64::from(count);
                    latest_ms = latest_ms.max(at_ms);
                }
            }
            if residual == 0 || latest_ms == i64::MIN {
                continue;
            }
            let allowed =
                self.params.timeout_margin * invariant.lag_ms.max(self.params.min_lag_ms) as f64;
            if now_ms.saturating_sub(latest_ms) as f64 > allowed {
                strongest = strongest.max(FINDING_Z + (residual.unsigned_abs() as f64).ln_1p());
                let count = |template: TemplateId| seen.get(template).map_or(0, |seen| seen.0);
                findings.push(SessionFinding::BrokenInvariant {
                    first: invariant.first,
                    second: invariant.second,
                    first_count: count(invariant.first),
                    second_count: count(invariant.second),
                    terms: invariant
                        .terms
                        .iter()
                        .map(|&(template, coefficient)| InvariantTerm {
                            template,
                            coefficient,
                            count: count(template),
                        })
                        .collect(),
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
    ///
    /// The events at the session's last timestamp are its current states: the n-th occurrence
    /// of their templates (the last ones, `seen` holds the counts). A state reached by at least
    /// `min_state_sessions` training sessions is judged by what those sessions did there; any
    /// other by what sessions did after the template anywhere.
    fn stall_limit(
        &self,
        events: &[SessionEvent],
        last_ms: i64,
        seen: &Seen,
    ) -> Option<(TemplateId, i64)> {
        let mut limit: Option<(TemplateId, i64)> = None;
        // Per template: events at the last timestamp given an occurrence so far.
        let mut taken: Vec<(TemplateId, u32)> = Vec::new();
        for event in events.iter().filter(|event| event.timestamp_ms == last_ms) {
            let count = seen.get(event.template).map_or(1, |seen| seen.0);
            let before = match taken.iter().position(|&(t, _)| t == event.template) {
                Some(at) => &mut taken[at].1,
                None => {
                    taken.push((event.template, 0));
                    &mut taken.last_mut()?.1
                }
            };
            let occurrence = count.saturating_sub(*before).max(1);
            *before += 1;
            let (ending, wait) = match self.states.get(&(event.template, occurrence)) {
                Some(state) => (
                    f64::from(state.endings) / f64::from(state.sessions),
                    state.longest_wait_ms,
                ),
                None => {
                    let index = event.template.0 as usize;
                    (
                        self.ending_share.get(index).copied().unwrap_or(1.0),
                        self.longest_wait_ms.get(index).copied().flatten(),
                    )
                }
            };
            // A common ending, or a state never left in training: the session may end here.
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
        // Events in time order (ties keep their order), templates the miner does not know
        // dropped.
        let ordered: Vec<Vec<SessionEvent>> = sessions
            .iter()
            .map(|session| {
                let mut ordered: Vec<SessionEvent> = session
                    .iter()
                    .filter(|event| (event.template.0 as usize) < templates)
                    .copied()
                    .collect();
                ordered.sort_by_key(|event| event.timestamp_ms);
                ordered
            })
            .collect();
        let mut template_sessions = vec![0u32; templates];
        let mut endings = vec![0u32; templates];
        let mut longest_wait_ms: Vec<Option<i64>> = vec![None; templates];
        let mut states = StateTable::default();
        let mut running = vec![0u32; templates];
        for session in &ordered {
            let Some(last) = session.last() else {
                continue;
            };
            for (position, event) in session.iter().enumerate() {
                let index = event.template.0 as usize;
                running[index] += 1;
                if running[index] == 1 {
                    template_sessions[index] += 1;
                }
                let state = states.entry((event.template, running[index])).or_default();
                state.sessions += 1;
                let next = session.get(position + 1);
                if let Some(next) = next {
                    let wait = next.timestamp_ms - event.timestamp_ms;
                    state.longest_wait_ms =
                        Some(state.longest_wait_ms.map_or(wait, |w| w.max(wait)));
                    longest_wait_ms[index] =
                        Some(longest_wait_ms[index].map_or(wait, |w| w.max(wait)));
                }
                if event.timestamp_ms == last.timestamp_ms {
                    state.endings += 1;
                    // Once per session and template: the first time it is counted here.
                    if !session[..position]
                        .iter()
                        .rev()
                        .take_while(|earlier| earlier.timestamp_ms == last.timestamp_ms)
                        .any(|earlier| earlier.template == event.template)
                    {
                        endings[index] += 1;
                    }
                }
            }
            for event in session {
                running[event.template.0 as usize] = 0;
            }
        }
        states.retain(|_, state| state.sessions >= self.min_state_sessions);
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
        let counts = CountTable::new(&ordered, templates);
        let invariants = mine_invariants(&counts, &template_sessions, self)
            .into_iter()
            .map(|pair| {
                let mut invariant = refine(&counts, pair, self.max_refinement_terms);
                invariant.lag_ms = longest_imbalance_ms(&ordered, &invariant);
                invariant
            })
            .collect();
        Ok(SessionWorkflow {
            params: self.clone(),
            sessions: sessions.len(),
            template_sessions,
            longest_wait_ms,
            ending_share,
            states,
            invariants,
        })
    }
}

/// Template counts of the training sessions: per session the (template, count) pairs sorted by
/// template, and per template the (session, count) pairs of the sessions that contain it.
struct CountTable {
    sessions: Vec<Vec<(u32, u32)>>,
    postings: Vec<Vec<(usize, u32)>>,
}

impl CountTable {
    fn new(ordered: &[Vec<SessionEvent>], templates: usize) -> CountTable {
        let mut postings = vec![Vec::new(); templates];
        let sessions: Vec<Vec<(u32, u32)>> = ordered
            .iter()
            .map(|events| {
                let mut ids: Vec<u32> = events.iter().map(|event| event.template.0).collect();
                ids.sort_unstable();
                let mut counts: Vec<(u32, u32)> = Vec::new();
                for id in ids {
                    match counts.last_mut() {
                        Some((last, count)) if *last == id => *count += 1,
                        _ => counts.push((id, 1)),
                    }
                }
                counts
            })
            .collect();
        for (session, counts) in sessions.iter().enumerate() {
            for &(id, count) in counts {
                postings[id as usize].push((session, count));
            }
        }
        CountTable { sessions, postings }
    }

    fn count(&self, session: usize, template: TemplateId) -> u32 {
        let counts = &self.sessions[session];
        counts
            .binary_search_by_key(&template.0, |&(id, _)| id)
            .map_or(0, |at| counts[at].1)
    }
}

/// Returns the pairs of frequent templates whose counts are equal in at least `invariant_hold`
/// of the sessions containing either (lags not yet learnt).
fn mine_invariants(
    counts: &CountTable,
    template_sessions: &[u32],
    params: &SessionWorkflowValidParams,
) -> Vec<Invariant> {
    let sessions = counts.sessions.len();
    let needed = params.invariant_support * sessions as f64;
    let mut candidates: Vec<usize> = (0..template_sessions.len())
        .filter(|&index| f64::from(template_sessions[index]) >= needed)
        .collect();
    candidates.sort_by_key(|&index| (std::cmp::Reverse(template_sessions[index]), index));
    candidates.truncate(MAX_INVARIANT_TEMPLATES);
    candidates.sort_unstable();
    // Per session and candidate: count.
    let profiles: Vec<Vec<u32>> = (0..sessions)
        .map(|session| {
            candidates
                .iter()
                .map(|&index| counts.count(session, TemplateId(index as u32)))
                .collect()
        })
        .collect();
    let mut invariants = Vec::new();
    for a in 0..candidates.len() {
        for b in a + 1..candidates.len() {
            let (mut either, mut equal) = (0u32, 0u32);
            for profile in &profiles {
                let (count_a, count_b) = (profile[a], profile[b]);
                if count_a == 0 && count_b == 0 {
                    continue;
                }
                either += 1;
                if count_a == count_b {
                    equal += 1;
                }
            }
            if either > 0 && f64::from(equal) >= params.invariant_hold * f64::from(either) {
                invariants.push(Invariant {
                    first: TemplateId(candidates[a] as u32),
                    second: TemplateId(candidates[b] as u32),
                    terms: Vec::new(),
                    lag_ms: 0,
                });
            }
        }
    }
    invariants
}

/// Refines a pairwise invariant by the training sessions it does not hold in: greedily adds
/// the template and coefficient (see [`REFINEMENT_COEFFICIENTS`]) that leave the fewest
/// sessions unbalanced (among the sessions containing any of its templates), while that
/// number strictly falls, up to `max_terms` templates. A pair "every Receiving has its
/// Received" whose exceptions all carry one re-replication becomes "Receiving + replication =
/// Received"; a template outside every exception can only add exceptions and is not tried.
/// Ties go to the lower template id, then the order of the coefficients.
fn refine(counts: &CountTable, mut invariant: Invariant, max_terms: usize) -> Invariant {
    let sessions = counts.sessions.len();
    // Per session: the invariant's residual.
    let mut residual = vec![0i64; sessions];
    for (template, coefficient) in invariant.coefficients() {
        for &(session, count) in &counts.postings[template.0 as usize] {
            residual[session] += coefficient * i64::from(count);
        }
    }
    let mut exceptions = residual.iter().filter(|&&r| r != 0).count();
    for _ in 0..max_terms {
        if exceptions == 0 {
            break;
        }
        let used: HashSet<TemplateId> = invariant.coefficients().map(|(t, _)| t).collect();
        let mut tried: Vec<u32> = (0..sessions)
            .filter(|&session| residual[session] != 0)
            .flat_map(|session| counts.sessions[session].iter().map(|&(id, _)| id))
            .filter(|id| !used.contains(&TemplateId(*id)))
            .collect();
        tried.sort_unstable();
        tried.dedup();
        let mut best: Option<(usize, TemplateId, i64)> = None;
        for id in tried {
            let template = TemplateId(id);
            for coefficient in REFINEMENT_COEFFICIENTS {
                // Only the sessions containing the template change.
                let mut after = exceptions;
                for &(session, count) in &counts.postings[id as usize] {
                    let before = residual[session];
                    let changed = before + coefficient * i64::from(count);
                    after = after + usize::from(changed != 0) - usize::from(before != 0);
                }
                if after < best.map_or(exceptions, |(fewest, _, _)| fewest) {
                    best = Some((after, template, coefficient));
                }
            }
        }
        let Some((after, template, coefficient)) = best else {
            break;
        };
        for &(session, count) in &counts.postings[template.0 as usize] {
            residual[session] += coefficient * i64::from(count);
        }
        exceptions = after;
        invariant.terms.push((template, coefficient));
    }
    invariant
}

/// Returns the longest time a training session that ends balanced was out of balance: how
/// long the invariant may be broken while a session is still catching up. Events sharing a
/// timestamp are applied together (their order within it is arbitrary).
fn longest_imbalance_ms(ordered: &[Vec<SessionEvent>], invariant: &Invariant) -> i64 {
    // Coefficient per template id (0 for templates outside the invariant).
    let mut coefficients: Vec<i64> = Vec::new();
    for (template, coefficient) in invariant.coefficients() {
        let index = template.0 as usize;
        if coefficients.len() <= index {
            coefficients.resize(index + 1, 0);
        }
        coefficients[index] = coefficient;
    }
    let coefficient =
        |template: TemplateId| coefficients.get(template.0 as usize).copied().unwrap_or(0);
    let mut longest = 0i64;
    for session in ordered {
        if !session.iter().any(|event| coefficient(event.template) != 0) {
            continue;
        }
        let (mut residual, mut since, mut session_longest) = (0i64, None::<i64>, 0i64);
        let mut position = 0;
        while position < session.len() {
            let at_ms = session[position].timestamp_ms;
            while position < session.len() && session[position].timestamp_ms == at_ms {
                residual += coefficient(session[position].template);
                position += 1;
            }
            match (residual != 0, since) {
                (true, None) => since = Some(at_ms),
                (false, Some(start_ms)) => {
                    session_longest = session_longest.max(at_ms - start_ms);
                    since = None;
                }
                _ => {}
            }
        }
        // A session that ends unbalanced is an exception, not a delay.
        if since.is_none() {
            longest = longest.max(session_longest);
        }
    }
    longest
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

    fn fit_on(
        miner: &TemplateMiner,
        sessions: &[Vec<SessionEvent>],
        params: SessionWorkflowParams,
    ) -> SessionWorkflow {
        let set = SessionSet { sessions, miner };
        params
            .check()
            .unwrap()
            .fit(&DatasetBase::new(set, ()))
            .unwrap()
    }

    fn events(
        miner: &mut TemplateMiner,
        start_ms: i64,
        lines: &[(i64, &str)],
    ) -> Vec<SessionEvent> {
        lines
            .iter()
            .map(|&(offset, line)| SessionEvent {
                timestamp_ms: start_ms + offset * SECOND,
                template: miner.add(line, 9).id,
            })
            .collect()
    }

    #[test]
    fn a_session_stuck_at_a_state_stalls_where_its_template_alone_would_wait() {
        // The first step waits ten minutes for the second, the second is followed at once.
        let job = [
            (0, "open session"),
            (1, "Processing step of job"),
            (601, "Processing step of job"),
            (602, "closing the finished session now"),
        ];
        let mut miner = TemplateMiner::new(TemplateMiner::params().check().unwrap());
        let sessions: Vec<Vec<SessionEvent>> = (0..300)
            .map(|i| events(&mut miner, i * 1000 * SECOND, &job))
            .collect();
        let stuck = events(&mut miner, 0, &job[..3]);
        let model = fit_on(&miner, &sessions, SessionWorkflow::params());
        assert!(model.states() >= 4, "{}", model.states());
        // Between the steps, a wait of a minute is nothing unusual.
        assert!(
            model
                .assess(&stuck[..2], 61 * SECOND, &miner)
                .findings
                .is_empty()
        );
        // After the second step, it is: sessions go on within a second there.
        let assessed = model.assess(&stuck, 661 * SECOND, &miner);
        assert!(assessed.score >= 70.0, "{assessed:?}");
        assert!(matches!(
            assessed.findings.as_slice(),
            [SessionFinding::Stalled { limit_ms: 5000, .. }]
        ));
        // Judged by the template over all its occurrences (ten minutes), it is not stalled.
        let by_template = fit_on(
            &miner,
            &sessions,
            SessionWorkflow::params().min_state_sessions(u32::MAX),
        );
        assert_eq!(by_template.states(), 0);
        assert!(
            by_template
                .assess(&stuck, 661 * SECOND, &miner)
                .findings
                .is_empty()
        );
        // A state reached by fewer sessions than `min_state_sessions` falls back the same way.
        let too_few = fit_on(
            &miner,
            &sessions,
            SessionWorkflow::params().min_state_sessions(301),
        );
        assert!(
            too_few
                .assess(&stuck, 661 * SECOND, &miner)
                .findings
                .is_empty()
        );
    }

    #[test]
    fn an_uncommon_template_is_a_finding_once_the_session_has_finished() {
        // One session in a hundred (between `novel_fraction` and `rare_fraction`) retries its
        // step; every session waits ten minutes before it closes.
        let normal = [
            (0, "open session"),
            (1, "Processing step of job"),
            (601, "closing the finished session now"),
        ];
        let detour = [
            (0, "open session"),
            (1, "retrying the step on another node"),
            (2, "Processing step of job"),
            (602, "closing the finished session now"),
        ];
        let mut miner = TemplateMiner::new(TemplateMiner::params().check().unwrap());
        let sessions: Vec<Vec<SessionEvent>> = (0..300)
            .map(|i| {
                let lines: &[(i64, &str)] = if i % 100 == 50 { &detour } else { &normal };
                events(&mut miner, i * 1000 * SECOND, lines)
            })
            .collect();
        let model = fit_on(&miner, &sessions, SessionWorkflow::params());
        let retry = miner.add("retrying the step on another node", 9).id;
        assert!(!miner.template(retry).unwrap().is_error_like());
        // The finding names the limit it was judged at: `rare_fraction` (default 0.02), not
        // `novel_fraction`.
        let uncommon = |assessment: &SessionAssessment| {
            assessment.findings.iter().any(|finding| {
                matches!(finding, SessionFinding::RareTemplate { template, error_like: false, limit, .. }
                    if *template == retry && *limit == 0.02)
            })
        };
        let session = events(&mut miner, 0, &detour);
        // In progress, waiting to close: the detour alone is no finding.
        let open = model.assess(&session[..3], 300 * SECOND, &miner);
        assert!(open.findings.is_empty(), "{open:?}");
        // Closed: the session took an uncommon detour.
        let closed = model.assess(&session, 10_000 * SECOND, &miner);
        assert!(closed.score >= 70.0, "{closed:?}");
        assert!(uncommon(&closed), "{closed:?}");
        // Stalled before closing: both findings.
        let stalled = model.assess(&session[..3], 10_000 * SECOND, &miner);
        assert!(uncommon(&stalled), "{stalled:?}");
        assert!(
            stalled
                .findings
                .iter()
                .any(|finding| matches!(finding, SessionFinding::Stalled { .. }))
        );
        // A normal session, finished or not, has none.
        let usual = events(&mut miner, 0, &normal);
        assert!(
            model
                .assess(&usual, 10_000 * SECOND, &miner)
                .findings
                .is_empty()
        );
        assert!(
            model
                .assess(&usual[..2], 300 * SECOND, &miner)
                .findings
                .is_empty()
        );
        // With `rare_fraction` at the detour's share or below, it is no finding either way.
        let lenient = fit_on(
            &miner,
            &sessions,
            SessionWorkflow::params().rare_fraction(0.01),
        );
        assert!(!uncommon(&lenient.assess(
            &session,
            10_000 * SECOND,
            &miner
        )));
    }

    #[test]
    fn a_refined_invariant_accepts_the_exceptions_it_explains() {
        let normal = [
            (0, "allocate block for file"),
            (10, "ask datanode to delete block"),
            (11, "Deleting block file from disk now"),
        ];
        // One session in a hundred re-replicates its block, and the extra replica is deleted.
        let replicated = [
            (0, "allocate block for file"),
            (5, "replicate block to datanode"),
            (6, "Deleting block file from disk now"),
            (10, "ask datanode to delete block"),
            (11, "Deleting block file from disk now"),
        ];
        let mut miner = TemplateMiner::new(TemplateMiner::params().check().unwrap());
        let sessions: Vec<Vec<SessionEvent>> = (0..300)
            .map(|i| {
                let lines: &[(i64, &str)] = if i % 100 == 50 { &replicated } else { &normal };
                events(&mut miner, i * 100 * SECOND, lines)
            })
            .collect();
        let unexplained = events(
            &mut miner,
            0,
            &[normal[0], normal[1], normal[2], (12, normal[2].1)],
        );
        let explained = events(&mut miner, 0, &replicated);
        let replicate = miner.add("replicate block to datanode", 9).id;
        let now = 10_000 * SECOND;
        let broken = |assessment: &SessionAssessment| {
            assessment
                .findings
                .iter()
                .any(|finding| matches!(finding, SessionFinding::BrokenInvariant { .. }))
        };

        let model = fit_on(&miner, &sessions, SessionWorkflow::params());
        assert!(
            model
                .invariants
                .iter()
                .any(|invariant| invariant.terms == [(replicate, 1)]
                    || invariant.terms == [(replicate, -1)])
        );
        let assessed = model.assess(&explained, now, &miner);
        assert!(!broken(&assessed), "{assessed:?}");
        let assessed = model.assess(&unexplained, now, &miner);
        assert!(broken(&assessed), "{assessed:?}");
        assert!(assessed.findings.iter().any(|finding| matches!(
            finding,
            SessionFinding::BrokenInvariant { terms, .. }
                if terms.iter().any(|term| term.template == replicate && term.count == 0)
        )));

        // Pairs only: the replicated session breaks them.
        let pairs = fit_on(
            &miner,
            &sessions,
            SessionWorkflow::params().max_refinement_terms(0),
        );
        assert!(
            pairs
                .invariants
                .iter()
                .all(|invariant| invariant.terms.is_empty())
        );
        assert!(broken(&pairs.assess(&explained, now, &miner)));
    }

    #[test]
    fn invariant_lag_is_the_longest_imbalance_of_sessions_that_end_balanced() {
        let (x, y, z) = (TemplateId(0), TemplateId(1), TemplateId(2));
        let at = |seconds: i64, template: TemplateId| SessionEvent {
            timestamp_ms: seconds * SECOND,
            template,
        };
        let invariant = Invariant {
            first: x,
            second: y,
            terms: Vec::new(),
            lag_ms: 0,
        };
        let sessions = vec![
            // Unbalanced for 10 s, then for 30 s.
            vec![at(0, x), at(10, y), at(100, x), at(130, y), at(5000, z)],
            // Events sharing a timestamp are applied together, whatever their order.
            vec![at(0, y), at(0, x), at(9000, z)],
            // Ends unbalanced: an exception, not a delay.
            vec![at(0, x), at(9000, z)],
        ];
        assert_eq!(longest_imbalance_ms(&sessions, &invariant), 30 * SECOND);
        let refined = Invariant {
            terms: vec![(z, 1)],
            ..invariant
        };
        // x - y + z: the first session ends at +1, the second at +1, the third at +2.
        assert_eq!(longest_imbalance_ms(&sessions, &refined), 0);
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
