//! Zero-copy scan of protobuf OTLP metrics export requests.
//!
//! Decoding a metrics request with prost allocates every string and vector of every data point
//! (attribute keys and values, the attribute list, the point itself), and the deriver then turns
//! those into a series key again for each point. The scan instead walks the protobuf wire format
//! of the request body in place: it checks everything prost would check (wire types of the known
//! fields, lengths, varints, UTF-8 of strings, the nested attribute values), and records per data
//! point only where its attributes are in the body, its time and its value. The deriver resolves a
//! point's series from the raw attribute bytes through a cache, so a known series costs no
//! allocation until the point is emitted.
//!
//! The wire primitives (field keys, varints, skipping unknown fields) are prost's own
//! [`prost::encoding`] functions. The scan only tells that a body is malformed: the caller then
//! decodes it with prost, whose error names the field (`NumberDataPoint.attributes: KeyValue.key:
//! invalid string value: ...`), and which also settles any case where the two would disagree.
//!
//! The scan handles gauges and sums, the number data points; a request with a histogram,
//! exponential histogram or summary, or with a shape where prost would merge repeated
//! occurrences of a singular message (two resources on one `ResourceMetrics`, two data fields on
//! one `Metric`), is left to prost: [`scan_metrics`] answers `Ok(None)`.
//!
//! Trace and log requests have their own scans ([`scan_traces`], [`scan_logs`]) over the same
//! wire helpers and the same walk of the request down to its items (`walk_request`).

use std::ops::Range;

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::Exemplar;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use crate::signal::SeriesKind;

mod attributes;
mod traces;

pub(crate) use self::attributes::RawValue;
pub(crate) use self::traces::SpanView;
pub use self::traces::{RawTraces, scan_traces};

/// The scan found a body prost would refuse; prost's own decoding says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf request")]
pub struct Malformed;

impl From<prost::DecodeError> for Malformed {
    fn from(_: prost::DecodeError) -> Self {
        Malformed
    }
}

/// Nesting limit of attribute values, counted in messages below a point's `KeyValue` (an
/// `AnyValue` is one, a list item two: the list and the item). Stricter than prost's recursion
/// limit (100 messages from the request down), so the scan never takes a body prost refuses; a
/// deeper body is reported malformed and prost decides.
const MAX_VALUE_DEPTH: u32 = 60;

/// A protobuf `ExportMetricsServiceRequest` of gauges and sums, checked by a scan and kept as
/// its body.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMetrics {
    body: Bytes,
    resources: ResourceRanges,
    metrics: Vec<RawMetric>,
    points: Vec<RawPoint>,
    /// Points of metrics without a name.
    empty_name_points: u64,
    /// Points (of named metrics) with neither `as_double` nor `as_int`.
    missing_value_points: u64,
}

/// One `Metric`: its resource, where its name is, and whether its values are running totals.
#[derive(Debug, Clone, PartialEq)]
struct RawMetric {
    resource: usize,
    name: Range<usize>,
    /// What its values are (see [`SeriesKind::of_sum`]).
    kind: SeriesKind,
}

/// One number data point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RawPoint {
    metric: usize,
    /// From the start of the first `attributes` field to the end of the last one (possibly with
    /// other fields in between when the sender interleaved them; only `attributes` are read).
    attributes_start: usize,
    attributes_end: usize,
    pub(crate) start_time_unix_nano: u64,
    pub(crate) time_unix_nano: u64,
    pub(crate) value: Option<f64>,
}

/// One data point as the deriver sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PointView<'a> {
    /// Index of the point's `ResourceMetrics` (for [`RawMetrics::resource`]).
    pub(crate) resource: usize,
    /// Metric name (empty for a metric without a name).
    pub(crate) name: &'a str,
    /// The encoded attribute fields of the point (see [`RawMetrics::attributes`]).
    pub(crate) attributes: &'a [u8],
    /// What the values of the point's metric are.
    pub(crate) kind: SeriesKind,
    pub(crate) point: RawPoint,
}

impl RawMetrics {
    /// Returns the number of data points, rejected ones included.
    pub(crate) fn point_count(&self) -> u64 {
        self.points.len() as u64
    }

