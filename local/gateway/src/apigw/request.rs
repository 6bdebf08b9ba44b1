//! A request as API Gateway sees it once it has chosen the API: its id, method, path within the
//! stage, query, headers and body, and the limits API Gateway enforces before any route runs.
//!
//! Repeated headers reach authorizers and integrations as one value, the values joined with
//! commas, as HTTP APIs document for payload format 2.0 (http-api-develop-integrations-lambda.html:
//! "Duplicate headers are combined with commas"). Identity sources and authorizer cache keys use
//! that same joined value, so a cache entry is always keyed by exactly what the authorizer saw.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};

use crate::apigw::error::ApiError;

/// API Gateway's limit on the request line and headers together (10,240 bytes, REST API quotas,
/// apigateway developer guide, limits.html: "Total combined size of request line and header
/// values"). HTTP APIs document the same figure for headers.
pub const MAX_HEADER_BYTES: usize = 10_240;

/// API Gateway's payload limit (10 MB, both flavors).
pub const MAX_PAYLOAD: usize = 10 * 1024 * 1024;

/// One request to one API.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request id API Gateway gives it.
    pub id: String,
    /// The method.
    pub method: Method,
    /// The path within the stage, as sent (percent-encoded), starting with `/`.
    pub path: String,
    /// The raw query string.
    pub query: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The caller's address.
    pub source_ip: String,
    /// The route's path parameters, decoded.
    pub path_params: BTreeMap<String, String>,
    /// When API Gateway received it.
    pub received: SystemTime,
}

impl Request {
    /// Every value of header `name` (any case), joined with commas; `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<String> = self
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    /// The headers with repeated ones joined (lower-case names, as HTTP APIs send them).
    pub fn joined_headers(&self) -> BTreeMap<String, String> {
        self.headers
            .keys()
            .filter_map(|name| Some((name.as_str().to_owned(), self.header(name.as_str())?)))
            .collect()
    }

    /// The query parameters, percent-decoded; a repeated one's values joined with commas.
    pub fn query_params(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in query_pairs(&self.query) {
            out.entry(name)
                .and_modify(|v| {
                    v.push(',');
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        out
    }

    /// The `Host` header, or `""`.
    pub fn host(&self) -> String {
        self.header("host").unwrap_or_default()
    }

    /// The `User-Agent` header, or `""`.
    pub fn user_agent(&self) -> String {
        self.header("user-agent").unwrap_or_default()
    }

    /// The media type of the body, lower-case, without parameters (`application/json` when the
    /// request sends no `Content-Type`, as API Gateway reads it).
    pub fn media_type(&self) -> String {
        self.header("content-type")
            .and_then(|c| {
                c.split([';', ','])
                    .next()
                    .map(|t| t.trim().to_ascii_lowercase())
            })
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "application/json".into())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Milliseconds since the epoch at which it was received.
    pub fn epoch_millis(&self) -> i64 {
        self.received
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default()
    }
}

/// The decoded `name=value` pairs of a query string, in order.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    query.split('&').filter(|p| !p.is_empty()).map(move |p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (decode(k), decode(v))
    })
}

/// `Err(RequestTooLarge)` when the request line and headers exceed [`MAX_HEADER_BYTES`].
pub fn check_header_size(method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    let line = method.as_str().len() + 1 + uri.to_string().len() + " HTTP/1.1".len();
    let headers: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + 2 + v.len())
        .sum();
    if line + headers > MAX_HEADER_BYTES {
        Err(ApiError::RequestTooLarge)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], query: &str) -> Request {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        Request {
            id: "r".into(),
            method: Method::GET,
            path: "/".into(),
            query: query.into(),
            headers: map,
            body: Bytes::new(),
            source_ip: "127.0.0.1".into(),
            path_params: BTreeMap::new(),
            received: SystemTime::now(),
        }
    }

    #[test]
    fn repeated_headers_are_joined_with_commas_in_order() {
        let r = request(
            &[("Authorization", "wrong"), ("authorization", "right")],
            "",
        );
        assert_eq!(r.header("authorization").as_deref(), Some("wrong,right"));
        assert_eq!(r.joined_headers()["authorization"], "wrong,right");
        assert_eq!(r.header("x-missing"), None);
    }

    #[test]
    fn query_parameters_are_decoded_and_repeats_joined() {
        let r = request(&[], "a=1&b=x%20y&a=2&flag");
        let q = r.query_params();
        assert_eq!(q["a"], "1,2");
        assert_eq!(q["b"], "x y");
        assert_eq!(q["flag"], "");
    }

    #[test]
    fn headers_over_api_gateways_limit_are_refused() {
        let uri: Uri = "/x".parse().expect("uri");
        let mut headers = HeaderMap::new();
        headers.insert("x-a", "a".repeat(10_000).parse().expect("value"));
        assert!(check_header_size(&Method::GET, &uri, &headers).is_ok());
        headers.insert("x-b", "b".repeat(300).parse().expect("value"));
        assert_eq!(
            check_header_size(&Method::GET, &uri, &headers),
            Err(ApiError::RequestTooLarge)
        );
    }
}
