//! Routes of both API flavors: a method and a path pattern (`/users/{userId}`, `/files/{path+}`,
//! or HTTP APIs' `$default`), matched against a request's path, most specific first.
//!
//! The two flavors read a request path differently (real-AWS captures: hotsock/voker's
//! `vokerhttp/testdata`, LocalStack's AWS-validated `test_apigateway_lambda` snapshots):
//! - REST APIs match the path as sent and do not decode it: `pathParameters` hold `a%20b`, and
//!   empty segments are ignored, so `/prod//users` and `/prod/users/` reach `/users`.
//! - HTTP APIs decode the path before routing (`%2F` becomes a `/` and so a segment boundary) and
//!   hand decoded values on. Whether an empty segment or a trailing slash reaches a route is not
//!   documented or captured; here it reaches none (404), the stricter reading.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use axum::http::Method;

use crate::apigw::error::Flavor;

/// One segment of a route's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matches itself.
    Literal(String),
    /// `{name}`: one non-empty segment.
    Param(String),
    /// `{name+}`: the rest of the path, at least one segment.
    Greedy(String),
}

/// What a route answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// An upper-case method, or `ANY`.
    pub method: String,
    /// The path's segments; `None` for HTTP APIs' `$default` route.
    pub segments: Option<Vec<Segment>>,
}

impl Pattern {
    /// Parses `METHOD /path` (HTTP APIs' `RouteKey`), or `$default`.
    pub fn from_route_key(key: &str) -> Result<Self> {
        if key == "$default" {
            return Ok(Self {
                method: "ANY".into(),
                segments: None,
            });
        }
        let (method, path) = key
            .split_once(' ')
            .ok_or_else(|| anyhow!("RouteKey {key:?} is not 'METHOD /path'"))?;
        Self::new(method, path)
    }

    /// A method (`x-amazon-apigateway-any-method` and `ANY` mean any) and an OpenAPI path.
    pub fn new(method: &str, path: &str) -> Result<Self> {
        let method = match method.to_ascii_uppercase().as_str() {
            "X-AMAZON-APIGATEWAY-ANY-METHOD" | "ANY" => "ANY".to_owned(),
            m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m.to_owned(),
            other => bail!("method {other:?} is not an HTTP method API Gateway routes"),
        };
        let trimmed = path
            .strip_prefix('/')
            .ok_or_else(|| anyhow!("path {path:?} does not start with /"))?;
        let mut segments = Vec::new();
        for part in trimmed.split('/').filter(|s| !s.is_empty()) {
            let segment = match part.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => match name.strip_suffix('+') {
                    Some(greedy) => Segment::Greedy(greedy.to_owned()),
                    None => Segment::Param(name.to_owned()),
                },
                None => Segment::Literal(part.to_owned()),
            };
            if matches!(segments.last(), Some(Segment::Greedy(_))) {
                bail!("path {path:?}: a greedy parameter must be the last segment");
            }
            segments.push(segment);
        }
        Ok(Self {
            method,
            segments: Some(segments),
        })
    }

    /// How specific the pattern is: lower sorts first. Literal paths before parameters, greedy
    /// parameters after those, `$default` last (API Gateway's route selection).
    fn rank(&self) -> (u8, usize) {
        match &self.segments {
            None => (3, 0),
            Some(s) if s.iter().any(|x| matches!(x, Segment::Greedy(_))) => {
                (2, usize::MAX - s.len())
            }
            Some(s) => (
                1,
                s.iter()
                    .filter(|x| !matches!(x, Segment::Literal(_)))
                    .count(),
            ),
        }
    }

    /// The path parameters when `path` (as sent, starting with `/`) matches.
    fn matches(&self, method: &Method, parts: &[String]) -> Option<BTreeMap<String, String>> {
        if self.method != "ANY" && self.method != method.as_str() {
            return None;
        }
        let Some(segments) = &self.segments else {
            return Some(BTreeMap::new());
        };
        let mut params = BTreeMap::new();
        for (i, segment) in segments.iter().enumerate() {
            let part = parts.get(i)?;
            match segment {
                Segment::Greedy(name) => {
                    if parts[i..].iter().all(String::is_empty) {
                        return None;
                    }
                    params.insert(name.clone(), parts[i..].join("/"));
                    return Some(params);
                }
                _ if part.is_empty() => return None,
                Segment::Literal(literal) if literal == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => {
                    params.insert(name.clone(), part.clone());
                }
            }
        }
        (parts.len() == segments.len()).then_some(params)
    }
}

