//! Schema drift of structured events: the field set and the JSON types of the events of one
//! stream (a stage's log attributes, or a JSON body), learnt online, and the changes reported.
//!
//! An event is given as its flattened fields: a path (`user.id`) and a [`FieldType`] per leaf.
//! The first `warmup_events` events only teach the model. After that, each event is compared
//! with what was learnt:
//!
//! - **new field**: a path never seen before (reported once, then learnt);
//! - **type change**: a known path with a type it never had (reported once per new type, then
//!   learnt, so a lasting change is reported once);
//! - **missing field**: a path present in every event since it first appeared that is absent
//!   from `missing_after` consecutive events (reported once; a field that comes back and then
//!   goes missing again is optional, and never reported again).
//!
//! At most `max_fields` paths are tracked; paths beyond that are ignored and counted.
//! Every change maps to a raw score of 6 (an alert with the default threshold) through
//! [`crate::score`]: schema changes are facts, not degrees.

mod algorithm;
mod error;
mod hyperparams;
#[cfg(test)]
mod reference;

pub use algorithm::{CHANGE_Z, EventFields, FieldType, SchemaChange, SchemaDrift};
pub use error::SchemaDriftParamsError;
pub use hyperparams::{SchemaDriftParams, SchemaDriftValidParams};
