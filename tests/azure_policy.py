"""A small evaluator of Azure Policy rules, for tests/test_landing_zone.py: ``evaluate(policy,
resource)`` says whether a policy's ``if`` matches one resource body (tests/landing_zone.py gives
the bodies main.bicep declares). It reads allOf/anyOf/not, field conditions by alias, value
conditions, count (field and value, with where, nested), every operator, and the template
functions the rules in ../shared/landing-zone/alz-corp-policies.json use; a function it does not
know raises. Three-valued: a condition on a value only Azure knows (``UNKNOWN``) is ``None``
unless the rest of the rule decides it.

How an alias reads a body: ``TYPE/a.b[*].c`` applies only to a resource of type TYPE (a longer
type prefix, a child's alias, is missing on it); each name is looked up case-insensitively on the
object and then in its ``properties``, as ARM's aliases map them; a missing property equals
nothing, so ``notEquals`` and ``notIn`` match it. ``[*]`` outside a count must hold for every
element (and holds for none).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.landing_zone import LOCATION, POLICIES, RG_ID, SUBSCRIPTION_ID, TENANT_ID, UNKNOWN, Declared


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


TOP_LEVEL = ("name", "type", "kind", "location", "id", "tags", "sku", "identity", "zones", "fullname")


def resource_view(resource: Declared) -> dict[str, Any]:
    """The request body the policy engine sees: the body, its full type, id and API version."""
    view = dict(resource.body)
    view["type"] = resource.type
    view.setdefault("location", LOCATION)
    name = resource.name
    view["id"] = UNKNOWN if name is UNKNOWN else f"{RG_ID}/providers/{resource.type}/{name}"
    return view


def _get(obj: Any, key: str) -> Any:
    """A property by name, case-insensitive, looking through an ARM object's ``properties``."""
    if obj is UNKNOWN:
        return UNKNOWN
    if not isinstance(obj, dict):
        return MISSING
    for k, v in obj.items():
        if k.lower() == key.lower() and k != "properties":
            return v
    inner = next((v for k, v in obj.items() if k == "properties"), None)
    if isinstance(inner, dict):
        for k, v in inner.items():
            if k.lower() == key.lower():
                return v
    if inner is UNKNOWN:
        return UNKNOWN
    return MISSING


def _navigate(value: Any, path: str) -> Any:
    """Follow ``a.b[*].c`` from value; ``[*]`` gives a list of what follows for each element."""
    if not path:
        return value
    if path.startswith("[*]"):
        if value is UNKNOWN:
            return UNKNOWN
        if not isinstance(value, list):
            return MISSING
        return _Each([_navigate(item, path[3:]) for item in value])
    path = path.removeprefix(".")
    match = re.match(r"[^.\[]+", path)
    assert match, path
    return _navigate(_get(value, match.group(0)), path[match.end() :])


@dataclass
class _Each:
    """The values of an alias with ``[*]`` outside a count: a condition must hold for each."""

    values: list[Any]


@dataclass
class _Context:
    resource: dict[str, Any]
    parameters: dict[str, Any]
    api_version: str
    bound: dict[str, Any] = field(default_factory=dict)  # count's current elements, by alias
    names: dict[str, Any] = field(default_factory=dict)  # count's current values, by name

    def with_bound(self, key: str, value: Any, names: bool = False) -> _Context:
        if names:
            return _Context(
                self.resource, self.parameters, self.api_version, self.bound, {**self.names, key: value}
            )
        return _Context(
            self.resource, self.parameters, self.api_version, {**self.bound, key.lower(): value}, self.names
        )


def field_value(alias: str, ctx: _Context) -> Any:
    for prefix in sorted(ctx.bound, key=len, reverse=True):
        if alias.lower().startswith(prefix):
            return _navigate(ctx.bound[prefix], alias[len(prefix) :])
    resource = ctx.resource
    if alias.lower() in TOP_LEVEL:
        return resource.get(alias.lower(), MISSING)
    type_ = resource["type"]
    if not alias.lower().startswith(type_.lower() + "/"):
        return MISSING  # an alias of another resource type
    rest = alias[len(type_) + 1 :]
    if "/" in rest:
        return MISSING  # an alias of a child type
    return _navigate(resource, rest)


# Template functions: the ones the rules in alz-corp-policies.json use.
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+)|(?P<name>[A-Za-z_][\w]*)|(?P<p>[(),.\[\]]))"
)


def expression(source: Any, ctx: _Context) -> Any:
    """A literal, or the value of a ``[...]`` template expression."""
    if not (isinstance(source, str) and source.startswith("[") and not source.startswith("[[")):
        return source
    tokens = []
    position = 1
    body = source[1:-1]
    while position - 1 < len(body):
        match = _TOKEN.match(body, position - 1)
        if not match or match.end() == position - 1:
            break
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        position = match.end() + 1
    tree, rest = _parse(tokens)
    assert not rest, (source, rest)
    return _run(tree, ctx)


