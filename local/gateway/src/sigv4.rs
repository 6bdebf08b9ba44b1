//! Verification of AWS Signature Version 4, as API Gateway does for `AWS_IAM` methods.
//!
//! The local stack publishes one access key and secret (in `.local/stack.json`); a request must be
//! signed with them for service `execute-api`. Refusals carry API Gateway's status and message:
//! no signature is `403 Missing Authentication Token`, an unknown key `403 The security token
//! included in the request is invalid.`, a wrong signature `403 The request signature we
//! calculated does not match...`, and a date more than five minutes off `403 Signature expired`.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, Method};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How far a request's date may be from now (API Gateway's window).
pub const MAX_SKEW_SECONDS: i64 = 300;

/// The credentials requests must be signed with.
#[derive(Clone)]
pub struct SigningKey {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Why a request was refused (all `403` in API Gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header.
    Missing,
    /// An access key other than the published one.
    UnknownKey,
    /// Malformed header, wrong scope or service.
    Malformed(String),
    /// `X-Amz-Date` too far from now.
    Expired {
        /// The request's date.
        date: String,
        /// Now, as API Gateway prints it.
        now: i64,
    },
    /// The signature does not match.
    Mismatch,
}

impl Refusal {
    /// API Gateway's message for this refusal.
    pub fn message(&self) -> String {
        match self {
            Refusal::Missing => "Missing Authentication Token".into(),
            Refusal::UnknownKey => "The security token included in the request is invalid.".into(),
            Refusal::Malformed(why) => format!("Authorization header requires {why}"),
            Refusal::Expired { date, now } => format!(
                "Signature expired: {date} is now earlier than {} ({} - 5 min.)",
                format_amz_date(now - MAX_SKEW_SECONDS),
                format_amz_date(*now)
            ),
            Refusal::Mismatch => "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".into(),
        }
    }
}

/// One request, as signing sees it.
#[derive(Debug)]
pub struct SignedRequest<'a> {
    /// Method.
    pub method: &'a Method,
    /// Path as received (percent-encoded).
    pub path: &'a str,
    /// Raw query string.
    pub query: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// Body bytes.
    pub body: &'a [u8],
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Percent-encodes per SigV4 (RFC 3986 unreserved characters kept).
fn uri_encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Read as bytes: a `%` followed by a multi-byte character must not split that character.
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
        {
            out.push(high << 4 | low);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Seconds since the epoch of an ISO 8601 basic date-time (`20261122T061500Z`).
pub fn parse_amz_date(date: &str) -> Option<i64> {
    if date.len() != 16 || !date.ends_with('Z') || date.as_bytes()[8] != b'T' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| date.get(r)?.parse::<i64>().ok();
    let (y, m, d, hh, mm, ss) = (
        n(0..4)?,
        n(4..6)?,
        n(6..8)?,
        n(9..11)?,
        n(11..13)?,
        n(13..15)?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil calendar (Howard Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Formats epoch seconds as an ISO 8601 basic date-time (`20261122T061500Z`).
pub fn format_amz_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl SigningKey {
    /// Verifies `request` for `region` and service `execute-api`.
    pub fn verify(&self, request: &SignedRequest<'_>, region: &str) -> Result<(), Refusal> {
        let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
        let authorization = header("authorization").ok_or(Refusal::Missing)?;
        let rest = authorization
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .ok_or_else(|| Refusal::Malformed("the AWS4-HMAC-SHA256 algorithm".into()))?;
        let mut credential = None;
        let mut signed_headers = None;
        let mut signature = None;
        for part in rest.split(',') {
            let (k, v) = part.trim().split_once('=').unwrap_or(("", ""));
            match k {
                "Credential" => credential = Some(v),
                "SignedHeaders" => signed_headers = Some(v),
                "Signature" => signature = Some(v),
                _ => {}
            }
        }
        let (credential, signed_headers, signature) = match (credential, signed_headers, signature)
        {
            (Some(c), Some(h), Some(s)) => (c, h, s),
            _ => {
                return Err(Refusal::Malformed(
                    "'Credential', 'SignedHeaders' and 'Signature'".into(),
                ));
            }
        };
        let mut scope = credential.splitn(5, '/');
        let (key, day, scope_region, service, terminator) = (
            scope.next(),
            scope.next(),
            scope.next(),
            scope.next(),
            scope.next(),
        );
        if key != Some(self.access_key_id.as_str()) {
            return Err(Refusal::UnknownKey);
        }
        let (Some(day), Some(scope_region), Some("execute-api"), Some("aws4_request")) =
            (day, scope_region, service, terminator)
        else {
            return Err(Refusal::Malformed(
                "a credential scope for service execute-api".into(),
            ));
        };
        if scope_region != region {
            return Err(Refusal::Malformed(format!(
                "a credential scope for region {region}"
            )));
        }
        let amz_date = header("x-amz-date")
            .ok_or_else(|| Refusal::Malformed("an X-Amz-Date header".into()))?;
        let when = parse_amz_date(amz_date)
            .ok_or_else(|| Refusal::Malformed("a valid X-Amz-Date".into()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        if (now - when).abs() > MAX_SKEW_SECONDS {
            return Err(Refusal::Expired {
                date: amz_date.to_owned(),
                now,
            });
        }
        if !amz_date.starts_with(day) {
            return Err(Refusal::Malformed(
                "a credential scope date matching X-Amz-Date".into(),
            ));
        }
        let names: Vec<&str> = signed_headers.split(';').collect();
        if !names.contains(&"host") {
            return Err(Refusal::Malformed("the host header to be signed".into()));
        }
        let mut canonical_headers = String::new();
        for name in &names {
            let values: Vec<String> = request
                .headers
                .get_all(*name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
        }
        // The signature covers the body itself: for execute-api the payload hash is always the
        // SHA-256 of the body received. An `x-amz-content-sha256` header (S3's) cannot stand in
        // for it: one naming another body (a replayed signature) or `UNSIGNED-PAYLOAD` fails.
        let payload_hash = sha256_hex(request.body);
        if header("x-amz-content-sha256").is_some_and(|claimed| claimed != payload_hash) {
            return Err(Refusal::Mismatch);
        }
        let scope = format!("{day}/{region}/execute-api/aws4_request");
        let mut signing_key = hmac(format!("AWS4{}", self.secret_access_key).as_bytes(), day);
        for part in [region, "execute-api", "aws4_request"] {
            signing_key = hmac(&signing_key, part);
        }
        // SDKs encode the path once more for every service but S3; some clients do not. Both pass.
        let once = request.path.to_owned();
        let twice = uri_encode(request.path, true);
        for path in [once, twice] {
            let canonical = format!(
                "{}\n{}\n{}\n{}\n{}\n{}",
                request.method.as_str(),
                if path.is_empty() { "/" } else { &path },
                canonical_query(request.query),
                canonical_headers,
                signed_headers,
                payload_hash
            );
            let to_sign = format!(
                "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
                sha256_hex(canonical.as_bytes())
            );
            let expected = hex::encode(hmac(&signing_key, &to_sign));
            if bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
                return Ok(());
            }
        }
        Err(Refusal::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percent_before_a_multibyte_character_neither_panics_nor_decodes() {
        // Issue 11: "%é" sliced inside the character and panicked the connection.
        assert_eq!(percent_decode("a=%\u{e9}b"), "a=%\u{e9}b");
        assert_eq!(percent_decode("%\u{e9}"), "%\u{e9}");
        assert_eq!(percent_decode("%4\u{e9}"), "%4\u{e9}");
        assert_eq!(percent_decode("x%41y%c3%a9"), "xAy\u{e9}");
        assert_eq!(canonical_query("k=%\u{e9}"), "k=%25%C3%A9");
    }

    #[test]
    fn amz_dates_parse_to_epoch_seconds() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("2015-08-30"), None);
        for date in [
            "19700101T000000Z",
            "20150830T123600Z",
            "20240229T235959Z",
            "20261122T061500Z",
        ] {
            assert_eq!(format_amz_date(parse_amz_date(date).expect("valid")), date);
        }
    }

    #[test]
    fn query_is_sorted_and_encoded() {
        assert_eq!(canonical_query("b=2&a=1&c=x%20y"), "a=1&b=2&c=x%20y");
    }

    #[test]
    fn a_request_without_authorization_is_missing_a_token() {
        let key = SigningKey {
            access_key_id: "AK".into(),
            secret_access_key: "S".into(),
        };
        let headers = HeaderMap::new();
        let request = SignedRequest {
            method: &Method::GET,
            path: "/v1/jobs/x",
            query: "",
            headers: &headers,
            body: b"",
        };
        assert_eq!(key.verify(&request, "us-east-1"), Err(Refusal::Missing));
        assert_eq!(Refusal::Missing.message(), "Missing Authentication Token");
    }
}
