//! SigV4 verification (`local_gateway::sigv4`): the parser of the `Authorization` header and
//! `X-Amz-Date`, the canonical request, and [`SigningKey::verify`].
//!
//! The input is an HTTP request as text, optionally after a mode line:
//!
//! ```text
//! SIGN                                  <- optional: RAW (the default) or SIGN
//! POST /v1/jobs?a=1
//! host: abc.execute-api.us-east-1.amazonaws.com
//! content-type: application/json
//!
//! {"seconds": 1}
//! ```
//!
//! - **RAW**: the request is verified as written. In header values `{now}` stands for the
//!   current `X-Amz-Date` and `{today}` for its date, so that the fuzzer gets past the clock
//!   checks. Property: it is never accepted: the input cannot know the secret, so an accepted
//!   request is a way around the signature.
//! - **SIGN**: the request is signed with the key by the AWS SDK's own signer (`aws-sigv4`, as
//!   clients sign), then verified. Properties: a request in the domain both implementations
//!   canonicalise alike ([`sdk_agrees`]) is accepted; an unsigned header added to an accepted
//!   request keeps it accepted; and every mutation that changes what was signed (the body, the
//!   method, the path, the query, a signed header, the date, one hex digit of the signature, the
//!   key or the secret, an `x-amz-content-sha256` naming another payload) is refused.
//!
//! Both modes also check the date arithmetic: a valid calendar date-time read by
//! [`parse_amz_date`] prints back as itself, and epoch seconds of years 0-9999 survive
//! [`format_amz_date`] then [`parse_amz_date`].

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use local_gateway::sigv4::{Refusal, SignedRequest, SigningKey, format_amz_date, parse_amz_date};

/// The key every request is verified against.
pub const ACCESS_KEY_ID: &str = "AKIDLOCALFUZZ";
/// Its secret.
pub const SECRET: &str = "fuzz-secret-access-key";
/// The region the gateway serves.
pub const REGION: &str = "us-east-1";
const DEFAULT_HOST: &str = "abc123.execute-api.us-east-1.amazonaws.com";

fn key() -> SigningKey {
    SigningKey {
        access_key_id: ACCESS_KEY_ID.into(),
        secret_access_key: SECRET.into(),
    }
}

/// A request as the gateway receives it.
#[derive(Debug, Clone)]
struct Request {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Request {
    fn verify(&self, key: &SigningKey) -> Result<(), Refusal> {
        let request = SignedRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body: &self.body,
        };
        let verdict = key.verify(&request, REGION);
        if let Err(refusal) = &verdict {
            // Every refusal has API Gateway's message; it must not fail to format.
            assert!(!refusal.message().is_empty());
        }
        verdict
    }
}

