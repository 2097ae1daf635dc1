//! State and change detection of the schema drift model.

use std::collections::BTreeMap;

use super::hyperparams::{SchemaDriftParams, SchemaDriftValidParams};

/// Raw score of every schema change: an alert with the default threshold (score 71).
pub const CHANGE_Z: f64 = 6.0;

/// JSON type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldType {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// An array (not descended into).
    Array,
    /// An object (only when empty: fields of objects are their own paths).
    Object,
}

impl FieldType {
    /// Returns the type as a lowercase JSON word.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Null => "null",
            FieldType::Bool => "bool",
            FieldType::Number => "number",
            FieldType::String => "string",
            FieldType::Array => "array",
            FieldType::Object => "object",
        }
    }

    /// Returns a stable code (0 null, 1 bool, 2 number, 3 string, 4 array, 5 object), used
    /// where a change must be told as numbers.
    pub fn code(self) -> u8 {
        self as u8
    }

    fn bit(self) -> u8 {
        1 << self.code()
    }
}

/// A change of the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChange {
    /// A field never seen before.
    NewField {
        /// Field path.
        path: String,
        /// Its type.
        field_type: FieldType,
    },
    /// An always-present field absent from `missing_after` consecutive events.
    MissingField {
        /// Field path.
        path: String,
        /// Consecutive events without it.
        absent_events: u64,
    },
    /// A known field with a type it never had.
    TypeChange {
        /// Field path.
        path: String,
        /// The type it had most often.
        from: FieldType,
        /// The new type.
        to: FieldType,
    },
}

impl SchemaChange {
    /// Returns the path of the field that changed.
    pub fn path(&self) -> &str {
        match self {
            SchemaChange::NewField { path, .. }
            | SchemaChange::MissingField { path, .. }
            | SchemaChange::TypeChange { path, .. } => path,
        }
    }

    /// Returns the kind as a snake_case word: `new_field`, `missing_field` or `type_change`.
    pub fn kind(&self) -> &'static str {
        match self {
            SchemaChange::NewField { .. } => "new_field",
            SchemaChange::MissingField { .. } => "missing_field",
            SchemaChange::TypeChange { .. } => "type_change",
        }
    }
}

/// What is known of one field.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldState {
    /// Bit set of the types seen ([`FieldType::bit`]).
    types: u8,
    /// Events holding the field, per type code.
    type_counts: [u64; 6],
    /// Present in every event since it first appeared (absences shorter than `missing_after`
    /// make it optional).
    always: bool,
    /// Consecutive events without it.
    absent: u64,
    /// Its absence was reported (until it comes back).
    reported_missing: bool,
}

impl FieldState {
    fn new(field_type: FieldType) -> FieldState {
        let mut type_counts = [0; 6];
        type_counts[field_type.code() as usize] = 1;
        FieldState {
            types: field_type.bit(),
            type_counts,
            always: true,
            absent: 0,
            reported_missing: false,
        }
    }

    fn dominant_type(&self) -> FieldType {
        const TYPES: [FieldType; 6] = [
            FieldType::Null,
            FieldType::Bool,
            FieldType::Number,
            FieldType::String,
            FieldType::Array,
            FieldType::Object,
        ];
        let mut best = FieldType::Null;
        let mut best_count = 0;
        for field_type in TYPES {
            let count = self.type_counts[field_type.code() as usize];
            if count > best_count {
                best = field_type;
                best_count = count;
            }
        }
        best
    }
}

/// The schema model of one stream of events (see the [module docs](super)).
///
/// ```
/// use linfa::ParamGuard;
/// use pipewarden_detector::models::schema_drift::{FieldType, SchemaChange, SchemaDrift};
///
/// let mut model = SchemaDrift::new(SchemaDrift::params().warmup_events(3).check()?);
/// let event = vec![("user.id".to_owned(), FieldType::Number)];
/// for _ in 0..3 {
///     assert!(model.observe(&event).is_empty());
/// }
/// let changed = vec![("user.id".to_owned(), FieldType::String)];
/// assert_eq!(
///     model.observe(&changed),
///     vec![SchemaChange::TypeChange {
///         path: "user.id".into(),
///         from: FieldType::Number,
///         to: FieldType::String,
///     }]
/// );
/// # Ok::<(), pipewarden_detector::models::schema_drift::SchemaDriftParamsError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaDrift {
    params: SchemaDriftValidParams,
    fields: BTreeMap<String, FieldState>,
    events: u64,
    overflowed: u64,
}

