//! A minimal Kafka protocol client for the two requests librdkafka cannot batch across groups:
//! FindCoordinator (version 4, many groups per request) and OffsetFetch (version 8, many
//! groups per request, `topics = null` for every committed partition of each group).
//!
//! librdkafka reads committed offsets only for the `group.id` of its own client, which would
//! cost one client (threads, connections, several requests) per group and tick. With these two
//! requests a tick costs one FindCoordinator plus one OffsetFetch per coordinator broker,
//! whatever the number of groups and partitions. Plaintext listeners only; other security
//! settings use the per-group librdkafka path (see `OffsetFetchMode`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const API_OFFSET_FETCH: i16 = 9;
const API_FIND_COORDINATOR: i16 = 10;
const API_VERSIONS: i16 = 18;
const OFFSET_FETCH_VERSION: i16 = 8;
const FIND_COORDINATOR_VERSION: i16 = 4;
/// Largest response accepted, bytes.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
const CLIENT_ID: &str = "pipewarden-kafka-lag";

/// A protocol-level failure (I/O, timeout, malformed or unexpected response).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct WireError(pub(crate) String);

impl From<std::io::Error> for WireError {
    fn from(err: std::io::Error) -> Self {
        Self(err.to_string())
    }
}

/// Where a group's coordinator is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Coordinator {
    pub(crate) node_id: i32,
    pub(crate) address: String,
}

/// Committed offsets of one group: `(topic, partition) -> (offset or -1, error code)`.
pub(crate) type GroupOffsets = BTreeMap<(String, i32), (i64, i16)>;

/// One connection per broker address, opened on demand and dropped on any error.
#[derive(Debug, Default)]
pub(crate) struct WireClient {
    connections: HashMap<String, Connection>,
    correlation_id: i32,
}

#[derive(Debug)]
struct Connection {
    stream: TcpStream,
}

impl WireClient {
    /// Finds the coordinator of each group with one request sent to `address`.
    ///
    /// Returns, per group, the coordinator or the broker's error code.
    pub(crate) async fn find_coordinators(
        &mut self,
        address: &str,
        groups: &[String],
        timeout: Duration,
    ) -> Result<HashMap<String, Result<Coordinator, i16>>, WireError> {
        let body = encode_find_coordinator(groups);
        let response = self
            .round_trip(
                address,
                API_FIND_COORDINATOR,
                FIND_COORDINATOR_VERSION,
                &body,
                timeout,
            )
            .await?;
        decode_find_coordinator(&response)
    }

    /// Fetches the committed offsets of every partition of `groups` with one request to their
    /// coordinator at `address`.
    ///
    /// Returns, per group, its offsets or the group-level error code.
    pub(crate) async fn offset_fetch(
        &mut self,
        address: &str,
        groups: &[String],
        timeout: Duration,
    ) -> Result<HashMap<String, Result<GroupOffsets, i16>>, WireError> {
        let body = encode_offset_fetch(groups);
        let response = self
            .round_trip(
                address,
                API_OFFSET_FETCH,
                OFFSET_FETCH_VERSION,
                &body,
                timeout,
            )
            .await?;
        decode_offset_fetch(&response)
    }

    /// Drops every connection (after a failed poll, so the next one reconnects).
    pub(crate) fn reset(&mut self) {
        self.connections.clear();
    }

    async fn round_trip(
        &mut self,
        address: &str,
        api_key: i16,
        version: i16,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, WireError> {
        let result = tokio::time::timeout(
            timeout,
            self.round_trip_inner(address, api_key, version, body),
        )
        .await
        .unwrap_or_else(|_| {
            Err(WireError(format!(
                "no answer from {address} within {timeout:?}"
            )))
        });
        if result.is_err() {
            self.connections.remove(address);
        }
        result
    }

    async fn round_trip_inner(
        &mut self,
        address: &str,
        api_key: i16,
        version: i16,
        body: &[u8],
    ) -> Result<Vec<u8>, WireError> {
        if !self.connections.contains_key(address) {
            let stream = TcpStream::connect(address)
                .await
                .map_err(|err| WireError(format!("cannot connect to {address}: {err}")))?;
            stream.set_nodelay(true)?;
            let mut connection = Connection { stream };
            self.correlation_id = self.correlation_id.wrapping_add(1);
            let versions = connection
                .request(self.correlation_id, API_VERSIONS, 0, false, &[])
                .await?;
            check_versions(&versions)?;
            self.connections.insert(address.to_owned(), connection);
        }
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let connection = self
            .connections
            .get_mut(address)
            .ok_or_else(|| WireError(format!("no connection to {address}")))?;
        connection
            .request(correlation_id, api_key, version, true, body)
            .await
    }
}

impl Connection {
    /// Sends one request and returns the response body after its header.
    async fn request(
        &mut self,
        correlation_id: i32,
        api_key: i16,
        version: i16,
        flexible: bool,
        body: &[u8],
    ) -> Result<Vec<u8>, WireError> {
        let mut message = Vec::with_capacity(body.len() + 32);
        message.extend_from_slice(&api_key.to_be_bytes());
        message.extend_from_slice(&version.to_be_bytes());
        message.extend_from_slice(&correlation_id.to_be_bytes());
        // The request header's client id is a classic (non-compact) nullable string.
        put_i16(&mut message, CLIENT_ID.len() as i16);
        message.extend_from_slice(CLIENT_ID.as_bytes());
        if flexible {
            message.push(0); // header tagged fields
        }
        message.extend_from_slice(body);
        let length =
            i32::try_from(message.len()).map_err(|_| WireError("request too large".to_owned()))?;
        self.stream.write_all(&length.to_be_bytes()).await?;
        self.stream.write_all(&message).await?;
        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length).await?;
        let length = usize::try_from(i32::from_be_bytes(length))
            .map_err(|_| WireError("negative response length".to_owned()))?;
        if length > MAX_RESPONSE_BYTES {
            return Err(WireError(format!(
                "response of {length} bytes is too large"
            )));
        }
        let mut response = vec![0u8; length];
        self.stream.read_exact(&mut response).await?;
        let mut reader = Reader::new(&response);
        let answered = reader.i32()?;
        if answered != correlation_id {
            return Err(WireError(format!(
                "response to request {answered} while waiting for {correlation_id}"
            )));
        }
        // ApiVersions always answers with header version 0, flexible requests with version 1.
        if flexible && api_key != API_VERSIONS {
            reader.skip_tagged_fields()?;
        }
        Ok(reader.rest().to_vec())
    }
}

