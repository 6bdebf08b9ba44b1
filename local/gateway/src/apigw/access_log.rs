//! API access logs as the templates declare them: one line per request, rendered from the
//! stage's `Format` after the answer, shipped to the stage's log group through the gateway's log
//! sink ([`crate::logs`]).
//!
//! Where the settings come from: a REST API's `AccessLogSetting` (`AWS::Serverless::Api`, or the
//! `AWS::ApiGateway::Stage` of an `AWS::ApiGateway::RestApi`), an HTTP API stage's
//! `AccessLogSettings` (`AWS::ApiGatewayV2::Stage`); both are `DestinationArn` (a log group,
//! `arn:aws:logs:<region>:<account>:log-group:<name>`, with or without the `:*` that
//! `Fn::GetAtt <LogGroup>.Arn` gives) and `Format`. Each API writes to one stream of its own per
//! run, named as API Gateway names them (32 hex digits).
//!
//! How a line is rendered (apigateway developer guide: api-gateway-variables-for-access-logging,
//! http-api-logging-variables; set-up-logging for the formats):
//! - every `$context.<name>` is replaced by its value as text, unescaped (API Gateway does not
//!   escape values for the format's syntax: `$context.error.messageString` is the message in
//!   quotes, so `"$context.error.messageString"` is not valid JSON, on AWS too);
//! - a variable with no value for the request renders as `-`: an integration status when no
//!   integration ran, an error message on a success, an authorizer's principal on a route with
//!   none. Captures of real access logs show it for every such variable, on both flavors
//!   (DataBiosphere/azul issues 4073 and 6284, and its Logs Insights tables in 7470: `"-"` for
//!   `authorizer_error`, `integration_status`, `error_message`, `error_responseType`, ...);
//! - `$context.requestTimeEpoch` is milliseconds on REST APIs ("The Epoch-formatted request time,
//!   in milliseconds", access logging variables) and seconds on HTTP APIs (a captured HTTP API
//!   line: `"requestTimeEpoch":"1663813891"`, elastic/integrations' aws package, api_gateway
//!   example event); `$context.requestTime` is CLF (`dd/MMM/yyyy:HH:mm:ss +0000`).
//!
//! What the front ends know about a request (its route, the integration's status, the error
//! answered, the authorizer's principal) they [`note`] while serving it; [`logged`] collects the
//! notes of one request and writes its line, so the hook in each front end is one call.
//! Variables the gateway cannot know (X-Ray, WAF, Cognito, client certificates, the authorizer's
//! own latency) render as `-`, and a template that names one is told so at start-up.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow};
use axum::body::HttpBody as _;
use axum::extract::ConnectInfo;
use axum::response::Response;
use serde::Deserialize;

use crate::apigw::error::{ApiError, Flavor};
use crate::apigw::props::scalar;

/// A stage's access log settings as templates write them (`DestinationArn`, `Format`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Settings {
    /// The log group's ARN.
    #[serde(deserialize_with = "scalar")]
    pub destination_arn: String,
    /// The line's format, with `$context` variables.
    #[serde(deserialize_with = "scalar")]
    pub format: String,
}

/// What the front end and its integration learned while serving one request.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The request id.
    pub request_id: Option<String>,
    /// HTTP APIs: the route key matched (`POST /submit`).
    pub route_key: Option<String>,
    /// REST APIs: the resource path matched (`/submit/{streamName}/{eventId}`).
    pub resource_path: Option<String>,
    /// The error API Gateway answered with, if it did.
    pub error: Option<ApiError>,
    /// The integration's call, when one was made.
    pub integration: Option<IntegrationFacts>,
    /// The principal a REST Lambda authorizer named.
    pub principal_id: Option<String>,
    /// The `context` a REST Lambda authorizer returned, stringified.
    pub authorizer_context: BTreeMap<String, String>,
    /// The access key id of a verified SigV4 signature (`AWS_IAM` routes).
    pub caller: Option<String>,
}

/// One integration call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntegrationFacts {
    /// The status the service (or Lambda) answered; `None` when the call got no answer.
    pub status: Option<u16>,
    /// How long the call took.
    pub latency: Duration,
    /// The error message the service (or the function) answered, if any.
    pub error: Option<String>,
    /// The service's request id.
    pub request_id: Option<String>,
}

tokio::task_local! {
    static FACTS: Arc<Mutex<Facts>>;
}

