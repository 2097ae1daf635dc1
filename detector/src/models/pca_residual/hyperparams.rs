//! Hyperparameters of the PCA residual model.

use linfa::ParamGuard;

use super::error::PcaResidualParamsError;

/// Checked parameters of [`PcaResidual`](super::PcaResidual).
#[derive(Debug, Clone, PartialEq)]
pub struct PcaResidualValidParams {
    pub(crate) variance_fraction: f64,
    pub(crate) max_components: usize,
    pub(crate) critical_z: f64,
    pub(crate) tf_idf: bool,
    pub(crate) standardise: bool,
}

impl PcaResidualValidParams {
    /// Returns the share of variance the kept components explain.
    pub fn variance_fraction(&self) -> f64 {
        self.variance_fraction
    }

    /// Returns the most components kept.
    pub fn max_components(&self) -> usize {
        self.max_components
    }

    /// Returns the standard normal deviate of the Q-statistic's level.
    pub fn critical_z(&self) -> f64 {
        self.critical_z
    }

    /// Returns whether columns are divided by their training standard deviation.
    pub fn standardise(&self) -> bool {
        self.standardise
    }

    /// Returns whether columns are weighted by inverse document frequency.
    pub fn tf_idf(&self) -> bool {
        self.tf_idf
    }
}

/// Unchecked parameters of [`PcaResidual`](super::PcaResidual), from
/// [`PcaResidual::params`](super::PcaResidual::params).
#[derive(Debug, Clone, PartialEq)]
pub struct PcaResidualParams(pub(crate) PcaResidualValidParams);

impl Default for PcaResidualParams {
    fn default() -> Self {
        PcaResidualParams::new()
    }
}

impl PcaResidualParams {
    /// Returns the defaults of the classic log detector: `variance_fraction` 0.95,
    /// `max_components` 10, `critical_z` 3.2905 (level 0.0005), `tf_idf` true, `standardise`
    /// false. For a feature vector in mixed units (a stage's throughput, lag, latency
    /// percentiles, error ratio), use `tf_idf(false).standardise(true)`.
    pub fn new() -> Self {
        PcaResidualParams(PcaResidualValidParams {
            variance_fraction: 0.95,
            max_components: 10,
            critical_z: 3.2905,
            tf_idf: true,
            standardise: false,
        })
    }

    /// Sets the share (0, 1) of variance the kept components explain.
    pub fn variance_fraction(mut self, variance_fraction: f64) -> Self {
        self.0.variance_fraction = variance_fraction;
        self
    }

    /// Sets the most components kept (>= 1).
    pub fn max_components(mut self, max_components: usize) -> Self {
        self.0.max_components = max_components;
        self
    }

    /// Sets the standard normal deviate (> 0) of the Q-statistic's level.
    pub fn critical_z(mut self, critical_z: f64) -> Self {
        self.0.critical_z = critical_z;
        self
    }

    /// Sets whether columns are weighted by inverse document frequency.
    pub fn tf_idf(mut self, tf_idf: bool) -> Self {
        self.0.tf_idf = tf_idf;
        self
    }

    /// Sets whether columns are divided by their standard deviation in the training rows, so
    /// features in different units weigh alike and a residual is in standard deviations of its
    /// feature (a column constant in training gets a tiny floor: any change of it stands out).
    pub fn standardise(mut self, standardise: bool) -> Self {
        self.0.standardise = standardise;
        self
    }
}

fn validate(params: &PcaResidualValidParams) -> Result<(), PcaResidualParamsError> {
    if !(params.variance_fraction > 0.0 && params.variance_fraction < 1.0) {
        return Err(PcaResidualParamsError::VarianceFraction(
            params.variance_fraction,
        ));
    }
    if params.max_components == 0 {
        return Err(PcaResidualParamsError::MaxComponents(params.max_components));
    }
    if !(params.critical_z.is_finite() && params.critical_z > 0.0) {
        return Err(PcaResidualParamsError::CriticalZ(params.critical_z));
    }
    Ok(())
}

impl ParamGuard for PcaResidualParams {
    type Checked = PcaResidualValidParams;
    type Error = PcaResidualParamsError;

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
        assert!(PcaResidualParams::new().check().is_ok());
    }

    #[test]
    fn rejects_variance_fraction() {
        for fraction in [0.0, 1.0, f64::NAN] {
            let error = PcaResidualParams::new()
                .variance_fraction(fraction)
                .check()
                .unwrap_err();
            assert!(
                matches!(error, PcaResidualParamsError::VarianceFraction(_)),
                "{fraction}"
            );
        }
    }

    #[test]
    fn rejects_max_components() {
        let error = PcaResidualParams::new()
            .max_components(0)
            .check()
            .unwrap_err();
        assert_eq!(error, PcaResidualParamsError::MaxComponents(0));
    }

    #[test]
    fn rejects_critical_z() {
        for z in [0.0, f64::INFINITY, f64::NAN] {
            let error = PcaResidualParams::new().critical_z(z).check().unwrap_err();
            assert!(matches!(error, PcaResidualParamsError::CriticalZ(_)), "{z}");
        }
    }
}
