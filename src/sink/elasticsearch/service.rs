//! The client and the bulk call: builds the transport from the config, encodes a batch as NDJSON
//! `create` actions and reads every item of the answer.

use std::collections::HashMap;
use std::time::Duration;

use elasticsearch::Elasticsearch;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::Method;
use elasticsearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use elasticsearch::http::transport::{MultiNodeConnectionPool, TransportBuilder};
use serde::Deserialize;

use super::config::{AuthConfig, ValidElasticsearchConfig};
use super::retry::SendError;

/// Builds the client (reads the CA file; no network I/O).
///
/// # Errors
/// When the CA file cannot be read or parsed, or the transport cannot be built.
pub(crate) fn build_client(config: &ValidElasticsearchConfig) -> Result<Elasticsearch, String> {
    let pool = MultiNodeConnectionPool::round_robin(config.urls.clone(), None);
    let mut builder = TransportBuilder::new(pool)
        .timeout(config.request_timeout)
        .disable_proxy();
    let credentials = match &config.auth {
        AuthConfig::None => None,
        AuthConfig::Basic { username, password } => {
            Some(Credentials::Basic(username.clone(), password.clone()))
        }
        AuthConfig::ApiKey {
            id: Some(id),
            api_key: Some(key),
            ..
        } => Some(Credentials::ApiKey(id.clone(), key.clone())),
        AuthConfig::ApiKey {
            encoded: Some(encoded),
            ..
        } => Some(Credentials::EncodedApiKey(encoded.clone())),
        AuthConfig::ApiKey { .. } => None,
        AuthConfig::Bearer { token } => Some(Credentials::Bearer(token.clone())),
    };
    if let Some(credentials) = credentials {
        builder = builder.auth(credentials);
    }
    if let Some(path) = &config.tls_ca_path {
        let pem =
            std::fs::read(path).map_err(|err| format!("tls_ca_path {}: {err}", path.display()))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|err| format!("tls_ca_path {}: {err}", path.display()))?;
        builder = builder.cert_validation(CertificateValidation::Full(cert));
    }
    let transport = builder
        .build()
        .map_err(|err| format!("building the client: {err}"))?;
    Ok(Elasticsearch::new(transport))
}

/// Appends one `create` action and its source to an NDJSON body.
pub(crate) fn encode_create(out: &mut Vec<u8>, index: &str, id: &str, source: &[u8]) {
    out.extend_from_slice(b"{\"create\":{\"_index\":");
    // Index names and ids are plain strings; serde_json escapes them.
    out.extend_from_slice(serde_json::Value::from(index).to_string().as_bytes());
    out.extend_from_slice(b",\"_id\":");
    out.extend_from_slice(serde_json::Value::from(id).to_string().as_bytes());
    out.extend_from_slice(b"}}\n");
    out.extend_from_slice(source);
    out.push(b'\n');
}

#[derive(Debug, Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<HashMap<String, BulkItem>>,
}

#[derive(Debug, Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// One item's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemResult {
    pub status: u16,
    /// `error.type` (empty on success).
    pub error_type: String,
    /// `error.reason` (empty on success).
    pub reason: String,
}

/// Sends one `_bulk` body of `count` actions and returns one result per action, in order.
///
/// # Errors
/// A transport error, a non-2xx status for the whole request, or an answer that does not list
/// exactly `count` items.
pub(crate) async fn send_bulk(
    client: &Elasticsearch,
    body: Vec<u8>,
    count: usize,
    timeout: Duration,
) -> Result<Vec<ItemResult>, SendError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    let response = client
        .send::<Vec<u8>, ()>(
            Method::Post,
            "/_bulk",
            headers,
            None,
            Some(body),
            Some(timeout),
        )
        .await
        .map_err(|err| SendError::Transport(err.to_string()))?;
    let status = response.status_code().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|err| SendError::Transport(err.to_string()))?;
    if !(200..300).contains(&status) {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned();
        return Err(SendError::Status { status, body: text });
    }
    parse_bulk_response(&bytes, count)
}

pub(crate) fn parse_bulk_response(
    bytes: &[u8],
    count: usize,
) -> Result<Vec<ItemResult>, SendError> {
    let parsed: BulkResponse =
        serde_json::from_slice(bytes).map_err(|err| SendError::BadResponse(err.to_string()))?;
    if parsed.items.len() != count {
        return Err(SendError::BadResponse(format!(
            "{} items answered for {count} sent",
            parsed.items.len()
        )));
    }
    parsed
        .items
        .into_iter()
        .map(|mut item| {
            let (_, item) = item
                .drain()
                .next()
                .ok_or_else(|| SendError::BadResponse("empty item".to_owned()))?;
            let field = |name: &str| {
                item.error
                    .as_ref()
                    .and_then(|e| e[name].as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            Ok(ItemResult {
                status: item.status,
                error_type: field("type"),
                reason: field("reason"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_create_actions_as_ndjson() {
        let mut out = Vec::new();
        encode_create(&mut out, "idx", "a\"b", br#"{"x":1}"#);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"create\":{\"_index\":\"idx\",\"_id\":\"a\\\"b\"}}\n{\"x\":1}\n"
        );
    }

    #[test]
    fn reads_every_item_and_checks_the_count() {
        let body = br#"{"errors":true,"items":[
            {"create":{"_id":"1","status":201}},
            {"create":{"_id":"2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"create":{"_id":"3","status":400,"error":{"type":"mapper_parsing_exception","reason":"bad"}}}]}"#;
        let items = parse_bulk_response(body, 3).unwrap();
        assert_eq!(items[0].status, 201);
        assert_eq!(items[2].error_type, "mapper_parsing_exception");
        assert!(matches!(
            parse_bulk_response(body, 4),
            Err(SendError::BadResponse(_))
        ));
        assert!(parse_bulk_response(b"<html>", 1).is_err());
    }
}
