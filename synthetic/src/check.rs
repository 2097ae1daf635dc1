//! Simple probes: an HTTP endpoint check (status, body match, latency) and a TLS certificate
//! expiry check (days left on the certificate an HTTPS endpoint presents).

use std::time::Duration;

use tokio::time::Instant;

use crate::config::{ValidHttpCheck, ValidTlsCheck};
use crate::result::ProbeStatus;

/// Outcome of one HTTP check.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheckOutcome {
    /// Up, down or timeout.
    pub status: ProbeStatus,
    /// Time to the full body, ms (when an answer came).
    pub latency_ms: Option<f64>,
    /// HTTP status.
    pub http_status: Option<u16>,
    /// Days left on the certificate (TLS checks).
    pub tls_days_left: Option<f64>,
    /// What went wrong.
    pub error: Option<String>,
}

/// Runs one HTTP check with `timeout` for the whole exchange.
pub async fn http_check(
    client: &reqwest::Client,
    check: &ValidHttpCheck,
    timeout: Duration,
) -> HttpCheckOutcome {
    let started = Instant::now();
    let mut request = client
        .request(check.method.clone(), &check.url)
        .timeout(timeout);
    for (name, value) in &check.headers {
        request = request.header(name, value);
    }
    let exchange = async {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        Ok::<_, reqwest::Error>((status, body))
    };
    let answer = tokio::time::timeout(timeout, exchange).await;
    let latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    match answer {
        Err(_) => timed_out(timeout),
        Ok(Err(err)) if err.is_timeout() => timed_out(timeout),
        Ok(Err(err)) => HttpCheckOutcome {
            status: ProbeStatus::Down,
            latency_ms: None,
            http_status: None,
            tls_days_left: None,
            error: Some(format!("request failed: {err}")),
        },
        Ok(Ok((status, body))) => {
            let status_ok = if check.expect_status.is_empty() {
                (200..300).contains(&status)
            } else {
                check.expect_status.contains(&status)
            };
            let error = if !status_ok {
                Some(format!("unexpected status {status}"))
            } else if let Some(pattern) = &check.body_matches
                && !pattern.is_match(&body)
            {
                Some(format!("body does not match `{}`", pattern.as_str()))
            } else {
                None
            };
            HttpCheckOutcome {
                status: if error.is_none() {
                    ProbeStatus::Up
                } else {
                    ProbeStatus::Down
                },
                latency_ms,
                http_status: Some(status),
                tls_days_left: None,
                error,
            }
        }
    }
}

fn timed_out(timeout: Duration) -> HttpCheckOutcome {
    HttpCheckOutcome {
        status: ProbeStatus::Timeout,
        latency_ms: None,
        http_status: None,
        tls_days_left: None,
        error: Some(format!(
            "no answer within {}",
            humantime_serde::re::humantime::format_duration(timeout)
        )),
    }
}

/// Builds the client of TLS checks: it reads the peer certificate and accepts any certificate
/// (the check counts days left even on an expired or self-signed one).
///
/// # Errors
/// When the TLS backend cannot be initialised.
pub fn tls_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .tls_info(true)
        .danger_accept_invalid_certs(true)
        .build()
}

/// Runs one TLS check at `now_ms` (Unix ms): up when the certificate has at least
/// `min_days_left` days left.
pub async fn tls_check(
    client: &reqwest::Client,
    check: &ValidTlsCheck,
    timeout: Duration,
    now_ms: i64,
) -> HttpCheckOutcome {
    let started = Instant::now();
    let answer = tokio::time::timeout(timeout, client.get(&check.url).send()).await;
    let latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    let response = match answer {
        Err(_) => return timed_out(timeout),
        Ok(Err(err)) if err.is_timeout() => return timed_out(timeout),
        Ok(Err(err)) => {
            return HttpCheckOutcome {
                status: ProbeStatus::Down,
                latency_ms: None,
                http_status: None,
                tls_days_left: None,
                error: Some(format!("request failed: {err}")),
            };
        }
        Ok(Ok(response)) => response,
    };
    let http_status = Some(response.status().as_u16());
    let not_after = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(reqwest::tls::TlsInfo::peer_certificate)
        .and_then(certificate_not_after_ms);
    let Some(not_after) = not_after else {
        return HttpCheckOutcome {
            status: ProbeStatus::Down,
            latency_ms,
            http_status,
            tls_days_left: None,
            error: Some("no readable peer certificate".to_owned()),
        };
    };
    let days_left = (not_after - now_ms) as f64 / 86_400_000.0;
    let error = (days_left < check.min_days_left).then(|| {
        format!(
            "certificate expires in {days_left:.1} days (below {})",
            check.min_days_left
        )
    });
    HttpCheckOutcome {
        status: if error.is_none() {
            ProbeStatus::Up
        } else {
            ProbeStatus::Down
        },
        latency_ms,
        http_status,
        tls_days_left: Some(days_left),
        error,
    }
}

