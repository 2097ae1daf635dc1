//! Zero-copy scan of protobuf OTLP logs export requests.
//!
//! Every log record is counted per stage and severity, but only the records within
//! `signals.max_log_records_per_second` are passed on whole (to the log detector and the store).
//! Decoding a request with prost allocates every string of every record (body, each attribute key
//! and value, ids) before the deriver knows whether it keeps the record; under load most records
//! are only counted and all of that is freed again. The scan checks the request as prost would
//! (the same checks as the metrics scan: wire types, lengths, UTF-8, nested attribute values) and
//! records per log record where it is in the body, its severity and its id rejections. The
//! deriver decodes a record with prost only when it passes the record on, and otherwise reads its
//! stage (the attributes named in `signals.stage_attributes`) and its severity in place.
//!
//! A request where prost would merge repeated occurrences of a singular message above the record
//! (two resources on one `ResourceLogs`) is left to prost: [`scan_logs`] answers `Ok(None)`. Inside
//! a record, prost's own decoding of the record's bytes settles such cases.

use std::ops::Range;

use bytes::Bytes;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;

use super::attributes::{RawValue, any_value, find_attribute, key_value};
use super::{Fields, Malformed, check_any_value, check_attribute, walk_request};

/// Field number of `LogRecord.attributes`.
const ATTRIBUTES_TAG: u32 = 6;

/// A protobuf `ExportLogsServiceRequest`, checked by a scan and kept as its body.
#[derive(Debug, Clone, PartialEq)]
pub struct RawLogs {
    body: Bytes,
    /// Where the resource of each `ResourceLogs` is, if it has one.
    resources: super::ResourceRanges,
    records: Vec<RawLogRecord>,
    /// Records with a trace id that is neither empty nor 16 bytes.
    invalid_trace_id: u64,
    /// Records with a valid trace id and a span id that is neither empty nor 8 bytes.
    invalid_span_id: u64,
}

/// One log record.
#[derive(Debug, Clone, PartialEq)]
struct RawLogRecord {
    resource: usize,
    /// The record's message.
    range: Range<usize>,
    /// From the start of the first `attributes` field to the end of the last one (possibly with
    /// other fields in between; only `attributes` are read).
    attributes: Range<usize>,
    severity_number: i32,
    severity_text: Range<usize>,
    /// The record is rejected for its trace or span id (see [`RawLogs::invalid_trace_id`]).
    rejected: bool,
}

/// One log record as the deriver sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordView<'a> {
    /// Index of the record's `ResourceLogs` (for [`RawLogs::resource`]).
    pub(crate) resource: usize,
    /// `LogRecord.severity_number` (the last one, as prost reads it).
    pub(crate) severity_number: i32,
    /// `LogRecord.severity_text`.
    pub(crate) severity_text: &'a str,
    /// The encoded attribute fields of the record.
    attributes: &'a [u8],
    /// The record's message, for [`RecordView::decode`].
    record: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// Returns the value of the first attribute named `key` (see [`find_attribute`]).
    pub(crate) fn attribute(&self, key: &str) -> Option<RawValue<'a>> {
        find_attribute(self.attributes, ATTRIBUTES_TAG, key)
    }

    /// Decodes the whole record with prost.
    pub(crate) fn decode(&self) -> LogRecord {
        // Checked by the scan; a failure here cannot happen and reads as an empty record.
        LogRecord::decode(self.record).unwrap_or_default()
    }

    /// Reads what a record passed on whole carries, in place, as prost would decode it; `None`
    /// when prost must decode the record instead (a repeated body or attribute value, which
    /// prost merges).
    pub(crate) fn parts(&self) -> Option<RecordParts<'a>> {
        let bytes = self.record;
        let mut parts = RecordParts {
            time_unix_nano: 0,
            observed_time_unix_nano: 0,
            body: None,
            attributes: Vec::new(),
            trace_id: &[],
            span_id: &[],
        };
        let mut has_body = false;
        let mut fields = Fields::new(bytes, 0..bytes.len());
        // Checked by the scan; a failure here cannot happen and leaves the record to prost.
        while let Some((tag, wire_type)) = fields.next_key().ok()? {
            match tag {
                1 => parts.time_unix_nano = fields.fixed64(wire_type).ok()?,
                11 => parts.observed_time_unix_nano = fields.fixed64(wire_type).ok()?,
                5 if has_body => return None,
                5 => {
                    has_body = true;
                    parts.body = any_value(bytes, fields.message(wire_type).ok()?);
                }
                ATTRIBUTES_TAG => {
                    let range = fields.message(wire_type).ok()?;
                    parts.attributes.push(key_value(bytes, range)?);
                }
                9 => parts.trace_id = bytes.get(fields.message(wire_type).ok()?)?,
                10 => parts.span_id = bytes.get(fields.message(wire_type).ok()?)?,
                _ => fields.skip(wire_type, tag).ok()?,
            }
        }
        Some(parts)
    }
}

/// What a log record passed on whole carries besides its severity (see [`RecordView::parts`]).
#[derive(Debug)]
pub(crate) struct RecordParts<'a> {
    pub(crate) time_unix_nano: u64,
    pub(crate) observed_time_unix_nano: u64,
    /// The body's value (`None` without a body or without a value in it).
    pub(crate) body: Option<RawValue<'a>>,
    /// Every attribute in order: key and value (`None` without one).
    pub(crate) attributes: Vec<(&'a str, Option<RawValue<'a>>)>,
    pub(crate) trace_id: &'a [u8],
    pub(crate) span_id: &'a [u8],
}

