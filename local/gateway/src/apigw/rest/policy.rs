//! A REST Lambda authorizer's IAM policy, evaluated for one method ARN as API Gateway evaluates
//! it: an explicit deny wins, an allow is needed, `*` and `?` are wildcards in resources.

use serde_json::Value;

use crate::apigw::error::ApiError;
use crate::cfn::scalar_to_string;

/// Whether an IAM policy `resource` pattern (`*` and `?` wildcards) covers `arn`. Iterative, with
/// one backtracking point, so a hostile pattern costs time linear in both lengths.
pub fn resource_matches(pattern: &str, arn: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), arn.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((star_p, star_s)) => {
                    pi = star_p + 1;
                    si = star_s + 1;
                    star = Some((star_p, star_s + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Evaluates an authorizer's answer (`policyDocument`) for `method_arn`.
pub fn allows(answer: &Value, method_arn: &str) -> Result<(), ApiError> {
    let mut allowed = false;
    let statements = match answer.pointer("/policyDocument/Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    };
    for statement in statements {
        let resources: Vec<String> = match &statement["Resource"] {
            Value::Array(items) => items.iter().map(scalar_to_string).collect(),
            other => vec![scalar_to_string(other)],
        };
        if !resources.iter().any(|r| resource_matches(r, method_arn)) {
            continue;
        }
        match statement["Effect"].as_str() {
            Some(effect) if effect.eq_ignore_ascii_case("deny") => {
                return Err(ApiError::ExplicitDeny);
            }
            Some(effect) if effect.eq_ignore_ascii_case("allow") => allowed = true,
            _ => {}
        }
    }
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policies_allow_by_wildcard_and_deny_explicitly() {
        let arn = "arn:aws:execute-api:us-east-1:123456789012:abc/v1/POST/users";
        let policy = |effect: &str, resource: &str| json!({"policyDocument": {"Statement": [{"Effect": effect, "Resource": resource, "Action": "execute-api:Invoke"}]}});
        assert!(
            allows(
                &policy(
                    "Allow",
                    "arn:aws:execute-api:us-east-1:123456789012:abc/v1/*/*"
                ),
                arn
            )
            .is_ok()
        );
        assert_eq!(
            allows(
                &policy(
                    "Allow",
                    "arn:aws:execute-api:us-east-1:123456789012:abc/v1/GET/*"
                ),
                arn
            ),
            Err(ApiError::Forbidden)
        );
        assert_eq!(
            allows(&policy("Deny", arn), arn),
            Err(ApiError::ExplicitDeny)
        );
        assert_eq!(
            allows(&json!({"policyDocument": {}}), arn),
            Err(ApiError::Forbidden)
        );
    }

    #[test]
    fn wildcards_match_as_iam_matches_them_and_hostile_patterns_stay_cheap() {
        assert!(resource_matches("a*c", "abbbc"));
        assert!(resource_matches("a?c", "abc"));
        assert!(!resource_matches("a?c", "ac"));
        assert!(resource_matches("*", ""));
        assert!(!resource_matches("a*d", "abc"));
        // Exponential for a naive backtracking matcher; linear here.
        let pattern = "*a".repeat(40) + "b";
        assert!(!resource_matches(&pattern, &"a".repeat(5_000)));
    }
}
