"""Shared reading of templates for this project's cfn-lint rules.

cfn-lint 1.x does not run the SAM translator before the rules: it merges SAM `Globals` into the
resources and hands the rules the template as written. So every rule here understands both the
SAM shape (AWS::Serverless::Function `Events`, AWS::Serverless::Api `DefinitionBody`) and the
plain CloudFormation shape (AWS::Lambda::EventSourceMapping, AWS::ApiGateway::RestApi `Body`,
AWS::ApiGateway::Stage), through the small views below.

cfn-lint loads every `[A-Za-z1-9]*.py` file of an `--append-rules` directory as a rule module; this
module's leading underscore keeps it out of that scan, and the rule modules import it by name
after putting this directory on `sys.path`.

Values are read the way a deployment with default parameters would see them, with one twist:
an `Fn::If` one of whose branches is `AWS::NoValue` is opt-in (the setting is off unless a
condition turns it on).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from cfnlint.decode import decode

NO_VALUE = "AWS::NoValue"
SAM_FUNCTION = "AWS::Serverless::Function"
FUNCTION_TYPES = ("AWS::Lambda::Function", SAM_FUNCTION)
HTTP_METHODS = (
    "get",
    "put",
    "post",
    "delete",
    "options",
    "head",
    "patch",
    "trace",
    "x-amazon-apigateway-any-method",
)

Path = list  # a cfn-lint match path: keys and list indexes from the template root


# --- template basics ---------------------------------------------------------------------------


def resources(template: dict, *types: str) -> Iterator[tuple[str, dict]]:
    """(logical id, resource) of every resource of one of `types` (all resources if none)."""
    section = template.get("Resources")
    if not isinstance(section, dict):
        return
    for logical, resource in section.items():
        if not isinstance(resource, dict):
            continue
        if not types or resource.get("Type") in types:
            yield str(logical), resource


def properties(resource: dict) -> dict:
    props = resource.get("Properties")
    return props if isinstance(props, dict) else {}


def resource_type(template: dict, logical: str) -> str | None:
    resource = (template.get("Resources") or {}).get(logical)
    return resource.get("Type") if isinstance(resource, dict) else None


def parameter(template: dict, name: str) -> dict | None:
    params = template.get("Parameters")
    if isinstance(params, dict) and isinstance(params.get(name), dict):
        return params[name]
    return None


def intrinsic(value: Any) -> tuple[str | None, Any]:
    """("Fn::If", args) for a one-key intrinsic function mapping, (None, value) otherwise."""
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        if key == "Ref" or str(key).startswith("Fn::") or key == "Condition":
            return str(key), value[key]
    return None, value


def is_no_value(value: Any) -> bool:
    name, arg = intrinsic(value)
    return name == "Ref" and arg == NO_VALUE


def if_branches(value: Any) -> list[Any] | None:
    """The two branches of an `Fn::If`, or None when `value` is not one."""
    name, arg = intrinsic(value)
    if name == "Fn::If" and isinstance(arg, list) and len(arg) == 3:
        return [arg[1], arg[2]]
    return None


def to_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def text(template: dict, value: Any) -> str:
    """The literal text in a string-ish value (Fn::Sub's template, Fn::Join's parts, a referenced
    parameter's Default), to recognise ARNs such as `arn:${AWS::Partition}:sqs:...`."""
    if isinstance(value, str):
        return value
    name, arg = intrinsic(value)
    if name == "Fn::Sub":
        return text(template, arg[0] if isinstance(arg, list) and arg else arg)
    if name == "Fn::Join" and isinstance(arg, list) and len(arg) == 2:
        parts = arg[1] if isinstance(arg[1], list) else []
        return text(template, arg[0]).join(text(template, p) for p in parts)
    if name == "Ref" and isinstance(arg, str):
        param = parameter(template, arg)
        if param is not None:
            return text(template, param.get("Default", ""))
    return ""


def getatt(value: Any) -> tuple[str, str] | None:
    """(logical id, attribute) of an `Fn::GetAtt`, in list or dotted form."""
    name, arg = intrinsic(value)
    if name != "Fn::GetAtt":
        return None
    if isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg):
        return str(arg[0]), str(arg[1])
    if isinstance(arg, str) and "." in arg:
        logical, attribute = arg.split(".", 1)
        return logical, attribute
    return None