    /// Returns the points of metrics without a name.
    pub(crate) fn empty_name_points(&self) -> u64 {
        self.empty_name_points
    }

    /// Returns the points of named metrics without a value.
    pub(crate) fn missing_value_points(&self) -> u64 {
        self.missing_value_points
    }

    /// Returns the number of `ResourceMetrics`.
    pub(crate) fn resource_count(&self) -> usize {
        self.resources.len()
    }

    /// Decodes the resource of `ResourceMetrics` number `index` (`None` without one).
    #[cfg(test)]
    pub(crate) fn resource(&self, index: usize) -> Option<Resource> {
        decode_resource(&self.body, &self.resources, index)
    }

    /// The encoded resource of `ResourceMetrics` number `index` (`None` without one).
    pub(crate) fn resource_bytes(&self, index: usize) -> Option<&[u8]> {
        resource_bytes(&self.body, &self.resources, index)
    }

    /// Returns the data points in request order.
    pub(crate) fn points(&self) -> impl Iterator<Item = PointView<'_>> + '_ {
        // The name of the metric of the previous point: points come grouped by metric.
        let mut last: Option<(usize, &str)> = None;
        self.points.iter().map(move |point| {
            let metric = self.metrics.get(point.metric);
            let name = match last {
                Some((index, name)) if index == point.metric => name,
                _ => {
                    let name = metric
                        .and_then(|m| self.body.get(m.name.clone()))
                        .and_then(|bytes| std::str::from_utf8(bytes).ok())
                        .unwrap_or("");
                    last = Some((point.metric, name));
                    name
                }
            };
            let attributes = self
                .body
                .get(point.attributes_start..point.attributes_end)
                .unwrap_or(&[]);
            PointView {
                resource: metric.map_or(0, |m| m.resource),
                name,
                attributes,
                kind: metric.map_or(SeriesKind::Reading, |m| m.kind),
                point: *point,
            }
        })
    }

    /// Decodes the attributes of a point from the bytes [`PointView::attributes`] gave.
    pub(crate) fn attributes(bytes: &[u8]) -> Vec<KeyValue> {
        attributes::decode_attributes(bytes, 7)
    }
}

/// Scans a protobuf `ExportMetricsServiceRequest`.
///
/// Returns `Ok(None)` when the request holds something the scan leaves to prost (see the module
/// documentation).
///
/// # Errors
///
/// Returns [`Malformed`] for a body prost would refuse (and possibly for one prost would take in a
/// way the scan does not follow): decode it with prost then.
pub fn scan_metrics(body: Bytes) -> Result<Option<RawMetrics>, Malformed> {
    let mut scan = Scan {
        body: &body,
        metrics: Vec::new(),
        points: Vec::new(),
        empty_name_points: 0,
        missing_value_points: 0,
        unsupported: false,
    };
    let resources = walk_request(&body, |resource, range| scan.metric(resource, range))?;
    let Some(resources) = resources.filter(|_| !scan.unsupported) else {
        return Ok(None);
    };
    let Scan {
        metrics,
        points,
        empty_name_points,
        missing_value_points,
        ..
    } = scan;
    Ok(Some(RawMetrics {
        body,
        resources,
        metrics,
        points,
        empty_name_points,
        missing_value_points,
    }))
}

/// Where the resource of each `Resource{Metrics,Logs,Spans}` of a request is, if it has one.
type ResourceRanges = Vec<Option<Range<usize>>>;

/// Decodes the resource of `Resource*` number `index` of a scanned request (`None` without one).
fn decode_resource(body: &[u8], resources: &ResourceRanges, index: usize) -> Option<Resource> {
    // Checked by the scan; a failure here cannot happen and reads as no resource.
    Resource::decode(resource_bytes(body, resources, index)?).ok()
}

/// The encoded resource of `Resource*` number `index` of a scanned request (`None` without one).
fn resource_bytes<'a>(
    body: &'a [u8],
    resources: &ResourceRanges,
    index: usize,
) -> Option<&'a [u8]> {
    let range = resources.get(index)?.clone()?;
    body.get(range)
}

