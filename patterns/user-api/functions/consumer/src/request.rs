//! What a queued create request says, read exactly as the API's model (`NewUser` in
//! `openapi.yaml`) reads it, so that every body the API accepted is understood here.
//!
//! API Gateway validates the body with JSON Schema draft 4 before it queues it. Three things that
//! schema accepts are refused by a plain `serde` reading, and used to end in the dead-letter
//! queue with the client's status never resolving:
//!
//! - **duplicate keys** (`{"name": "a", "name": "b"}`): JSON parsers, the validator's among them,
//!   keep the last value. So does this reading (through [`serde_json::Value`]).
//! - **unpaired surrogate escapes** (`"\ud800"`): valid JSON text, a string of length 1 for the
//!   schema, but no Unicode character: it cannot be stored in DynamoDB (UTF-8). The request is
//!   [`Invalid::LoneSurrogate`], a terminal answer rather than a failure.
//! - **lengths**: JSON Schema's `minLength`/`maxLength` count characters, not bytes; so do these
//!   checks (`"é"` is one character, two bytes).
//!
//! Anything else a body may hold that cannot become a user (it reaches the queue by another
//! route than the API) is also an [`Invalid`] with its reason, never a retry: a redelivery
//! would read the same bytes again.

use serde_json::Value;

/// A create request the consumer can turn into a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Display name, as sent.
    pub name: String,
    /// Email address (unique, compared case-insensitively).
    pub email: String,
    /// Optional BCP 47 locale.
    pub locale: Option<String>,
}

/// Why a request can never become a user: recorded as the reason of its `INVALID` status.
///
/// The texts name fields, never their values (they are stored and logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The body is not JSON text.
    #[error("the body is not JSON")]
    NotJson,
    /// A string holds an unpaired UTF-16 surrogate escape.
    #[error(
        "a string holds an unpaired surrogate escape (\\ud800-\\udfff), which is no character and cannot be stored"
    )]
    LoneSurrogate,
    /// The body is JSON, but not an object.
    #[error("the body is not a JSON object")]
    NotAnObject,
    /// A required field is absent (or null).
    #[error("{0} is required")]
    Missing(&'static str),
    /// A field is not a string.
    #[error("{0} must be a string")]
    NotAString(&'static str),
    /// The name is empty or longer than 100 characters.
    #[error("name must be 1-100 characters")]
    Name,
    /// The email breaks the model's pattern or is longer than 254 characters.
    #[error("email is not a valid address of at most 254 characters")]
    Email,
    /// The locale is empty or longer than 35 characters.
    #[error("locale must be 1-35 characters")]
    Locale,
}

/// The limits of the `NewUser` model, in characters (Unicode scalar values), as JSON Schema
/// counts them.
const NAME_MAX: usize = 100;
const EMAIL_MAX: usize = 254;
const LOCALE_MAX: usize = 35;

impl NewUser {
    /// Reads a queued body: JSON with the model's fields, duplicate keys resolved to the last
    /// value; `Err` says why it can never become a user.
    pub fn parse(body: &str) -> Result<Self, Invalid> {
        let document: Value = match serde_json::from_str(body) {
            Ok(document) => document,
            // serde_json refuses unpaired surrogates; tell them apart from text that is no JSON.
            Err(_) => {
                return Err(match replace_lone_surrogates(body) {
                    Some(repaired) if serde_json::from_str::<Value>(&repaired).is_ok() => {
                        Invalid::LoneSurrogate
                    }
                    _ => Invalid::NotJson,
                });
            }
        };
        let Value::Object(fields) = document else {
            return Err(Invalid::NotAnObject);
        };
        let text = |key: &'static str| -> Result<Option<String>, Invalid> {
            match fields.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(Invalid::NotAString(key)),
            }
        };
        let user = NewUser {
            name: text("name")?.ok_or(Invalid::Missing("name"))?,
            email: text("email")?.ok_or(Invalid::Missing("email"))?,
            locale: text("locale")?,
        };
        user.validate()?;
        Ok(user)
    }

    /// The model's checks, no stricter: `Ok` for every value the API's validator accepts.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(1..=NAME_MAX).contains(&self.name.chars().count()) {
            return Err(Invalid::Name);
        }
        // Surrounding whitespace is forgiven (the email is compared trimmed), as before.
        let pattern_ok =
            matches_email_pattern(&self.email) || matches_email_pattern(self.email.trim());
        if self.email.chars().count() > EMAIL_MAX || !pattern_ok {
            return Err(Invalid::Email);
        }
        if self
            .locale
            .as_ref()
            .is_some_and(|l| !(1..=LOCALE_MAX).contains(&l.chars().count()))
        {
            return Err(Invalid::Locale);
        }
        Ok(())
    }

    /// The email as compared for uniqueness (and stored).
    pub fn normalized_email(&self) -> String {
        self.email.trim().to_lowercase()
    }
}