/// Adds to what is known of the request being served on this task (a no-op outside
/// [`observe`], so code that also runs outside a request, tests included, may note freely).
pub fn note(update: impl FnOnce(&mut Facts)) {
    let _ = FACTS.try_with(|facts| {
        if let Ok(mut facts) = facts.lock() {
            update(&mut facts);
        }
    });
}

/// Runs `serving` and gives its answer with everything noted while it ran.
pub async fn observe<F: Future<Output = Response>>(serving: F) -> (Response, Facts) {
    let facts = Arc::new(Mutex::new(Facts::default()));
    let response = FACTS.scope(facts.clone(), serving).await;
    let facts = facts.lock().map(|f| f.clone()).unwrap_or_default();
    (response, facts)
}

/// Serves `raw` with `serve`, then writes the request's access log line to `log` (when the stage
/// has one). The hook each front end's handler is.
pub async fn logged<F, Fut>(
    log: Option<&AccessLog>,
    raw: axum::extract::Request,
    serve: F,
) -> Response
where
    F: FnOnce(axum::extract::Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let Some(log) = log else {
        return serve(raw).await;
    };
    let head = Head::of(&raw);
    let (response, facts) = observe(serve(raw)).await;
    log.write(&head, &facts, &response);
    response
}

/// What the access log needs of the request as it arrived, read before anything can refuse it.
#[derive(Debug, Clone)]
pub struct Head {
    method: String,
    path: String,
    protocol: &'static str,
    source_ip: String,
    user_agent: Option<String>,
    host: Option<String>,
    received: SystemTime,
    started: Instant,
}

impl Head {
    /// Reads `request`'s method, path, protocol, caller and time of arrival.
    pub fn of(request: &axum::extract::Request) -> Self {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let protocol = match request.version() {
            axum::http::Version::HTTP_09 => "HTTP/0.9",
            axum::http::Version::HTTP_10 => "HTTP/1.0",
            axum::http::Version::HTTP_2 => "HTTP/2.0",
            axum::http::Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        };
        Self {
            method: request.method().as_str().to_owned(),
            path: request.uri().path().to_owned(),
            protocol,
            source_ip: request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_else(|| "127.0.0.1".into()),
            user_agent: header("user-agent"),
            host: header("host"),
            received: SystemTime::now(),
            started: Instant::now(),
        }
    }
}

/// A piece of a format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// A `$context` variable's name (`requestId`, `identity.sourceIp`).
    Variable(String),
}