/// Splits `data` into the mode, the head lines and the body.
fn split(data: &[u8]) -> (bool, Vec<String>, Vec<u8>) {
    let (head, body) = match find(data, b"\r\n\r\n") {
        Some(at) => (&data[..at], data[at + 4..].to_vec()),
        None => match find(data, b"\n\n") {
            Some(at) => (&data[..at], data[at + 2..].to_vec()),
            None => (data, Vec::new()),
        },
    };
    let head = String::from_utf8_lossy(head);
    let mut lines: Vec<String> = head
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .collect();
    let signed = match lines.first().map(String::as_str) {
        Some("SIGN") => {
            lines.remove(0);
            true
        }
        Some("RAW") => {
            lines.remove(0);
            false
        }
        _ => false,
    };
    (signed, lines, body)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads the request line and headers; `None` if the method is not a token.
fn parse(lines: &[String], body: Vec<u8>, now: &str) -> Option<Request> {
    let (request_line, header_lines) = lines.split_first()?;
    let (method, target) = request_line
        .split_once(' ')
        .unwrap_or((request_line.as_str(), "/"));
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let target = target.trim_end_matches(" HTTP/1.1");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = HeaderMap::new();
    for line in header_lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value
            .trim_start()
            .replace("{now}", now)
            .replace("{today}", &now[..8]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    Some(Request {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body,
    })
}

/// Checks one input (see the module's documentation).
pub fn check(data: &[u8]) {
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let now = format_amz_date(now_secs);
    check_dates(data);
    let (signed, lines, body) = split(data);
    let Some(request) = parse(&lines, body, &now) else {
        return;
    };
    for (_, value) in request.headers.iter() {
        if let Ok(value) = value.to_str() {
            check_date_string(value);
        }
    }
    if signed {
        check_signed(request);
    } else {
        assert!(
            request.verify(&key()).is_err(),
            "a request nobody signed was accepted: {request:?}"
        );
    }
}

/// Days in `month` of `year` (proleptic Gregorian).
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A valid `YYYYMMDDTHHMMSSZ` (digits only, a real calendar day, no leap second) reads back
/// as itself.
fn check_date_string(value: &str) {
    let bytes = value.as_bytes();
    let digits = bytes.len() == 16
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes[..8]
            .iter()
            .chain(&bytes[9..15])
            .all(u8::is_ascii_digit);
    let Some(secs) = parse_amz_date(value) else {
        return;
    };
    if !digits {
        return;
    }
    let field = |r: std::ops::Range<usize>| value[r].parse::<i64>().unwrap_or(-1);
    let (year, month, day, second) = (field(0..4), field(4..6), field(6..8), field(13..15));
    if day <= days_in_month(year, month) && second < 60 {
        assert_eq!(format_amz_date(secs), value, "{value} read as {secs}");
    }
}

/// Epoch seconds of years 0-9999 print and read back as themselves.
fn check_dates(data: &[u8]) {
    const FIRST: i64 = -62_167_219_200; // 00000101T000000Z
    const LAST: i64 = 253_402_300_799; // 99991231T235959Z
    let mut raw = [0u8; 8];
    for (slot, byte) in raw.iter_mut().zip(data.iter().rev()) {
        *slot = *byte;
    }
    let secs = FIRST + i64::from_le_bytes(raw).rem_euclid(LAST - FIRST + 1);
    let text = format_amz_date(secs);
    assert_eq!(
        parse_amz_date(&text),
        Some(secs),
        "{secs} printed as {text}"
    );
}

/// Whether the SDK's signer and the gateway canonicalise this request alike. Outside this
/// domain they differ on purpose or by known limits, and nothing is asserted of acceptance:
/// - the SDK removes `.` and `..` segments and empty segments (`//`) from the path;
/// - the SDK reads the query as a form (`+` is a space), the gateway reads `+` as itself;
/// - the SDK keeps tabs inside header values, the gateway folds every kind of whitespace.
fn sdk_agrees(request: &Request) -> bool {
    let path_ok = request.path.starts_with('/')
        && !request.path.contains("//")
        && !request.path.split('/').any(|s| s == "." || s == "..");
    let query_ok = !request.query.contains('+');
    let headers_ok = request
        .headers
        .values()
        .all(|v| v.to_str().is_ok_and(|v| !v.contains('\t')));
    path_ok && query_ok && headers_ok
}

/// Signs `request` with `secret` as the SDK does, at the current time; `None` if the SDK
/// refuses to sign it (an invalid URI, say).
fn sdk_sign(request: &Request, access_key: &str, secret: &str) -> Option<Request> {
    let host = request.headers.get("host")?.to_str().ok()?.to_owned();
    let uri = if request.query.is_empty() {
        format!("https://{host}{}", request.path)
    } else {
        format!("https://{host}{}?{}", request.path, request.query)
    };
    let parsed: http::Uri = uri.parse().ok()?;
    // The SDK signs the path and query the URI parses to: those are what the server receives.
    if parsed.path() != request.path || parsed.query().unwrap_or_default() != request.query {
        return None;
    }
    let pairs: Vec<(&str, &str)> = request
        .headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
        .collect();
    let identity =
        aws_credential_types::Credentials::new(access_key, secret, None, None, "fuzz").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("execute-api")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .ok()?
        .into();
    let signable = SignableRequest::new(
        request.method.as_str(),
        &uri,
        pairs.into_iter(),
        SignableBody::Bytes(&request.body),
    )
    .ok()?;
    let (instructions, _) = sign(signable, &params).ok()?.into_parts();
    let mut signed = request.clone();
    for (name, value) in instructions.headers() {
        signed.headers.insert(
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_str(value).ok()?,
        );
    }
    Some(signed)
}

fn authorization_part<'a>(request: &'a Request, part: &str) -> Option<&'a str> {
    let header = request.headers.get("authorization")?.to_str().ok()?;
    header
        .strip_prefix("AWS4-HMAC-SHA256 ")?
        .split(',')
        .find_map(|p| p.trim().strip_prefix(part)?.strip_prefix('='))
}

fn with_authorization(request: &Request, from: &str, to: &str) -> Option<Request> {
    let header = request.headers.get("authorization")?.to_str().ok()?;
    let mut out = request.clone();
    out.headers.insert(
        "authorization",
        HeaderValue::from_str(&header.replacen(from, to, 1)).ok()?,
    );
    Some(out)
}

