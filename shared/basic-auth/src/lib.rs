//! HTTP Basic authentication for API Gateway Lambda authorizers.
//!
//! The expected credentials live in a Secrets Manager secret whose value is the JSON object
//! `{"username": "...", "password": "..."}`. The authorizer:
//! - parses the `Authorization` header strictly and **denies** (never errors on) anything
//!   malformed: no header, another scheme, bad base64, no colon, an empty user, an oversized header;
//! - compares the presented credentials with the expected ones in constant time, over fixed-length
//!   SHA-256 digests so that not even the length leaks (`subtle`'s `ct_eq` returns early on a length
//!   mismatch);
//! - keeps the secret in the execution environment for a TTL, so a warm authorizer costs no Secrets
//!   Manager call and a rotated secret is still picked up once the TTL runs out;
//! - never logs a credential: only the decision and the reason category.
//!
//! The handler speaks both authorizer protocols, told apart by the event: HTTP API payload format
//! 2.0 with simple responses (`{"isAuthorized": bool, "context": {...}}`), and REST API `REQUEST`
//! authorizers, answered with an IAM policy (`principalId`, `policyDocument`, `context`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayV2CustomAuthorizerSimpleResponse,
    ApiGatewayV2CustomAuthorizerV2Request,
};
use base64::Engine as _;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

/// Longest `Authorization` header the authorizer will look at. A Basic header for any sane user
/// name and password is far shorter; anything larger is denied without being decoded.
pub const MAX_HEADER_LEN: usize = 4096;

/// A user name and password, either presented by a client or expected from the secret.
///
/// `Debug` is written by hand so that a credential never reaches a log line by accident.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct Credentials {
    /// The user name (never empty once parsed).
    pub username: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &"<redacted>")
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a request was denied. Carries no part of the credential, so it is safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No `Authorization` header at all (API Gateway normally answers 401 before calling us).
    MissingHeader,
    /// Longer than [`MAX_HEADER_LEN`].
    OversizedHeader,
    /// A scheme other than `Basic`.
    WrongScheme,
    /// The token is not valid base64.
    BadBase64,
    /// The decoded token is not UTF-8.
    NotUtf8,
    /// The decoded token has no `:` between user and password.
    NoColon,
    /// The user name is empty.
    EmptyUser,
    /// Well-formed, but not the expected user name and password.
    WrongCredentials,
}

impl Denial {
    /// A short, stable label for logs and the authorizer context.
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::MissingHeader => "missing_header",
            Denial::OversizedHeader => "oversized_header",
            Denial::WrongScheme => "wrong_scheme",
            Denial::BadBase64 => "bad_base64",
            Denial::NotUtf8 => "not_utf8",
            Denial::NoColon => "no_colon",
            Denial::EmptyUser => "empty_user",
            Denial::WrongCredentials => "wrong_credentials",
        }
    }
}