/// Splits `format` into text and `$context.<name>` variables (names of letters, digits, `_` and
/// inner dots: a dot that ends a name is text, as in `$context.status.`).
fn parse(format: &str) -> Vec<Part> {
    const PREFIX: &str = "$context.";
    let mut parts = Vec::new();
    let mut rest = format;
    while let Some(at) = rest.find(PREFIX) {
        let after = &rest[at + PREFIX.len()..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(after.len());
        let name = after[..len].trim_end_matches('.');
        if name.is_empty() {
            parts.push(Part::Text(rest[..at + PREFIX.len()].to_owned()));
            rest = after;
            continue;
        }
        if at > 0 {
            parts.push(Part::Text(rest[..at].to_owned()));
        }
        parts.push(Part::Variable(name.to_owned()));
        rest = &after[name.len()..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    parts
}

/// The variables the gateway renders for `flavor` (others render as `-`).
fn served(flavor: Flavor, name: &str) -> bool {
    const BOTH: &[&str] = &[
        "accountId",
        "apiId",
        "stage",
        "requestId",
        "extendedRequestId",
        "httpMethod",
        "path",
        "protocol",
        "requestTime",
        "requestTimeEpoch",
        "status",
        "responseLength",
        "responseLatency",
        "domainName",
        "domainPrefix",
        "identity.sourceIp",
        "identity.userAgent",
        "identity.caller",
        "identity.user",
        "identity.accountId",
        "error.message",
        "error.messageString",
        "error.responseType",
        "integration.status",
        "integration.integrationStatus",
        "integrationStatus",
        "integration.error",
        "integrationErrorMessage",
        "integration.latency",
        "integrationLatency",
        "integration.requestId",
        "awsEndpointRequestId",
        "authorizer.error",
        "authorizer.principalId",
    ];
    BOTH.contains(&name)
        || match flavor {
            Flavor::Http => name == "routeKey",
            Flavor::Rest => {
                name == "resourcePath"
                    || name == "identity.accessKey"
                    // A REST Lambda authorizer's `context` entries.
                    || name
                        .strip_prefix("authorizer.")
                        .is_some_and(|key| !key.is_empty() && !key.contains('.'))
            }
        }
}

/// One API stage's access log.
#[derive(Debug, Clone)]
pub struct AccessLog {
    api: String,
    flavor: Flavor,
    api_id: String,
    stage: String,
    group: String,
    stream: String,
    format: Vec<Part>,
}

/// The log group an access log destination names. Only CloudWatch Logs groups are served (a
/// Firehose stream, which REST APIs also take, is refused by the caller's report).
pub fn log_group_of(destination_arn: &str) -> Result<String> {
    let name = destination_arn
        .split_once(":log-group:")
        .filter(|(head, _)| head.starts_with("arn:") && head.contains(":logs:"))
        .map(|(_, name)| name.strip_suffix(":*").unwrap_or(name))
        .filter(|name| !name.is_empty())
        .ok_or_else(|| {
            anyhow!(
                "access log destination {destination_arn:?} is not a CloudWatch Logs log group ARN"
            )
        })?;
    Ok(name.to_owned())
}

impl AccessLog {
    /// The access log of `api` (its id, for the console) with API id `api_id` at `stage`.
    /// Variables the gateway cannot render, and a format without the request id AWS asks for,
    /// are reported.
    pub fn new(
        api: &str,
        flavor: Flavor,
        api_id: &str,
        stage: &str,
        settings: &Settings,
    ) -> Result<Self> {
        let group = log_group_of(&settings.destination_arn).map_err(|e| anyhow!("{api}: {e}"))?;
        let format = parse(&settings.format);
        let names: Vec<&str> = format
            .iter()
            .filter_map(|p| match p {
                Part::Variable(name) => Some(name.as_str()),
                Part::Text(_) => None,
            })
            .collect();
        // "To preserve uniqueness of each log, access log format must include
        // $context.requestId" (set-up-logging.html); HTTP APIs take the extended id as well.
        if !names
            .iter()
            .any(|n| *n == "requestId" || *n == "extendedRequestId")
        {
            tracing::warn!(
                api,
                "the access log format has no $context.requestId, which API Gateway requires"
            );
        }
        let unknown: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !served(flavor, n))
            .collect();
        if !unknown.is_empty() {
            tracing::info!(api, variables = ?unknown, "access log variables the local gateway renders as '-'");
        }
        Ok(Self {
            api: api.to_owned(),
            flavor,
            api_id: api_id.to_owned(),
            stage: stage.to_owned(),
            group,
            stream: uuid::Uuid::new_v4().simple().to_string(),
            format,
        })
    }

    /// The log group the lines go to.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Renders the line of one request and sends it to the gateway's log sink.
    pub fn write(&self, head: &Head, facts: &Facts, response: &Response) {
        let line = self.render(head, facts, response);
        crate::logs::global().send(crate::logs::Line::access(
            &self.api,
            &self.group,
            &self.stream,
            line,
        ));
    }

    /// The line of one request.
    pub fn render(&self, head: &Head, facts: &Facts, response: &Response) -> String {
        let mut out = String::new();
        for part in &self.format {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Variable(name) => match self.value(name, head, facts, response) {
                    Some(value) => out.push_str(&value),
                    None => out.push('-'),
                },
            }
        }
        out
    }

    fn value(&self, name: &str, head: &Head, facts: &Facts, response: &Response) -> Option<String> {
        if !served(self.flavor, name) {
            return None;
        }
        let integration = facts.integration.as_ref();
        let error = facts.error.as_ref();
        let millis = |d: Duration| d.as_millis().to_string();
        Some(match name {
            "accountId" => crate::ACCOUNT_ID.to_owned(),
            "apiId" => self.api_id.clone(),
            "stage" => self.stage.clone(),
            "requestId" | "extendedRequestId" => facts
                .request_id
                .clone()
                .or_else(|| request_id_header(response))?,
            "httpMethod" => head.method.clone(),
            "path" => head.path.clone(),
            "protocol" => head.protocol.to_owned(),
            "requestTime" => clf(head.received),
            "requestTimeEpoch" => {
                let since = head.received.duration_since(UNIX_EPOCH).unwrap_or_default();
                match self.flavor {
                    Flavor::Rest => since.as_millis().to_string(),
                    Flavor::Http => since.as_secs().to_string(),
                }
            }
            "status" => response.status().as_u16().to_string(),
            "responseLength" => response.body().size_hint().exact()?.to_string(),
            "responseLatency" => millis(head.started.elapsed()),
            "domainName" => head.host.clone()?,
            "domainPrefix" => head.host.as_deref()?.split('.').next()?.to_owned(),
            "identity.sourceIp" => head.source_ip.clone(),
            "identity.userAgent" => head.user_agent.clone()?,
            "identity.caller" | "identity.user" | "identity.accessKey" => facts.caller.clone()?,
            "identity.accountId" => facts
                .caller
                .as_ref()
                .map(|_| crate::ACCOUNT_ID.to_owned())?,
            "error.message" => error?.message(self.flavor),
            "error.messageString" => format!("\"{}\"", error?.message(self.flavor)),
            "error.responseType" => error?.response_type(self.flavor).to_owned(),
            "integration.status" | "integration.integrationStatus" | "integrationStatus" => {
                integration?.status?.to_string()
            }
            "integration.error" | "integrationErrorMessage" => integration?.error.clone()?,
            "integration.latency" | "integrationLatency" => millis(integration?.latency),
            "integration.requestId" | "awsEndpointRequestId" => integration?.request_id.clone()?,
            "authorizer.error" => match error? {
                ApiError::AuthorizerFailure => error?.message(self.flavor),
                _ => return None,
            },
            "authorizer.principalId" => facts.principal_id.clone()?,
            "routeKey" => facts.route_key.clone()?,
            "resourcePath" => facts.resource_path.clone()?,
            other => facts
                .authorizer_context
                .get(other.strip_prefix("authorizer.")?)?
                .clone(),
        })
    }
}

/// The request id an answer carries in its header (both flavors stamp every answer).
fn request_id_header(response: &Response) -> Option<String> {
    ["apigw-requestid", "x-amzn-requestid"]
        .iter()
        .find_map(|name| response.headers().get(*name))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `time` in the Common Log Format, UTC: `31/Jan/2026:12:34:56 +0000`.
pub fn clf(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (days, of_day) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse as _;

    const SQS_BUFFER: &str = r#"{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","requestTime":"$context.requestTime","routeKey":"$context.routeKey","status":"$context.status","responseLength":"$context.responseLength","authorizerError":"$context.authorizer.error","integrationError":"$context.integrationErrorMessage"}"#;
    const KINESIS: &str = r#"{"requestId":"$context.requestId","principal":"$context.authorizer.principalId","requestTime":"$context.requestTime","httpMethod":"$context.httpMethod","resourcePath":"$context.resourcePath","status":"$context.status","integrationStatus":"$context.integration.status","error":"$context.error.message"}"#;

    fn log(flavor: Flavor, format: &str) -> AccessLog {
        AccessLog::new(
            "Api",
            flavor,
            "abc123",
            "prod",
            &Settings {
                destination_arn: "arn:aws:logs:us-east-1:123456789012:log-group:access-G1:*".into(),
                format: format.into(),
            },
        )
        .expect("access log")
    }

    fn head() -> Head {
        let request = axum::http::Request::post("/prod/submit/s/e-1")
            .header("host", "abc123.execute-api.us-east-1.amazonaws.com")
            .header("user-agent", "curl/8")
            .body(axum::body::Body::empty())
            .expect("request");
        let mut head = Head::of(&request);
        // 2026-01-31T12:34:56.789Z
        head.received = UNIX_EPOCH + Duration::from_millis(1_769_862_896_789);
        head
    }

    fn json(line: &str) -> serde_json::Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    #[test]
    fn formats_split_into_text_and_context_variables() {
        assert_eq!(
            parse("$context.a.b-[$context.status.] $context. x"),
            [
                Part::Variable("a.b".into()),
                Part::Text("-[".into()),
                Part::Variable("status".into()),
                Part::Text(".] $context.".into()),
                Part::Text(" x".into()),
            ]
        );
        assert_eq!(parse("plain"), [Part::Text("plain".into())]);
    }

    #[test]
    fn the_destination_names_the_log_group_with_or_without_its_star() {
        for arn in [
            "arn:aws:logs:us-east-1:123456789012:log-group:/aws/apigw/x:*",
            "arn:aws:logs:us-east-1:123456789012:log-group:/aws/apigw/x",
        ] {
            assert_eq!(log_group_of(arn).expect("group"), "/aws/apigw/x");
        }
        assert!(
            log_group_of(
                "arn:aws:firehose:us-east-1:123456789012:deliverystream/amazon-apigateway-x"
            )
            .is_err()
        );
        assert!(log_group_of("arn:aws:logs:us-east-1:123456789012:log-group:").is_err());
    }

    #[test]
    fn an_accepted_http_request_renders_its_values_and_dashes_for_what_it_lacks() {
        let access = log(Flavor::Http, SQS_BUFFER);
        let facts = Facts {
            request_id: Some("Kx1aBcDeFgHiJkLm".into()),
            route_key: Some("POST /submit".into()),
            integration: Some(IntegrationFacts {
                status: Some(200),
                latency: Duration::from_millis(12),
                ..IntegrationFacts::default()
            }),
            ..Facts::default()
        };
        let response = "<xml/>".into_response();
        let line = json(&access.render(&head(), &facts, &response));
        assert_eq!(line["requestId"], "Kx1aBcDeFgHiJkLm");
        assert_eq!(line["ip"], "127.0.0.1");
        assert_eq!(line["requestTime"], "31/Jan/2026:12:34:56 +0000");
        assert_eq!(line["routeKey"], "POST /submit");
        assert_eq!(line["status"], "200");
        assert_eq!(line["responseLength"], "6");
        assert_eq!(line["authorizerError"], "-");
        assert_eq!(line["integrationError"], "-");
    }

    #[test]
    fn a_refused_rest_request_renders_api_gateways_error_and_no_integration() {
        let access = log(Flavor::Rest, KINESIS);
        let facts = Facts {
            request_id: Some("6f1f0000-0000-4000-8000-000000000000".into()),
            resource_path: Some("/submit/{streamName}/{eventId}".into()),
            error: Some(ApiError::Forbidden),
            ..Facts::default()
        };
        let response = ApiError::Forbidden.response(Flavor::Rest, "6f1f");
        let line = json(&access.render(&head(), &facts, &response));
        assert_eq!(line["status"], "403");
        assert_eq!(line["principal"], "-");
        assert_eq!(line["httpMethod"], "POST");
        assert_eq!(line["resourcePath"], "/submit/{streamName}/{eventId}");
        assert_eq!(line["integrationStatus"], "-");
        assert_eq!(
            line["error"],
            "User is not authorized to access this resource"
        );
    }

    #[test]
    fn authorizer_context_caller_and_epochs_render_per_flavor() {
        let format = "$context.authorizer.principalId $context.authorizer.tenant $context.authorizer.missing $context.identity.caller $context.requestTimeEpoch $context.error.responseType $context.error.messageString $context.authorizer.error $context.routeKey";
        let facts = Facts {
            principal_id: Some("api-user".into()),
            authorizer_context: BTreeMap::from([("tenant".to_owned(), "t-1".to_owned())]),
            caller: Some("AKIALOCAL".into()),
            error: Some(ApiError::AuthorizerFailure),
            ..Facts::default()
        };
        let response = ApiError::AuthorizerFailure.response(Flavor::Rest, "r");
        assert_eq!(
            log(Flavor::Rest, format).render(&head(), &facts, &response),
            "api-user t-1 - AKIALOCAL 1769862896789 AUTHORIZER_CONFIGURATION_ERROR \"Internal server error\" Internal server error -"
        );
        let response = ApiError::AuthorizerFailure.response(Flavor::Http, "r");
        assert_eq!(
            log(Flavor::Http, format).render(&head(), &facts, &response),
            "api-user - - AKIALOCAL 1769862896 AUTHORIZER_FAILURE \"Internal Server Error\" Internal Server Error -",
            "HTTP APIs: seconds, and no REST authorizer context"
        );
    }

    #[test]
    fn the_request_id_falls_back_to_the_answers_header() {
        let access = log(
            Flavor::Http,
            "$context.requestId $context.extendedRequestId",
        );
        let refused = ApiError::RequestTooLarge.response(Flavor::Http, "early-id");
        assert_eq!(
            access.render(&head(), &Facts::default(), &refused),
            "early-id early-id"
        );
    }

    #[test]
    fn request_times_are_in_the_common_log_format() {
        assert_eq!(clf(UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
        // 2024-02-29T23:59:59Z, a leap day.
        assert_eq!(
            clf(UNIX_EPOCH + Duration::from_secs(1_709_251_199)),
            "29/Feb/2024:23:59:59 +0000"
        );
        assert_eq!(
            clf(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "29/Feb/2000:00:00:00 +0000"
        );
    }

    #[tokio::test]
    async fn notes_made_while_serving_reach_the_line_and_none_leak_outside() {
        note(|f| f.route_key = Some("outside".into()));
        let (response, facts) = observe(async {
            note(|f| f.route_key = Some("POST /submit".into()));
            ApiError::NoRoute.response(Flavor::Http, "r-1")
        })
        .await;
        assert_eq!(response.status(), 404);
        assert_eq!(facts.route_key.as_deref(), Some("POST /submit"));
        assert_eq!(
            facts.error,
            Some(ApiError::NoRoute),
            "errors note themselves"
        );
    }
}
