//! Zero-copy scan of protobuf OTLP trace export requests.
//!
//! Decoding a trace request with prost allocates every string and byte string of every span
//! (trace and span ids, name, each attribute key and value, the attribute list, the status
//! message, the scope strings), although the deriver reads only a few of them, and keeps a span
//! only as counts and latency samples unless it is a batch-job run. The scan walks the request
//! in place with the wire helpers of the metrics scan: it checks every field prost would check,
//! and records per span only where its ids, name and attributes are in the body, its times and
//! its status code. Attributes are looked up by key in the body when the deriver needs them
//! (stage and job attributes), so a span costs no allocation unless it is a job run or a tapped
//! probe span.
//!
//! Events and links are walked like spans (not decoded with prost), so their attribute values
//! are held to the same nesting limit as the span's own and the scan never takes a body that
//! prost, counting its recursion from the request, would refuse. A request where prost would
//! merge repeated occurrences of a singular message (two `resource` fields on one
//! `ResourceSpans`, two `status` fields on one `Span`) is left to prost: [`scan_traces`] answers
//! `Ok(None)`.

use std::ops::Range;

use bytes::Bytes;
#[cfg(test)]
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::encoding::WireType;

use super::attributes::{RawValue, find_attribute};
use super::{Fields, Malformed, check_attribute, decode_resource, walk_request};

/// Field number of `Span.attributes`.
const SPAN_ATTRIBUTES_TAG: u32 = 9;
use crate::otlp::{Rejection, span_rejection};

/// A protobuf `ExportTraceServiceRequest`, checked by a scan and kept as its body.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTraces {
    body: Bytes,
    /// Per `ResourceSpans`, where its resource is in the body, if it has one.
    resources: super::ResourceRanges,
    spans: Vec<RawSpan>,
    /// Spans screening rejects for their trace id, and (with a valid trace id) for their span id.
    invalid_trace_ids: u64,
    invalid_span_ids: u64,
}

/// One span: where its fields are in the body, and the scalar fields the deriver reads. Byte
/// and string fields hold the last occurrence, as prost keeps it.
#[derive(Debug, Clone, PartialEq)]
struct RawSpan {
    resource: usize,
    trace_id: Range<usize>,
    span_id: Range<usize>,
    name: Range<usize>,
    /// From the start of the first `attributes` field to the end of the last one (possibly with
    /// other fields in between; only `attributes` are read).
    attributes: Range<usize>,
    start_time_unix_nano: u64,
    end_time_unix_nano: u64,
    /// `Status.code`, or `None` without a status.
    status_code: Option<i32>,
    /// Rejected by screening: the deriver and the probe tap skip it.
    rejected: bool,
}

/// One span as the deriver and the probe tap see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanView<'a> {
    /// Index of the span's `ResourceSpans` (for [`RawTraces::resource`]).
    pub(crate) resource: usize,
    pub(crate) trace_id: &'a [u8],
    pub(crate) span_id: &'a [u8],
    pub(crate) name: &'a str,
    /// The encoded attribute fields of the span (see [`SpanView::attribute`]).
    attributes: &'a [u8],
    pub(crate) start_time_unix_nano: u64,
    pub(crate) end_time_unix_nano: u64,
    /// `Status.code`, or `None` without a status.
    pub(crate) status_code: Option<i32>,
}

impl RawTraces {
    /// Returns the number of spans, rejected ones included.
    pub(crate) fn span_count(&self) -> u64 {
        self.spans.len() as u64
    }

    /// Returns the spans rejected for their trace id.
    pub(crate) fn invalid_trace_ids(&self) -> u64 {
        self.invalid_trace_ids
    }

    /// Returns the spans rejected for their span id (with a valid trace id).
    pub(crate) fn invalid_span_ids(&self) -> u64 {
        self.invalid_span_ids
    }

    /// Returns the number of `ResourceSpans`.
    pub(crate) fn resource_count(&self) -> usize {
        self.resources.len()
    }

