//! State and change detection of the schema drift model.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::ops::Range;

use foldhash::fast::{FixedState, RandomState};

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

    pub(super) fn bit(self) -> u8 {
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

/// The flattened fields of one event (path and type of each leaf), in reusable buffers: fill it
/// with [`push`](Self::push) after [`clear`](Self::clear), no allocation per field once warm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct EventFields {
    paths: String,
    fields: Vec<(Range<usize>, FieldType)>,
}

impl EventFields {
    /// Returns an empty event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes every field (keeps the buffers).
    pub fn clear(&mut self) {
        self.paths.clear();
        self.fields.clear();
    }

    /// Appends a field.
    pub fn push(&mut self, path: &str, field_type: FieldType) {
        let start = self.paths.len();
        self.paths.push_str(path);
        self.fields.push((start..self.paths.len(), field_type));
    }

    /// Returns the number of fields (a path listed twice counts twice).
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Returns whether the event has no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Returns the fields in the order they were pushed.
    pub fn iter(&self) -> impl Iterator<Item = (&str, FieldType)> {
        self.fields
            .iter()
            .map(|(span, field_type)| (&self.paths[span.clone()], *field_type))
    }
}

impl<S: AsRef<str>> FromIterator<(S, FieldType)> for EventFields {
    fn from_iter<I: IntoIterator<Item = (S, FieldType)>>(iter: I) -> Self {
        let mut fields = EventFields::new();
        for (path, field_type) in iter {
            fields.push(path.as_ref(), field_type);
        }
        fields
    }
}

/// What is known of one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FieldState {
    /// Bit set of the types seen ([`FieldType::bit`]).
    pub(super) types: u8,
    /// Events holding the field, per type code.
    pub(super) type_counts: [u64; 6],
    /// Present in every event since it first appeared (absences shorter than `missing_after`
    /// make it optional).
    pub(super) always: bool,
    /// Consecutive events without it.
    pub(super) absent: u64,
    /// Its absence was reported (until it comes back).
    pub(super) reported_missing: bool,
}