Token = tuple[str | None, str]


def _parse(tokens: list[Token]) -> tuple[Any, list[Token]]:
    """A template expression as a tree: ("lit", v), ("call", name, args), ("get", tree, key)."""
    kind, token = tokens[0]
    tokens = tokens[1:]
    tree: Any
    if kind == "str":
        tree = ("lit", token[1:-1].replace("''", "'"))
    elif kind == "num":
        tree = ("lit", int(token))
    else:
        assert kind == "name" and tokens[0][1] == "(", token
        tokens = tokens[1:]
        args = []
        while tokens[0][1] != ")":
            arg, tokens = _parse(tokens)
            args.append(arg)
            if tokens[0][1] == ",":
                tokens = tokens[1:]
        tokens = tokens[1:]
        tree = ("call", token.lower(), args)
    while tokens and tokens[0][1] in (".", "["):
        if tokens[0][1] == ".":
            tree = ("get", tree, ("lit", tokens[1][1]))
            tokens = tokens[2:]
        else:
            index, tokens = _parse(tokens[1:])
            tree = ("get", tree, index)
            tokens = tokens[1:]  # ]
    return tree, tokens


def _run(tree: Any, ctx: _Context) -> Any:
    """Evaluate a tree; if, and and or evaluate only the arguments they need, as Azure does."""
    if tree[0] == "lit":
        return tree[1]
    if tree[0] == "get":
        value, key = _run(tree[1], ctx), _run(tree[2], ctx)
        if value is UNKNOWN or key is UNKNOWN:
            return UNKNOWN
        return value.get(key) if isinstance(value, dict) else value[key]
    _, name, args = tree
    if name == "if":
        test = _run(args[0], ctx)
        return UNKNOWN if test is UNKNOWN else _run(args[1] if test else args[2], ctx)
    if name in ("and", "or"):
        seen = []
        for arg in args:
            value = _run(arg, ctx)
            if value is not UNKNOWN and bool(value) == (name == "or"):
                return name == "or"
            seen.append(value)
        return UNKNOWN if UNKNOWN in seen else name == "and"
    return _function(name, [_run(a, ctx) for a in args], ctx)


def _function(name: str, args: list[Any], ctx: _Context) -> Any:  # long: one line per function
    name = name.lower()
    if name == "parameters":
        return ctx.parameters[args[0]]
    if name == "field":
        return _plain(field_value(args[0], ctx))
    if name == "current":
        if not args:
            return next(iter(ctx.names.values()))
        if args[0] in ctx.names:
            return ctx.names[args[0]]
        return _plain(field_value(args[0], ctx))
    if name == "requestcontext":
        return {"apiVersion": ctx.api_version}
    if name == "subscription":
        return {"tenantId": TENANT_ID, "subscriptionId": SUBSCRIPTION_ID}
    if name == "utcnow":
        return "2026-12-07T00:00:00Z"
    if any(a is UNKNOWN for a in args):
        return UNKNOWN
    functions: dict[str, Callable[..., Any]] = {
        "not": lambda v: not v,
        "empty": lambda v: v is None or len(v) == 0,
        "coalesce": lambda *v: next((x for x in v if x is not None), None),
        "string": lambda v: v if isinstance(v, str) else json.dumps(v),
        "contains": lambda c, v: str(v).lower() in str(c).lower() if isinstance(c, str) else v in c,
        "equals": lambda a, b: _compare(a, b) == 0,
        "less": lambda a, b: _compare(a, b) < 0,
        "lessorequals": lambda a, b: _compare(a, b) <= 0,
        "greater": lambda a, b: _compare(a, b) > 0,
        "greaterorequals": lambda a, b: _compare(a, b) >= 0,
        "int": int,
        "first": lambda v: v[0],
        "last": lambda v: v[-1],
        "split": lambda s, sep: s.split(sep),
        "adddays": lambda *_: UNKNOWN,
    }
    if name not in functions:
        raise NotImplementedError(f"template function {name}()")
    return functions[name](*args)


def _plain(value: Any) -> Any:
    if value is MISSING:
        return None
    if isinstance(value, _Each):
        return [_plain(v) for v in value.values]
    return value