/// Walks an export request down to its items, the part the three scans share: each
/// `Resource{Metrics,Logs,Spans}` (field 1 of the request) with its resource (field 1), its
/// `Scope*` messages (field 2: the scope in field 1, the items in field 2) and its schema URL
/// (field 3). Each item is handed to `item` with the index of its resource.
///
/// Returns the resources, or `None` when one `Resource*` has two resources (prost would merge
/// them: the request is left to prost).
fn walk_request(
    body: &[u8],
    mut item: impl FnMut(usize, Range<usize>) -> Result<(), Malformed>,
) -> Result<Option<ResourceRanges>, Malformed> {
    let mut resources = ResourceRanges::new();
    let mut merged = false;
    let mut request = Fields::new(body, 0..body.len());
    while let Some((tag, wire_type)) = request.next_key()? {
        if tag != 1 {
            request.skip(wire_type, tag)?;
            continue;
        }
        let index = resources.len();
        resources.push(None);
        let mut fields = Fields::new(body, request.message(wire_type)?);
        while let Some((tag, wire_type)) = fields.next_key()? {
            match tag {
                1 => {
                    let range = fields.message(wire_type)?;
                    check_repeated::<Resource>(body, range.clone(), Repeated::Resource)?;
                    merged |= resources[index].is_some();
                    resources[index] = Some(range);
                }
                2 => {
                    let mut scope = Fields::new(body, fields.message(wire_type)?);
                    while let Some((tag, wire_type)) = scope.next_key()? {
                        match tag {
                            1 => {
                                let range = scope.message(wire_type)?;
                                let kind = Repeated::Scope;
                                check_repeated::<InstrumentationScope>(body, range, kind)?;
                            }
                            2 => item(index, scope.message(wire_type)?)?,
                            3 => scope.string(wire_type)?,
                            _ => scope.skip(wire_type, tag)?,
                        }
                    }
                }
                3 => fields.string(wire_type)?,
                _ => fields.skip(wire_type, tag)?,
            }
        }
    }
    Ok((!merged).then_some(resources))
}

/// The messages a client repeats in every request: its resource and its instrumentation scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeated {
    /// A `Resource` (attributes in field 1).
    Resource,
    /// An `InstrumentationScope` (attributes in field 3).
    Scope,
}

/// Most messages of each kind a thread remembers as checked; it forgets them all beyond that
/// (with the length limit below, at most 128 KiB per thread).
const CHECKED_MAX_MESSAGES: usize = 64;

/// Longest message remembered as checked (a longer one is checked every time).
const CHECKED_MAX_BYTES: usize = 1024;

thread_local! {
    /// The resources and scopes this thread found valid, by their bytes.
    static CHECKED: std::cell::RefCell<[foldhash::HashSet<Box<[u8]>>; 2]> =
        std::cell::RefCell::new(Default::default());
}

/// Checks a resource or scope (see [`check_with_attributes`]), skipping the check when this
/// thread found the same bytes valid before: a client sends the same resource and scope in every
/// request, and the check decodes them with prost (allocating every attribute). The answer
/// depends on the bytes alone, so a remembered one is exact.
fn check_repeated<M: Message + Default>(
    body: &[u8],
    range: Range<usize>,
    kind: Repeated,
) -> Result<(), Malformed> {
    let (set, attributes_tag) = match kind {
        Repeated::Resource => (0, 1),
        Repeated::Scope => (1, 3),
    };
    let bytes = body.get(range.clone()).ok_or(Malformed)?;
    if bytes.len() > CHECKED_MAX_BYTES {
        return check_with_attributes::<M>(body, range, attributes_tag);
    }
    if CHECKED.with_borrow(|checked| checked[set].contains(bytes)) {
        return Ok(());
    }
    check_with_attributes::<M>(body, range, attributes_tag)?;
    CHECKED.with_borrow_mut(|checked| {
        let known = &mut checked[set];
        if known.len() >= CHECKED_MAX_MESSAGES {
            known.clear();
        }
        known.insert(bytes.into());
    });
    Ok(())
}

