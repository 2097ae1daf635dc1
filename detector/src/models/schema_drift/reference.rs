//! The first implementation of the model (an ordered map of the event's paths built per event,
//! then a walk over every learnt path), kept to check that the indexed one with its shape cache
//! reports exactly the same changes and learns the same state.

use std::collections::BTreeMap;

use super::algorithm::{FieldState, FieldType, SchemaChange};
use super::hyperparams::SchemaDriftValidParams;

pub struct ReferenceDrift {
    params: SchemaDriftValidParams,
    pub fields: BTreeMap<String, FieldState>,
    events: u64,
    pub overflowed: u64,
}

impl ReferenceDrift {
    pub fn new(params: SchemaDriftValidParams) -> Self {
        ReferenceDrift {
            params,
            fields: BTreeMap::new(),
            events: 0,
            overflowed: 0,
        }
    }

    pub fn observe(&mut self, fields: &[(String, FieldType)]) -> Vec<SchemaChange> {
        let warm = self.events >= self.params.warmup_events;
        self.events += 1;
        let mut present: BTreeMap<&str, FieldType> = BTreeMap::new();
        for (path, field_type) in fields {
            present.entry(path.as_str()).or_insert(*field_type);
        }
        let mut changes = Vec::new();
        for (&path, &field_type) in &present {
            let full = self.fields.len() >= self.params.max_fields;
            match self.fields.get_mut(path) {
                Some(state) => {
                    if state.absent > 0 && !state.reported_missing {
                        state.always = false;
                    }
                    state.absent = 0;
                    state.reported_missing = false;
                    if state.types & field_type.bit() == 0 && warm {
                        changes.push(SchemaChange::TypeChange {
                            path: path.to_owned(),
                            from: state.dominant_type(),
                            to: field_type,
                        });
                    }
                    state.types |= field_type.bit();
                    state.type_counts[field_type.code() as usize] += 1;
                }
                None if full => self.overflowed += 1,
                None => {
                    let mut state = FieldState::new(field_type);
                    state.always = self.events == 1 || warm;
                    if warm {
                        changes.push(SchemaChange::NewField {
                            path: path.to_owned(),
                            field_type,
                        });
                    }
                    self.fields.insert(path.to_owned(), state);
                }
            }
        }
        for (path, state) in &mut self.fields {
            if present.contains_key(path.as_str()) {
                continue;
            }
            state.absent += 1;
            if !warm {
                state.always = false;
                continue;
            }
            if state.always && !state.reported_missing && state.absent >= self.params.missing_after
            {
                state.reported_missing = true;
                changes.push(SchemaChange::MissingField {
                    path: path.clone(),
                    absent_events: state.absent,
                });
            }
        }
        changes.sort_by(|a, b| a.path().cmp(b.path()));
        changes
    }
}