def _norm(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value.lower()
    return value


def _compare(a: Any, b: Any) -> int:
    """Numbers as numbers, anything else as case-insensitive text (API versions, TLS versions)."""
    x, y = _norm(a), _norm(b)
    try:
        x, y = float(x), float(y)
    except (TypeError, ValueError):
        x, y = str(x), str(y)
    return (x > y) - (x < y)


def _operator(op: str, actual: Any, expected: Any) -> bool | None:  # long: one line per operator
    if actual is UNKNOWN or expected is UNKNOWN:
        return None
    if op == "exists":
        return (actual is not MISSING) == (_norm(expected) == "true")
    negated = {"notequals": "equals", "notin": "in", "notlike": "like", "notcontains": "contains"}
    if op in negated:
        result = _operator(negated[op], actual, expected)
        return None if result is None else not result
    if actual is MISSING:
        return False
    if op == "equals":
        return _norm(actual) == _norm(expected)
    if op == "in":
        return _norm(actual) in [_norm(e) for e in expected]
    if op == "like":
        return fnmatch.fnmatchcase(str(_norm(actual)), str(_norm(expected)))
    if op == "contains":
        if isinstance(actual, list):
            return _norm(expected) in [_norm(a) for a in actual]
        return str(_norm(expected)) in str(_norm(actual))
    if op == "containskey":
        return isinstance(actual, dict) and _norm(expected) in [_norm(k) for k in actual]
    if op in ("less", "lessorequals", "greater", "greaterorequals"):
        order = _compare(actual, expected)
        return {"less": order < 0, "lessorequals": order <= 0, "greater": order > 0}.get(op, order >= 0)
    raise NotImplementedError(f"policy operator {op}")


OPERATORS = (
    "equals notEquals in notIn like notLike contains notContains containsKey notContainsKey exists "
    "less lessOrEquals greater greaterOrEquals"
).split()


def _all(results: list[bool | None]) -> bool | None:
    return False if False in results else None if None in results else True


def _any(results: list[bool | None]) -> bool | None:
    return True if True in results else None if None in results else False


def condition(rule: dict[str, Any], ctx: _Context) -> bool | None:  # long: one branch per form
    keys = {k.lower(): k for k in rule}
    if "allof" in keys:
        return _all([condition(r, ctx) for r in rule[keys["allof"]]])
    if "anyof" in keys:
        return _any([condition(r, ctx) for r in rule[keys["anyof"]]])
    if "not" in keys:
        result = condition(rule[keys["not"]], ctx)
        return None if result is None else not result
    (op,) = [keys[o.lower()] for o in OPERATORS if o.lower() in keys]
    expected = expression(rule[op], ctx)
    op = op.lower()
    if "count" in keys:
        return _operator(op, _count(rule[keys["count"]], ctx), expected)
    if "field" in keys:
        actual = field_value(rule[keys["field"]], ctx)
        if isinstance(actual, _Each):
            return _all([_each(op, v, expected) for v in actual.values])
        return _operator(op, actual, expected)
    actual = expression(rule[keys["value"]], ctx)
    return _operator(op, MISSING if actual is None else actual, expected)


def _each(op: str, value: Any, expected: Any) -> bool | None:
    if isinstance(value, _Each):
        return _all([_each(op, v, expected) for v in value.values])
    return _operator(op, value, expected)


def _elements(value: Any) -> Any:
    """The elements an alias ending in [*] counts; an outer [*] flattens (a[*].b[*])."""
    if value is UNKNOWN:
        return UNKNOWN
    if isinstance(value, _Each):
        found = []
        for inner in value.values:
            elements = _elements(inner)
            if elements is UNKNOWN:
                return UNKNOWN
            found.extend(elements)
        return found
    return value if isinstance(value, list) else []


def _count(count: dict[str, Any], ctx: _Context) -> Any:
    where = count.get("where")
    if "field" in count:
        alias = count["field"]
        assert alias.endswith("[*]"), alias
        elements = _elements(field_value(alias[:-3], ctx))
        if elements is UNKNOWN:
            return UNKNOWN
        scopes = [ctx.with_bound(alias, element) for element in elements]
    else:
        values = expression(count["value"], ctx)
        if values is UNKNOWN:
            return UNKNOWN
        scopes = [ctx.with_bound(count.get("name", ""), v, names=True) for v in values]
    if where is None:
        return len(scopes)
    results = [condition(where, s) for s in scopes]
    return UNKNOWN if None in results else results.count(True)


def evaluate(policy: dict[str, Any], resource: Declared) -> bool | None:
    """Whether the policy's ``if`` matches this resource: True, False, or None (undecidable)."""
    ctx = _Context(resource_view(resource), policy["parameters"], resource.api_version)
    return condition(policy["policyRule"]["if"], ctx)


def policies() -> list[dict[str, Any]]:
    return list(json.loads(POLICIES.read_text())["policies"])


def enforced_denials() -> list[dict[str, Any]]:
    """The Deny rules that deny: effect Deny and the assignment's enforcementMode Default."""
    return [p for p in policies() if p["effect"].lower() == "deny" and p["enforcementMode"] == "Default"]


def hits(selected: list[dict[str, Any]], resources: list[Declared]) -> list[tuple[str, str, str]]:
    """(file, resource symbol, policy display name) for each rule that matches; undecidable raises."""
    found = []
    for resource in resources:
        for policy in selected:
            result = evaluate(policy, resource)
            if result is None:
                raise AssertionError(
                    f"{resource.file}: {resource.symbol}: cannot decide {policy['display_name']!r}"
                )
            if result:
                found.append((resource.file, resource.symbol, policy["display_name"]))
    return found