/// Checks a message once per request with prost, and also holds the values of its attributes
/// (field `attributes_tag`) to the scan's nesting limit: prost, checking the message alone,
/// counts its recursion from the message, not from the request.
fn check_with_attributes<M: Message + Default>(
    body: &[u8],
    range: Range<usize>,
    attributes_tag: u32,
) -> Result<(), Malformed> {
    check_message::<M>(body.get(range.clone()).ok_or(Malformed)?)?;
    let mut fields = Fields::new(body, range);
    while let Some((tag, wire_type)) = fields.next_key()? {
        if tag == attributes_tag {
            let range = fields.message(wire_type)?;
            check_attribute(body, range)?;
        } else {
            fields.skip(wire_type, tag)?;
        }
    }
    Ok(())
}

struct Scan<'a> {
    body: &'a [u8],
    metrics: Vec<RawMetric>,
    points: Vec<RawPoint>,
    empty_name_points: u64,
    missing_value_points: u64,
    /// Set when prost must decode the request instead.
    unsupported: bool,
}

impl Scan<'_> {
    fn metric(&mut self, resource: usize, range: Range<usize>) -> Result<(), Malformed> {
        if self.metrics.capacity() == 0 {
            self.metrics
                .reserve(estimate_count(self.body.len(), range.clone()));
        }
        let index = self.metrics.len();
        self.metrics.push(RawMetric {
            resource,
            name: 0..0,
            kind: SeriesKind::Reading,
        });
        let mut data_fields = 0;
        let (mut points, mut missing_value) = (0, 0);
        let mut fields = Fields::new(self.body, range);
        while let Some((tag, wire_type)) = fields.next_key()? {
            match tag {
                1 => {
                    let range = fields.string_range(wire_type)?;
                    self.metrics[index].name = range;
                }
                2 => fields.string(wire_type)?,
                3 => fields.string(wire_type)?,
                5 | 7 => {
                    data_fields += 1;
                    let range = fields.message(wire_type)?;
                    let scanned = self.number_points(tag == 7, index, range)?;
                    points += scanned.points;
                    missing_value += scanned.missing_value;
                    self.metrics[index].kind = scanned.kind;
                }
                9..=11 => {
                    // Histograms and summaries go through prost; only the framing is checked.
                    fields.message(wire_type)?;
                    self.unsupported = true;
                }
                12 => {
                    let range = fields.message(wire_type)?;
                    check_attribute(self.body, range)?;
                }
                _ => fields.skip(wire_type, tag)?,
            }
        }
        if data_fields > 1 {
            // prost would merge (same kind) or replace (other kind) the data.
            self.unsupported = true;
        }
        if self.metrics[index].name.is_empty() {
            self.empty_name_points += points;
        } else {
            self.missing_value_points += missing_value;
        }
        Ok(())
    }

    /// Scans a `Gauge` or a `Sum` (both hold their points in field 1).
    fn number_points(
        &mut self,
        is_sum: bool,
        metric: usize,
        range: Range<usize>,
    ) -> Result<NumberPoints, Malformed> {
        let (mut points, mut missing_value) = (0, 0);
        // Sum.aggregation_temporality and Sum.is_monotonic (the last occurrence counts, as in
        // prost).
        let (mut temporality, mut monotonic) = (0, false);
        let mut fields = Fields::new(self.body, range);
        while let Some((tag, wire_type)) = fields.next_key()? {
            match tag {
                1 => {
                    let range = fields.message(wire_type)?;
                    if self.points.capacity() == 0 {
                        self.points
                            .reserve(estimate_count(self.body.len(), range.clone()));
                    }
                    let point = number_data_point(self.body, metric, range)?;
                    points += 1;
                    missing_value += u64::from(point.value.is_none());
                    self.points.push(point);
                }
                // Sum.aggregation_temporality (enum) and Sum.is_monotonic (bool).
                2 if is_sum => temporality = fields.varint_value(wire_type)?,
                3 if is_sum => monotonic = fields.varint_value(wire_type)? != 0,
                _ => fields.skip(wire_type, tag)?,
            }
        }
        Ok(NumberPoints {
            points,
            missing_value,
            kind: SeriesKind::of_sum(monotonic, i64::try_from(temporality).unwrap_or(0)),
        })
    }
}

