//! The template reader (`local_gateway::cfn`): YAML with short-form intrinsic tags, `AWS::Include`
//! of local files, SAM `Globals`, parameters and conditions, and the resolution of intrinsics.
//!
//! The input is a template's text, loaded from a file as the gateway loads one
//! ([`Template::load`], in a folder of its own where it is `template.yaml`, so an input may include
//! itself). Properties:
//! - the long form is a fixed point: the document read, written back as YAML (long form only)
//!   and read again, is the same document;
//! - resolving any resource or output (against the scope `sam validate`-like checks use, or
//!   placeholder resources when the parameters have no defaults) leaves no `Ref`, `Fn::GetAtt`,
//!   `Fn::Sub`, `Fn::If`, `Fn::Join` or `Fn::Select` behind, and never lets the internal marker
//!   of `AWS::NoValue` out into a value;
//! - every line read as `--parameter-overrides` either fails or parses to pairs that, written
//!   back as `ParameterKey=...,ParameterValue=...`, parse to the same pairs.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;

use local_gateway::cfn::{Physical, Scope, Template, parse_overrides, yaml_to_json};
use serde_json::Value;

const RESOLVED: &[&str] = &[
    "Ref",
    "Fn::GetAtt",
    "Fn::Sub",
    "Fn::If",
    "Fn::Join",
    "Fn::Select",
];

thread_local! {
    static DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// A folder of this thread's own, created once.
fn folder() -> PathBuf {
    DIR.with(|dir| {
        dir.borrow_mut()
            .get_or_insert_with(|| {
                let path = std::env::temp_dir().join(format!(
                    "fuzz-cfn-{}-{:?}",
                    std::process::id(),
                    std::thread::current().id()
                ));
                let _ = std::fs::create_dir_all(&path);
                path
            })
            .clone()
    })
}

/// Checks one input (see the module's documentation).
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines().take(16) {
        check_overrides(line);
    }
    let dir = folder();
    let path = dir.join("template.yaml");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    match Template::load(&path) {
        Ok(template) => {
            check_long_form(&template, &dir);
            check_resolution(&template);
        }
        // A template whose `AWS::Include`s are not beside it here (the patterns' own, say) is
        // still resolved, as read without them.
        Err(_) => {
            let Ok(yaml) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
                return;
            };
            if let Ok(doc) = yaml_to_json(yaml) {
                check_resolution(&Template { path, doc });
            }
        }
    }
}

fn check_overrides(line: &str) {
    let Ok(parsed) = parse_overrides(&[line.to_owned()]) else {
        return;
    };
    let written: Vec<String> = parsed
        .iter()
        .map(|(k, v)| format!("ParameterKey={k},ParameterValue={v}"))
        .collect();
    let again = parse_overrides(&written).unwrap_or_else(|e| panic!("{written:?}: {e}"));
    assert_eq!(again, parsed, "{line:?}");
}

fn check_long_form(template: &Template, dir: &std::path::Path) {
    let Ok(yaml) = serde_yaml::to_string(&template.doc) else {
        return;
    };
    let path = dir.join("long-form.yaml");
    if std::fs::write(&path, &yaml).is_err() {
        return;
    }
    let again = Template::load(&path)
        .unwrap_or_else(|e| panic!("the long form does not load: {e:#}\n{yaml}"));
    assert_eq!(
        again.doc, template.doc,
        "the long form read back differs:\n{yaml}"
    );
}

/// A scope for templates whose parameters cannot all be resolved: none, and every resource
/// provisioned with placeholder values.
fn placeholder_scope(template: &Template) -> Scope {
    let resources = template
        .resources()
        .map(|(logical, _)| {
            let physical = Physical {
                reference: format!("{logical}-ref"),
                attributes: BTreeMap::from([("Arn".to_owned(), format!("arn:{logical}"))]),
            };
            (logical.clone(), physical)
        })
        .collect();
    let mut scope = Scope {
        parameters: BTreeMap::new(),
        resources,
        stack_name: "fuzz".into(),
        region: "us-east-1".into(),
        account_id: "123456789012".into(),
        conditions: BTreeMap::new(),
    };
    let _ = scope.evaluate_conditions(template.doc.get("Conditions"));
    scope
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Asserts that `value` holds no intrinsic the resolver handles and, when the template itself
/// has no NUL character, no `AWS::NoValue` marker (it starts with one).
fn assert_resolved(value: &Value, marker_possible: bool, at: &str) {
    match value {
        Value::String(s) => assert!(
            marker_possible || !s.contains('\0'),
            "the AWS::NoValue marker reached a value at {at}: {s:?}"
        ),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                assert_resolved(item, marker_possible, &format!("{at}[{i}]"));
            }
        }
        Value::Object(map) => {
            if map.len() == 1
                && let Some(key) = map.keys().next()
            {
                assert!(
                    !RESOLVED.contains(&key.as_str()),
                    "{key} is left unresolved at {at}: {value}"
                );
            }
            for (k, v) in map {
                assert_resolved(v, marker_possible, &format!("{at}.{k}"));
            }
        }
        _ => {}
    }
}

fn check_resolution(template: &Template) {
    let scope = Scope::for_checks(template).unwrap_or_else(|_| placeholder_scope(template));
    let marker_possible = has_nul(&template.doc);
    let _ = scope.check_rules(template.doc.get("Rules"));
    for (logical, resource) in template.resources() {
        if let Ok(resolved) = scope.resolve(resource) {
            // A whole resource that is `!Ref AWS::NoValue` is the marker itself; its parts not.
            if !resolved.is_string() {
                assert_resolved(&resolved, marker_possible, logical);
            }
        }
    }
    let outputs = template.doc.get("Outputs").and_then(Value::as_object);
    for (name, output) in outputs.into_iter().flatten() {
        if let Ok(resolved @ Value::Object(_)) = scope.resolve(output) {
            assert_resolved(&resolved, marker_possible, name);
        }
    }
}