impl RawLogs {
    /// Returns the number of log records, rejected ones included.
    pub(crate) fn record_count(&self) -> u64 {
        self.records.len() as u64
    }

    /// Returns the records rejected for their trace id.
    pub(crate) fn invalid_trace_id(&self) -> u64 {
        self.invalid_trace_id
    }

    /// Returns the records rejected for their span id.
    pub(crate) fn invalid_span_id(&self) -> u64 {
        self.invalid_span_id
    }

    /// Returns the number of `ResourceLogs`.
    pub(crate) fn resource_count(&self) -> usize {
        self.resources.len()
    }

    /// Decodes the resource of `ResourceLogs` number `index` (`None` without one).
    #[cfg(test)]
    pub(crate) fn resource(
        &self,
        index: usize,
    ) -> Option<opentelemetry_proto::tonic::resource::v1::Resource> {
        super::decode_resource(&self.body, &self.resources, index)
    }

    /// The encoded resource of `ResourceLogs` number `index` (`None` without one).
    pub(crate) fn resource_bytes(&self, index: usize) -> Option<&[u8]> {
        super::resource_bytes(&self.body, &self.resources, index)
    }

    /// Returns the records screening keeps, in request order.
    pub(crate) fn records(&self) -> impl Iterator<Item = RecordView<'_>> + '_ {
        self.records
            .iter()
            .filter(|record| !record.rejected)
            .map(|record| RecordView {
                resource: record.resource,
                severity_number: record.severity_number,
                severity_text: self
                    .body
                    .get(record.severity_text.clone())
                    .and_then(|bytes| std::str::from_utf8(bytes).ok())
                    .unwrap_or(""),
                attributes: self.body.get(record.attributes.clone()).unwrap_or(&[]),
                record: self.body.get(record.range.clone()).unwrap_or(&[]),
            })
    }
}

/// Scans a protobuf `ExportLogsServiceRequest`.
///
/// Returns `Ok(None)` when the request holds something the scan leaves to prost (see the module
/// documentation).
///
/// # Errors
///
/// Returns [`Malformed`] for a body prost would refuse: decode it with prost then.
pub fn scan_logs(body: Bytes) -> Result<Option<RawLogs>, Malformed> {
    let mut scan = Scan {
        body: &body,
        records: Vec::new(),
        invalid_trace_id: 0,
        invalid_span_id: 0,
        unsupported: false,
    };
    let resources = walk_request(&body, |resource, range| scan.log_record(resource, range))?;
    let Some(resources) = resources.filter(|_| !scan.unsupported) else {
        return Ok(None);
    };
    let Scan {
        records,
        invalid_trace_id,
        invalid_span_id,
        ..
    } = scan;
    Ok(Some(RawLogs {
        body,
        resources,
        records,
        invalid_trace_id,
        invalid_span_id,
    }))
}

struct Scan<'a> {
    body: &'a [u8],
    records: Vec<RawLogRecord>,
    invalid_trace_id: u64,
    invalid_span_id: u64,
    /// Set when prost must decode the request instead.
    unsupported: bool,
}

impl Scan<'_> {
    fn log_record(&mut self, resource: usize, range: Range<usize>) -> Result<(), Malformed> {
        let mut record = RawLogRecord {
            resource,
            range: range.clone(),
            attributes: range.start..range.start,
            severity_number: 0,
            severity_text: 0..0,
            rejected: false,
        };
        let (mut trace_id_len, mut span_id_len) = (0, 0);
        let mut has_attributes = false;
        let mut fields = Fields::new(self.body, range);
        loop {
            let field_start = fields.pos;
            let Some((tag, wire_type)) = fields.next_key()? else {
                break;
            };
            match tag {
                1 | 11 => {
                    fields.fixed64(wire_type)?;
                }
                // An enum: prost keeps the low 32 bits of the varint.
                2 => record.severity_number = fields.varint_value(wire_type)? as i32,
                3 => record.severity_text = fields.string_range(wire_type)?,
                5 => {
                    let range = fields.message(wire_type)?;
                    check_any_value(self.body, range, 1)?;
                }
                ATTRIBUTES_TAG => {
                    let range = fields.message(wire_type)?;
                    check_attribute(self.body, range.clone())?;
                    if !has_attributes {
                        has_attributes = true;
                        record.attributes.start = field_start;
                    }
                    record.attributes.end = range.end;
                }
                7 => fields.varint(wire_type)?,
                8 => {
                    fields.fixed32(wire_type)?;
                }
                9 => trace_id_len = fields.message(wire_type)?.len(),
                10 => span_id_len = fields.message(wire_type)?.len(),
                12 => fields.string(wire_type)?,
                _ => fields.skip(wire_type, tag)?,
            }
        }
        // As the intake screens decoded records: the trace id first.
        if trace_id_len != 0 && trace_id_len != 16 {
            self.invalid_trace_id += 1;
            record.rejected = true;
        } else if span_id_len != 0 && span_id_len != 8 {
            self.invalid_span_id += 1;
            record.rejected = true;
        }
        self.records.push(record);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