/// What [`Scan::number_points`] found in a `Gauge` or `Sum`.
struct NumberPoints {
    points: u64,
    /// Points without a value.
    missing_value: u64,
    /// What the values are.
    kind: SeriesKind,
}

/// Estimates how many items like the first one (its content at `first`) the rest of a body of
/// `body_len` bytes holds, to reserve their vector once instead of growing it item by item. Exact
/// for a body of like items, an overestimate otherwise; counting an item as at least 24 bytes
/// keeps the reservation within a few times the body's size whatever the items.
fn estimate_count(body_len: usize, first: Range<usize>) -> usize {
    // The content, its key and (usually) a one-byte length.
    let item_len = (first.len() + 2).max(24);
    body_len.saturating_sub(first.start) / item_len
}

fn number_data_point(
    body: &[u8],
    metric: usize,
    range: Range<usize>,
) -> Result<RawPoint, Malformed> {
    match plain_number_point(body, metric, range.clone()) {
        Some(point) => Ok(point),
        None => any_number_point(body, metric, range),
    }
}

/// Reads a number data point field by field, whatever their order and shape.
fn any_number_point(
    body: &[u8],
    metric: usize,
    range: Range<usize>,
) -> Result<RawPoint, Malformed> {
    let mut point = RawPoint {
        metric,
        attributes_start: range.start,
        attributes_end: range.start,
        start_time_unix_nano: 0,
        time_unix_nano: 0,
        value: None,
    };
    let mut has_attributes = false;
    let mut fields = Fields::new(body, range);
    loop {
        let field_start = fields.pos;
        let Some((tag, wire_type)) = fields.next_key()? else {
            break;
        };
        match tag {
            2 => {
                point.start_time_unix_nano = fields.fixed64(wire_type)?;
            }
            3 => {
                point.time_unix_nano = fields.fixed64(wire_type)?;
            }
            4 => {
                let bits = fields.fixed64(wire_type)?;
                point.value = Some(f64::from_bits(bits));
            }
            6 => {
                let bits = fields.fixed64(wire_type)?;
                point.value = Some(bits as i64 as f64);
            }
            5 => {
                let range = fields.message(wire_type)?;
                check_message::<Exemplar>(body.get(range).unwrap_or_default())?;
            }
            7 => {
                let range = fields.message(wire_type)?;
                check_attribute(body, range.clone())?;
                if !has_attributes {
                    has_attributes = true;
                    point.attributes_start = field_start;
                }
                point.attributes_end = range.end;
            }
            8 => fields.varint(wire_type)?,
            _ => fields.skip(wire_type, tag)?,
        }
    }
    Ok(point)
}

/// Reads a number data point of the usual shape, as SDKs encode it: fields in number order, each
/// at most once, with one-byte keys: start time, time, a double or an int value, then attributes
/// of the plain shape ([`is_plain_attribute`]) and possibly flags (one byte). Such a point is
/// valid, and its fields mean what [`number_data_point`]'s loop would read; any other shape is
/// `None` and left to that loop, which takes or refuses it as prost does.
#[inline(always)]
fn plain_number_point(body: &[u8], metric: usize, range: Range<usize>) -> Option<RawPoint> {
    /// A fixed64 field with one-byte key `key` at the front of `rest`, if there is one.
    fn fixed64(rest: &mut &[u8], key: u8) -> Option<u64> {
        let [found, tail @ ..] = *rest else {
            return None;
        };
        if *found != key {
            return None;
        }
        let (value, tail) = tail.split_first_chunk::<8>()?;
        *rest = tail;
        Some(u64::from_le_bytes(*value))
    }
    let bytes = body.get(range.clone())?;
    let mut rest = bytes;
    // NumberDataPoint fields: start_time_unix_nano (2), time_unix_nano (3), as_double (4),
    // as_int (6), all fixed64; attributes (7, length-delimited); flags (8, varint).
    let start_time_unix_nano = fixed64(&mut rest, 0x11).unwrap_or(0);
    let time_unix_nano = fixed64(&mut rest, 0x19).unwrap_or(0);
    let value = match fixed64(&mut rest, 0x21) {
        Some(bits) => Some(f64::from_bits(bits)),
        None => fixed64(&mut rest, 0x31).map(|bits| bits as i64 as f64),
    };
    let attributes_start = range.start + (bytes.len() - rest.len());
    let mut attributes_end = range.start;
    while let [0x3a, len, tail @ ..] = rest {
        if *len >= 0x80 {
            return None;
        }
        let (attribute, tail) = tail.split_at_checked(usize::from(*len))?;
        if !is_plain_attribute(attribute) {
            return None;
        }
        rest = tail;
        attributes_end = range.start + (bytes.len() - rest.len());
    }
    match rest {
        [] | [0x40, 0..0x80] => {}
        _ => return None,
    }
    let has_attributes = attributes_end != range.start;
    Some(RawPoint {
        metric,
        attributes_start: if has_attributes {
            attributes_start
        } else {
            range.start
        },
        attributes_end,
        start_time_unix_nano,
        time_unix_nano,
        value,
    })
}

