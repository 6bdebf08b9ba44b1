//! Reading CloudFormation / SAM templates: YAML with short-form intrinsics, parameters with their
//! defaults, constraints and overrides, SAM `Globals`, and the resolution of `Ref`, `Fn::GetAtt`,
//! `Fn::Sub`, `Fn::Join` and `Fn::Select` against what the local stack has provisioned.
//!
//! Templates are turned into JSON values, with short-form tags (`!Ref X`) rewritten to their long
//! form (`{"Ref": "X"}`), so every later step deals with one representation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Map, Value, json};

mod resolve;
pub use resolve::{Physical, ResolveError, Scope};

/// A template read from disk.
#[derive(Debug, Clone)]
pub struct Template {
    /// Where it was read from (nested `Location`s are relative to its folder).
    pub path: PathBuf,
    /// The whole document, intrinsics in long form.
    pub doc: Value,
}

impl Template {
    /// Reads and parses `path`, then applies SAM `Globals` to its functions.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read template {}", path.display()))?;
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text)
            .with_context(|| format!("{} is not valid YAML", path.display()))?;
        let mut doc = yaml_to_json(yaml)?;
        let mut chain = vec![path.canonicalize().unwrap_or_else(|_| path.to_path_buf())];
        include_local_files(
            &mut doc,
            path.parent().unwrap_or(Path::new(".")),
            &mut chain,
        )?;
        apply_function_globals(&mut doc);
        Ok(Self {
            path: path.to_path_buf(),
            doc,
        })
    }

    /// The `Resources` section.
    pub fn resources(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.doc
            .get("Resources")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
    }

    /// Resources of one type.
    pub fn resources_of<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Value)> {
        self.resources()
            .filter(move |(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
    }

    /// The event source mappings SAM generates for the functions' queue and stream events, as
    /// `(logical id, function's logical id, event name)`: `<function><event>` (SAM, "Generated
    /// AWS CloudFormation resources"), a resource templates may `Ref` (its UUID).
    pub fn generated_mappings(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (function, resource) in self.resources_of("AWS::Serverless::Function") {
            for (event, spec) in resource
                .pointer("/Properties/Events")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let kind = spec.get("Type").and_then(Value::as_str).unwrap_or_default();
                if matches!(
                    kind,
                    "SQS"
                        | "Kinesis"
                        | "DynamoDB"
                        | "MSK"
                        | "MQ"
                        | "SelfManagedKafka"
                        | "DocumentDB"
                ) {
                    out.push((
                        format!("{function}{event}"),
                        function.clone(),
                        event.clone(),
                    ));
                }
            }
        }
        out
    }

    /// Resolves the template's parameters: defaults, then values given by a parent stack, then
    /// overrides; each checked against its `MinValue`, `MaxValue` and `AllowedValues`.
    pub fn resolve_parameters(
        &self,
        given: &BTreeMap<String, String>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        let mut resolved = BTreeMap::new();
        let declared = self.doc.get("Parameters").and_then(Value::as_object);
        for (name, decl) in declared.into_iter().flatten() {
            let value = overrides
                .get(name)
                .or_else(|| given.get(name))
                .cloned()
                .or_else(|| decl.get("Default").map(scalar_to_string))
                .ok_or_else(|| {
                    anyhow!(
                        "parameter {name} of {} has no value and no Default",
                        self.path.display()
                    )
                })?;
            check_parameter(name, decl, &value)
                .with_context(|| format!("in {}", self.path.display()))?;
            resolved.insert(name.clone(), value);
        }
        Ok(resolved)
    }
}

fn check_parameter(name: &str, decl: &Value, value: &str) -> Result<()> {
    if let Some(allowed) = decl.get("AllowedValues").and_then(Value::as_array)
        && !allowed.iter().any(|a| scalar_to_string(a) == value)
    {
        bail!("parameter {name}={value} is not one of its AllowedValues");
    }
    if decl.get("Type").and_then(Value::as_str) == Some("Number") {
        let number: f64 = value
            .parse()
            .map_err(|_| anyhow!("parameter {name} must be a number, got {value:?}"))?;
        if let Some(min) = decl.get("MinValue").and_then(as_f64)
            && number < min
        {
            bail!("parameter {name}={value} is below its MinValue {min}");
        }
        if let Some(max) = decl.get("MaxValue").and_then(as_f64)
            && number > max
        {
            bail!("parameter {name}={value} is above its MaxValue {max}");
        }
    }
    Ok(())
}

