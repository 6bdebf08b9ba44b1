//! Every answer API Gateway itself gives (as opposed to an integration's), decided in one place:
//! status, body and headers, for each of the two front ends.
//!
//! Statuses are API Gateway's gateway-response types (apigateway developer guide,
//! supported-gateway-response-types.html): MISSING_AUTHENTICATION_TOKEN 403, UNAUTHORIZED 401,
//! ACCESS_DENIED 403, INVALID_SIGNATURE 403, AUTHORIZER_FAILURE and AUTHORIZER_CONFIGURATION_ERROR
//! 500, BAD_REQUEST_BODY and BAD_REQUEST_PARAMETERS 400, UNSUPPORTED_MEDIA_TYPE 415,
//! REQUEST_TOO_LARGE 413, RESOURCE_NOT_FOUND 404. REST APIs name the type in `x-amzn-ErrorType`
//! (seen on AWS's answers, e.g. `MissingAuthenticationTokenException`); the body is
//! `{"message": ...}` with the default gateway responses' texts, except a REST authorizer's deny,
//! which AWS answers as `{"Message": ...}` (captures of real answers; AWS's own pages print both
//! casings, so this one is medium confidence).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Which API Gateway answers: HTTP APIs (v2) and REST APIs (v1) word and label errors differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `AWS::ApiGatewayV2::Api` with protocol HTTP: `apigw-requestid`.
    Http,
    /// `AWS::ApiGateway::RestApi`: `x-amzn-RequestId` and `x-amzn-ErrorType`.
    Rest,
}

/// An answer API Gateway gives without (or instead of) the integration's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No route (HTTP: 404 Not Found; REST: 403 Missing Authentication Token, the answer for an
    /// unknown resource, method or stage as well as for a missing signature).
    #[error("no route")]
    NoRoute,
    /// A `AWS_IAM` route called without a signature.
    #[error("missing authentication token")]
    MissingAuthenticationToken,
    /// A signature that does not verify; the text is SigV4's.
    #[error("invalid signature: {0}")]
    InvalidSignature(String),
    /// An identity source is missing or empty: 401, the authorizer is not called.
    #[error("unauthorized")]
    Unauthorized,
    /// The authorizer said no: HTTP `isAuthorized: false`, REST a policy without an allow.
    #[error("forbidden")]
    Forbidden,
    /// A REST policy with an explicit deny for the method.
    #[error("explicit deny")]
    ExplicitDeny,
    /// The authorizer failed or answered something that is not a decision.
    #[error("authorizer failure")]
    AuthorizerFailure,
    /// The request body does not fit the route's model.
    #[error("invalid request body")]
    BadRequestBody,
    /// Required request parameters are missing (their names, comma-separated).
    #[error("missing request parameters: {0}")]
    BadRequestParameters(String),
    /// A client error the integration's request parameters decided (HTTP APIs), with its text.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No request template for the content type under `passthroughBehavior: NEVER`.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The request line and headers, or the body, exceed API Gateway's limits.
    #[error("request too large")]
    RequestTooLarge,
    /// The integration failed (the cause is logged where it happened, never sent).
    #[error("internal error")]
    Internal,
}