/// Checks a message the scan does not walk (rare or once per request) by decoding it.
fn check_message<M: Message + Default>(bytes: &[u8]) -> Result<(), Malformed> {
    M::decode(bytes).map(drop).map_err(Malformed::from)
}

/// A checker of one encoded message inside a body.
type CheckFn = fn(&[u8], Range<usize>, u32) -> Result<(), Malformed>;

/// Checks an encoded attribute (a `KeyValue`, at nesting depth 0) without allocating.
///
/// The usual attribute is checked inline in one pass over its bytes ([`is_plain_attribute`]);
/// any other is left to [`check_key_value`], which takes or refuses it as prost does.
#[inline(always)]
fn check_attribute(body: &[u8], range: Range<usize>) -> Result<(), Malformed> {
    match body.get(range.clone()) {
        Some(bytes) if is_plain_attribute(bytes) => Ok(()),
        _ => check_key_value(body, range, 0),
    }
}

/// Whether `bytes` are a valid `KeyValue` of the usual shape: its key, then its value holding
/// nothing, a string, a bool, an int (of one or two bytes) or a double, each field once with a
/// one-byte key and a one-byte length, and UTF-8 strings. Only such a message is taken; `false`
/// says nothing about any other (valid or not), which [`check_key_value`] then checks.
#[inline(always)]
fn is_plain_attribute(bytes: &[u8]) -> bool {
    // KeyValue.key (1, length-delimited).
    let [0x0a, key_len, rest @ ..] = bytes else {
        return false;
    };
    let Some((key, rest)) = rest.split_at_checked(usize::from(*key_len)) else {
        return false;
    };
    // KeyValue.value (2, length-delimited), the last field.
    let [0x12, value_len, value @ ..] = rest else {
        return false;
    };
    if *key_len >= 0x80 || *value_len >= 0x80 || usize::from(*value_len) != value.len() {
        return false;
    }
    let value_ok = match value {
        [] => true,
        // AnyValue.string_value (1, length-delimited).
        [0x0a, len, string @ ..] => {
            *len < 0x80 && usize::from(*len) == string.len() && is_utf8(string)
        }
        // AnyValue.bool_value (2) or int_value (3), varints.
        [0x10 | 0x18, byte] => *byte < 0x80,
        [0x10 | 0x18, low, high] => *low >= 0x80 && *high < 0x80,
        // AnyValue.double_value (4, 64-bit).
        [0x21, _, _, _, _, _, _, _, _] => true,
        _ => false,
    };
    value_ok && is_utf8(key)
}

/// Whether `bytes` are UTF-8, ASCII checked inline.
#[inline(always)]
fn is_utf8(bytes: &[u8]) -> bool {
    is_ascii(bytes) || std::str::from_utf8(bytes).is_ok()
}

/// Checks an encoded `KeyValue` without allocating.
#[inline]
fn check_key_value(body: &[u8], range: Range<usize>, depth: u32) -> Result<(), Malformed> {
    let mut fields = Fields::new(body, range);
    while let Some((tag, wire_type)) = fields.next_key()? {
        match tag {
            1 => fields.string(wire_type)?,
            2 => {
                let range = fields.message(wire_type)?;
                check_any_value(body, range, depth + 1)?;
            }
            3 => fields.varint(wire_type)?,
            _ => fields.skip(wire_type, tag)?,
        }
    }
    Ok(())
}