/// Reads one DER element: returns (tag, contents, rest).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0_usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Returns the `notAfter` time of an X.509 certificate (DER), Unix ms.
pub fn certificate_not_after_ms(der: &[u8]) -> Option<i64> {
    const SEQUENCE: u8 = 0x30;
    let (tag, certificate, _) = der_element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = der_element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // [0] version (optional), serialNumber, signature, issuer, then validity.
    let (tag, _, after) = der_element(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..3 {
        rest = der_element(rest)?.2;
    }
    let (tag, validity, _) = der_element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let not_before_rest = der_element(validity)?.2;
    let (tag, not_after, _) = der_element(not_before_rest)?;
    parse_asn1_time(tag, std::str::from_utf8(not_after).ok()?)
}

/// Parses UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, 0x18).
fn parse_asn1_time(tag: u8, text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if text.len() == 12 => {
            let yy: i32 = text[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        0x18 if text.len() == 14 => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| rest.get(i..i + 2)?.parse::<u32>().ok();
    let date = chrono::NaiveDate::from_ymd_opt(year, field(0)?, field(2)?)?;
    let time = date.and_hms_opt(field(4)?, field(6)?, field(8)?)?;
    Some(time.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asn1_times_parse() {
        // 2030-01-02T03:04:05Z
        let want = 1_893_553_445_000;
        assert_eq!(parse_asn1_time(0x17, "300102030405Z"), Some(want));
        assert_eq!(parse_asn1_time(0x18, "20300102030405Z"), Some(want));
        assert_eq!(
            parse_asn1_time(0x17, "991231235959Z"),
            Some(946_684_799_000)
        );
        assert_eq!(parse_asn1_time(0x17, "300102030405"), None);
        assert_eq!(parse_asn1_time(0x18, "20301302030405Z"), None);
    }

    #[test]
    fn not_after_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2025, 6, 1);
        params.not_after = rcgen::date_time_ymd(2031, 3, 4);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        // 2031-03-04T00:00:00Z
        assert_eq!(
            certificate_not_after_ms(cert.der()),
            Some(1_930_348_800_000)
        );
        assert_eq!(certificate_not_after_ms(&cert.der()[..40]), None);
        assert_eq!(certificate_not_after_ms(b"not a certificate"), None);
    }

    /// Serves HTTPS on 127.0.0.1 with a self-signed certificate valid until `not_after`.
    async fn tls_server(not_after: chrono::NaiveDate) -> std::net::SocketAddr {
        use chrono::Datelike as _;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(
            not_after.year(),
            u8::try_from(not_after.month()).unwrap(),
            u8::try_from(not_after.day()).unwrap(),
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0_u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn tls_check_counts_days_left_against_the_threshold() {
        let now = chrono::Utc::now();
        let not_after = (now + chrono::Duration::days(10)).date_naive();
        let addr = tls_server(not_after).await;
        let client = tls_client(Duration::from_secs(5)).unwrap();
        let check = |min_days_left| ValidTlsCheck {
            url: format!("https://localhost:{}/", addr.port()),
            min_days_left,
        };
        let now_ms = now.timestamp_millis();
        let outcome = tls_check(&client, &check(14.0), Duration::from_secs(5), now_ms).await;
        assert_eq!(outcome.status, ProbeStatus::Down, "{outcome:?}");
        let days = outcome.tls_days_left.unwrap();
        // The certificate ends at midnight UTC of the 10th day from now.
        assert!((9.0..=10.0).contains(&days), "{outcome:?}");
        assert_eq!(outcome.http_status, Some(200));
        // The message rounds the days it carries (9.99 and more read "10.0").
        assert_eq!(
            outcome.error,
            Some(format!("certificate expires in {days:.1} days (below 14)")),
            "{outcome:?}"
        );
        let outcome = tls_check(&client, &check(5.0), Duration::from_secs(5), now_ms).await;
        assert_eq!(outcome.status, ProbeStatus::Up, "{outcome:?}");
        assert_eq!(outcome.error, None);
    }
}