def referenced_resource(value: Any) -> str | None:
    """The logical id a `Ref` or `Fn::GetAtt` points at."""
    name, arg = intrinsic(value)
    if name == "Ref" and isinstance(arg, str):
        return arg
    pair = getatt(value)
    return pair[0] if pair else None


def refs(value: Any) -> set[str]:
    """Every name `value` refers to with `Ref` (anywhere inside it)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            else:
                found |= refs(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= refs(inner)
    return found


# --- values that vary with parameters and conditions -------------------------------------------


def default_number(
    template: dict, value: Any, overrides: dict | None = None
) -> float | None:
    """A number as deployed with default parameters (`overrides` replace defaults)."""
    number = to_number(value)
    if number is not None:
        return number
    name, arg = intrinsic(value)
    if name == "Ref" and isinstance(arg, str):
        if overrides and arg in overrides:
            return to_number(overrides[arg])
        param = parameter(template, arg)
        if param is not None:
            return to_number(param.get("Default"))
    return None


def unconditional_reservation(
    template: dict, value: Any, overrides: dict | None = None
) -> tuple[int, str] | None:
    """Reserved concurrency a `ReservedConcurrentExecutions` value always takes, and how it was
    read; None when it is absent, unknown or opt-in (an `Fn::If` with an `AWS::NoValue` branch).
    An `Fn::If` between two numbers reserves the larger."""
    if value is None or is_no_value(value):
        return None
    branches = if_branches(value)
    if branches is not None:
        if any(is_no_value(b) for b in branches):
            return None
        read = [unconditional_reservation(template, b, overrides) for b in branches]
        known = [r for r in read if r is not None]
        return max(known) if known else None
    number = default_number(template, value, overrides)
    if number is None:
        return None
    name, arg = intrinsic(value)
    how = f"the Default of parameter {arg}" if name == "Ref" else "a literal"
    if name == "Ref" and overrides and arg in overrides:
        how = f"parameter {arg} as the parent stack passes it"
    return int(number), how


@dataclass
class Possible:
    """What a numeric setting may be at deploy time, over every parameter value the template
    accepts and both branches of every `Fn::If`."""

    absent: bool = False
    low: float = math.inf
    high: float = -math.inf
    unknown: bool = False
    parameters: set[str] = field(default_factory=set)

    def merge(self, other: "Possible") -> "Possible":
        return Possible(
            absent=self.absent or other.absent,
            low=min(self.low, other.low),
            high=max(self.high, other.high),
            unknown=self.unknown or other.unknown,
            parameters=self.parameters | other.parameters,
        )


def possible(template: dict, value: Any) -> Possible:
    if value is None or is_no_value(value):
        return Possible(absent=True)
    number = to_number(value)
    if number is not None:
        return Possible(low=number, high=number)
    branches = if_branches(value)
    if branches is not None:
        first, second = (possible(template, b) for b in branches)
        return first.merge(second)
    name, arg = intrinsic(value)
    if name == "Ref" and isinstance(arg, str):
        param = parameter(template, arg)
        if param is None:
            return Possible(unknown=True)
        allowed = param.get("AllowedValues")
        if isinstance(allowed, list) and allowed:
            numbers = [n for n in map(to_number, allowed) if n is not None]
            if not numbers:
                return Possible(unknown=True, parameters={arg})
            return Possible(low=min(numbers), high=max(numbers), parameters={arg})
        low = to_number(param.get("MinValue"))
        high = to_number(param.get("MaxValue"))
        return Possible(
            low=-math.inf if low is None else low,
            high=math.inf if high is None else high,
            parameters={arg},
        )
    return Possible(unknown=True)


def always(value: Any, holds) -> bool:
    """Whether `holds(v)` is true of `value` on every branch of its `Fn::If`s (`AWS::NoValue`
    is passed as None)."""
    if is_no_value(value):
        return bool(holds(None))
    branches = if_branches(value)
    if branches is not None:
        return all(always(b, holds) for b in branches)
    return bool(holds(value))


def guarded_by_rules(template: dict, names: set[str]) -> str | None:
    """The template `Rules` entry whose condition and assertions mention every parameter in
    `names` (the way a template refuses a combination of parameter values before deploying)."""
    rules = template.get("Rules")
    if not names or not isinstance(rules, dict):
        return None
    for rule_name, rule in rules.items():
        if not isinstance(rule, dict) or not rule.get("Assertions"):
            continue
        mentioned = refs(rule.get("Assertions")) | refs(rule.get("RuleCondition"))
        if names <= mentioned:
            return str(rule_name)
    return None


# --- functions and their event sources ---------------------------------------------------------


@dataclass
class EventSource:
    """One Lambda event source mapping, whether an AWS::Lambda::EventSourceMapping or a SAM
    function event. `props` uses the mapping's property names (SAM's events share them)."""

    label: str
    kind: str  # "sqs", "kinesis", "dynamodb" or "other"
    function: str | None  # logical id of the function it invokes, when known
    props: dict
    path: Path


SAM_EVENT_KINDS = {"SQS": "sqs", "Kinesis": "kinesis", "DynamoDB": "dynamodb"}
GETATT_KINDS = {
    ("AWS::SQS::Queue", "Arn"): "sqs",
    ("AWS::Kinesis::Stream", "Arn"): "kinesis",
    ("AWS::Kinesis::StreamConsumer", "ConsumerARN"): "kinesis",
    ("AWS::DynamoDB::Table", "StreamArn"): "dynamodb",
    ("AWS::DynamoDB::GlobalTable", "StreamArn"): "dynamodb",
}


def source_kind(template: dict, arn: Any) -> str:
    pair = getatt(arn)
    if pair is not None:
        return GETATT_KINDS.get((resource_type(template, pair[0]) or "", pair[1]), "other")
    literal = text(template, arn)
    if re.search(r":sqs:", literal):
        return "sqs"
    if re.search(r":kinesis:", literal):
        return "kinesis"
    if re.search(r":dynamodb:", literal) and "/stream/" in literal:
        return "dynamodb"
    return "other"


def event_sources(template: dict) -> Iterator[EventSource]:
    for logical, mapping in resources(template, "AWS::Lambda::EventSourceMapping"):
        props = properties(mapping)
        target = referenced_resource(props.get("FunctionName"))
        if target is not None and resource_type(template, target) not in FUNCTION_TYPES:
            target = None
        yield EventSource(
            label=logical,
            kind=source_kind(template, props.get("EventSourceArn")),
            function=target,
            props=props,
            path=["Resources", logical, "Properties"],
        )
    for logical, function in resources(template, SAM_FUNCTION):
        events = properties(function).get("Events")
        if not isinstance(events, dict):
            continue
        for name, event in events.items():
            if not isinstance(event, dict):
                continue
            props = event.get("Properties")
            yield EventSource(
                label=f"{logical}.Events.{name}",
                kind=SAM_EVENT_KINDS.get(str(event.get("Type")), "other"),
                function=logical,
                props=props if isinstance(props, dict) else {},
                path=["Resources", logical, "Properties", "Events", name, "Properties"],
            )


def function_reservation(
    template: dict, logical: str, overrides: dict | None = None
) -> tuple[int, str] | None:
    """The reserved concurrency a function always has (see `unconditional_reservation`); a
    function that exists only under a `Condition` is opt-in and has none."""
    resource = (template.get("Resources") or {}).get(logical)
    if not isinstance(resource, dict) or resource.get("Condition"):
        return None
    return unconditional_reservation(
        template, properties(resource).get("ReservedConcurrentExecutions"), overrides
    )


# --- OpenAPI documents of REST APIs ------------------------------------------------------------


@dataclass
class OpenApi:
    """A REST API's OpenAPI document: inline, or read from the local file an `AWS::Include`
    transform (or a SAM `DefinitionUri`) names."""

    api: str
    doc: dict
    path: Path  # where the document (or the include naming it) sits in the template
    source: str | None  # the included file, None when inline
    # SAM's Auth.DefaultAuthorizer, which the SAM transform writes into every operation's own
    # `security` (and whether it skips OPTIONS, per AddDefaultAuthorizerToCorsPreflight).
    sam_default_authorizer: str | None = None
    sam_default_authorizer_on_options: bool = True

    def where(self, pointer: list) -> tuple[Path, str]:
        """The match path for a place inside the document (the include itself when the document
        is not inline), and how to name an operation there in a message ("UsersApi POST /users
        in openapi.yaml")."""
        route, method = (pointer[1], pointer[2]) if len(pointer) >= 3 else ("", "")
        label = f"{self.api} {str(method).upper()} {route}".rstrip()
        if self.source is None:
            return self.path + pointer, label
        return self.path, f"{label} in {self.source}"


def _include_location(value: Any) -> str | None:
    name, arg = intrinsic(value)
    if name != "Fn::Transform":
        return None
    for transform in arg if isinstance(arg, list) else [arg]:
        if isinstance(transform, dict) and transform.get("Name") == "AWS::Include":
            location = (transform.get("Parameters") or {}).get("Location")
            if isinstance(location, str):
                return location
    return None


def _read_local(template_file: str | None, location: str) -> tuple[dict, str] | None:
    if template_file is None or re.match(r"^[a-z0-9]+://", location):
        return None  # stdin, or S3/HTTPS: nothing on disk to read
    path = os.path.join(os.path.dirname(template_file), location)
    if not os.path.isfile(path):
        return None
    doc, problems = decode(path)
    if problems or not isinstance(doc, dict):
        return None
    return doc, os.path.normpath(path)


def openapi_documents(template: dict, template_file: str | None) -> Iterator[OpenApi]:
    kinds = {
        "AWS::ApiGateway::RestApi": ("Body", None),
        "AWS::Serverless::Api": ("DefinitionBody", "DefinitionUri"),
    }
    for logical, api in resources(template, *kinds):
        props = properties(api)
        body_key, uri_key = kinds[api["Type"]]
        base = ["Resources", logical, "Properties"]
        body = props.get(body_key)
        location = _include_location(body)
        if location is None and body is None and uri_key and isinstance(props.get(uri_key), str):
            location, body_key = props[uri_key], uri_key
        auth = props.get("Auth") if isinstance(props.get("Auth"), dict) else {}
        default = auth.get("DefaultAuthorizer")
        sam_auth = {
            "sam_default_authorizer": default if isinstance(default, str) else None,
            "sam_default_authorizer_on_options": auth.get("AddDefaultAuthorizerToCorsPreflight")
            is not False,
        }
        if location is not None:
            read = _read_local(template_file, location)
            if read is not None:
                yield OpenApi(logical, read[0], base + [body_key], read[1], **sam_auth)
        elif isinstance(body, dict):
            yield OpenApi(logical, body, base + [body_key], None, **sam_auth)


def operations(doc: dict) -> Iterator[tuple[list, dict]]:
    """(pointer, operation) of every operation under `paths`."""
    paths = doc.get("paths")
    if not isinstance(paths, dict):
        return
    for route, item in paths.items():
        if not isinstance(item, dict):
            continue
        for method, operation in item.items():
            if str(method).lower() in HTTP_METHODS and isinstance(operation, dict):
                yield ["paths", route, method], operation