fn check_signed(mut request: Request) {
    for name in ["authorization", "x-amz-date", "x-amz-content-sha256"] {
        request.headers.remove(name);
    }
    // Headers the SDK cannot take as text are left out of the request altogether.
    let unreadable: Vec<HeaderName> = request
        .headers
        .iter()
        .filter(|(_, v)| v.to_str().is_err())
        .map(|(n, _)| n.clone())
        .collect();
    for name in unreadable {
        request.headers.remove(name);
    }
    if !request.headers.contains_key("host") {
        request
            .headers
            .insert("host", HeaderValue::from_static(DEFAULT_HOST));
    }
    let Some(signed) = sdk_sign(&request, ACCESS_KEY_ID, SECRET) else {
        return;
    };
    let key = key();
    let verdict = signed.verify(&key);
    if sdk_agrees(&signed) {
        assert_eq!(
            verdict,
            Ok(()),
            "a request the SDK signed with the key was refused: {signed:?}"
        );
    }
    if verdict.is_err() {
        return;
    }

    let mut unsigned = signed.clone();
    if !authorization_part(&signed, "SignedHeaders")
        .unwrap_or_default()
        .split(';')
        .any(|h| h == "x-fuzz-unsigned")
    {
        unsigned
            .headers
            .append("x-fuzz-unsigned", HeaderValue::from_static("anything"));
        assert_eq!(
            unsigned.verify(&key),
            Ok(()),
            "an unsigned header made a signed request fail: {unsigned:?}"
        );
    }

    let mut mutants: Vec<(&str, Request)> = Vec::new();
    let mut body = signed.clone();
    body.body.push(b'x');
    mutants.push(("body", body));
    let mut method = signed.clone();
    method.method = if signed.method == Method::POST {
        Method::PUT
    } else {
        Method::POST
    };
    mutants.push(("method", method));
    let mut path = signed.clone();
    path.path.push('x');
    mutants.push(("path", path));
    let mut query = signed.clone();
    query.query = if signed.query.is_empty() {
        "fuzz=1".into()
    } else {
        format!("{}&fuzz=1", signed.query)
    };
    mutants.push(("query", query));
    let mut content_hash = signed.clone();
    content_hash.headers.insert(
        "x-amz-content-sha256",
        HeaderValue::from_static("UNSIGNED-PAYLOAD"),
    );
    mutants.push(("x-amz-content-sha256", content_hash));
    let names: Vec<String> = authorization_part(&signed, "SignedHeaders")
        .unwrap_or_default()
        .split(';')
        .map(str::to_owned)
        .collect();
    for name in names.iter().take(6) {
        let mut header = signed.clone();
        let Some(value) = header.headers.get(name.as_str()).cloned() else {
            continue;
        };
        let mut changed = value.as_bytes().to_vec();
        changed.push(b'x');
        if let Ok(changed) = HeaderValue::from_bytes(&changed) {
            header.headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap_or(HeaderName::from_static("x")),
                changed,
            );
            mutants.push(("a signed header", header));
        }
        // An empty header and an absent one read alike ("name:"), as SigV4 has it.
        if value.to_str().is_ok_and(|v| !v.trim().is_empty()) {
            let mut removed = signed.clone();
            removed.headers.remove(name.as_str());
            mutants.push(("a signed header removed", removed));
        }
    }
    if let Some(when) = signed
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_amz_date)
    {
        let mut date = signed.clone();
        if let Ok(value) = HeaderValue::from_str(&format_amz_date(when + 1)) {
            date.headers.insert("x-amz-date", value);
            mutants.push(("x-amz-date", date));
        }
    }
    if let Some(signature) = authorization_part(&signed, "Signature") {
        let mut flipped: Vec<u8> = signature.bytes().collect();
        if let Some(first) = flipped.first_mut() {
            *first = if *first == b'0' { b'1' } else { b'0' };
        }
        let flipped = String::from_utf8_lossy(&flipped).into_owned();
        if let Some(m) = with_authorization(&signed, signature, &flipped) {
            mutants.push(("the signature", m));
        }
        if let Some(m) = with_authorization(&signed, signature, "") {
            mutants.push(("an empty signature", m));
        }
    }
    if let Some(m) = sdk_sign(&request, ACCESS_KEY_ID, "another-secret") {
        mutants.push(("the secret", m));
    }
    if let Some(m) = sdk_sign(&request, "AKIDSOMEONEELSE", SECRET) {
        mutants.push(("the access key", m));
    }
    for (what, mutant) in mutants {
        assert!(
            mutant.verify(&key).is_err(),
            "changing {what} of a signed request kept it accepted: {mutant:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_mode_really_signs_and_verifies() {
        let (signed, lines, body) = split(
            b"SIGN\nPOST /v1/jobs?b=2&a=%20x\nhost: h.example\ncontent-type: application/json\n\n{}",
        );
        assert!(signed);
        let request = parse(&lines, body, "20260101T000000Z").expect("a request");
        let signed = sdk_sign(&request, ACCESS_KEY_ID, SECRET).expect("the SDK signs it");
        assert!(sdk_agrees(&signed));
        assert_eq!(signed.verify(&key()), Ok(()));
        assert!(
            authorization_part(&signed, "SignedHeaders")
                .expect("signed headers")
                .contains("content-type")
        );
    }
}