/// Parses the value of an `Authorization` header as HTTP Basic credentials (RFC 7617).
///
/// The scheme is matched case-insensitively, as RFC 7235 requires; the password may contain
/// colons (only the first colon separates user from password).
pub fn parse_basic_header(header: &str) -> Result<Credentials, Denial> {
    if header.len() > MAX_HEADER_LEN {
        return Err(Denial::OversizedHeader);
    }
    let header = header.trim();
    let (scheme, token) = header.split_once(' ').ok_or(Denial::WrongScheme)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Denial::WrongScheme);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| Denial::BadBase64)?;
    let decoded = String::from_utf8(decoded).map_err(|_| Denial::NotUtf8)?;
    let (username, password) = decoded.split_once(':').ok_or(Denial::NoColon)?;
    if username.is_empty() {
        return Err(Denial::EmptyUser);
    }
    Ok(Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// Compares two credentials in constant time.
///
/// Both fields are hashed to fixed-length SHA-256 digests first, and both comparisons always run
/// (`&`, not `&&`), so neither the position of the first differing byte, nor the lengths, nor which
/// field differed shows in the timing.
pub fn credentials_match(presented: &Credentials, expected: &Credentials) -> bool {
    let user_ok = digest(&presented.username).ct_eq(&digest(&expected.username));
    let pass_ok = digest(&presented.password).ct_eq(&digest(&expected.password));
    bool::from(user_ok & pass_ok)
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// Decides on an optional `Authorization` header value against the expected credentials.
pub fn decide(header: Option<&str>, expected: &Credentials) -> Result<String, Denial> {
    let header = header.ok_or(Denial::MissingHeader)?;
    let presented = parse_basic_header(header)?;
    if credentials_match(&presented, expected) {
        Ok(presented.username)
    } else {
        Err(Denial::WrongCredentials)
    }
}

/// Errors while obtaining the expected credentials. These are failures of the authorizer itself
/// (API Gateway answers 500), never a verdict on the request.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Secrets Manager could not be reached or refused the call.
    #[error("could not read the secret from Secrets Manager")]
    Fetch(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The secret has no string value.
    #[error("the secret has no SecretString")]
    NotAString,
    /// The secret is not `{"username": ..., "password": ...}`.
    #[error("the secret is not a JSON object with string fields username and password")]
    BadShape(#[source] serde_json::Error),
}

/// Where the expected credentials come from. The real implementation reads Secrets Manager; tests
/// may use a fixed value.
pub trait CredentialSource: Send + Sync {
    /// Reads the current expected credentials.
    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, SecretError>>;
}

/// Parses a secret string of the form `{"username": "...", "password": "..."}`.
pub fn parse_secret(secret: &str) -> Result<Credentials, SecretError> {
    serde_json::from_str(secret).map_err(SecretError::BadShape)
}

/// Reads the credentials from a Secrets Manager secret.
#[derive(Debug, Clone)]
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretsManagerSource {
    /// A source reading `secret_id` (name or ARN) with `client`.
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }
}

impl CredentialSource for SecretsManagerSource {
    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, SecretError>> {
        Box::pin(async move {
            let out = self
                .client
                .get_secret_value()
                .secret_id(&self.secret_id)
                .send()
                .await
                .map_err(|e| SecretError::Fetch(Box::new(e)))?;
            let value = out.secret_string().ok_or(SecretError::NotAString)?;
            parse_secret(value)
        })
    }
}

/// A fixed credential source, for tests and examples.
#[derive(Debug, Clone)]
pub struct StaticSource(pub Credentials);

impl CredentialSource for StaticSource {
    fn fetch(&self) -> BoxFuture<'_, Result<Credentials, SecretError>> {
        let value = self.0.clone();
        Box::pin(async move { Ok(value) })
    }
}

/// Keeps the expected credentials for `ttl`, then reads them again, so that a rotated secret is
/// picked up without a cold start. A failed read is not cached.
pub struct CachedCredentials {
    source: Arc<dyn CredentialSource>,
    ttl: Duration,
    cached: Mutex<Option<(Instant, Credentials)>>,
}

impl fmt::Debug for CachedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedCredentials")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl CachedCredentials {
    /// Caches what `source` returns for `ttl` (zero: read on every call).
    pub fn new(source: Arc<dyn CredentialSource>, ttl: Duration) -> Self {
        Self {
            source,
            ttl,
            cached: Mutex::new(None),
        }
    }

    /// The current expected credentials, from the cache while it is fresh.
    pub async fn get(&self) -> Result<Credentials, SecretError> {
        let mut cached = self.cached.lock().await;
        if let Some((fetched_at, value)) = cached.as_ref()
            && fetched_at.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let value = self.source.fetch().await?;
        *cached = Some((Instant::now(), value.clone()));
        Ok(value)
    }
}

/// Settings of the authorizer function, read once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Name or ARN of the secret holding `{"username", "password"}`.
    pub secret_id: String,
    /// How long the secret is kept in the execution environment.
    pub secret_ttl: Duration,
}

/// Errors in the authorizer's configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// A variable does not parse.
    #[error("environment variable {name} must be a whole number of seconds, got {value:?}")]
    NotSeconds {
        /// The variable.
        name: &'static str,
        /// What it held.
        value: String,
    },
}

/// Default time the secret is cached when `SECRET_CACHE_TTL_SECONDS` is not set.
pub const DEFAULT_SECRET_TTL: Duration = Duration::from_secs(300);