fn as_f64(v: &Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// A scalar as CloudFormation passes it around: as a string.
pub fn scalar_to_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Converts YAML to JSON, rewriting short-form intrinsic tags to their long form.
pub fn yaml_to_json(yaml: serde_yaml::Value) -> Result<Value> {
    use serde_yaml::Value as Y;
    Ok(match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n)?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            Value::Array(items.into_iter().map(yaml_to_json).collect::<Result<_>>()?)
        }
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    other => scalar_to_string(&yaml_to_json(other)?),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = yaml_to_json(tagged.value)?;
            match tag {
                "Ref" => json!({ "Ref": inner }),
                "Condition" => json!({ "Condition": inner }),
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (resource, attribute) = s
                            .split_once('.')
                            .ok_or_else(|| anyhow!("!GetAtt {s} needs Resource.Attribute"))?;
                        json!({ "Fn::GetAtt": [resource, attribute] })
                    }
                    other => json!({ "Fn::GetAtt": other }),
                },
                other => json!({ format!("Fn::{other}"): inner }),
            }
        }
    })
}

/// Replaces `Fn::Transform: {Name: AWS::Include, Parameters: {Location: <local file>}}` with the
/// file's content, as `sam package` / `sam deploy` do before CloudFormation sees the template.
/// `chain` holds the files being read, outermost first: a file that includes itself, directly or
/// through others, is an error (it used to recurse until the stack overflowed).
fn include_local_files(value: &mut Value, base: &Path, chain: &mut Vec<PathBuf>) -> Result<()> {
    let include = value
        .as_object()
        .and_then(|m| m.get("Fn::Transform"))
        .filter(|t| t.get("Name").and_then(Value::as_str) == Some("AWS::Include"))
        .and_then(|t| t.pointer("/Parameters/Location"))
        .and_then(Value::as_str)
        .filter(|location| !location.starts_with("s3://"))
        .map(|location| base.join(location));
    if let Some(file) = include {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read included file {}", file.display()))?;
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text)
            .with_context(|| format!("{} is not valid YAML", file.display()))?;
        let canonical = file.canonicalize().unwrap_or_else(|_| file.clone());
        if chain.contains(&canonical) {
            bail!(
                "{} includes itself (AWS::Include through {})",
                file.display(),
                chain
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" -> ")
            );
        }
        *value = yaml_to_json(yaml)?;
        chain.push(canonical);
        let included = include_local_files(value, file.parent().unwrap_or(base), chain);
        chain.pop();
        return included;
    }
    match value {
        Value::Object(map) => map
            .values_mut()
            .try_for_each(|v| include_local_files(v, base, chain)),
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|v| include_local_files(v, base, chain)),
        _ => Ok(()),
    }
}

/// Merges SAM `Globals.Function` into every `AWS::Serverless::Function`, as SAM's transform does:
/// scalar properties are defaults, maps (such as `Environment.Variables`) are merged.
fn apply_function_globals(doc: &mut Value) {
    let Some(globals) = doc.pointer("/Globals/Function").cloned() else {
        return;
    };
    let Some(resources) = doc.get_mut("Resources").and_then(Value::as_object_mut) else {
        return;
    };
    for resource in resources.values_mut() {
        if resource.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
            continue;
        }
        let props = resource
            .as_object_mut()
            .map(|r| r.entry("Properties").or_insert_with(|| json!({})));
        if let Some(props) = props {
            *props = merge_defaults(&globals, props);
        }
    }
}