    /// Decodes the resource of `ResourceSpans` number `index` (`None` without one).
    pub(crate) fn resource(&self, index: usize) -> Option<Resource> {
        decode_resource(&self.body, &self.resources, index)
    }

    /// The encoded resource of `ResourceSpans` number `index` (`None` without one).
    pub(crate) fn resource_bytes(&self, index: usize) -> Option<&[u8]> {
        super::resource_bytes(&self.body, &self.resources, index)
    }

    /// Returns the spans screening keeps, in request order.
    pub(crate) fn spans(&self) -> impl Iterator<Item = SpanView<'_>> + '_ {
        self.spans
            .iter()
            .filter(|span| !span.rejected)
            .map(|span| SpanView {
                resource: span.resource,
                trace_id: self.bytes(&span.trace_id),
                span_id: self.bytes(&span.span_id),
                // Checked by the scan; a failure here cannot happen and reads as no name.
                name: std::str::from_utf8(self.bytes(&span.name)).unwrap_or(""),
                attributes: self.bytes(&span.attributes),
                start_time_unix_nano: span.start_time_unix_nano,
                end_time_unix_nano: span.end_time_unix_nano,
                status_code: span.status_code,
            })
    }

    fn bytes(&self, range: &Range<usize>) -> &[u8] {
        self.body.get(range.clone()).unwrap_or(&[])
    }
}

impl<'a> SpanView<'a> {
    /// Returns the value of the first attribute named `key`, as prost would decode it: `None`
    /// when that attribute has no value (later attributes of the same name are not looked at,
    /// like a search of the decoded list).
    pub(crate) fn attribute(&self, key: &str) -> Option<RawValue<'a>> {
        find_attribute(self.attributes, SPAN_ATTRIBUTES_TAG, key)
    }

    /// Decodes the attributes of the span (for tests: the deriver looks attributes up).
    #[cfg(test)]
    pub(crate) fn decoded_attributes(&self) -> Vec<KeyValue> {
        super::attributes::decode_attributes(self.attributes, SPAN_ATTRIBUTES_TAG)
    }
}

/// Scans a protobuf `ExportTraceServiceRequest`.
///
/// Returns `Ok(None)` when the request holds something the scan leaves to prost (see the module
/// documentation).
///
/// # Errors
///
/// Returns [`Malformed`] for a body prost would refuse: decode it with prost then, for an error
/// naming the field.
pub fn scan_traces(body: Bytes) -> Result<Option<RawTraces>, Malformed> {
    let mut scan = Scan {
        body: &body,
        spans: Vec::new(),
        invalid_trace_ids: 0,
        invalid_span_ids: 0,
        unsupported: false,
    };
    let resources = walk_request(&body, |resource, range| scan.span(resource, range))?;
    let Some(resources) = resources.filter(|_| !scan.unsupported) else {
        return Ok(None);
    };
    let Scan {
        spans,
        invalid_trace_ids,
        invalid_span_ids,
        ..
    } = scan;
    Ok(Some(RawTraces {
        body,
        resources,
        spans,
        invalid_trace_ids,
        invalid_span_ids,
    }))
}

struct Scan<'a> {
    body: &'a [u8],
    spans: Vec<RawSpan>,
    invalid_trace_ids: u64,
    invalid_span_ids: u64,
    /// Set when prost must decode the request instead.
    unsupported: bool,
}

