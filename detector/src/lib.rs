#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod bank;
pub mod error;
pub mod evaluation;
pub mod models;
pub mod score;
pub mod templates;

pub use bank::{
    RATE_FEATURE, ScoredPoint, SeriesBank, SeriesBankParams, SeriesBankValidParams, SeriesId,
};
pub use error::SeriesBankParamsError;
pub use models::robust_baseline::{
    RobustBaseline, RobustBaselineError, RobustBaselineParams, RobustBaselineParamsError,
    RobustBaselineValidParams,
};
pub use models::windowed_gaussian::WindowedGaussian;
pub use score::{Deviation, Direction, Explanation, Score};
