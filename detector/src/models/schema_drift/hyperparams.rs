//! Parameters of the schema drift model.

use linfa::ParamGuard;

use super::error::SchemaDriftParamsError;

/// Checked parameters of [`SchemaDrift`](super::SchemaDrift).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaDriftValidParams {
    pub(crate) warmup_events: u64,
    pub(crate) missing_after: u64,
    pub(crate) max_fields: usize,
}

impl SchemaDriftValidParams {
    /// Returns the number of events that only teach the model.
    pub fn warmup_events(&self) -> u64 {
        self.warmup_events
    }

    /// Returns how many consecutive events must lack an always-present field to report it.
    pub fn missing_after(&self) -> u64 {
        self.missing_after
    }

    /// Returns the most field paths tracked.
    pub fn max_fields(&self) -> usize {
        self.max_fields
    }
}

/// Parameters of [`SchemaDrift`](super::SchemaDrift), checked by [`ParamGuard`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaDriftParams(pub(crate) SchemaDriftValidParams);

impl Default for SchemaDriftParams {
    fn default() -> Self {
        Self::new()
    }
}

impl SchemaDriftParams {
    /// Returns the defaults: `warmup_events` 100, `missing_after` 50, `max_fields` 256.
    pub fn new() -> Self {
        SchemaDriftParams(SchemaDriftValidParams {
            warmup_events: 100,
            missing_after: 50,
            max_fields: 256,
        })
    }

    /// Sets the number (>= 1) of events that only teach the model.
    pub fn warmup_events(mut self, warmup_events: u64) -> Self {
        self.0.warmup_events = warmup_events;
        self
    }

    /// Sets how many (>= 1) consecutive events must lack an always-present field.
    pub fn missing_after(mut self, missing_after: u64) -> Self {
        self.0.missing_after = missing_after;
        self
    }

    /// Sets the most (>= 1) field paths tracked.
    pub fn max_fields(mut self, max_fields: usize) -> Self {
        self.0.max_fields = max_fields;
        self
    }
}

fn validate(params: &SchemaDriftValidParams) -> Result<(), SchemaDriftParamsError> {
    if params.warmup_events == 0 {
        return Err(SchemaDriftParamsError::WarmupEvents(params.warmup_events));
    }
    if params.missing_after == 0 {
        return Err(SchemaDriftParamsError::MissingAfter(params.missing_after));
    }
    if params.max_fields == 0 {
        return Err(SchemaDriftParamsError::MaxFields(params.max_fields));
    }
    Ok(())
}

impl ParamGuard for SchemaDriftParams {
    type Checked = SchemaDriftValidParams;
    type Error = SchemaDriftParamsError;

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
        assert!(SchemaDriftParams::new().check().is_ok());
    }

    #[test]
    fn rejects_zero_values() {
        assert_eq!(
            SchemaDriftParams::new().warmup_events(0).check(),
            Err(SchemaDriftParamsError::WarmupEvents(0))
        );
        assert_eq!(
            SchemaDriftParams::new().missing_after(0).check(),
            Err(SchemaDriftParamsError::MissingAfter(0))
        );
        assert_eq!(
            SchemaDriftParams::new().max_fields(0).check(),
            Err(SchemaDriftParamsError::MaxFields(0))
        );
    }
}
