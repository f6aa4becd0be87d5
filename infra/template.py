"""Reading `template.yaml`: a YAML loader for CloudFormation's short tags and a small resolver
of the intrinsic functions that the local stack needs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

# infra/template.py -> the repository root, where SAM expects the template.
DEFAULT_TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"

# Short tag -> long key. `!Ref` and `!Condition` are not `Fn::` functions.
_TAGS = {
    "Ref": "Ref",
    "Condition": "Condition",
    **{
        name: f"Fn::{name}"
        for name in (
            "Sub",
            "GetAtt",
            "Join",
            "Select",
            "If",
            "Equals",
            "Not",
            "Split",
            "FindInMap",
            "ImportValue",
            "Base64",
            "GetAZs",
            "And",
            "Or",
            "Cidr",
        )
    },
}

# `${Name}` or `${Name.Attr}` in an Fn::Sub string; `${!Literal}` is an escape.
_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


class TemplateError(ValueError):
    """A template that cannot be read or a value that cannot be resolved."""


class CloudFormationLoader(yaml.SafeLoader):
    """A YAML SafeLoader that turns CloudFormation short tags into their long forms."""

    # CloudFormation reads an unquoted 2010-09-09 as a string, not a date: drop the
    # timestamp resolver so that a forgotten quote does not change the value.
    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def _construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise TemplateError(f"unsupported YAML node {node!r}")  # pragma: no cover


def _short_tag(key: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value = _construct(loader, node)
        # `!GetAtt Res.Attr` is a string; the long form is always [Res, Attr]. Split once:
        # attribute names may contain dots themselves (Endpoint.Address).
        if key == "Fn::GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {key: value}

    return construct


for _tag, _key in _TAGS.items():
    CloudFormationLoader.add_constructor(f"!{_tag}", _short_tag(_key))


def load_template(path: Path | None = None) -> dict[str, Any]:
    """The template at `path` (the repository's template.yaml by default) as long-form data."""
    path = path or DEFAULT_TEMPLATE
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=CloudFormationLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"cannot read template {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path} is not a CloudFormation template (no Resources mapping)")
    return data


def resolve(value: Any, refs: Mapping[str, Any], attrs: Mapping[tuple[str, str], str]) -> Any:
    """`value` with Ref, Fn::Sub, Fn::GetAtt and Fn::Join evaluated, recursively.

    :param refs: what `Ref` gives, by logical id or pseudo parameter (`AWS::StackName`).
    :param attrs: what `Fn::GetAtt` gives, by (logical id, attribute).
    """
    if isinstance(value, list):
        return [resolve(item, refs, attrs) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return _ref(arg, refs)
        if key == "Fn::GetAtt":
            return _get_att(arg, refs, attrs)
        if key == "Fn::Sub":
            return _sub(arg, refs, attrs)
        if key == "Fn::Join":
            return _join(arg, refs, attrs)
        if key.startswith("Fn::"):
            raise TemplateError(f"{key} is not supported by the local resolver: {value!r}")
    return {key: resolve(item, refs, attrs) for key, item in value.items()}


def _ref(name: Any, refs: Mapping[str, Any]) -> Any:
    if not isinstance(name, str):
        raise TemplateError(f"Ref needs a name, got {name!r}")
    if name not in refs:
        raise TemplateError(f"cannot resolve Ref {name!r}: unknown resource or parameter")
    return refs[name]


def _get_att(arg: Any, refs: Mapping[str, Any], attrs: Mapping[tuple[str, str], str]) -> str:
    if isinstance(arg, str):
        arg = arg.split(".", 1)
    arg = resolve(arg, refs, attrs)
    if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg)):
        raise TemplateError(f"Fn::GetAtt needs [resource, attribute], got {arg!r}")
    key = (arg[0], arg[1])
    if key not in attrs:
        raise TemplateError(f"cannot resolve Fn::GetAtt {arg[0]}.{arg[1]}: unknown attribute")
    return attrs[key]


def _sub(arg: Any, refs: Mapping[str, Any], attrs: Mapping[tuple[str, str], str]) -> str:
    variables: dict[str, Any] = {}
    if isinstance(arg, list):
        if len(arg) != 2 or not isinstance(arg[0], str) or not isinstance(arg[1], dict):
            raise TemplateError(f"Fn::Sub needs a string or [string, variables], got {arg!r}")
        text = arg[0]
        variables = {name: resolve(v, refs, attrs) for name, v in arg[1].items()}
    elif isinstance(arg, str):
        text = arg
    else:
        raise TemplateError(f"Fn::Sub needs a string or [string, variables], got {arg!r}")

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            # `${!Name}` is CloudFormation's escape for a literal `${Name}`.
            return "${" + name[1:] + "}"
        if name in variables:
            return str(variables[name])
        if name in refs:
            return str(refs[name])
        if "." in name:
            return _get_att(name, refs, attrs)
        raise TemplateError(f"cannot resolve ${{{name}}} in Fn::Sub {text!r}")

    return _SUB_VAR.sub(substitute, text)


def _join(arg: Any, refs: Mapping[str, Any], attrs: Mapping[tuple[str, str], str]) -> str:
    arg = resolve(arg, refs, attrs)
    if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str)):
        raise TemplateError(f"Fn::Join needs [delimiter, [values]], got {arg!r}")
    delimiter: str = arg[0]
    items = arg[1]
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise TemplateError(f"Fn::Join needs a list of strings, got {items!r}")
    return delimiter.join(items)


def conditions(template: Mapping[str, Any], refs: Mapping[str, Any]) -> dict[str, bool]:
    """The template's conditions, evaluated with `refs` (parameters and pseudo parameters):
    Fn::Equals, Fn::Not, Fn::And, Fn::Or and Condition over resolvable values."""
    declared: Mapping[str, Any] = template.get("Conditions") or {}
    values: dict[str, bool] = {}

    def evaluate(expression: Any, seen: tuple[str, ...]) -> bool:
        if not isinstance(expression, dict) or len(expression) != 1:
            raise TemplateError(f"a condition must be one function, got {expression!r}")
        ((key, arg),) = expression.items()
        if key == "Condition":
            return named(arg, seen)
        if key == "Fn::Equals":
            left, right = (resolve(side, refs, {}) for side in arg)
            return bool(str(left) == str(right))
        if key == "Fn::Not":
            return not evaluate(arg[0], seen)
        if key == "Fn::And":
            return all(evaluate(item, seen) for item in arg)
        if key == "Fn::Or":
            return any(evaluate(item, seen) for item in arg)
        raise TemplateError(f"{key} is not supported in conditions locally")

    def named(name: str, seen: tuple[str, ...]) -> bool:
        if name in seen:
            raise TemplateError(f"condition {name} refers to itself")
        if name not in values:
            if name not in declared:
                raise TemplateError(f"unknown condition {name!r}")
            values[name] = evaluate(declared[name], (*seen, name))
        return values[name]

    for name in declared:
        named(name, ())
    return values


def references(value: Any) -> set[str]:
    """The logical ids (and pseudo parameters) that `value` refers to through Ref, GetAtt or Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                target = arg.split(".", 1)[0] if isinstance(arg, str) else arg[0]
                if isinstance(target, str):
                    found.add(target)
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                local = set(arg[1]) if isinstance(arg, list) and len(arg) > 1 else set()
                for name in _SUB_VAR.findall(text):
                    head = name.split(".", 1)[0]
                    if not name.startswith("!") and head not in local:
                        found.add(head)
                if isinstance(arg, list):
                    found |= references(arg[1:])
            else:
                found |= references(arg)
    return found