impl SchemaDrift {
    /// Returns the default parameters (see [`SchemaDriftParams::new`]).
    pub fn params() -> SchemaDriftParams {
        SchemaDriftParams::new()
    }

    /// Returns an empty model.
    pub fn new(params: SchemaDriftValidParams) -> Self {
        SchemaDrift {
            params,
            fields: BTreeMap::new(),
            events: 0,
            overflowed: 0,
        }
    }

    /// Returns the number of events seen.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Returns the number of field paths tracked.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Returns whether no field is tracked.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Returns how many times a new path was ignored because `max_fields` were tracked.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// Returns whether the warm-up is over.
    pub fn is_warm(&self) -> bool {
        self.events >= self.params.warmup_events
    }

    /// Returns the approximate heap bytes held.
    pub fn approx_heap_bytes(&self) -> usize {
        self.fields
            .keys()
            .map(|path| path.capacity() + size_of::<FieldState>() + 48)
            .sum()
    }

    /// Compares one event (its flattened fields; a path listed twice counts once, with its
    /// first type) with the learnt schema, learns it, and returns the changes (none during
    /// the warm-up), ordered by path.
    pub fn observe(&mut self, fields: &[(String, FieldType)]) -> Vec<SchemaChange> {
        let warm = self.is_warm();
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
                        // Came back before it was reported missing: an optional field.
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
                    // A field that appears after the first event was absent before it: it
                    // is only "always present" when learnt from the very first event on,
                    // or when it is new after the warm-up (a new required field).
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
                // Absent during the warm-up: optional.
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

impl SchemaDriftParams {
    /// Checks the parameters and returns an empty model.
    ///
    /// # Errors
    /// Returns the first invalid parameter.
    pub fn build(self) -> Result<SchemaDrift, super::SchemaDriftParamsError> {
        use linfa::ParamGuard;
        Ok(SchemaDrift::new(self.check()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(fields: &[(&str, FieldType)]) -> Vec<(String, FieldType)> {
        fields.iter().map(|(p, t)| ((*p).to_owned(), *t)).collect()
    }

    fn warm_model() -> SchemaDrift {
        let mut model = SchemaDrift::params()
            .warmup_events(10)
            .missing_after(3)
            .build()
            .unwrap();
        let normal = event(&[("id", FieldType::Number), ("user", FieldType::String)]);
        for i in 0..10 {
            let mut fields = normal.clone();
            if i % 2 == 0 {
                fields.push(("note".into(), FieldType::String));
            }
            assert!(model.observe(&fields).is_empty(), "warm-up reports nothing");
        }
        model
    }

    #[test]
    fn reports_a_new_field_once() {
        let mut model = warm_model();
        let fields = event(&[
            ("id", FieldType::Number),
            ("user", FieldType::String),
            ("region", FieldType::String),
        ]);
        assert_eq!(
            model.observe(&fields),
            vec![SchemaChange::NewField {
                path: "region".into(),
                field_type: FieldType::String
            }]
        );
        assert!(model.observe(&fields).is_empty());
    }

    #[test]
    fn reports_a_type_change_once() {
        let mut model = warm_model();
        let fields = event(&[("id", FieldType::String), ("user", FieldType::String)]);
        let changes = model.observe(&fields);
        assert_eq!(
            changes,
            vec![SchemaChange::TypeChange {
                path: "id".into(),
                from: FieldType::Number,
                to: FieldType::String
            }]
        );
        assert_eq!(changes[0].kind(), "type_change");
        assert!(model.observe(&fields).is_empty());
    }

    #[test]
    fn reports_a_missing_required_field_after_missing_after_events_only() {
        let mut model = warm_model();
        let without_user = event(&[("id", FieldType::Number)]);
        assert!(model.observe(&without_user).is_empty());
        assert!(model.observe(&without_user).is_empty());
        assert_eq!(
            model.observe(&without_user),
            vec![SchemaChange::MissingField {
                path: "user".into(),
                absent_events: 3
            }]
        );
        assert!(
            model.observe(&without_user).is_empty(),
            "reported once; the optional `note` never"
        );
    }

    #[test]
    fn fields_are_capped_and_overflow_counted() {
        let mut model = SchemaDrift::params()
            .warmup_events(1)
            .max_fields(2)
            .build()
            .unwrap();
        let fields = event(&[
            ("a", FieldType::Bool),
            ("b", FieldType::Bool),
            ("c", FieldType::Bool),
        ]);
        model.observe(&fields);
        assert_eq!(model.len(), 2);
        assert_eq!(model.overflowed(), 1);
        assert!(model.approx_heap_bytes() > 0);
    }
}