impl Scan<'_> {
    fn span(&mut self, resource: usize, range: Range<usize>) -> Result<(), Malformed> {
        let mut span = RawSpan {
            resource,
            trace_id: 0..0,
            span_id: 0..0,
            name: 0..0,
            attributes: range.start..range.start,
            start_time_unix_nano: 0,
            end_time_unix_nano: 0,
            status_code: None,
            rejected: false,
        };
        let body = self.body;
        let mut has_attributes = false;
        let mut fields = Fields::new(body, range);
        loop {
            let field_start = fields.pos;
            let Some((tag, wire_type)) = fields.next_key()? else {
                break;
            };
            match tag {
                1 => span.trace_id = fields.message(wire_type)?,
                2 => span.span_id = fields.message(wire_type)?,
                3 => fields.string(wire_type)?,
                4 => {
                    fields.message(wire_type)?;
                }
                5 => span.name = fields.string_range(wire_type)?,
                // kind (enum) and the dropped counts (uint32).
                6 | 10 | 12 | 14 => fields.varint(wire_type)?,
                7 => span.start_time_unix_nano = fields.fixed64(wire_type)?,
                8 => span.end_time_unix_nano = fields.fixed64(wire_type)?,
                9 => {
                    let range = fields.message(wire_type)?;
                    check_attribute(body, range.clone())?;
                    if !has_attributes {
                        has_attributes = true;
                        span.attributes.start = field_start;
                    }
                    span.attributes.end = range.end;
                }
                11 => {
                    let range = fields.message(wire_type)?;
                    check_event(body, range)?;
                }
                13 => {
                    let range = fields.message(wire_type)?;
                    check_link(body, range)?;
                }
                15 => {
                    let range = fields.message(wire_type)?;
                    if span.status_code.is_some() {
                        // prost would merge the two statuses.
                        self.unsupported = true;
                    }
                    span.status_code = Some(status_code(body, range)?);
                }
                16 => fields.fixed32(wire_type).map(drop)?,
                _ => fields.skip(wire_type, tag)?,
            }
        }
        match span_rejection(&body[span.trace_id.clone()], &body[span.span_id.clone()]) {
            Some(Rejection::InvalidTraceId) => {
                span.rejected = true;
                self.invalid_trace_ids += 1;
            }
            Some(_) => {
                span.rejected = true;
                self.invalid_span_ids += 1;
            }
            None => {}
        }
        self.spans.push(span);
        Ok(())
    }
}

/// Checks an encoded `Status` and returns its code (the last one, as prost keeps it).
fn status_code(body: &[u8], range: Range<usize>) -> Result<i32, Malformed> {
    let mut code = 0;
    let mut fields = Fields::new(body, range);
    while let Some((tag, wire_type)) = fields.next_key()? {
        match tag {
            2 => fields.string(wire_type)?,
            3 => {
                super::expect(WireType::Varint, wire_type)?;
                // prost reads an int32 enum as the low 32 bits of the varint.
                code = fields.read_varint()? as i32;
            }
            _ => fields.skip(wire_type, tag)?,
        }
    }
    Ok(code)
}

/// Checks an encoded `Span.Event` without allocating.
fn check_event(body: &[u8], range: Range<usize>) -> Result<(), Malformed> {
    let mut fields = Fields::new(body, range);
    while let Some((tag, wire_type)) = fields.next_key()? {
        match tag {
            1 => fields.fixed64(wire_type).map(drop)?,
            2 => fields.string(wire_type)?,
            3 => {
                let range = fields.message(wire_type)?;
                check_attribute(body, range)?;
            }
            4 => fields.varint(wire_type)?,
            _ => fields.skip(wire_type, tag)?,
        }
    }
    Ok(())
}

/// Checks an encoded `Span.Link` without allocating.
fn check_link(body: &[u8], range: Range<usize>) -> Result<(), Malformed> {
    let mut fields = Fields::new(body, range);
    while let Some((tag, wire_type)) = fields.next_key()? {
        match tag {
            1 | 2 => {
                fields.message(wire_type)?;
            }
            3 => fields.string(wire_type)?,
            4 => {
                let range = fields.message(wire_type)?;
                check_attribute(body, range)?;
            }
            5 => fields.varint(wire_type)?,
            6 => fields.fixed32(wire_type).map(drop)?,
            _ => fields.skip(wire_type, tag)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
