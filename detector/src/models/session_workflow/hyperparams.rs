//! Hyperparameters of the session workflow model.

use linfa::ParamGuard;

use super::error::SessionWorkflowParamsError;

/// Upper bound of `max_refinement_terms` (each term adds a pass over the training sessions per
/// template tried).
const MAX_REFINEMENT_TERMS: usize = 16;

/// Checked parameters of [`SessionWorkflow`](super::SessionWorkflow).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionWorkflowValidParams {
    pub(crate) novel_fraction: f64,
    pub(crate) rare_fraction: f64,
    pub(crate) timeout_margin: f64,
    pub(crate) invariant_support: f64,
    pub(crate) invariant_hold: f64,
    pub(crate) min_lag_ms: i64,
    pub(crate) min_state_sessions: u32,
    pub(crate) max_refinement_terms: usize,
}

impl SessionWorkflowValidParams {
    /// Returns the share of sessions under which any template is a finding.
    pub fn novel_fraction(&self) -> f64 {
        self.novel_fraction
    }

    /// Returns the share of sessions under which an error-like template, or any template of a
    /// finished session, is a finding.
    pub fn rare_fraction(&self) -> f64 {
        self.rare_fraction
    }

    /// Returns the factor applied to learnt waits and lags before a session is judged.
    pub fn timeout_margin(&self) -> f64 {
        self.timeout_margin
    }

    /// Returns the least share of sessions a template needs to take part in invariants.
    pub fn invariant_support(&self) -> f64 {
        self.invariant_support
    }

    /// Returns the least share of sessions in which an invariant's counts are equal.
    pub fn invariant_hold(&self) -> f64 {
        self.invariant_hold
    }

    /// Returns the least lag granted to an invariant, in milliseconds.
    pub fn min_lag_ms(&self) -> i64 {
        self.min_lag_ms
    }

    /// Returns the fewest training sessions a workflow state needs for its own waits and
    /// endings to be used.
    pub fn min_state_sessions(&self) -> u32 {
        self.min_state_sessions
    }

    /// Returns the most templates added to a count invariant to explain its exceptions.
    pub fn max_refinement_terms(&self) -> usize {
        self.max_refinement_terms
    }
}

/// Unchecked parameters of [`SessionWorkflow`](super::SessionWorkflow), from
/// [`SessionWorkflow::params`](super::SessionWorkflow::params).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionWorkflowParams(pub(crate) SessionWorkflowValidParams);

impl Default for SessionWorkflowParams {
    fn default() -> Self {
        SessionWorkflowParams::new()
    }
}

impl SessionWorkflowParams {
    /// Returns the defaults: `novel_fraction` 0.004, `rare_fraction` 0.02, `timeout_margin` 5,
    /// `invariant_support` 0.01, `invariant_hold` 0.98, `min_lag_ms` 60000,
    /// `min_state_sessions` 50 (`1 / rare_fraction`: the fewest sessions in which a share at the
    /// rare level is expected once), `max_refinement_terms` 8 (a bound on the fit's work: terms
    /// are added only while they strictly reduce the exceptions, which rarely takes more than
    /// two or three).
    pub fn new() -> Self {
        SessionWorkflowParams(SessionWorkflowValidParams {
            novel_fraction: 0.004,
            rare_fraction: 0.02,
            timeout_margin: 5.0,
            invariant_support: 0.01,
            invariant_hold: 0.98,
            min_lag_ms: 60_000,
            min_state_sessions: 50,
            max_refinement_terms: 8,
        })
    }

    /// Sets the share of training sessions (0..=`rare_fraction`) under which any template is a
    /// finding (a template never seen always is).
    pub fn novel_fraction(mut self, novel_fraction: f64) -> Self {
        self.0.novel_fraction = novel_fraction;
        self
    }

    /// Sets the share of training sessions (0..=1) under which an error-like template is a
    /// finding, and any template once the session has finished (its current states are a
    /// common ending, or it has stalled).
    pub fn rare_fraction(mut self, rare_fraction: f64) -> Self {
        self.0.rare_fraction = rare_fraction;
        self
    }

    /// Sets the factor (>= 1) applied to the learnt waits and lags before a session is judged
    /// stalled or an invariant broken.
    pub fn timeout_margin(mut self, timeout_margin: f64) -> Self {
        self.0.timeout_margin = timeout_margin;
        self
    }

    /// Sets the least share of training sessions (0, 1] a template needs to take part in count
    /// invariants.
    pub fn invariant_support(mut self, invariant_support: f64) -> Self {
        self.0.invariant_support = invariant_support;
        self
    }

    /// Sets the least share (0.5, 1] of the training sessions containing either template in
    /// which both counts are equal, for the pair to be an invariant.
    pub fn invariant_hold(mut self, invariant_hold: f64) -> Self {
        self.0.invariant_hold = invariant_hold;
        self
    }

    /// Sets the least lag (>= 0 ms) granted to an invariant before it is checked.
    pub fn min_lag_ms(mut self, min_lag_ms: i64) -> Self {
        self.0.min_lag_ms = min_lag_ms;
        self
    }

    /// Sets the fewest training sessions (>= 1) that must reach a workflow state (a template's
    /// n-th occurrence in a session) for the session ending and the longest wait seen there to
    /// be used; rarer states fall back to the template's figures (`u32::MAX`: templates only).
    pub fn min_state_sessions(mut self, min_state_sessions: u32) -> Self {
        self.0.min_state_sessions = min_state_sessions;
        self
    }