fn merge_defaults(defaults: &Value, specific: &Value) -> Value {
    match (defaults, specific) {
        (Value::Object(d), Value::Object(s)) => {
            let mut out = d.clone();
            for (k, v) in s {
                let merged = match d.get(k) {
                    Some(dv) if dv.is_object() && v.is_object() && !is_intrinsic(v) => {
                        merge_defaults(dv, v)
                    }
                    _ => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (_, s) => s.clone(),
    }
}

fn is_intrinsic(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| m.len() == 1 && m.keys().all(|k| k == "Ref" || k.starts_with("Fn::")))
}

/// Parses `Name=Value` overrides, as `sam deploy --parameter-overrides` takes them (also
/// `ParameterKey=Name,ParameterValue=Value`). A name may be qualified by a nested stack's logical
/// id (`Orders.MaxReceiveCount=2`) to reach that stack only.
pub fn parse_overrides(items: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items.iter().flat_map(|s| s.split_whitespace()) {
        if let Some(rest) = item.strip_prefix("ParameterKey=") {
            let (key, value) = rest
                .split_once(",ParameterValue=")
                .ok_or_else(|| anyhow!("bad parameter override {item:?}"))?;
            out.insert(key.to_owned(), value.to_owned());
            continue;
        }
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("parameter override {item:?} is not Name=Value"))?;
        if key.is_empty() {
            bail!("parameter override {item:?} has no name");
        }
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            parameters: BTreeMap::from([("Size".into(), "10".into())]),
            resources: BTreeMap::from([(
                "Queue".into(),
                Physical {
                    reference: "http://q".into(),
                    attributes: BTreeMap::from([("Arn".into(), "arn:q".into())]),
                },
            )]),
            stack_name: "s".into(),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            conditions: BTreeMap::new(),
        }
    }

    #[test]
    fn conditions_choose_values_and_no_value_removes_properties() {
        let mut s = scope();
        s.evaluate_conditions(Some(&json!({
            "Big": {"Fn::Equals": [{"Ref": "Size"}, "10"]},
            "Small": {"Fn::Not": [{"Condition": "Big"}]}
        })))
        .expect("conditions");
        let v = json!({"a": {"Fn::If": ["Big", "yes", "no"]},
                       "b": {"Fn::If": ["Small", 1, {"Ref": "AWS::NoValue"}]},
                       "c": [1, {"Fn::If": ["Small", 2, {"Ref": "AWS::NoValue"}]}]});
        assert_eq!(
            s.resolve(&v).expect("resolved"),
            json!({"a": "yes", "c": [1]})
        );
    }

    #[test]
    fn no_value_never_becomes_a_value() {
        // Found by the cfn_template fuzz checks: the internal marker of `AWS::NoValue` was kept as
        // the value of a lone property (an `Environment.Variables` with one variable) and
        // substituted into `Fn::Sub` strings.
        let mut s = scope();
        s.evaluate_conditions(Some(&json!({"Never": {"Fn::Equals": ["a", "b"]}})))
            .expect("conditions");
        let lone =
            json!({"Variables": {"ONLY": {"Fn::If": ["Never", "x", {"Ref": "AWS::NoValue"}]}}});
        assert_eq!(
            s.resolve(&lone).expect("resolved"),
            json!({"Variables": {}})
        );
        for sub in [
            json!({"Fn::Sub": "a-${AWS::NoValue}"}),
            json!({"Fn::Sub": ["a-${X}", {"X": {"Ref": "AWS::NoValue"}}]}),
        ] {
            assert!(
                matches!(s.resolve(&sub), Err(ResolveError::Invalid(_))),
                "{sub}"
            );
        }
    }

    #[test]
    fn rules_refuse_parameters_their_assertions_reject() {
        let rules = json!({"Window": {
            "RuleCondition": {"Fn::Not": [{"Fn::Contains": [["1", "2", "10"], {"Ref": "Size"}]}]},
            "Assertions": [{"Assert": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Wait"}, "0"]}]},
                            "AssertDescription": "a batch above 10 needs a window"}]}});
        let with = |size: &str, wait: &str| {
            let mut s = scope();
            s.parameters.insert("Size".into(), size.into());
            s.parameters.insert("Wait".into(), wait.into());
            s.check_rules(Some(&rules)).map_err(|e| e.to_string())
        };
        assert!(
            with("10", "0").is_ok(),
            "the rule's condition does not hold"
        );
        assert!(with("50", "1").is_ok(), "the assertion holds");
        let refused = with("50", "0").expect_err("refused");
        assert!(
            refused.contains("Window") && refused.contains("a batch above 10 needs a window"),
            "{refused}"
        );
    }

    #[test]
    fn a_template_that_includes_itself_is_an_error_not_a_stack_overflow() {
        // Found by the cfn_template fuzz checks: `AWS::Include` of the template itself, or of a
        // file that includes it back, recursed until the stack overflowed.
        let dir = std::env::temp_dir().join(format!("cfn-include-cycle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let include = |location: &str| {
            format!(
                "Resources:\n  Api:\n    Type: AWS::Serverless::Api\n    Properties:\n      \
                 DefinitionBody:\n        Fn::Transform:\n          Name: AWS::Include\n          \
                 Parameters:\n            Location: {location}\n"
            )
        };
        std::fs::write(dir.join("self.yaml"), include("self.yaml")).expect("write");
        std::fs::write(dir.join("a.yaml"), include("b.yaml")).expect("write");
        std::fs::write(
            dir.join("b.yaml"),
            "x:\n  Fn::Transform: {Name: AWS::Include, Parameters: {Location: a.yaml}}\n",
        )
        .expect("write");
        std::fs::write(dir.join("c.yaml"), include("d.yaml")).expect("write");
        std::fs::write(dir.join("d.yaml"), "[1, {Fn::Transform: {Name: AWS::Include, Parameters: {Location: e.yaml}}}, {Fn::Transform: {Name: AWS::Include, Parameters: {Location: e.yaml}}}]").expect("write");
        std::fs::write(dir.join("e.yaml"), "2").expect("write");
        for cycle in ["self.yaml", "a.yaml"] {
            let error = Template::load(&dir.join(cycle)).expect_err("a cycle");
            assert!(
                format!("{error:#}").contains("includes itself"),
                "{error:#}"
            );
        }
        let twice = Template::load(&dir.join("c.yaml")).expect("the same file twice is no cycle");
        assert_eq!(
            twice
                .doc
                .pointer("/Resources/Api/Properties/DefinitionBody"),
            Some(&json!([1, 2, 2]))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn short_form_tags_become_long_form() {
        let yaml: serde_yaml::Value = serde_yaml::from_str(
            "a: !Ref X\nb: !GetAtt Q.Arn\nc: !Sub 'x-${Y}'\nd: !Join [',', [a, b]]",
        )
        .expect("yaml");
        let json = yaml_to_json(yaml).expect("converted");
        assert_eq!(json["a"], json!({"Ref": "X"}));
        assert_eq!(json["b"], json!({"Fn::GetAtt": ["Q", "Arn"]}));
        assert_eq!(json["c"], json!({"Fn::Sub": "x-${Y}"}));
        assert_eq!(json["d"], json!({"Fn::Join": [",", ["a", "b"]]}));
    }

    #[test]
    fn intrinsics_resolve_against_the_scope() {
        let s = scope();
        let v = json!({"a": {"Ref": "Size"}, "b": {"Fn::GetAtt": ["Queue", "Arn"]},
                       "c": {"Fn::Sub": "${AWS::Region}/${Queue}/${Queue.Arn}/${!Literal}"}});
        let r = s.resolve(&v).expect("resolved");
        assert_eq!(
            r,
            json!({"a": "10", "b": "arn:q", "c": "us-east-1/http://q/arn:q/${Literal}"})
        );
        assert!(matches!(
            s.resolve(&json!({"Ref": "Later"})),
            Err(ResolveError::Pending(_))
        ));
    }

    #[test]
    fn overrides_parse_both_forms_and_reject_garbage() {
        let o = parse_overrides(&["A=1 B=x=y".into(), "ParameterKey=C,ParameterValue=3".into()])
            .expect("parsed");
        assert_eq!(o["A"], "1");
        assert_eq!(o["B"], "x=y");
        assert_eq!(o["C"], "3");
        assert!(parse_overrides(&["nonsense".into()]).is_err());
    }

    #[test]
    fn parameters_are_checked_against_their_constraints() {
        let t = Template {
            path: "t.yaml".into(),
            doc: json!({"Parameters": {"N": {"Type": "Number", "Default": 5, "MinValue": 1, "MaxValue": 10}}}),
        };
        let none = BTreeMap::new();
        assert_eq!(
            t.resolve_parameters(&none, &none).expect("default")["N"],
            "5"
        );
        let over = BTreeMap::from([("N".to_owned(), "11".to_owned())]);
        assert!(t.resolve_parameters(&none, &over).is_err());
        let word = BTreeMap::from([("N".to_owned(), "many".to_owned())]);
        assert!(t.resolve_parameters(&none, &word).is_err());
    }
}
