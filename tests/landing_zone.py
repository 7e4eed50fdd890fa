"""What a deployment of infra/main.bicep would ask Azure Resource Manager to create, for
tests/test_landing_zone.py (tests/azure_policy.py then evaluates the landing zone's rules on it).

``deployment(parameters)`` evaluates main.bicep and its modules for one parameter set (the
``parameters`` of an ARM parameters file): which resources are created (conditions and loops
resolved, ``existing`` ones left out), and each resource body with its expressions evaluated.
What only Azure knows at deployment time (a principal id, an endpoint URL, a GUID, a CIDR split)
is ``UNKNOWN``; a loop or condition that depends on it raises.

The deployment context is fixed: subscription, tenant, resource group and location below; every
``uniqueString()`` is the same token.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter

from tests.bicep import ROOT, Bicep, literal, named, parse, text

POLICIES = ROOT.parent / "shared" / "landing-zone" / "alz-corp-policies.json"
MAIN = ROOT / "infra" / "main.bicep"

SUBSCRIPTION_ID = "44444444-4444-4444-4444-444444444444"
TENANT_ID = "55555555-5555-5555-5555-555555555555"
RESOURCE_GROUP = "rg-haltian-bridge"
LOCATION = "westeurope"
TOKEN = "tok4bridge0000"
RG_ID = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


class DeploymentFailed(Exception):
    """The template's fail(): the parameter set is refused before anything is created."""


# --------------------------------------------------------------------------------------------
# Bicep


@dataclass
class Declared:
    """One resource the deployment would create (existing resources are not created)."""

    file: str
    symbol: str
    type: str
    api_version: str
    body: dict[str, Any]

    @property
    def name(self) -> Any:
        return self.body.get("name", UNKNOWN)


@dataclass
class _ResourceRef:
    type: str
    name: Any

    @property
    def id(self) -> Any:
        if self.name is UNKNOWN:
            return UNKNOWN
        return f"{RG_ID}/providers/{self.type}/{self.name}"


@dataclass
class _Scope:
    bicep: Bicep
    given: dict[str, Any]
    locals: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)

    def child(self, **values: Any) -> _Scope:
        return _Scope(self.bicep, self.given, {**self.locals, **values}, self.cache)


def _declarations(bicep: Bicep, kind: str) -> dict[str, tree_sitter.Node]:
    found = {}
    for node in named(bicep.root):
        if node.type == kind:
            identifier = next(c for c in named(node) if c.type == "identifier")
            found[text(identifier)] = node
    return found


def _lookup(scope: _Scope, name: str) -> Any:
    if name in scope.locals:
        return scope.locals[name]
    if name in scope.cache:
        return scope.cache[name]
    params = _declarations(scope.bicep, "parameter_declaration")
    variables = _declarations(scope.bicep, "variable_declaration")
    if name in params:
        if name in scope.given:
            value = scope.given[name]
        else:
            node = params[name]
            if not any(c.type == "=" for c in node.children):
                raise KeyError(f"{scope.bicep.name}: required parameter {name} not given")
            value = _eval(named(node)[-1], scope)
    elif name in variables:
        value = _eval(named(variables[name])[-1], scope)
    elif name in _declarations(scope.bicep, "resource_declaration"):
        node = _declarations(scope.bicep, "resource_declaration")[name]
        type_ = literal(next(c for c in named(node) if c.type == "string")).split("@")[0]
        body = _body(node)
        value = _ResourceRef(type_, _eval(_prop(body, "name"), scope) if body is not None else UNKNOWN)
    elif name in _declarations(scope.bicep, "module_declaration"):
        value = ("module", name)
    else:
        return UNKNOWN  # an imported symbol (roles.bicep)
    scope.cache[name] = value
    return value


def _prop(obj: tree_sitter.Node | None, key: str) -> tree_sitter.Node | None:
    if obj is None:
        return None
    for child in named(obj):
        if child.type == "object_property":
            parts = named(child)
            if parts and parts[0].type in ("identifier", "string") and _key(parts[0]) == key:
                return parts[-1]
    return None