    /// Sets the most templates (0..=16) added to a pairwise count invariant to explain the
    /// training sessions it does not hold in (0: pairs only).
    pub fn max_refinement_terms(mut self, max_refinement_terms: usize) -> Self {
        self.0.max_refinement_terms = max_refinement_terms;
        self
    }
}

fn validate(params: &SessionWorkflowValidParams) -> Result<(), SessionWorkflowParamsError> {
    if !(0.0..=1.0).contains(&params.rare_fraction) {
        return Err(SessionWorkflowParamsError::RareFraction(
            params.rare_fraction,
        ));
    }
    if !(0.0..=params.rare_fraction).contains(&params.novel_fraction) {
        return Err(SessionWorkflowParamsError::NovelFraction(
            params.novel_fraction,
        ));
    }
    if !(params.timeout_margin.is_finite() && params.timeout_margin >= 1.0) {
        return Err(SessionWorkflowParamsError::TimeoutMargin(
            params.timeout_margin,
        ));
    }
    if !(params.invariant_support > 0.0 && params.invariant_support <= 1.0) {
        return Err(SessionWorkflowParamsError::InvariantSupport(
            params.invariant_support,
        ));
    }
    if !(params.invariant_hold > 0.5 && params.invariant_hold <= 1.0) {
        return Err(SessionWorkflowParamsError::InvariantHold(
            params.invariant_hold,
        ));
    }
    if params.min_lag_ms < 0 {
        return Err(SessionWorkflowParamsError::MinLagMs(params.min_lag_ms));
    }
    if params.min_state_sessions == 0 {
        return Err(SessionWorkflowParamsError::MinStateSessions(
            params.min_state_sessions,
        ));
    }
    if params.max_refinement_terms > MAX_REFINEMENT_TERMS {
        return Err(SessionWorkflowParamsError::MaxRefinementTerms(
            params.max_refinement_terms,
        ));
    }
    Ok(())
}

impl ParamGuard for SessionWorkflowParams {
    type Checked = SessionWorkflowValidParams;
    type Error = SessionWorkflowParamsError;

    fn check_ref(&self) -> Result<&Self::Checked, Self::Error> {
        validate(&self.0)?;
        Ok(&self.0)
    }

    fn check(self) -> Result<Self::Checked, Self::Error> {
        validate(&self.0)?;
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(SessionWorkflowParams::new().check().is_ok());
    }

    #[test]
    fn rejects_novel_fraction() {
        for fraction in [-0.1, 0.05, f64::NAN] {
            let error = SessionWorkflowParams::new()
                .novel_fraction(fraction)
                .check()
                .unwrap_err();
            assert!(
                matches!(error, SessionWorkflowParamsError::NovelFraction(_)),
                "{fraction}"
            );
        }
    }

    #[test]
    fn rejects_rare_fraction() {
        for fraction in [-0.1, 1.1, f64::NAN] {
            let error = SessionWorkflowParams::new()
                .rare_fraction(fraction)
                .check()
                .unwrap_err();
            assert!(
                matches!(error, SessionWorkflowParamsError::RareFraction(_)),
                "{fraction}"
            );
        }
    }

    #[test]
    fn rejects_timeout_margin() {
        for margin in [0.5, f64::INFINITY, f64::NAN] {
            let error = SessionWorkflowParams::new()
                .timeout_margin(margin)
                .check()
                .unwrap_err();
            assert!(
                matches!(error, SessionWorkflowParamsError::TimeoutMargin(_)),
                "{margin}"
            );
        }
    }

    #[test]
    fn rejects_invariant_support() {
        for support in [0.0, 1.5, f64::NAN] {
            let params = SessionWorkflowParams::new().invariant_support(support);
            let error = params.check().unwrap_err();
            assert!(matches!(
                error,
                SessionWorkflowParamsError::InvariantSupport(_)
            ));
        }
    }

    #[test]
    fn rejects_invariant_hold() {
        for hold in [0.5, 1.5, f64::NAN] {
            let error = SessionWorkflowParams::new()
                .invariant_hold(hold)
                .check()
                .unwrap_err();
            assert!(
                matches!(error, SessionWorkflowParamsError::InvariantHold(_)),
                "{hold}"
            );
        }
    }

    #[test]
    fn rejects_min_lag_ms() {
        let error = SessionWorkflowParams::new()
            .min_lag_ms(-1)
            .check()
            .unwrap_err();
        assert_eq!(error, SessionWorkflowParamsError::MinLagMs(-1));
    }

    #[test]
    fn rejects_min_state_sessions() {
        let error = SessionWorkflowParams::new()
            .min_state_sessions(0)
            .check()
            .unwrap_err();
        assert_eq!(error, SessionWorkflowParamsError::MinStateSessions(0));
    }

    #[test]
    fn rejects_max_refinement_terms() {
        assert!(
            SessionWorkflowParams::new()
                .max_refinement_terms(MAX_REFINEMENT_TERMS)
                .check()
                .is_ok()
        );
        let error = SessionWorkflowParams::new()
            .max_refinement_terms(MAX_REFINEMENT_TERMS + 1)
            .check()
            .unwrap_err();
        assert_eq!(
            error,
            SessionWorkflowParamsError::MaxRefinementTerms(MAX_REFINEMENT_TERMS + 1)
        );
    }
}
