//! Hyperparameters of the template miner.

use linfa::ParamGuard;

use super::error::DrainParamsError;

/// Checked parameters of a [`TemplateMiner`](super::TemplateMiner).
#[derive(Debug, Clone, PartialEq)]
pub struct DrainValidParams {
    pub(crate) similarity_threshold: f64,
    pub(crate) depth: usize,
    pub(crate) max_children: usize,
    pub(crate) max_templates: usize,
    pub(crate) max_tokens: usize,
}

impl DrainValidParams {
    /// Returns the least similarity with which a message joins a template.
    pub fn similarity_threshold(&self) -> f64 {
        self.similarity_threshold
    }

    /// Returns the depth of the prefix tree.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Returns the most children of an inner node of the prefix tree.
    pub fn max_children(&self) -> usize {
        self.max_children
    }

    /// Returns the most templates kept.
    pub fn max_templates(&self) -> usize {
        self.max_templates
    }

    /// Returns the most tokens of a message considered.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }
}

/// Unchecked parameters of a [`TemplateMiner`](super::TemplateMiner), built with consuming
/// setters from [`TemplateMiner::params`](super::TemplateMiner::params).
#[derive(Debug, Clone, PartialEq)]
pub struct DrainParams(pub(crate) DrainValidParams);

impl Default for DrainParams {
    fn default() -> Self {
        DrainParams::new()
    }
}

impl DrainParams {
    /// Returns the defaults: `similarity_threshold` 0.5, `depth` 4, `max_children` 100,
    /// `max_templates` 10000, `max_tokens` 128 (Drain's published settings, plus caps).
    pub fn new() -> Self {
        DrainParams(DrainValidParams {
            similarity_threshold: 0.5,
            depth: 4,
            max_children: 100,
            max_templates: 10_000,
            max_tokens: 128,
        })
    }

    /// Sets the least share (0..=1) of equal constant tokens with which a message joins a
    /// template.
    pub fn similarity_threshold(mut self, similarity_threshold: f64) -> Self {
        self.0.similarity_threshold = similarity_threshold;
        self
    }

    /// Sets the depth (>= 3) of the prefix tree: messages are grouped by their first
    /// `depth - 2` tokens.
    pub fn depth(mut self, depth: usize) -> Self {
        self.0.depth = depth;
        self
    }

    /// Sets the most children (>= 1) of an inner node; further tokens share a `<*>` child.
    pub fn max_children(mut self, max_children: usize) -> Self {
        self.0.max_children = max_children;
        self
    }

    /// Sets the most templates kept (>= 1); later new shapes share the overflow template.
    pub fn max_templates(mut self, max_templates: usize) -> Self {
        self.0.max_templates = max_templates;
        self
    }

    /// Sets the most tokens of a message considered (>= 1).
    pub fn max_tokens(mut self, max_tokens: usize) -> Self {
        self.0.max_tokens = max_tokens;
        self
    }
}

fn validate(params: &DrainValidParams) -> Result<(), DrainParamsError> {
    if !(0.0..=1.0).contains(&params.similarity_threshold) {
        return Err(DrainParamsError::SimilarityThreshold(
            params.similarity_threshold,
        ));
    }
    if params.depth < 3 {
        return Err(DrainParamsError::Depth(params.depth));
    }
    if params.max_children == 0 {
        return Err(DrainParamsError::MaxChildren(params.max_children));
    }
    if params.max_templates == 0 {
        return Err(DrainParamsError::MaxTemplates(params.max_templates));
    }
    if params.max_tokens == 0 {
        return Err(DrainParamsError::MaxTokens(params.max_tokens));
    }
    Ok(())
}

impl ParamGuard for DrainParams {
    type Checked = DrainValidParams;
    type Error = DrainParamsError;

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
        assert!(DrainParams::new().check().is_ok());
    }

    #[test]
    fn rejects_similarity_threshold() {
        for threshold in [-0.1, 1.1, f64::NAN] {
            let error = DrainParams::new()
                .similarity_threshold(threshold)
                .check()
                .unwrap_err();
            assert!(
                matches!(error, DrainParamsError::SimilarityThreshold(_)),
                "{threshold}"
            );
        }
    }

    #[test]
    fn rejects_depth() {
        assert_eq!(
            DrainParams::new().depth(2).check().unwrap_err(),
            DrainParamsError::Depth(2)
        );
    }

    #[test]
    fn rejects_max_children() {
        let error = DrainParams::new().max_children(0).check().unwrap_err();
        assert_eq!(error, DrainParamsError::MaxChildren(0));
    }

    #[test]
    fn rejects_max_templates() {
        let error = DrainParams::new().max_templates(0).check().unwrap_err();
        assert_eq!(error, DrainParamsError::MaxTemplates(0));
    }

    #[test]
    fn rejects_max_tokens() {
        let error = DrainParams::new().max_tokens(0).check().unwrap_err();
        assert_eq!(error, DrainParamsError::MaxTokens(0));
    }
}
