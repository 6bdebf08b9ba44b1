//! The Basic-auth header parser of the authorizers (`shared/basic-auth`).
//!
//! The input is used three ways:
//! - as an `Authorization` header value: whatever [`parse_basic_header`] accepts has a non-empty
//!   user name without a colon, encodes back to a header that parses to the same credentials,
//!   and is allowed by [`decide`] against exactly those credentials (and denied against any
//!   other password); a header over [`MAX_HEADER_LEN`] is always `OversizedHeader`;
//! - as the decoded `user:password` token of a header built from it, with the scheme in any case
//!   and whitespace around: it parses to exactly the split at the first colon, or is denied for
//!   the one reason that applies (`NotUtf8`, `NoColon`, `EmptyUser`, `OversizedHeader`);
//! - through the authorizer's handler, as the header of an HTTP API and of a REST API event:
//!   it is allowed if and only if it carries the expected credentials; and, when the input is
//!   JSON, as a whole event, which must be answered or refused as unknown, never panic.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use basic_auth::{
    Authorizer, Credentials, Denial, MAX_HEADER_LEN, StaticSource, credentials_match, decide,
    parse_basic_header,
};
use serde_json::{Value, json};

fn encode(token: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(token)
}

fn expected() -> Credentials {
    Credentials {
        username: "fuzz-user".into(),
        password: "fuzz:pass word".into(),
    }
}

/// Checks one input (see the module's documentation).
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_header(&text);
    check_token(data);
    check_authorizer(&text);
}

fn check_header(header: &str) {
    let parsed = parse_basic_header(header);
    if header.len() > MAX_HEADER_LEN {
        assert_eq!(parsed, Err(Denial::OversizedHeader));
        return;
    }
    assert_ne!(parsed, Err(Denial::OversizedHeader), "{header:?}");
    let Ok(credentials) = parsed else {
        return;
    };
    assert!(!credentials.username.is_empty(), "{header:?}");
    assert!(!credentials.username.contains(':'), "{header:?}");
    let again = format!(
        "Basic {}",
        encode(format!("{}:{}", credentials.username, credentials.password).as_bytes())
    );
    if again.len() <= MAX_HEADER_LEN {
        assert_eq!(parse_basic_header(&again).as_ref(), Ok(&credentials));
    }
    assert_eq!(
        decide(Some(header), &credentials),
        Ok(credentials.username.clone())
    );
    let other = Credentials {
        username: credentials.username.clone(),
        password: format!("{}x", credentials.password),
    };
    assert!(!credentials_match(&credentials, &other));
    assert_eq!(
        decide(Some(header), &other),
        Err(Denial::WrongCredentials),
        "{header:?}"
    );
}

fn check_token(token: &[u8]) {
    // The scheme's case and the whitespace around it come from the input, so that every
    // spelling the parser must accept is tried.
    let schemes = ["Basic", "basic", "BASIC", "bAsIc"];
    let scheme = schemes[token.len() % schemes.len()];
    let padding = [("", ""), ("  ", ""), ("", " \t"), (" ", "  ")][token.len() / 4 % 4];
    let header = format!("{}{scheme} {}{}", padding.0, encode(token), padding.1);
    let parsed = parse_basic_header(&header);
    let expected = if header.len() > MAX_HEADER_LEN {
        Err(Denial::OversizedHeader)
    } else if token.is_empty() {
        // "Basic " and nothing: no token after the scheme.
        Err(Denial::WrongScheme)
    } else {
        match std::str::from_utf8(token) {
            Err(_) => Err(Denial::NotUtf8),
            Ok(text) => match text.split_once(':') {
                None => Err(Denial::NoColon),
                Some(("", _)) => Err(Denial::EmptyUser),
                Some((user, password)) => Ok(Credentials {
                    username: user.to_owned(),
                    password: password.to_owned(),
                }),
            },
        }
    };
    assert_eq!(parsed, expected, "{header:?}");
}

fn authorizer() -> &'static Authorizer {
    static AUTHORIZER: std::sync::OnceLock<Authorizer> = std::sync::OnceLock::new();
    AUTHORIZER.get_or_init(|| {
        Authorizer::new(
            Arc::new(StaticSource(expected())),
            Duration::from_secs(3600),
        )
    })
}

fn check_authorizer(header: &str) {
    // The handlers read the header as text: one that is not visible ASCII is denied (or, when
    // it cannot even be a header value, the event is refused), whatever the parser makes of it.
    let readable = http::HeaderValue::from_str(header).is_ok();
    let allowed = readable && decide(Some(header), &expected()).is_ok();
    let http = json!({"version": "2.0", "type": "REQUEST", "routeArn": "arn:route",
                      "headers": {"authorization": header},
                      "requestContext": {"http": {"method": "POST"}}});
    match futures::executor::block_on(authorizer().handle_event(http)) {
        Ok(answer) => assert_eq!(answer["isAuthorized"], Value::Bool(allowed), "{header:?}"),
        Err(e) => assert!(!readable, "HTTP API event refused: {e}"),
    }

    let rest = json!({"type": "REQUEST",
                      "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc/v1/POST/users",
                      "headers": {"Authorization": header},
                      "requestContext": {"accountId": "123456789012", "apiId": "abc", "stage": "v1",
                                         "httpMethod": "POST", "resourcePath": "/users"}});
    match futures::executor::block_on(authorizer().handle_event(rest)) {
        Ok(answer) => {
            let effect = &answer["policyDocument"]["Statement"][0]["Effect"];
            assert_eq!(effect, if allowed { "Allow" } else { "Deny" }, "{header:?}");
        }
        Err(e) => assert!(!readable, "REST API event refused: {e}"),
    }

    if let Ok(event) = serde_json::from_str::<Value>(header) {
        // Any JSON: an answer, or "not an authorizer event"; a secret error cannot happen here.
        if let Err(e) = futures::executor::block_on(authorizer().handle_event(event)) {
            assert!(matches!(e, basic_auth::EventError::UnknownEvent(_)), "{e}");
        }
    }
}