/// Splits a request path (as sent, starting with `/`) into segments as `flavor` reads it (`/`
/// alone has none). `None` when an HTTP API path does not decode to UTF-8.
pub fn split_path(path: &str, flavor: Flavor) -> Option<Vec<String>> {
    let rest = path.strip_prefix('/')?;
    match flavor {
        Flavor::Rest => Some(
            rest.split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        Flavor::Http => {
            let decoded = percent_encoding::percent_decode_str(rest)
                .decode_utf8()
                .ok()?;
            if decoded.is_empty() {
                return Some(Vec::new());
            }
            Some(decoded.split('/').map(str::to_owned).collect())
        }
    }
}

/// The routes of one API, most specific first.
#[derive(Debug)]
pub struct Table<R> {
    flavor: Flavor,
    routes: Vec<(Pattern, R)>,
}

impl<R> Table<R> {
    /// Orders `routes` for matching requests as `flavor` matches them.
    pub fn new(flavor: Flavor, mut routes: Vec<(Pattern, R)>) -> Self {
        routes.sort_by_key(|(p, _)| p.rank());
        Self { flavor, routes }
    }

    /// The route `method` and `path` reach, with its path parameters.
    pub fn find(&self, method: &Method, path: &str) -> Option<(&R, BTreeMap<String, String>)> {
        let parts = split_path(path, self.flavor)?;
        self.routes
            .iter()
            .find_map(|(pattern, route)| Some((route, pattern.matches(method, &parts)?)))
    }

    /// Every route, most specific first.
    pub fn iter(&self) -> impl Iterator<Item = &R> {
        self.routes.iter().map(|(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(flavor: Flavor) -> Table<&'static str> {
        let route = |key: &str, name| (Pattern::from_route_key(key).expect("key"), name);
        Table::new(
            flavor,
            vec![
                route("$default", "default"),
                route("GET /files/{path+}", "files"),
                route("POST /submit/{stream}/{id}", "submit"),
                route("GET /users/{id}", "user"),
                route("GET /users/me", "me"),
            ],
        )
    }

    #[test]
    fn literal_segments_win_over_parameters_and_default_comes_last() {
        let t = table(Flavor::Http);
        assert_eq!(t.find(&Method::GET, "/users/me").expect("route").0, &"me");
        let (route, params) = t.find(&Method::GET, "/users/u-1").expect("route");
        assert_eq!((*route, params["id"].as_str()), ("user", "u-1"));
        assert_eq!(
            t.find(&Method::PUT, "/users/u-1").expect("route").0,
            &"default"
        );
    }

    #[test]
    fn http_apis_decode_the_path_before_routing() {
        let t = table(Flavor::Http);
        let (_, params) = t.find(&Method::POST, "/submit/s%201/a%20b").expect("route");
        assert_eq!(
            (params["stream"].as_str(), params["id"].as_str()),
            ("s 1", "a b")
        );
        // An encoded slash is a slash: three segments, so the two-parameter route is missed.
        assert_eq!(
            t.find(&Method::POST, "/submit/s/a%2Fb").expect("route").0,
            &"default"
        );
        let (_, params) = t.find(&Method::GET, "/files/a/b%20c").expect("route");
        assert_eq!(params["path"], "a/b c");
        assert!(t.find(&Method::GET, "/users/%FF").is_none(), "not UTF-8");
    }

    #[test]
    fn rest_apis_route_the_path_as_sent_and_pass_parameters_undecoded() {
        let t = table(Flavor::Rest);
        let (_, params) = t.find(&Method::POST, "/submit/s%201/a%2Fb").expect("route");
        assert_eq!(
            (params["stream"].as_str(), params["id"].as_str()),
            ("s%201", "a%2Fb")
        );
    }

    #[test]
    fn rest_apis_ignore_empty_segments_and_trailing_slashes() {
        let t = Table::new(
            Flavor::Rest,
            vec![(Pattern::new("GET", "/users/{id}").expect("p"), 1)],
        );
        assert!(t.find(&Method::GET, "//users/u-1").is_some());
        assert!(t.find(&Method::GET, "/users/u-1/").is_some());
        assert!(t.find(&Method::GET, "/users/").is_none());
    }

    #[test]
    fn http_apis_route_no_empty_segment_or_trailing_slash() {
        let t = Table::new(
            Flavor::Http,
            vec![(Pattern::new("GET", "/users/{id}").expect("p"), 1)],
        );
        assert!(t.find(&Method::GET, "/users/").is_none());
        assert!(t.find(&Method::GET, "//users/u-1").is_none());
        assert!(t.find(&Method::GET, "/users//u-1").is_none());
        assert!(t.find(&Method::GET, "/users/u-1/").is_none());
        assert!(t.find(&Method::GET, "/users/u-1").is_some());
    }

    #[test]
    fn route_keys_and_methods_are_checked_when_read() {
        assert!(Pattern::from_route_key("/no-method").is_err());
        assert!(Pattern::new("FETCH", "/x").is_err());
        assert!(Pattern::new("GET", "x").is_err());
        assert!(Pattern::new("GET", "/{a+}/b").is_err());
        assert_eq!(
            Pattern::new("x-amazon-apigateway-any-method", "/")
                .expect("p")
                .method,
            "ANY"
        );
    }
}