/// Checks an encoded `AnyValue` without allocating.
///
/// Inlined into its callers for the usual flat values; lists go through [`check_list`].
#[inline]
fn check_any_value(body: &[u8], range: Range<usize>, depth: u32) -> Result<(), Malformed> {
    if depth > MAX_VALUE_DEPTH {
        return Err(Malformed);
    }
    let mut fields = Fields::new(body, range);
    while let Some((tag, wire_type)) = fields.next_key()? {
        match tag {
            1 => fields.string(wire_type)?,
            2 | 3 | 8 => fields.varint(wire_type)?,
            4 => {
                fields.fixed64(wire_type)?;
            }
            5 => {
                let list = fields.message(wire_type)?;
                check_list(body, list, depth, check_any_value)?;
            }
            6 => {
                let list = fields.message(wire_type)?;
                check_list(body, list, depth, check_key_value)?;
            }
            7 => {
                fields.message(wire_type)?;
            }
            _ => fields.skip(wire_type, tag)?,
        }
    }
    Ok(())
}

/// Checks an `ArrayValue` (of `AnyValue`) or a `KeyValueList` (of `KeyValue`), both holding
/// their items in field 1, found in an `AnyValue` at `depth`.
#[inline(never)]
fn check_list(
    body: &[u8],
    list: Range<usize>,
    depth: u32,
    check: CheckFn,
) -> Result<(), Malformed> {
    let mut items = Fields::new(body, list);
    while let Some((tag, wire_type)) = items.next_key()? {
        if tag == 1 {
            let item = items.message(wire_type)?;
            check(body, item, depth + 2)?;
        } else {
            items.skip(wire_type, tag)?;
        }
    }
    Ok(())
}

