//! Resolving a template's values against what the local stack has provisioned: `Ref`,
//! `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, `Fn::Select`, `Fn::If` and the conditions, pseudo
//! parameters, and `AWS::NoValue` (which removes the enclosing property).

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};
use serde_json::{Map, Value};

use super::{Template, scalar_to_string};

/// What a provisioned resource answers to `Ref` and `Fn::GetAtt`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Physical {
    /// The value of `Ref`.
    pub reference: String,
    /// Attribute values for `Fn::GetAtt`.
    pub attributes: BTreeMap<String, String>,
}

/// Why a value could not be resolved yet.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// It refers to a resource that has not been provisioned yet (try again later).
    #[error("resource {0} is not provisioned yet")]
    Pending(String),
    /// It cannot be resolved at all.
    #[error("{0}")]
    Invalid(String),
}

/// Everything `Ref` and friends can see in one stack.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Resolved parameter values.
    pub parameters: BTreeMap<String, String>,
    /// Provisioned resources by logical id.
    pub resources: BTreeMap<String, Physical>,
    /// `AWS::StackName`.
    pub stack_name: String,
    /// `AWS::Region`.
    pub region: String,
    /// `AWS::AccountId`.
    pub account_id: String,
    /// Evaluated `Conditions`.
    pub conditions: BTreeMap<String, bool>,
}

/// What `Ref: AWS::NoValue` resolves to: the enclosing property is removed.
pub(super) const NO_VALUE: &str = "\u{0}AWS::NoValue";