def _key(node: tree_sitter.Node) -> str:
    return text(node) if node.type == "identifier" else str(literal(node))


def _body(declaration: tree_sitter.Node) -> tree_sitter.Node | None:
    value = named(declaration)[-1]
    while value.type in ("for_statement", "if_statement"):
        value = value.child_by_field_name("body") if value.type == "for_statement" else named(value)[-1]
    return value if value.type == "object" else None


def _module_outputs(scope: _Scope, symbol: str, output: str) -> Any:
    node = _declarations(scope.bicep, "module_declaration")[symbol]
    if named(node)[-1].type == "for_statement":
        return UNKNOWN
    path = (scope.bicep.path.parent / literal(next(c for c in named(node) if c.type == "string"))).resolve()
    module_scope = _module_scope(parse(path), _body(node), scope)
    outputs = _declarations(module_scope.bicep, "output_declaration")
    return _eval(named(outputs[output])[-1], module_scope)


def _module_scope(bicep: Bicep, body: tree_sitter.Node | None, parent: _Scope) -> _Scope:
    given = _eval(_prop(body, "params"), parent) if _prop(body, "params") is not None else {}
    return _Scope(bicep, dict(given))  # a null argument was left out: the default applies


def _typed_names(type_: str, names: tuple[str, ...]) -> str:
    """Provider/type1/name1/type2/name2, as resourceId() builds a child's id."""
    provider, *types = type_.split("/")
    return "/".join([provider, *(part for pair in zip(types, names) for part in pair)])


def _call(name: str, args: list[Any]) -> Any:
    if name == "fail":
        raise DeploymentFailed(args[0])
    if name == "resourceGroup":
        return {"id": RG_ID, "name": RESOURCE_GROUP, "location": LOCATION}
    if name == "subscription":
        return {
            "id": f"/subscriptions/{SUBSCRIPTION_ID}",
            "subscriptionId": SUBSCRIPTION_ID,
            "tenantId": TENANT_ID,
        }
    if name == "tenant":
        return {"tenantId": TENANT_ID}
    if name == "environment":
        return {"suffixes": {"storage": "core.windows.net"}}
    if name == "uniqueString":
        return TOKEN
    if any(a is UNKNOWN for a in args):
        return UNKNOWN
    simple: dict[str, Callable[..., Any]] = {
        "empty": lambda v: v is None or len(v) == 0,
        "contains": lambda c, v: v in c,
        "toLower": str.lower,
        "trim": str.strip,
        "split": lambda s, sep: s.split(sep),
        "join": lambda items, sep: sep.join(items),
        "take": lambda items, n: items[:n],
        "length": len,
        "last": lambda v: v[-1],
        "first": lambda v: v[0],
        "replace": lambda s, a, b: s.replace(a, b),
        "endsWith": lambda s, e: s.lower().endswith(e.lower()),
        "substring": lambda s, start, n=None: s[start : None if n is None else start + n],
        "string": lambda v: json.dumps(v) if isinstance(v, (dict, list, bool)) else str(v),
        "union": lambda *objects: {k: v for o in objects for k, v in o.items()},
        "map": lambda items, f: [f(i) for i in items],
        "filter": lambda items, f: [i for i in items if f(i)],
        "resourceId": lambda type_, *names: f"{RG_ID}/providers/{_typed_names(type_, names)}",
        "subscriptionResourceId": lambda type_, *names: (
            f"/subscriptions/{SUBSCRIPTION_ID}/providers/{_typed_names(type_, names)}"
        ),
    }
    if name in simple:
        return simple[name](*args)
    return UNKNOWN  # guid, cidrSubnet, ...: known only to Azure


