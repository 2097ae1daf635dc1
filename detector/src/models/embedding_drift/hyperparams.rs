//! Hyperparameters of the embedding monitor.

use linfa::ParamGuard;

use super::error::EmbeddingDriftParamsError;

/// Checked parameters of [`EmbeddingDrift`](super::EmbeddingDrift).
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingDriftValidParams {
    pub(crate) dimensions: usize,
    pub(crate) reference_points: usize,
    pub(crate) window_points: usize,
    pub(crate) neighbours: usize,
    pub(crate) permutations: usize,
    pub(crate) seed: u64,
}

impl EmbeddingDriftValidParams {
    /// Returns the number of dimensions of every vector.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Returns the size of the reference population.
    pub fn reference_points(&self) -> usize {
        self.reference_points
    }

    /// Returns the size of the window compared with the reference.
    pub fn window_points(&self) -> usize {
        self.window_points
    }

    /// Returns the number of nearest neighbours of the outlier score.
    pub fn neighbours(&self) -> usize {
        self.neighbours
    }

    /// Returns the number of permutations of the drift test.
    pub fn permutations(&self) -> usize {
        self.permutations
    }

    /// Returns the seed of the permutation generator.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

/// Unchecked parameters of [`EmbeddingDrift`](super::EmbeddingDrift), from
/// [`EmbeddingDrift::params`](super::EmbeddingDrift::params).
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingDriftParams(pub(crate) EmbeddingDriftValidParams);

impl EmbeddingDriftParams {
    /// Returns the defaults for vectors of `dimensions` dimensions: `reference_points` 256,
    /// `window_points` 64, `neighbours` 5, `permutations` 100, `seed` 42.
    pub fn new(dimensions: usize) -> Self {
        EmbeddingDriftParams(EmbeddingDriftValidParams {
            dimensions,
            reference_points: 256,
            window_points: 64,
            neighbours: 5,
            permutations: 100,
            seed: 42,
        })
    }

    /// Sets the size (8..=65536) of the reference population.
    pub fn reference_points(mut self, reference_points: usize) -> Self {
        self.0.reference_points = reference_points;
        self
    }

    /// Sets the size (2..=`reference_points`) of the window compared with the reference.
    pub fn window_points(mut self, window_points: usize) -> Self {
        self.0.window_points = window_points;
        self
    }

    /// Sets the number (1..`reference_points`) of nearest neighbours of the outlier score.
    pub fn neighbours(mut self, neighbours: usize) -> Self {
        self.0.neighbours = neighbours;
        self
    }

    /// Sets the number (1..=10000) of permutations of the drift test.
    pub fn permutations(mut self, permutations: usize) -> Self {
        self.0.permutations = permutations;
        self
    }

    /// Sets the seed of the permutation generator.
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
}

fn validate(params: &EmbeddingDriftValidParams) -> Result<(), EmbeddingDriftParamsError> {
    if !(1..=65536).contains(&params.dimensions) {
        return Err(EmbeddingDriftParamsError::Dimensions(params.dimensions));
    }
    if !(8..=65536).contains(&params.reference_points) {
        return Err(EmbeddingDriftParamsError::ReferencePoints(
            params.reference_points,
        ));
    }
    if !(2..=params.reference_points).contains(&params.window_points) {
        return Err(EmbeddingDriftParamsError::WindowPoints(
            params.window_points,
        ));
    }
    if !(1..params.reference_points).contains(&params.neighbours) {
        return Err(EmbeddingDriftParamsError::Neighbours(params.neighbours));
    }
    if !(1..=10_000).contains(&params.permutations) {
        return Err(EmbeddingDriftParamsError::Permutations(params.permutations));
    }
    Ok(())
}

impl ParamGuard for EmbeddingDriftParams {
    type Checked = EmbeddingDriftValidParams;
    type Error = EmbeddingDriftParamsError;

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
        assert!(EmbeddingDriftParams::new(8).check().is_ok());
    }

    #[test]
    fn rejects_dimensions() {
        let error = EmbeddingDriftParams::new(0).check().unwrap_err();
        assert_eq!(error, EmbeddingDriftParamsError::Dimensions(0));
    }

    #[test]
    fn rejects_reference_points() {
        let error = EmbeddingDriftParams::new(4)
            .reference_points(4)
            .check()
            .unwrap_err();
        assert_eq!(error, EmbeddingDriftParamsError::ReferencePoints(4));
    }

    #[test]
    fn rejects_window_points() {
        for window in [1, 300] {
            let error = EmbeddingDriftParams::new(4)
                .window_points(window)
                .check()
                .unwrap_err();
            assert_eq!(error, EmbeddingDriftParamsError::WindowPoints(window));
        }
    }

    #[test]
    fn rejects_neighbours() {
        for neighbours in [0, 256] {
            let error = EmbeddingDriftParams::new(4)
                .neighbours(neighbours)
                .check()
                .unwrap_err();
            assert_eq!(error, EmbeddingDriftParamsError::Neighbours(neighbours));
        }
    }

    #[test]
    fn rejects_permutations() {
        for permutations in [0, 10_001] {
            let params = EmbeddingDriftParams::new(4).permutations(permutations);
            let error = params.check().unwrap_err();
            assert_eq!(error, EmbeddingDriftParamsError::Permutations(permutations));
        }
    }
}