impl Scope {
    /// A scope for checking a template without provisioning it: parameters at their defaults,
    /// conditions evaluated, and every resource answering `Ref` with `<LogicalId>-ref` and each
    /// attribute with a placeholder ARN or name.
    pub fn for_checks(template: &Template) -> Result<Self> {
        let none = BTreeMap::new();
        let generated = template.generated_mappings();
        let resources = template
            .resources()
            .map(|(logical, _)| logical.clone())
            .chain(generated.into_iter().map(|(logical, _, _)| logical))
            .map(|logical| {
                let attributes = [
                    (
                        "Arn",
                        format!("arn:aws:local:us-east-1:123456789012:{logical}"),
                    ),
                    ("QueueName", format!("{logical}-name")),
                    ("QueueUrl", format!("https://sqs.local/{logical}")),
                    ("Name", format!("{logical}-name")),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
                (
                    logical.clone(),
                    Physical {
                        reference: format!("{logical}-ref"),
                        attributes,
                    },
                )
            })
            .collect();
        let mut scope = Scope {
            parameters: template.resolve_parameters(&none, &none)?,
            resources,
            stack_name: "check".into(),
            region: "us-east-1".into(),
            account_id: crate::ACCOUNT_ID.into(),
            conditions: BTreeMap::new(),
        };
        scope
            .evaluate_conditions(template.doc.get("Conditions"))
            .map_err(|e| anyhow!("{e}"))?;
        Ok(scope)
    }

    fn reference(&self, name: &str) -> Result<String, ResolveError> {
        match name {
            "AWS::Region" => return Ok(self.region.clone()),
            "AWS::AccountId" => return Ok(self.account_id.clone()),
            "AWS::Partition" => return Ok("aws".into()),
            "AWS::URLSuffix" => return Ok("amazonaws.com".into()),
            "AWS::StackName" => return Ok(self.stack_name.clone()),
            "AWS::StackId" => {
                return Ok(format!(
                    "arn:aws:cloudformation:{}:{}:stack/{}/local",
                    self.region, self.account_id, self.stack_name
                ));
            }
            "AWS::NoValue" => return Ok(NO_VALUE.to_owned()),
            _ => {}
        }
        if let Some(value) = self.parameters.get(name) {
            return Ok(value.clone());
        }
        self.resources
            .get(name)
            .map(|p| p.reference.clone())
            .ok_or_else(|| ResolveError::Pending(name.to_owned()))
    }

    fn attribute(&self, resource: &str, attribute: &str) -> Result<String, ResolveError> {
        let physical = self
            .resources
            .get(resource)
            .ok_or_else(|| ResolveError::Pending(resource.to_owned()))?;
        physical.attributes.get(attribute).cloned().ok_or_else(|| {
            ResolveError::Invalid(format!("{resource} has no attribute {attribute} locally"))
        })
    }

    /// Resolves every intrinsic function in `value`.
    pub fn resolve(&self, value: &Value) -> Result<Value, ResolveError> {
        match value {
            Value::Array(items) => Ok(Value::Array(
                items
                    .iter()
                    .map(|v| self.resolve(v))
                    .filter(|v| !matches!(v, Ok(Value::String(s)) if s == NO_VALUE))
                    .collect::<Result<_, _>>()?,
            )),
            Value::Object(map) if map.len() == 1 => {
                let (key, arg) = map
                    .iter()
                    .next()
                    .map(|(k, v)| (k.as_str(), v))
                    .ok_or_else(|| ResolveError::Invalid("empty intrinsic".into()))?;
                match key {
                    "Ref" => Ok(Value::String(self.reference(&self.resolve_str(arg)?)?)),
                    "Fn::GetAtt" => {
                        let parts = match self.resolve(arg)? {
                            Value::Array(p) => p.iter().map(scalar_to_string).collect::<Vec<_>>(),
                            Value::String(s) => s.splitn(2, '.').map(str::to_owned).collect(),
                            other => {
                                return Err(ResolveError::Invalid(format!("bad GetAtt {other}")));
                            }
                        };
                        match parts.as_slice() {
                            [r, a] => Ok(Value::String(self.attribute(r, a)?)),
                            _ => Err(ResolveError::Invalid(format!("bad GetAtt {parts:?}"))),
                        }
                    }
                    "Fn::Sub" => Ok(Value::String(self.substitute(arg)?)),
                    "Fn::If" => match arg.as_array().map(Vec::as_slice) {
                        Some([Value::String(condition), then, otherwise]) => {
                            if self.condition(condition)? {
                                self.resolve(then)
                            } else {
                                self.resolve(otherwise)
                            }
                        }
                        _ => Err(ResolveError::Invalid("bad Fn::If".into())),
                    },
                    "Fn::Join" => {
                        let args = self.resolve(arg)?;
                        let (sep, items) = match args.as_array().map(Vec::as_slice) {
                            Some([Value::String(sep), Value::Array(items)]) => {
                                (sep.clone(), items.clone())
                            }
                            _ => return Err(ResolveError::Invalid("bad Fn::Join".into())),
                        };
                        Ok(Value::String(
                            items
                                .iter()
                                .map(scalar_to_string)
                                .collect::<Vec<_>>()
                                .join(&sep),
                        ))
                    }
                    "Fn::Select" => {
                        let args = self.resolve(arg)?;
                        match args.as_array().map(Vec::as_slice) {
                            Some([index, Value::Array(items)]) => {
                                let i: usize = scalar_to_string(index).parse().map_err(|_| {
                                    ResolveError::Invalid("bad Fn::Select index".into())
                                })?;
                                items.get(i).cloned().ok_or_else(|| {
                                    ResolveError::Invalid("Fn::Select index out of range".into())
                                })
                            }
                            _ => Err(ResolveError::Invalid("bad Fn::Select".into())),
                        }
                    }
                    _ => {
                        let resolved = self.resolve(arg)?;
                        // A lone property set to `AWS::NoValue` is removed, as in any object
                        // (the marker used to be kept as its value).
                        if matches!(&resolved, Value::String(s) if s == NO_VALUE) {
                            return Ok(Value::Object(Map::new()));
                        }
                        Ok(Value::Object(
                            [(key.to_owned(), resolved)].into_iter().collect(),
                        ))
                    }
                }
            }
            Value::Object(map) => Ok(Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.resolve(v)?)))
                    .filter(|entry| !matches!(entry, Ok((_, Value::String(s))) if s == NO_VALUE))
                    .collect::<Result<_, ResolveError>>()?,
            )),
            other => Ok(other.clone()),
        }
    }

    /// The value of a named condition.
    pub fn condition(&self, name: &str) -> Result<bool, ResolveError> {
        self.conditions
            .get(name)
            .copied()
            .ok_or_else(|| ResolveError::Invalid(format!("unknown condition {name}")))
    }

    /// Evaluates the template's `Conditions` (`Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or` and
    /// references to other conditions) into [`Scope::conditions`].
    pub fn evaluate_conditions(&mut self, conditions: Option<&Value>) -> Result<(), ResolveError> {
        let Some(all) = conditions.and_then(Value::as_object) else {
            return Ok(());
        };
        // Conditions may refer to each other: evaluate until nothing new resolves.
        let mut left: Vec<(&String, &Value)> = all.iter().collect();
        while !left.is_empty() {
            let before = left.len();
            let mut waiting = Vec::new();
            for (name, expression) in left {
                match self.truth(expression) {
                    Ok(v) => {
                        self.conditions.insert(name.clone(), v);
                    }
                    Err(_) => waiting.push((name, expression)),
                }
            }
            if waiting.len() == before {
                let names: Vec<&str> = waiting.iter().map(|(n, _)| n.as_str()).collect();
                return Err(ResolveError::Invalid(format!(
                    "cannot evaluate conditions {names:?}"
                )));
            }
            left = waiting;
        }
        Ok(())
    }

    fn truth(&self, expression: &Value) -> Result<bool, ResolveError> {
        let bad = || ResolveError::Invalid(format!("bad condition {expression}"));
        let map = expression
            .as_object()
            .filter(|m| m.len() == 1)
            .ok_or_else(bad)?;
        let (op, arg) = map.iter().next().ok_or_else(bad)?;
        let args = || arg.as_array().ok_or_else(bad);
        match op.as_str() {
            "Condition" => self.condition(arg.as_str().ok_or_else(bad)?),
            "Fn::Equals" => match args()?.as_slice() {
                [a, b] => Ok(self.resolve_str(a)? == self.resolve_str(b)?),
                _ => Err(bad()),
            },
            "Fn::Not" => match args()?.as_slice() {
                [a] => Ok(!self.truth(a)?),
                _ => Err(bad()),
            },
            "Fn::And" => args()?
                .iter()
                .try_fold(true, |acc, a| Ok(acc & self.truth(a)?)),
            "Fn::Or" => args()?
                .iter()
                .try_fold(false, |acc, a| Ok(acc | self.truth(a)?)),
            // Rules only: whether a list of strings holds the value.
            "Fn::Contains" => match args()?.as_slice() {
                [list, value] => {
                    let value = self.resolve_str(value)?;
                    let list = list.as_array().ok_or_else(bad)?;
                    list.iter().try_fold(false, |found, item| {
                        Ok(found || self.resolve_str(item)? == value)
                    })
                }
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }

    /// Checks the template's `Rules` as CloudFormation does before it creates anything: for each
    /// rule whose `RuleCondition` holds (or that has none), every `Assertions[].Assert` must
    /// hold; the first that does not is refused with its `AssertDescription`.
    pub fn check_rules(&self, rules: Option<&Value>) -> Result<(), ResolveError> {
        let Some(rules) = rules.and_then(Value::as_object) else {
            return Ok(());
        };
        for (name, rule) in rules {
            let applies = match rule.get("RuleCondition") {
                Some(condition) => self.truth(condition)?,
                None => true,
            };
            if !applies {
                continue;
            }
            let assertions = rule.get("Assertions").and_then(Value::as_array);
            for assertion in assertions.into_iter().flatten() {
                let holds = assertion
                    .get("Assert")
                    .map(|a| self.truth(a))
                    .transpose()?
                    .unwrap_or(true);
                if !holds {
                    let why = assertion
                        .get("AssertDescription")
                        .and_then(Value::as_str)
                        .unwrap_or("an assertion failed");
                    return Err(ResolveError::Invalid(format!(
                        "template rule {name} refuses these parameters: {why}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Resolves `value` to a string.
    pub fn resolve_str(&self, value: &Value) -> Result<String, ResolveError> {
        Ok(scalar_to_string(&self.resolve(value)?))
    }

    fn substitute(&self, arg: &Value) -> Result<String, ResolveError> {
        let (text, vars) = match arg {
            Value::String(s) => (s.clone(), Map::new()),
            Value::Array(items) => match items.as_slice() {
                [Value::String(s), Value::Object(vars)] => (s.clone(), vars.clone()),
                _ => return Err(ResolveError::Invalid("bad Fn::Sub".into())),
            },
            _ => return Err(ResolveError::Invalid("bad Fn::Sub".into())),
        };
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| ResolveError::Invalid(format!("unclosed ${{ in {text}")))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else {
                let value = if let Some(v) = vars.get(name) {
                    self.resolve_str(v)?
                } else if let Some((resource, attribute)) =
                    name.split_once('.').filter(|_| !name.starts_with("AWS::"))
                {
                    self.attribute(resource, attribute)?
                } else {
                    self.reference(name)?
                };
                // `AWS::NoValue` is no string: it cannot be part of one.
                if value == NO_VALUE {
                    return Err(ResolveError::Invalid(format!(
                        "${{{name}}} in Fn::Sub is AWS::NoValue, which is not a string"
                    )));
                }
                out.push_str(&value);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}