impl FieldState {
    pub(super) fn new(field_type: FieldType) -> FieldState {
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

    /// Learns that a known field is present in an event with `field_type`.
    fn present(&mut self, field_type: FieldType) {
        if self.absent > 0 && !self.reported_missing {
            // Came back before it was reported missing: an optional field.
            self.always = false;
        }
        self.absent = 0;
        self.reported_missing = false;
        self.types |= field_type.bit();
        self.type_counts[field_type.code() as usize] += 1;
    }

    pub(super) fn dominant_type(&self) -> FieldType {
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

/// A learnt field: its path, its state, and the last event that held it.
#[derive(Debug, Clone)]
struct Field {
    path: String,
    state: FieldState,
    /// Number (1-based) of the last event holding the field.
    seen: u64,
}

/// Most event shapes remembered per model.
const CACHED_SHAPES: usize = 8;
/// Largest event shape remembered (fields, bytes of paths), to bound the cache's memory.
const CACHED_SHAPE_FIELDS: usize = 32;
const CACHED_SHAPE_BYTES: usize = 1024;

/// A recent event shape and where its fields are. An event of the very same shape (same paths
/// and types in the same order) holds only learnt paths (or paths ignored again at
/// `max_fields`, since paths are never forgotten) with types they already had: it updates the
/// same fields without a lookup by path and cannot report a new field or a type change.
#[derive(Debug, Clone)]
struct CachedShape {
    hash: u64,
    fields: EventFields,
    /// Index in `SchemaDrift::fields` and type of each distinct tracked path of the event.
    present: Vec<(usize, FieldType)>,
    /// Paths of the event ignored at `max_fields`.
    overflowed: u64,
}

/// The last [`CACHED_SHAPES`] distinct shapes, replaced in turn.
#[derive(Debug, Clone, Default)]
struct ShapeCache {
    shapes: Vec<CachedShape>,
    next: usize,
}

impl ShapeCache {
    fn hash(event: &EventFields) -> u64 {
        FixedState::with_seed(0x5eed).hash_one(event)
    }

    fn find(&self, hash: u64, event: &EventFields) -> Option<&CachedShape> {
        self.shapes
            .iter()
            .find(|shape| shape.hash == hash && shape.fields == *event)
    }

    fn insert(&mut self, shape: CachedShape) {
        if self.shapes.len() < CACHED_SHAPES {
            self.shapes.push(shape);
        } else {
            self.shapes[self.next] = shape;
            self.next = (self.next + 1) % CACHED_SHAPES;
        }
    }

    fn approx_heap_bytes(&self) -> usize {
        self.shapes
            .iter()
            .map(|shape| {
                size_of::<CachedShape>()
                    + shape.fields.paths.capacity()
                    + shape.fields.fields.capacity() * size_of::<(Range<usize>, FieldType)>()
                    + shape.present.capacity() * size_of::<(usize, FieldType)>()
            })
            .sum()
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
#[derive(Debug, Clone)]
pub struct SchemaDrift {
    params: SchemaDriftValidParams,
    /// Learnt fields, in order of discovery.
    fields: Vec<Field>,
    /// Index in `fields` of each path.
    index: HashMap<String, usize, RandomState>,
    events: u64,
    overflowed: u64,
    cache: ShapeCache,
}

impl PartialEq for SchemaDrift {
    /// Models are equal when they have the same parameters, counters and learnt fields (in
    /// any order of discovery).
    fn eq(&self, other: &Self) -> bool {
        self.params == other.params
            && self.events == other.events
            && self.overflowed == other.overflowed
            && self.fields.len() == other.fields.len()
            && self.fields.iter().all(|field| {
                other
                    .index
                    .get(&field.path)
                    .is_some_and(|&at| other.fields[at].state == field.state)
            })
    }
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
            fields: Vec::new(),
            index: HashMap::default(),
            events: 0,
            overflowed: 0,
            cache: ShapeCache::default(),
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
        let fields: usize = self
            .fields
            .iter()
            .map(|field| 2 * field.path.capacity() + size_of::<Field>() + 48)
            .sum();
        fields + self.cache.approx_heap_bytes()
    }

    /// Compares one event (its flattened fields; a path listed twice counts once, with its
    /// first type) with the learnt schema, learns it, and returns the changes (none during
    /// the warm-up), ordered by path.
    pub fn observe(&mut self, fields: &[(String, FieldType)]) -> Vec<SchemaChange> {
        self.observe_fields(&fields.iter().map(|(p, t)| (p, *t)).collect())
    }

    /// [`observe`](Self::observe) for fields in an [`EventFields`] buffer (the form that does
    /// not allocate per field).
    pub fn observe_fields(&mut self, event: &EventFields) -> Vec<SchemaChange> {
        let warm = self.is_warm();
        self.events += 1;
        let mut changes = Vec::new();
        let hash = ShapeCache::hash(event);
        if let Some(shape) = self.cache.find(hash, event) {
            for &(at, field_type) in &shape.present {
                let field = &mut self.fields[at];
                field.seen = self.events;
                field.state.present(field_type);
            }
            self.overflowed += shape.overflowed;
        } else {
            self.learn_shape(event, hash, warm, &mut changes);
        }
        for field in &mut self.fields {
            if field.seen == self.events {
                continue;
            }
            let state = &mut field.state;
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
                    path: field.path.clone(),
                    absent_events: state.absent,
                });
            }
        }
        changes.sort_by(|a, b| a.path().cmp(b.path()));
        changes
    }

    /// Learns the present fields of an event of a new shape (marking them seen in this
    /// event), reports new fields and type changes, and caches the shape.
    fn learn_shape(
        &mut self,
        event: &EventFields,
        hash: u64,
        warm: bool,
        changes: &mut Vec<SchemaChange>,
    ) {
        let mut present = Vec::new();
        let mut fresh: Vec<(&str, FieldType)> = Vec::new();
        for (path, field_type) in event.iter() {
            let Some(&at) = self.index.get(path) else {
                fresh.push((path, field_type));
                continue;
            };
            let field = &mut self.fields[at];
            if field.seen == self.events {
                // Listed twice: the first type counts.
                continue;
            }
            field.seen = self.events;
            let state = &mut field.state;
            if state.types & field_type.bit() == 0 && warm {
                changes.push(SchemaChange::TypeChange {
                    path: path.to_owned(),
                    from: state.dominant_type(),
                    to: field_type,
                });
            }
            state.present(field_type);
            present.push((at, field_type));
        }
        // New paths in path order (the first type of a path listed twice), so that which ones
        // fit under `max_fields` does not depend on the order of the event's fields.
        fresh.sort_by(|a, b| a.0.cmp(b.0));
        fresh.dedup_by(|later, earlier| later.0 == earlier.0);
        let mut overflowed = 0;
        for (path, field_type) in fresh {
            if self.fields.len() >= self.params.max_fields {
                overflowed += 1;
                continue;
            }
            let mut state = FieldState::new(field_type);
            // A field that appears after the first event was absent before it: it is only
            // "always present" when learnt from the very first event on, or when it is new
            // after the warm-up (a new required field).
            state.always = self.events == 1 || warm;
            if warm {
                changes.push(SchemaChange::NewField {
                    path: path.to_owned(),
                    field_type,
                });
            }
            let at = self.fields.len();
            self.fields.push(Field {
                path: path.to_owned(),
                state,
                seen: self.events,
            });
            self.index.insert(path.to_owned(), at);
            present.push((at, field_type));
        }
        self.overflowed += overflowed;
        if event.len() <= CACHED_SHAPE_FIELDS && event.paths.len() <= CACHED_SHAPE_BYTES {
            self.cache.insert(CachedShape {
                hash,
                fields: event.clone(),
                present,
                overflowed,
            });
        }
    }
}

#[cfg(test)]
impl SchemaDrift {
    /// Returns the learnt state of every path.
    pub(super) fn states(&self) -> std::collections::BTreeMap<String, FieldState> {
        self.fields
            .iter()
            .map(|field| (field.path.clone(), field.state.clone()))
            .collect()
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

    #[test]
    fn a_path_listed_twice_counts_once_with_its_first_type() {
        let mut model = SchemaDrift::params().warmup_events(1).build().unwrap();
        let first = event(&[("a", FieldType::Number), ("a", FieldType::String)]);
        assert!(model.observe(&first).is_empty());
        // `a` is a number: the same event again changes nothing, a string alone is a change.
        assert!(model.observe(&first).is_empty());
        assert_eq!(
            model.observe(&event(&[("a", FieldType::String)])),
            vec![SchemaChange::TypeChange {
                path: "a".into(),
                from: FieldType::Number,
                to: FieldType::String
            }]
        );
    }

    #[test]
    fn the_new_paths_kept_at_max_fields_are_the_first_in_path_order() {
        let mut model = SchemaDrift::params()
            .warmup_events(1)
            .max_fields(2)
            .build()
            .unwrap();
        let fields = event(&[
            ("c", FieldType::Bool),
            ("b", FieldType::Bool),
            ("a", FieldType::Bool),
        ]);
        model.observe(&fields);
        model.observe(&fields);
        assert_eq!(
            model.overflowed(),
            2,
            "`c` ignored twice (the second time cached)"
        );
        assert_eq!(model.states().into_keys().collect::<Vec<_>>(), ["a", "b"]);
    }

    mod equivalence {
        use linfa::ParamGuard;
        use proptest::prelude::*;

        use super::*;
        use crate::models::schema_drift::reference::ReferenceDrift;

        const PATHS: [&str; 8] = ["a", "b", "b.c", "id", "user.id", "z", "body.x", "é"];
        const TYPES: [FieldType; 6] = [
            FieldType::Null,
            FieldType::Bool,
            FieldType::Number,
            FieldType::String,
            FieldType::Array,
            FieldType::Object,
        ];

        fn shape() -> impl Strategy<Value = Vec<(String, FieldType)>> {
            prop::collection::vec(
                (
                    prop::sample::select(PATHS.to_vec()),
                    prop::sample::select(vec![TYPES[2], TYPES[3], TYPES[2], TYPES[0], TYPES[5]]),
                ),
                0..7,
            )
            .prop_map(|fields| {
                fields
                    .into_iter()
                    .map(|(path, field_type)| (path.to_owned(), field_type))
                    .collect()
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            /// The indexed model with its shape cache reports exactly the changes of the first
            /// implementation and learns the same state, over streams that mostly repeat a few
            /// shapes (the cached path) and sometimes change them (the full path).
            #[test]
            fn reports_like_the_first_implementation(
                shapes in prop::collection::vec(shape(), 1..12),
                picks in prop::collection::vec(0usize..16, 1..200),
                warmup_events in 1u64..20,
                missing_after in 1u64..6,
                max_fields in 1usize..9,
            ) {
                let params = SchemaDrift::params()
                    .warmup_events(warmup_events)
                    .missing_after(missing_after)
                    .max_fields(max_fields)
                    .check()
                    .unwrap();
                let mut model = SchemaDrift::new(params.clone());
                let mut reference = ReferenceDrift::new(params);
                let mut buffer = EventFields::new();
                for (step, &pick) in picks.iter().enumerate() {
                    // Mostly the first shape; the others (more than the cache holds) now and
                    // then.
                    let fields = &shapes[if pick < 5 { 0 } else { pick % shapes.len() }];
                    let expected = reference.observe(fields);
                    let changes = if step % 2 == 0 {
                        model.observe(fields)
                    } else {
                        buffer.clear();
                        for (path, field_type) in fields {
                            buffer.push(path, *field_type);
                        }
                        model.observe_fields(&buffer)
                    };
                    prop_assert_eq!(changes, expected, "event {}", step);
                    prop_assert_eq!(model.overflowed(), reference.overflowed);
                }
                prop_assert_eq!(model.states(), reference.fields.clone());
                prop_assert_eq!(model.len(), reference.fields.len());
            }
        }
    }
}