impl Config {
    /// Reads `SECRET_ID` and `SECRET_CACHE_TTL_SECONDS` from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`, so a host (the local gateway) can pass a function's
    /// environment without touching the process's.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let secret_id = lookup("SECRET_ID")
            .filter(|v| !v.is_empty())
            .ok_or(ConfigError::Missing("SECRET_ID"))?;
        let secret_ttl = match lookup("SECRET_CACHE_TTL_SECONDS") {
            None => DEFAULT_SECRET_TTL,
            Some(value) => {
                Duration::from_secs(value.trim().parse().map_err(|_| ConfigError::NotSeconds {
                    name: "SECRET_CACHE_TTL_SECONDS",
                    value,
                })?)
            }
        };
        Ok(Self {
            secret_id,
            secret_ttl,
        })
    }
}

/// What the authorizer needs at run time, built once per execution environment.
#[derive(Debug)]
pub struct Authorizer {
    credentials: CachedCredentials,
}

impl Authorizer {
    /// An authorizer checking against `source`, cached for `ttl`.
    pub fn new(source: Arc<dyn CredentialSource>, ttl: Duration) -> Self {
        Self {
            credentials: CachedCredentials::new(source, ttl),
        }
    }

    /// Reads the expected credentials into the cache now (in a function's init, so that the
    /// first request does not wait for Secrets Manager). A failure is only logged: the first
    /// request reads the secret again, and denies or fails as it would have.
    pub async fn prefetch(&self) {
        if let Err(error) = self.credentials.get().await {
            tracing::warn!(
                error = %aws_setup::ErrorChain(&error),
                "could not read the secret during init; the first request will try again"
            );
        }
    }

    /// An authorizer reading the secret named in `config` through `client`.
    pub fn from_config(config: &Config, client: aws_sdk_secretsmanager::Client) -> Self {
        Self::new(
            Arc::new(SecretsManagerSource::new(client, config.secret_id.clone())),
            config.secret_ttl,
        )
    }

    /// Decides on one HTTP API (payload format 2.0) authorizer request.
    ///
    /// A malformed or wrong credential yields `isAuthorized: false`; only a failure to read the
    /// secret is an error (API Gateway then answers 500 and caches nothing).
    pub async fn handle(
        &self,
        request: &ApiGatewayV2CustomAuthorizerV2Request,
    ) -> Result<ApiGatewayV2CustomAuthorizerSimpleResponse, SecretError> {
        // A header that is not visible ASCII cannot be a Basic credential: it is denied as a
        // wrong scheme rather than treated as absent.
        let header = request
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap_or_default());
        let expected = self.credentials.get().await?;
        let mut response = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
        match decide(header, &expected) {
            Ok(username) => {
                tracing::info!(decision = "allow", "request authorized");
                response.is_authorized = true;
                response.context = serde_json::json!({ "username": username });
            }
            Err(denial) => {
                tracing::info!(
                    decision = "deny",
                    reason = denial.as_str(),
                    "request denied"
                );
                response.is_authorized = false;
                response.context = serde_json::json!({});
            }
        }
        Ok(response)
    }
}

/// The errors [`Authorizer::handle_event`] can give.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The event is neither an HTTP API (2.0) nor a REST API REQUEST authorizer event.
    #[error("not an API Gateway authorizer event")]
    UnknownEvent(#[source] serde_json::Error),
    /// The secret could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl Authorizer {
    /// Decides on a REST API `REQUEST` authorizer event; answers with an IAM policy.
    ///
    /// An allow covers every method and resource of the stage (`.../stage/*/*`): API Gateway caches
    /// the policy per identity and applies it to the next routes the caller uses, so a policy for
    /// one method alone would wrongly deny the others while cached.
    pub async fn handle_rest(
        &self,
        request: &ApiGatewayCustomAuthorizerRequestTypeRequest,
    ) -> Result<Value, SecretError> {
        let header = request
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap_or_default());
        let expected = self.credentials.get().await?;
        let method_arn = request.method_arn.clone().unwrap_or_default();
        let stage_arn = stage_wildcard(&method_arn);
        Ok(match decide(header, &expected) {
            Ok(username) => {
                tracing::info!(decision = "allow", "request authorized");
                policy(
                    &username,
                    "Allow",
                    &stage_arn,
                    json!({ "username": username }),
                )
            }
            Err(denial) => {
                tracing::info!(
                    decision = "deny",
                    reason = denial.as_str(),
                    "request denied"
                );
                policy("anonymous", "Deny", &method_arn, json!({}))
            }
        })
    }

    /// Decides on either kind of authorizer event, as the Lambda binary receives it.
    pub async fn handle_event(&self, event: Value) -> Result<Value, EventError> {
        if event.get("methodArn").is_some() {
            let request: ApiGatewayCustomAuthorizerRequestTypeRequest =
                serde_json::from_value(event).map_err(EventError::UnknownEvent)?;
            return Ok(self.handle_rest(&request).await?);
        }
        let request: ApiGatewayV2CustomAuthorizerV2Request =
            serde_json::from_value(event).map_err(EventError::UnknownEvent)?;
        let answer = self.handle(&request).await?;
        serde_json::to_value(answer).map_err(EventError::UnknownEvent)
    }
}