impl ApiError {
    fn parts(&self, flavor: Flavor) -> (StatusCode, String, &'static str) {
        use ApiError::*;
        let (status, text, kind) = match (self, flavor) {
            (NoRoute, Flavor::Http) => (404, "Not Found".to_owned(), "NotFoundException"),
            (NoRoute | MissingAuthenticationToken, _) => (
                403,
                "Missing Authentication Token".to_owned(),
                "MissingAuthenticationTokenException",
            ),
            (InvalidSignature(text), _) => (403, text.clone(), "InvalidSignatureException"),
            (Unauthorized, _) => (401, "Unauthorized".to_owned(), "UnauthorizedException"),
            (Forbidden, Flavor::Http) => (403, "Forbidden".to_owned(), "ForbiddenException"),
            (Forbidden, Flavor::Rest) => (
                403,
                "User is not authorized to access this resource".to_owned(),
                "AccessDeniedException",
            ),
            (ExplicitDeny, _) => (
                403,
                "User is not authorized to access this resource with an explicit deny".to_owned(),
                "AccessDeniedException",
            ),
            (AuthorizerFailure | Internal, Flavor::Http) => (
                500,
                "Internal Server Error".to_owned(),
                "InternalServerErrorException",
            ),
            (AuthorizerFailure, Flavor::Rest) => (
                500,
                "Internal server error".to_owned(),
                "AuthorizerConfigurationException",
            ),
            (Internal, Flavor::Rest) => (
                500,
                "Internal server error".to_owned(),
                "InternalServerErrorException",
            ),
            (BadRequestBody, _) => (
                400,
                "Invalid request body".to_owned(),
                "BadRequestException",
            ),
            (BadRequestParameters(names), _) => (
                400,
                format!("Missing required request parameters: [{names}]"),
                "BadRequestException",
            ),
            (BadRequest(text), _) => (400, text.clone(), "BadRequestException"),
            (UnsupportedMediaType, _) => (
                415,
                "Unsupported Media Type".to_owned(),
                "BadRequestException",
            ),
            (RequestTooLarge, _) => (
                413,
                "Request Too Long".to_owned(),
                "RequestTooLongException",
            ),
        };
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            text,
            kind,
        )
    }

    /// The text API Gateway answers with (`$context.error.message`).
    pub fn message(&self, flavor: Flavor) -> String {
        self.parts(flavor).1
    }

    /// The gateway response type of this answer (`$context.error.responseType`), as the REST
    /// gateway responses name them (supported-gateway-response-types.html); HTTP APIs log the
    /// same variable.
    pub fn response_type(&self, flavor: Flavor) -> &'static str {
        use ApiError::*;
        match (self, flavor) {
            (NoRoute, Flavor::Http) => "RESOURCE_NOT_FOUND",
            (NoRoute | MissingAuthenticationToken, _) => "MISSING_AUTHENTICATION_TOKEN",
            (InvalidSignature(_), _) => "INVALID_SIGNATURE",
            (Unauthorized, _) => "UNAUTHORIZED",
            (Forbidden | ExplicitDeny, _) => "ACCESS_DENIED",
            (AuthorizerFailure, Flavor::Http) => "AUTHORIZER_FAILURE",
            // The REST answer names itself AuthorizerConfigurationException (see `parts`).
            (AuthorizerFailure, Flavor::Rest) => "AUTHORIZER_CONFIGURATION_ERROR",
            (BadRequestBody, _) => "BAD_REQUEST_BODY",
            (BadRequestParameters(_) | BadRequest(_), _) => "BAD_REQUEST_PARAMETERS",
            (UnsupportedMediaType, _) => "UNSUPPORTED_MEDIA_TYPE",
            (RequestTooLarge, _) => "REQUEST_TOO_LARGE",
            (Internal, _) => "INTEGRATION_FAILURE",
        }
    }

    /// The response API Gateway sends for this error (noted for the request's access log line).
    pub fn response(&self, flavor: Flavor, request_id: &str) -> Response {
        crate::apigw::access_log::note(|facts| facts.error = Some(self.clone()));
        let (status, text, kind) = self.parts(flavor);
        let key = match (self, flavor) {
            (ApiError::Forbidden | ApiError::ExplicitDeny, Flavor::Rest) => "Message",
            _ => "message",
        };
        let mut response = (status, axum::Json(serde_json::json!({ key: text }))).into_response();
        if flavor == Flavor::Rest {
            response
                .headers_mut()
                .insert("x-amzn-errortype", HeaderValue::from_static(kind));
        }
        stamp(&mut response, flavor, request_id);
        response
    }
}

/// Adds the request id header each flavor sends on every answer.
pub fn stamp(response: &mut Response, flavor: Flavor, request_id: &str) {
    let name = match flavor {
        Flavor::Http => "apigw-requestid",
        Flavor::Rest => "x-amzn-requestid",
    };
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_routes_are_404_on_http_apis_and_403_missing_token_on_rest_apis() {
        let http = ApiError::NoRoute.response(Flavor::Http, "r1");
        assert_eq!(http.status(), 404);
        assert_eq!(http.headers()["apigw-requestid"], "r1");
        assert!(http.headers().get("x-amzn-errortype").is_none());
        let rest = ApiError::NoRoute.response(Flavor::Rest, "r2");
        assert_eq!(rest.status(), 403);
        assert_eq!(
            rest.headers()["x-amzn-errortype"],
            "MissingAuthenticationTokenException"
        );
        assert_eq!(rest.headers()["x-amzn-requestid"], "r2");
    }

    #[test]
    fn authorizer_failures_are_worded_as_each_flavor_words_them() {
        assert_eq!(
            ApiError::AuthorizerFailure.parts(Flavor::Http).1,
            "Internal Server Error"
        );
        assert_eq!(
            ApiError::AuthorizerFailure.parts(Flavor::Rest).1,
            "Internal server error"
        );
        assert_eq!(ApiError::Forbidden.parts(Flavor::Http).1, "Forbidden");
        assert_eq!(ApiError::UnsupportedMediaType.parts(Flavor::Rest).0, 415);
    }
}
