//! Attribute lookups in the raw bytes of a scanned item, as a search of the decoded attribute
//! list would find them, without decoding the other attributes.

use std::ops::Range;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use prost::encoding::WireType;

use super::Fields;

/// An attribute value found in the body: a plain string in place, anything else decoded by
/// prost (rare for the attributes the deriver looks up).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawValue<'a> {
    Str(&'a str),
    Decoded(any_value::Value),
}

/// Returns the value of the first attribute named `key` among the `attributes` fields (field
/// number `tag`) of an encoded item, as prost would decode it: `None` when that attribute has no
/// value (later attributes of the same name are not looked at, like a search of the decoded
/// list).
pub(crate) fn find_attribute<'a>(
    attributes: &'a [u8],
    tag: u32,
    key: &str,
) -> Option<RawValue<'a>> {
    let bytes = attributes;
    let mut fields = Fields::new(bytes, 0..bytes.len());
    // Checked by the scan; a failure here cannot happen and ends the search.
    while let Ok(Some((field, wire_type))) = fields.next_key() {
        if field != tag {
            fields.skip(wire_type, field).ok()?;
            continue;
        }
        let range = fields.message(wire_type).ok()?;
        if let Some(value) = key_value_if(bytes, range, key) {
            return value;
        }
    }
    None
}

/// Returns `Some(value)` when the encoded `KeyValue` in `range` has key `key` (the last `key`
/// field, as prost keeps it), `None` otherwise.
fn key_value_if<'a>(
    body: &'a [u8],
    range: Range<usize>,
    key: &str,
) -> Option<Option<RawValue<'a>>> {
    let mut name: &[u8] = &[];
    let mut values = 0;
    let mut value = 0..0;
    let mut fields = Fields::new(body, range.clone());
    while let Ok(Some((tag, wire_type))) = fields.next_key() {
        match tag {
            1 => name = body.get(fields.message(wire_type).ok()?)?,
            2 => {
                values += 1;
                value = fields.message(wire_type).ok()?;
            }
            _ => fields.skip(wire_type, tag).ok()?,
        }
    }
    if name != key.as_bytes() {
        return None;
    }
    Some(match values {
        0 => None,
        // prost merges repeated values: let it.
        1 => any_value(body, value),
        _ => KeyValue::decode(body.get(range)?)
            .ok()?
            .value
            .and_then(|v| v.value)
            .map(RawValue::Decoded),
    })
}

/// Reads the encoded `KeyValue` in `range` as prost would decode it: its key (the last `key`
/// field) and value (`None` without one). `None` for a `KeyValue` with more than one `value`
/// field, which prost merges: decode it with prost then.
pub(crate) fn key_value(body: &[u8], range: Range<usize>) -> Option<(&str, Option<RawValue<'_>>)> {
    let mut name: &[u8] = &[];
    let mut value = None;
    let mut fields = Fields::new(body, range);
    while let Ok(Some((tag, wire_type))) = fields.next_key() {
        match tag {
            1 => name = body.get(fields.message(wire_type).ok()?)?,
            2 if value.is_none() => value = Some(fields.message(wire_type).ok()?),
            2 => return None,
            _ => fields.skip(wire_type, tag).ok()?,
        }
    }
    let name = std::str::from_utf8(name).ok()?;
    Some((name, value.and_then(|range| any_value(body, range))))
}

/// Reads an encoded `AnyValue`: a lone `string_value` in place, anything else with prost.
pub(crate) fn any_value(body: &[u8], range: Range<usize>) -> Option<RawValue<'_>> {
    let mut fields = Fields::new(body, range.clone());
    match fields.next_key() {
        Ok(None) => return None,
        Ok(Some((1, WireType::LengthDelimited))) => {
            if let Ok(string) = fields.length_delimited()
                && fields.next_key() == Ok(None)
            {
                return std::str::from_utf8(body.get(string)?)
                    .ok()
                    .map(RawValue::Str);
            }
        }
        _ => {}
    }
    AnyValue::decode(body.get(range)?)
        .ok()?
        .value
        .map(RawValue::Decoded)
}

/// Decodes every attribute among the `attributes` fields (field number `tag`) of an encoded
/// item, in order.
pub(crate) fn decode_attributes(attributes: &[u8], tag: u32) -> Vec<KeyValue> {
    let bytes = attributes;
    let mut decoded = Vec::new();
    let mut fields = Fields::new(bytes, 0..bytes.len());
    // Checked by the scan; a failure here cannot happen and ends the list.
    while let Ok(Some((field, wire_type))) = fields.next_key() {
        if field == tag && wire_type == WireType::LengthDelimited {
            let Ok(range) = fields.length_delimited() else {
                break;
            };
            if let Some(Ok(kv)) = bytes.get(range).map(KeyValue::decode) {
                decoded.push(kv);
            }
        } else if fields.skip(wire_type, field).is_err() {
            break;
        }
    }
    decoded
}