/// A cursor over the fields of one encoded message inside `body`.
///
/// `buf` is the body cut at the end of the message, so one bounds check of `buf` is also the
/// check against the message's end; positions (`pos`, the ranges handed out) are in the body.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    #[inline]
    fn new(body: &'a [u8], range: Range<usize>) -> Self {
        let end = range.end.min(body.len());
        Self {
            buf: body.get(..end).unwrap_or_default(),
            pos: range.start.min(end),
        }
    }

    #[inline(always)]
    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Runs a prost decoding function on the rest and advances past what it read.
    fn read<T>(
        &mut self,
        f: impl FnOnce(&mut &'a [u8]) -> Result<T, prost::DecodeError>,
    ) -> Result<T, Malformed> {
        let mut rest = self.rest();
        let before = rest.len();
        let value = f(&mut rest)?;
        self.pos += before - rest.len();
        Ok(value)
    }

    /// Reads a varint: one- and two-byte values inline, longer ones with prost's decoder.
    #[inline(always)]
    fn read_varint(&mut self) -> Result<u64, Malformed> {
        match *self.rest() {
            [byte, ..] if byte < 0x80 => {
                self.pos += 1;
                Ok(u64::from(byte))
            }
            [low, high, ..] if high < 0x80 => {
                self.pos += 2;
                Ok(u64::from(low & 0x7f) | u64::from(high) << 7)
            }
            _ => self.read(decode_varint),
        }
    }

    /// Returns the next field key, `None` at the end of the message.
    #[inline(always)]
    fn next_key(&mut self) -> Result<Option<(u32, WireType)>, Malformed> {
        match self.rest().first() {
            None => Ok(None),
            // A one-byte key, as prost's `decode_key` checks it: tag >= 1, a known wire type.
            Some(&byte) if (8..0x80).contains(&byte) => {
                let wire_type = match byte & 0x07 {
                    0 => WireType::Varint,
                    1 => WireType::SixtyFourBit,
                    2 => WireType::LengthDelimited,
                    3 => WireType::StartGroup,
                    4 => WireType::EndGroup,
                    5 => WireType::ThirtyTwoBit,
                    _ => return Err(Malformed),
                };
                self.pos += 1;
                Ok(Some((u32::from(byte >> 3), wire_type)))
            }
            Some(_) => self.read(decode_key).map(Some),
        }
    }

    fn skip(&mut self, wire_type: WireType, tag: u32) -> Result<(), Malformed> {
        self.read(|buf| skip_field(wire_type, tag, buf, DecodeContext::default()))
    }

    #[inline]
    fn varint(&mut self, wire_type: WireType) -> Result<(), Malformed> {
        self.varint_value(wire_type).map(drop)
    }

    #[inline]
    fn varint_value(&mut self, wire_type: WireType) -> Result<u64, Malformed> {
        expect(WireType::Varint, wire_type)?;
        self.read_varint()
    }

    #[inline]
    fn fixed64(&mut self, wire_type: WireType) -> Result<u64, Malformed> {
        expect(WireType::SixtyFourBit, wire_type)?;
        let bytes = *self.rest().first_chunk::<8>().ok_or(Malformed)?;
        self.pos += 8;
        Ok(u64::from_le_bytes(bytes))
    }

    #[inline]
    fn fixed32(&mut self, wire_type: WireType) -> Result<u32, Malformed> {
        expect(WireType::ThirtyTwoBit, wire_type)?;
        let bytes = *self.rest().first_chunk::<4>().ok_or(Malformed)?;
        self.pos += 4;
        Ok(u32::from_le_bytes(bytes))
    }

    /// Reads a length-delimited field and returns where its content is, and the content.
    #[inline(always)]
    fn content(&mut self) -> Result<(Range<usize>, &'a [u8]), Malformed> {
        let len = self.read_varint()?;
        let content = usize::try_from(len)
            .ok()
            .and_then(|len| self.rest().get(..len))
            .ok_or(Malformed)?;
        let start = self.pos;
        self.pos += content.len();
        Ok((start..self.pos, content))
    }

    /// Reads a length-delimited field and returns where its content is.
    #[inline]
    fn length_delimited(&mut self) -> Result<Range<usize>, Malformed> {
        self.content().map(|(range, _)| range)
    }

    #[inline]
    fn message(&mut self, wire_type: WireType) -> Result<Range<usize>, Malformed> {
        expect(WireType::LengthDelimited, wire_type)?;
        self.length_delimited()
    }

    #[inline]
    fn string_range(&mut self, wire_type: WireType) -> Result<Range<usize>, Malformed> {
        expect(WireType::LengthDelimited, wire_type)?;
        let (range, bytes) = self.content()?;
        if is_utf8(bytes) {
            Ok(range)
        } else {
            Err(Malformed)
        }
    }

    #[inline]
    fn string(&mut self, wire_type: WireType) -> Result<(), Malformed> {
        self.string_range(wire_type).map(drop)
    }
}

/// Whether `bytes` are all ASCII. Short strings (attribute keys and values, names) are checked
/// with two overlapping word loads instead of the byte loop `<[u8]>::is_ascii` runs below 8
/// bytes.
#[inline(always)]
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH_64: u64 = 0x8080_8080_8080_8080;
    const HIGH_32: u32 = 0x8080_8080;
    match bytes.len() {
        0..4 => bytes.iter().all(|&b| b < 0x80),
        4..8 => match (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
            (Some(&first), Some(&last)) => {
                (u32::from_ne_bytes(first) | u32::from_ne_bytes(last)) & HIGH_32 == 0
            }
            _ => false,
        },
        8..=16 => match (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
            (Some(&first), Some(&last)) => {
                (u64::from_ne_bytes(first) | u64::from_ne_bytes(last)) & HIGH_64 == 0
            }
            _ => false,
        },
        _ => bytes.is_ascii(),
    }
}

#[inline(always)]
fn expect(expected: WireType, actual: WireType) -> Result<(), Malformed> {
    if expected == actual {
        Ok(())
    } else {
        Err(Malformed)
    }
}

mod logs;

pub use logs::{RawLogs, scan_logs};
pub(crate) use logs::{RecordParts, RecordView};

#[cfg(test)]
mod tests;