def _eval(node: tree_sitter.Node | None, scope: _Scope) -> Any:  # long: one branch per node type
    if node is None:
        return None
    kind = node.type
    if kind in ("string", "number", "boolean"):
        if kind == "string" and any(c.type == "interpolation" for c in named(node)):
            parts = []
            for child in named(node):
                if child.type == "interpolation":
                    value = _eval(named(child)[0], scope)
                    if value is UNKNOWN:
                        return UNKNOWN
                    parts.append(value if isinstance(value, str) else json.dumps(value))
                else:
                    parts.append(text(child) if child.type == "string_content" else text(child)[1:])
            return "".join(parts)
        value = literal(node)
        if value == "" and not named(node):  # the grammar gives no content node for blanks
            return text(node)[1:-1]
        return value
    if kind == "null":
        return None
    if kind == "parenthesized_expression":
        return _eval(named(node)[0], scope)
    if kind == "identifier":
        return _lookup(scope, text(node))
    if kind == "object":
        result = {}
        for child in named(node):
            parts = named(child)
            if child.type != "object_property" or parts[-1].type == "resource_declaration":
                continue
            value = _eval(parts[-1], scope)
            if value is not None:  # ARM leaves out a null property
                result[_key(parts[0])] = value
        return result
    if kind == "array":
        items = []
        for child in named(node):
            if child.type == "for_statement":
                return _eval(child, scope)
            items.append(_eval(child, scope))
        return items
    if kind == "for_statement":
        return [_eval(node.child_by_field_name("body"), s) for s in _iterations(node, scope)]
    if kind == "ternary_expression":
        condition = _eval(node.child_by_field_name("condition"), scope)
        if condition is UNKNOWN:
            return UNKNOWN
        return _eval(node.child_by_field_name("consequence" if condition else "alternative"), scope)
    if kind == "unary_expression":
        value = _eval(node.child_by_field_name("argument"), scope)
        return UNKNOWN if value is UNKNOWN else not value
    if kind == "binary_expression":
        return _binary(node, scope)
    if kind == "member_expression":
        obj = node.child_by_field_name("object")
        prop = text(node.child_by_field_name("property"))
        if obj.type == "ternary_expression":
            # tree-sitter-bicep reads `c ? a : f().x` as `(c ? a : f()).x`; Bicep reads `c ? a : (f().x)`.
            condition = _eval(obj.child_by_field_name("condition"), scope)
            if condition is UNKNOWN:
                return UNKNOWN
            if condition:
                return _eval(obj.child_by_field_name("consequence"), scope)
            return _member(_eval(obj.child_by_field_name("alternative"), scope), prop)
        if obj.type == "member_expression" and text(obj.child_by_field_name("property")) == "outputs":
            module = _eval(obj.child_by_field_name("object"), scope)
            if isinstance(module, tuple):
                return _module_outputs(scope, module[1], prop)
        return _member(_eval(obj, scope), prop)
    if kind == "subscript_expression":
        value = _eval(node.child_by_field_name("object"), scope)
        index = _eval(node.child_by_field_name("index"), scope)
        if isinstance(value, (list, dict)) and index is not UNKNOWN:
            return value[index]
        return UNKNOWN
    if kind == "call_expression":
        function = text(node.child_by_field_name("function")).split(".")[-1]
        arguments = named(node.child_by_field_name("arguments"))
        args = [_lambda(a, scope) if a.type == "lambda_expression" else _eval(a, scope) for a in arguments]
        return _call(function, args)
    return UNKNOWN


def _member(value: Any, prop: str) -> Any:
    if isinstance(value, _ResourceRef):
        return value.id if prop == "id" else value.name if prop == "name" else UNKNOWN
    if isinstance(value, dict):
        return value.get(prop, UNKNOWN)
    return UNKNOWN


def _lambda(node: tree_sitter.Node, scope: _Scope) -> Callable[[Any], Any]:
    parameter = text(next(c for c in node.children if c.type == "identifier"))
    body = named(node)[-1]
    return lambda value: _eval(body, scope.child(**{parameter: value}))


