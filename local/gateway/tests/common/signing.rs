//! SigV4 signing with the AWS SDK's own signer (service `execute-api`), with the credentials the
//! local gateway publishes in its state file.

use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use super::LocalStack;

/// The published signing credentials of a stack.
pub struct Signer {
    pub access_key: String,
    pub secret: String,
    pub region: String,
}

impl Signer {
    pub fn of(stack: &LocalStack) -> Self {
        let s = &stack.state["signing"];
        Signer {
            access_key: s["accessKeyId"].as_str().expect("key").to_owned(),
            secret: s["secretAccessKey"].as_str().expect("secret").to_owned(),
            region: s["region"].as_str().expect("region").to_owned(),
        }
    }

    /// The headers to add to a request of `method` to `url` with `headers`, signing `body` with
    /// `settings` as of `at`.
    pub fn headers(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: SignableBody<'_>,
        settings: SigningSettings,
        at: SystemTime,
    ) -> Vec<(String, String)> {
        let identity = aws_credential_types::Credentials::new(
            &self.access_key,
            &self.secret,
            None,
            None,
            "test",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("execute-api")
            .time(at)
            .settings(settings)
            .build()
            .expect("params")
            .into();
        let signable =
            SignableRequest::new(method, url, headers.iter().copied(), body).expect("signable");
        let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
        let mut request = http::Request::builder()
            .method(method)
            .uri(url)
            .body(())
            .expect("request");
        instructions.apply_to_request_http1x(&mut request);
        request
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().expect("ascii").to_owned()))
            .collect()
    }
}