/// `arn:...:api/stage/METHOD/path` → `arn:...:api/stage/*/*`.
fn stage_wildcard(method_arn: &str) -> String {
    let mut parts = method_arn.splitn(3, '/');
    match (parts.next(), parts.next()) {
        (Some(api), Some(stage)) => format!("{api}/{stage}/*/*"),
        _ => method_arn.to_owned(),
    }
}

fn policy(principal: &str, effect: &str, resource: &str, context: Value) -> Value {
    json!({
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{ "Action": "execute-api:Invoke", "Effect": effect, "Resource": resource }]
        },
        "context": context
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    fn basic(raw: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    #[test]
    fn parses_well_formed_basic_header() {
        assert_eq!(
            parse_basic_header(&basic("alice:s3cret")),
            Ok(creds("alice", "s3cret"))
        );
    }

    #[test]
    fn scheme_is_case_insensitive() {
        let header = basic("alice:pw").replacen("Basic", "bAsIc", 1);
        assert_eq!(parse_basic_header(&header), Ok(creds("alice", "pw")));
    }

    #[test]
    fn password_may_contain_colons() {
        assert_eq!(
            parse_basic_header(&basic("bob:a:b:c")),
            Ok(creds("bob", "a:b:c"))
        );
    }

    #[test]
    fn empty_password_parses_but_empty_user_is_denied() {
        assert_eq!(parse_basic_header(&basic("bob:")), Ok(creds("bob", "")));
        assert_eq!(parse_basic_header(&basic(":pw")), Err(Denial::EmptyUser));
    }

    #[test]
    fn malformed_headers_are_denied_with_their_reason() {
        assert_eq!(
            parse_basic_header("Bearer abc.def"),
            Err(Denial::WrongScheme)
        );
        assert_eq!(parse_basic_header("Basic"), Err(Denial::WrongScheme));
        assert_eq!(
            parse_basic_header("Basic !!!not-base64"),
            Err(Denial::BadBase64)
        );
        assert_eq!(
            parse_basic_header(&basic("no-colon-here")),
            Err(Denial::NoColon)
        );
        let not_utf8 = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe, b':', b'x'])
        );
        assert_eq!(parse_basic_header(&not_utf8), Err(Denial::NotUtf8));
    }

    #[test]
    fn oversized_header_is_denied_before_decoding() {
        let huge = basic(&format!("u:{}", "p".repeat(MAX_HEADER_LEN)));
        assert_eq!(parse_basic_header(&huge), Err(Denial::OversizedHeader));
    }

    #[test]
    fn credentials_match_only_on_both_fields() {
        let expected = creds("alice", "pw");
        assert!(credentials_match(&creds("alice", "pw"), &expected));
        assert!(!credentials_match(&creds("alice", "pW"), &expected));
        assert!(!credentials_match(&creds("alicE", "pw"), &expected));
        assert!(!credentials_match(&creds("alice", "pw-longer"), &expected));
        assert!(!credentials_match(&creds("pw", "alice"), &expected));
    }

    #[test]
    fn decide_reports_missing_header_and_wrong_password() {
        let expected = creds("alice", "pw");
        assert_eq!(decide(None, &expected), Err(Denial::MissingHeader));
        assert_eq!(
            decide(Some(&basic("alice:nope")), &expected),
            Err(Denial::WrongCredentials)
        );
        assert_eq!(
            decide(Some(&basic("alice:pw")), &expected),
            Ok("alice".into())
        );
    }

    #[test]
    fn debug_output_never_shows_a_credential() {
        let shown = format!("{:?}", creds("alice", "hunter2"));
        assert!(
            !shown.contains("alice") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn secret_must_have_username_and_password() {
        assert_eq!(
            parse_secret(r#"{"username":"u","password":"p"}"#).ok(),
            Some(creds("u", "p"))
        );
        assert!(matches!(
            parse_secret(r#"{"username":"u"}"#),
            Err(SecretError::BadShape(_))
        ));
        assert!(matches!(
            parse_secret("not json"),
            Err(SecretError::BadShape(_))
        ));
    }

    #[test]
    fn config_reads_secret_id_and_ttl() {
        let env = |k: &str| match k {
            "SECRET_ID" => Some("arn:secret".to_owned()),
            "SECRET_CACHE_TTL_SECONDS" => Some("42".to_owned()),
            _ => None,
        };
        let config = Config::from_lookup(env).expect("valid config");
        assert_eq!(config.secret_id, "arn:secret");
        assert_eq!(config.secret_ttl, Duration::from_secs(42));
        assert!(matches!(
            Config::from_lookup(|_| None),
            Err(ConfigError::Missing("SECRET_ID"))
        ));
        let bad = |k: &str| {
            (k == "SECRET_ID")
                .then(|| "x".to_owned())
                .or(Some("soon".into()))
        };
        assert!(matches!(
            Config::from_lookup(bad),
            Err(ConfigError::NotSeconds { .. })
        ));
    }

    struct CountingSource {
        calls: std::sync::atomic::AtomicUsize,
    }

    impl CredentialSource for CountingSource {
        fn fetch(&self) -> BoxFuture<'_, Result<Credentials, SecretError>> {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move { Ok(creds("u", &format!("pw{n}"))) })
        }
    }

    #[tokio::test]
    async fn rest_events_get_an_iam_policy_for_the_whole_stage_or_a_deny() {
        let authorizer = Authorizer::new(
            Arc::new(StaticSource(creds("u", "p"))),
            Duration::from_secs(60),
        );
        let event = |header: &str| {
            json!({"type": "REQUEST", "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc/v1/POST/users",
                   "headers": {"Authorization": header},
                   "requestContext": {"accountId": "123456789012", "apiId": "abc", "stage": "v1",
                                      "httpMethod": "POST", "resourcePath": "/users", "requestId": "r-1"}})
        };
        let allow = authorizer
            .handle_event(event(&basic("u:p")))
            .await
            .expect("answer");
        assert_eq!(allow["principalId"], "u");
        assert_eq!(allow["policyDocument"]["Statement"][0]["Effect"], "Allow");
        assert_eq!(
            allow["policyDocument"]["Statement"][0]["Resource"],
            "arn:aws:execute-api:us-east-1:123456789012:abc/v1/*/*"
        );
        let deny = authorizer
            .handle_event(event(&basic("u:wrong")))
            .await
            .expect("answer");
        assert_eq!(deny["policyDocument"]["Statement"][0]["Effect"], "Deny");
        let http = json!({"version": "2.0", "type": "REQUEST", "routeArn": "arn", "headers": {"authorization": basic("u:p")},
                          "requestContext": {"http": {"method": "POST"}}});
        assert_eq!(
            authorizer.handle_event(http).await.expect("answer")["isAuthorized"],
            true
        );
    }

    #[tokio::test]
    async fn cache_serves_within_ttl_and_rereads_after() {
        let source = Arc::new(CountingSource {
            calls: Default::default(),
        });
        let cache = CachedCredentials::new(source.clone(), Duration::from_millis(50));
        assert_eq!(cache.get().await.expect("first").password, "pw0");
        assert_eq!(cache.get().await.expect("cached").password, "pw0");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(cache.get().await.expect("reread").password, "pw1");
    }
}