fn check_versions(response: &[u8]) -> Result<(), WireError> {
    let mut reader = Reader::new(response);
    let error = reader.i16()?;
    if error != 0 {
        return Err(WireError(format!(
            "ApiVersions failed with error code {error}"
        )));
    }
    let count = reader.i32()?;
    let mut offset_fetch = None;
    let mut find_coordinator = None;
    for _ in 0..count.max(0) {
        let key = reader.i16()?;
        let _min = reader.i16()?;
        let max = reader.i16()?;
        match key {
            API_OFFSET_FETCH => offset_fetch = Some(max),
            API_FIND_COORDINATOR => find_coordinator = Some(max),
            _ => {}
        }
    }
    if offset_fetch.unwrap_or(-1) < OFFSET_FETCH_VERSION
        || find_coordinator.unwrap_or(-1) < FIND_COORDINATOR_VERSION
    {
        return Err(WireError(
            "broker lacks OffsetFetch v8 / FindCoordinator v4 (Kafka 3.0+): set \
             offset_fetch = \"per_group\""
                .to_owned(),
        ));
    }
    Ok(())
}

fn encode_find_coordinator(groups: &[String]) -> Vec<u8> {
    let mut body = Vec::with_capacity(groups.len() * 16 + 8);
    body.push(0); // key_type: group
    put_uvarint(&mut body, groups.len() as u64 + 1);
    for group in groups {
        put_compact_string(&mut body, group);
    }
    body.push(0); // tagged fields
    body
}

fn decode_find_coordinator(
    response: &[u8],
) -> Result<HashMap<String, Result<Coordinator, i16>>, WireError> {
    let mut reader = Reader::new(response);
    let _throttle_ms = reader.i32()?;
    let count = reader.compact_len()?;
    let mut coordinators = HashMap::with_capacity(count);
    for _ in 0..count {
        let key = reader.compact_string()?;
        let node_id = reader.i32()?;
        let host = reader.compact_string()?;
        let port = reader.i32()?;
        let error = reader.i16()?;
        let _message = reader.compact_nullable_string()?;
        reader.skip_tagged_fields()?;
        let result = if error == 0 {
            Ok(Coordinator {
                node_id,
                address: format_address(&host, port),
            })
        } else {
            Err(error)
        };
        coordinators.insert(key, result);
    }
    reader.skip_tagged_fields()?;
    Ok(coordinators)
}