def _binary(node: tree_sitter.Node, scope: _Scope) -> Any:
    operator = text(node.child_by_field_name("operator"))
    left = _eval(node.child_by_field_name("left"), scope)
    if operator == "&&" and left is False or operator == "||" and left is True:
        return left
    right = _eval(node.child_by_field_name("right"), scope)
    if operator == "??":
        return right if left is None else left
    if operator in ("&&", "||"):
        if right is UNKNOWN or left is UNKNOWN:
            return UNKNOWN if (operator == "&&") != (right is False or left is False) else right
        return left and right if operator == "&&" else left or right
    if left is UNKNOWN or right is UNKNOWN:
        return UNKNOWN
    comparisons: dict[str, Callable[[Any, Any], Any]] = {
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "=~": lambda a, b: str(a).lower() == str(b).lower(),
        "<": lambda a, b: a < b,
        ">": lambda a, b: a > b,
        "<=": lambda a, b: a <= b,
        ">=": lambda a, b: a >= b,
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
    }
    return comparisons[operator](left, right)


def _iterations(for_node: tree_sitter.Node, scope: _Scope) -> Iterator[_Scope]:
    parts = [c for c in named(for_node) if c != for_node.child_by_field_name("body")]
    variables, iterable = parts[0], parts[1]
    items = _eval(iterable, scope)
    if items is UNKNOWN:
        raise ValueError(f"{scope.bicep.name}:{for_node.start_point[0] + 1}: a loop over an unknown list")
    if variables.type == "identifier":
        names = [text(variables)]
    else:
        names = [text(c) for c in named(variables)]
    for index, item in enumerate(items):
        values = {names[0]: item}
        if len(names) > 1:
            values[names[1]] = index
        yield scope.child(**values)


def _instances(declaration: tree_sitter.Node, scope: _Scope) -> Iterator[_Scope]:
    """The scopes a declaration is deployed in: none when its condition is false, one per item."""
    value = named(declaration)[-1]
    scopes = [scope]
    while value.type in ("for_statement", "if_statement"):
        if value.type == "for_statement":
            scopes = [s for outer in scopes for s in _iterations(value, outer)]
            value = value.child_by_field_name("body")
        else:
            kept = []
            for s in scopes:
                condition = _eval(named(value)[0], s)
                if condition is UNKNOWN:
                    raise ValueError(f"{s.bicep.name}:{value.start_point[0] + 1}: condition unknown")
                if condition:
                    kept.append(s)
            scopes = kept
            value = named(value)[-1]
    yield from scopes


def _declared(bicep: Bicep, scope: _Scope) -> Iterator[Declared]:
    for node in bicep.root.children:
        if node.type == "resource_declaration":
            yield from _resource(node, scope, None, None)
        elif node.type == "module_declaration":
            path = (bicep.path.parent / literal(next(c for c in named(node) if c.type == "string"))).resolve()
            for instance in _instances(node, scope):
                yield from _declared(parse(path), _module_scope(parse(path), _body(node), instance))


def _resource(
    node: tree_sitter.Node, scope: _Scope, parent_type: str | None, parent_version: str | None
) -> Iterator[Declared]:
    declared = literal(next(c for c in named(node) if c.type == "string"))
    type_, _, version = declared.partition("@")
    if parent_type is not None and "." not in type_.split("/")[0]:
        type_ = f"{parent_type}/{type_}"
    version = version or parent_version or ""
    existing = any(c.type == "existing" for c in node.children)
    body_node = _body(node)
    for instance in _instances(node, scope):
        if not existing:
            body = _eval(body_node, instance)
            for key in ("parent", "scope", "dependsOn"):
                body.pop(key, None)
            yield Declared(scope.bicep.name, _symbol(node), type_, version, body)
        for child in named(body_node) if body_node is not None else []:
            parts = named(child)
            if child.type == "object_property" and parts[-1].type == "resource_declaration":
                yield from _resource(parts[-1], instance, type_, version)
            elif child.type == "resource_declaration":
                yield from _resource(child, instance, type_, version)


def _symbol(node: tree_sitter.Node) -> str:
    return text(next(c for c in named(node) if c.type == "identifier"))


def deployment(parameters: dict[str, Any]) -> list[Declared]:
    """Every resource main.bicep would create with these parameter values."""
    bicep = parse(MAIN)
    return list(_declared(bicep, _Scope(bicep, dict(parameters))))


def parameters_file(path: Path) -> dict[str, Any]:
    return {name: entry["value"] for name, entry in json.loads(path.read_text())["parameters"].items()}