/// Whitespace as every regex engine that may run the model's `\s` sees it. ECMA-262 (JSON
/// Schema's dialect), Java and Python disagree beyond these six (NBSP, U+2028, U+001C...), so
/// the consumer refuses only these: it then accepts whatever any of them accepts.
fn is_whitespace_everywhere(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r')
}

/// The model's `^[^@\s]+@[^@\s]+\.[^@\s]+$`: one `@` with something before it, and after it a
/// domain with a dot that is neither its first nor its last character. Java's and Python's `$`
/// also match before one final line terminator, so one is allowed.
fn matches_email_pattern(email: &str) -> bool {
    let email = ["\r\n", "\n", "\r", "\u{85}", "\u{2028}", "\u{2029}"]
        .iter()
        .find_map(|end| email.strip_suffix(end))
        .unwrap_or(email);
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let part_ok = |part: &str| !part.is_empty() && !part.contains(is_whitespace_everywhere);
    let inner: Vec<char> = domain.chars().collect();
    part_ok(local)
        && part_ok(domain)
        && !domain.contains('@')
        && inner.len() >= 3
        && inner[1..inner.len() - 1].contains(&'.')
}

/// `text` with every unpaired `\uD800`-`\uDFFF` escape inside a JSON string replaced by
/// `\uFFFD`, or `None` if it has none. (Escaped backslashes are skipped, so `\\ud800` is left
/// alone: it is a backslash followed by letters.)
fn replace_lone_surrogates(text: &str) -> Option<String> {
    fn unit_at(bytes: &[u8], at: usize) -> Option<u16> {
        let hex = bytes.get(at..at + 4)?;
        u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut found = false;
    let mut in_string = false;
    let mut copied = 0; // bytes of `text` already in `out`
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => in_string = !in_string,
            b'\\' if in_string && bytes.get(i + 1) == Some(&b'u') => {
                let high = unit_at(bytes, i + 2);
                match high {
                    Some(0xD800..=0xDBFF)
                        if bytes.get(i + 6..i + 8) == Some(&b"\\u"[..])
                            && matches!(unit_at(bytes, i + 8), Some(0xDC00..=0xDFFF)) =>
                    {
                        i += 12; // a proper pair
                        continue;
                    }
                    Some(0xD800..=0xDFFF) => {
                        out.push_str(&text[copied..i]);
                        out.push_str("\\uFFFD");
                        found = true;
                        i += 6;
                        copied = i;
                        continue;
                    }
                    _ => i += 1,
                }
            }
            b'\\' if in_string => i += 1, // skip the escaped character
            _ => {}
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, email: &str) -> NewUser {
        NewUser {
            name: name.into(),
            email: email.into(),
            locale: None,
        }
    }

    #[test]
    fn requests_the_model_refuses_are_invalid() {
        assert!(user("Ada", "ada@example.com").validate().is_ok());
        for bad in [
            user("", "a@b.co"),
            user("Ada", "nope"),
            user("Ada", "a b@c.de"),
            user("Ada", "a@b"),
            user("Ada", "a@b."),
            user("Ada", "a@.b"),
            user("Ada", "a@@b.co"),
            user("Ada", "@b.co"),
            user(&"x".repeat(101), "a@b.co"),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let padded = user("A", " Ada@Example.COM ");
        assert_eq!(padded.validate(), Ok(()));
        assert_eq!(padded.normalized_email(), "ada@example.com");
    }

    #[test]
    fn lengths_are_counted_in_characters_as_json_schema_counts_them() {
        // 100 two-byte characters: 200 bytes, within maxLength 100.
        let mut long = user(
            &"é".repeat(100),
            &format!("{}@example.com", "é".repeat(242)),
        );
        assert_eq!(long.email.chars().count(), 254);
        long.locale = Some("ü".repeat(35));
        assert_eq!(long.validate(), Ok(()));
        long.locale = Some("ü".repeat(36));
        assert_eq!(long.validate(), Err(Invalid::Locale));
        long.locale = None;
        long.email = format!("{}@example.com", "é".repeat(243));
        assert_eq!(long.validate(), Err(Invalid::Email));
        long.name = "😀".repeat(101);
        assert_eq!(long.validate(), Err(Invalid::Name));
    }

    #[test]
    fn the_email_pattern_is_the_models_no_stricter() {
        // The model's `^[^@\s]+@[^@\s]+\.[^@\s]+$` accepts all of these.
        for ok in [
            "a@b.c",
            "a@.b.c",
            "a@b.c.",
            "a@b..c",
            "a.b@c.d",
            "ada@example.com\n",
            "a\u{a0}b@c.de",
        ] {
            assert!(matches_email_pattern(ok), "{ok:?}");
        }
        for bad in ["a@b", "a@.b", "a@b.", "a@b@c.d", "a\tb@c.de", "a@b.c\n\n"] {
            assert!(!matches_email_pattern(bad), "{bad:?}");
        }
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_as_the_validator_does() {
        let user =
            NewUser::parse(r#"{"name": "First", "email": "a@b.co", "name": "Last"}"#).expect("ok");
        assert_eq!(user.name, "Last");
        assert_eq!(
            NewUser::parse(r#"{"name": "A", "email": "bad", "email": "a@b.co"}"#).map(|u| u.email),
            Ok("a@b.co".to_owned())
        );
    }

    #[test]
    fn unpaired_surrogate_escapes_are_invalid_and_proper_pairs_are_characters() {
        for body in [
            r#"{"name": "\ud800", "email": "a@b.co"}"#,
            r#"{"name": "x\udc00y", "email": "a@b.co"}"#,
            r#"{"name": "A", "email": "a\uDBFF@b.co"}"#,
            r#"{"name": "\ud800\ud800", "email": "a@b.co"}"#,
        ] {
            assert_eq!(NewUser::parse(body), Err(Invalid::LoneSurrogate), "{body}");
        }
        let pair = NewUser::parse(r#"{"name": "\ud83d\ude00", "email": "a@b.co"}"#).expect("ok");
        assert_eq!(pair.name, "😀");
        // An escaped backslash before "ud800" is text, not an escape.
        let text = NewUser::parse(r#"{"name": "\\ud800", "email": "a@b.co"}"#).expect("ok");
        assert_eq!(text.name, "\\ud800");
    }

    #[test]
    fn bodies_that_are_no_request_say_why() {
        for (body, why) in [
            ("this is not JSON", Invalid::NotJson),
            (r#"{"name": "\ud800""#, Invalid::NotJson),
            ("[1, 2]", Invalid::NotAnObject),
            (r#"{"email": "a@b.co"}"#, Invalid::Missing("name")),
            (r#"{"name": "A", "email": null}"#, Invalid::Missing("email")),
            (
                r#"{"name": 5, "email": "a@b.co"}"#,
                Invalid::NotAString("name"),
            ),
            (
                r#"{"name": "A", "email": "a@b.co", "locale": ""}"#,
                Invalid::Locale,
            ),
        ] {
            assert_eq!(NewUser::parse(body), Err(why), "{body}");
        }
        // The reasons name fields, never values.
        assert_eq!(
            Invalid::NotAString("name").to_string(),
            "name must be a string"
        );
    }

    #[test]
    fn a_name_the_model_accepts_is_kept_as_sent() {
        let user = NewUser::parse(r#"{"name": "  ", "email": "a@b.co", "extra": 1}"#).expect("ok");
        assert_eq!(user.name, "  ");
    }
}