/// Formats `host:port`, bracketing IPv6 literals.
pub(crate) fn format_address(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn encode_offset_fetch(groups: &[String]) -> Vec<u8> {
    let mut body = Vec::with_capacity(groups.len() * 16 + 8);
    put_uvarint(&mut body, groups.len() as u64 + 1);
    for group in groups {
        put_compact_string(&mut body, group);
        body.push(0); // topics: null = every committed partition
        body.push(0); // tagged fields
    }
    body.push(0); // require_stable: false
    body.push(0); // tagged fields
    body
}

fn decode_offset_fetch(
    response: &[u8],
) -> Result<HashMap<String, Result<GroupOffsets, i16>>, WireError> {
    let mut reader = Reader::new(response);
    let _throttle_ms = reader.i32()?;
    let groups = reader.compact_len()?;
    let mut result = HashMap::with_capacity(groups);
    for _ in 0..groups {
        let group = reader.compact_string()?;
        let topics = reader.compact_len()?;
        let mut offsets = GroupOffsets::new();
        for _ in 0..topics {
            let topic = reader.compact_string()?;
            let partitions = reader.compact_len()?;
            for _ in 0..partitions {
                let partition = reader.i32()?;
                let committed = reader.i64()?;
                let _leader_epoch = reader.i32()?;
                let _metadata = reader.compact_nullable_string()?;
                let error = reader.i16()?;
                reader.skip_tagged_fields()?;
                offsets.insert((topic.clone(), partition), (committed, error));
            }
            reader.skip_tagged_fields()?;
        }
        let error = reader.i16()?;
        reader.skip_tagged_fields()?;
        result.insert(group, if error == 0 { Ok(offsets) } else { Err(error) });
    }
    reader.skip_tagged_fields()?;
    Ok(result)
}

fn put_i16(out: &mut Vec<u8>, value: i16) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_compact_string(out: &mut Vec<u8>, value: &str) {
    put_uvarint(out, value.len() as u64 + 1);
    out.extend_from_slice(value.as_bytes());
}

/// Reads big-endian protocol fields from a response body.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .position
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| WireError("truncated response".to_owned()))?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.position..]
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, WireError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, WireError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn uvarint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError("varint too long".to_owned()))
    }

    /// Length of a compact array or string (`None` for null).
    fn compact_nullable_len(&mut self) -> Result<Option<usize>, WireError> {
        let raw = self.uvarint()?;
        if raw == 0 {
            return Ok(None);
        }
        let len = usize::try_from(raw - 1).map_err(|_| WireError("length overflow".to_owned()))?;
        if len > self.bytes.len() - self.position {
            return Err(WireError("length beyond the response".to_owned()));
        }
        Ok(Some(len))
    }

    fn compact_len(&mut self) -> Result<usize, WireError> {
        Ok(self.compact_nullable_len()?.unwrap_or(0))
    }

    fn compact_nullable_string(&mut self) -> Result<Option<String>, WireError> {
        match self.compact_nullable_len()? {
            None => Ok(None),
            Some(len) => {
                let bytes = self.take(len)?;
                String::from_utf8(bytes.to_vec())
                    .map(Some)
                    .map_err(|_| WireError("string is not UTF-8".to_owned()))
            }
        }
    }

    fn compact_string(&mut self) -> Result<String, WireError> {
        self.compact_nullable_string()
            .map(Option::unwrap_or_default)
    }

    fn skip_tagged_fields(&mut self) -> Result<(), WireError> {
        let count = self.uvarint()?;
        for _ in 0..count {
            let _tag = self.uvarint()?;
            let size = usize::try_from(self.uvarint()?)
                .map_err(|_| WireError("length overflow".to_owned()))?;
            self.take(size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_find_coordinator_v4() {
        let body = encode_find_coordinator(&["g1".to_owned(), "nope".to_owned()]);
        assert_eq!(body, b"\x00\x03\x03g1\x05nope\x00");
    }

    #[test]
    fn encodes_offset_fetch_v8_with_null_topics() {
        let body = encode_offset_fetch(&["g1".to_owned()]);
        assert_eq!(body, b"\x02\x03g1\x00\x00\x00\x00");
    }

    #[test]
    fn decodes_a_find_coordinator_response() {
        // As answered by a broker (after the response header).
        let response =
            b"\x00\x00\x00\x00\x03\x03g1\x00\x00\x00o\n127.0.0.1\x00\x00J\x94\x00\x00\x00\x00\
            \x05nope\x00\x00\x00o\n127.0.0.1\x00\x00J\x94\x00\x0f\x00\x00\x00";
        let decoded = decode_find_coordinator(response).unwrap();
        assert_eq!(
            decoded["g1"],
            Ok(Coordinator {
                node_id: 111,
                address: "127.0.0.1:19092".to_owned()
            })
        );
        assert_eq!(decoded["nope"], Err(15));
    }

    #[test]
    fn decodes_an_offset_fetch_response() {
        let response = b"\x00\x00\x00\x00\x03\x03g1\x02\x03t1\x03\
            \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\xff\xff\xff\xff\x00\x00\x00\x00\
            \x00\x00\x00\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\
            \x00\x00\x00\x00\x05nope\x01\x00\x10\x00\x00";
        let decoded = decode_offset_fetch(response).unwrap();
        let g1 = decoded["g1"].as_ref().unwrap();
        assert_eq!(g1[&("t1".to_owned(), 0)], (4, 0));
        assert_eq!(g1[&("t1".to_owned(), 1)], (-1, 0));
        assert_eq!(decoded["nope"], Err(16));
    }

    #[test]
    fn truncated_responses_are_errors_not_panics() {
        let response = b"\x00\x00\x00\x00\x03\x03g1\x02\x03t1\x03\x00\x00";
        assert!(decode_offset_fetch(response).is_err());
        assert!(decode_find_coordinator(b"\x00\x00\x00\x00\x7f").is_err());
        let mut reader = Reader::new(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff");
        assert!(reader.uvarint().is_err());
    }

    #[test]
    fn uvarint_round_trip() {
        for value in [0u64, 1, 127, 128, 300, 16_384, u64::from(u32::MAX)] {
            let mut out = Vec::new();
            put_uvarint(&mut out, value);
            assert_eq!(Reader::new(&out).uvarint().unwrap(), value);
        }
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(format_address("::1", 9092), "[::1]:9092");
        assert_eq!(format_address("kafka", 9092), "kafka:9092");
    }
}
