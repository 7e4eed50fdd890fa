"""A small reader over tree-sitter-bicep's syntax tree, for tests/test_infra.py: resources,
parameters, variables, outputs and modules of a Bicep file, the literal values of its
expressions, and the names it uses that nothing declares (what the Bicep compiler would refuse).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import tree_sitter
import tree_sitter_bicep

ROOT = Path(__file__).resolve().parents[1]

#: Bicep's built-in functions and decorators (namespace sys and az); a call to anything else
#: must be a function declared in the file.
BUILTIN_FUNCTIONS = frozenset(
    """
    any array base64 base64ToJson base64ToString bool buildUri cidrHost cidrSubnet coalesce concat
    contains dataUri dataUriToString dateTimeAdd dateTimeFromEpoch dateTimeToEpoch deployer
    deployment empty endsWith environment extensionResourceId fail filter first flatten format
    groupBy guid indexOf int intersection items join json last lastIndexOf length list listKeys
    listAccountSas listServiceSas loadFileAsBase64 loadJsonContent loadTextContent loadYamlContent
    managementGroup managementGroupResourceId map mapValues max min newGuid objectKeys padLeft
    parseCidr parseUri pickZones range readEnvironmentVariable reduce reference replace
    resourceGroup resourceId shallowMerge skip sort split startsWith string subscription
    subscriptionResourceId substring take tenant tenantResourceId toLower toObject toUpper trim
    tryGet union uniqueString uri uriComponent uriComponentToString utcNow
    allowed batchSize description discriminator export metadata maxLength maxValue minLength
    minValue onlyIfNotExists sealed secure
""".split()
)
NAMESPACES = frozenset({"az", "sys"})

_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))
_COMMENTS = ("comment", "diagnostic_comment")
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# --------------------------------------------------------------------------------------------
# A small reader over tree-sitter-bicep's syntax tree


@dataclass(frozen=True)
class Bicep:
    """One parsed file."""

    path: Path
    root: tree_sitter.Node

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT)) if self.path.is_relative_to(ROOT) else self.path.name


@dataclass(frozen=True)
class Resource:
    """A resource declaration: its symbol, full type (nested types joined to their parent's),
    whether it is ``existing``, and its body object."""

    file: Bicep
    symbol: str
    type: str
    existing: bool
    body: tree_sitter.Node | None

    def prop(self, *path: str) -> tree_sitter.Node | None:
        return prop(self.body, *path)


@dataclass(frozen=True)
class Param:
    name: str
    default: tree_sitter.Node | None
    decorators: dict[str, tree_sitter.Node]

    def description(self) -> str | None:
        call = self.decorators.get("description")
        args = arguments(call) if call is not None else []
        return literal(args[0]) if args else None


def parse_text(source: str, path: Path = Path("snippet.bicep")) -> Bicep:
    return Bicep(path, _PARSER.parse(source.encode()).root_node)


@cache
def parse(path: Path) -> Bicep:
    return parse_text(path.read_text(encoding="utf-8"), path)


def text(node: tree_sitter.Node) -> str:
    return node.text.decode()


def walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def named(node: tree_sitter.Node) -> list[tree_sitter.Node]:
    """Named children without comments."""
    return [c for c in node.named_children if c.type not in _COMMENTS]


def literal(node: tree_sitter.Node | None) -> str | bool | int | None:
    """The value of a literal string, bool or number; None for anything computed."""
    if node is None:
        return None
    if node.type == "boolean":
        return text(node) == "true"
    if node.type == "number":
        return int(text(node))
    if node.type == "string":
        parts = []
        for child in named(node):
            if child.type == "string_content":
                parts.append(text(child))
            elif child.type == "escape_sequence":
                parts.append(text(child)[1:])
            else:
                return None  # interpolation
        return "".join(parts)
    return None


def object_props(node: tree_sitter.Node | None) -> dict[str, tree_sitter.Node]:
    """The properties of an object literal, by key (identifier or quoted)."""
    if node is None or node.type != "object":
        return {}
    props = {}
    for child in named(node):
        if child.type != "object_property":
            continue
        parts = named(child)
        if len(parts) < 2 or parts[0].type not in ("identifier", "string"):
            continue  # a nested resource declaration
        key = text(parts[0]) if parts[0].type == "identifier" else literal(parts[0])
        props[key] = parts[-1]
    return props


def prop(node: tree_sitter.Node | None, *path: str) -> tree_sitter.Node | None:
    for key in path:
        node = object_props(node).get(key)
    return node


def declared_name(node: tree_sitter.Node) -> str | None:
    if node.type == "user_defined_function":
        name = node.child_by_field_name("name")
        return text(name) if name is not None else None
    for child in named(node):
        if child.type == "identifier":
            return text(child)
    return None


def _value(node: tree_sitter.Node) -> tree_sitter.Node | None:
    """What a resource or module declaration is assigned: its body object, through for/if."""
    parts = named(node)
    value = parts[-1] if parts else None
    while value is not None and value.type in ("for_statement", "if_statement"):
        if value.type == "for_statement":
            value = value.child_by_field_name("body")
        else:
            value = named(value)[-1]
    return value if value is not None and value.type == "object" else None


def _type_string(node: tree_sitter.Node) -> str:
    return next(literal(c) for c in named(node) if c.type == "string")


def resources(bicep: Bicep) -> list[Resource]:
    found = []
    for node in walk(bicep.root):
        if node.type != "resource_declaration":
            continue
        declared = _type_string(node).split("@")[0]
        parent = node.parent
        while parent is not None and parent.type != "resource_declaration":
            parent = parent.parent
        if parent is not None and "." not in declared.split("/")[0]:
            # A nested declaration names its type relative to the enclosing resource.
            enclosing = next(r for r in found if r.symbol == declared_name(parent))
            declared = f"{enclosing.type}/{declared}"
        existing = any(c.type == "existing" for c in node.children)
        found.append(Resource(bicep, declared_name(node), declared, existing, _value(node)))
    return found


def resource_by_symbol(bicep: Bicep, symbol: str) -> Resource:
    return next(r for r in resources(bicep) if r.symbol == symbol)


def decorators(node: tree_sitter.Node) -> dict[str, tree_sitter.Node]:
    sibling = node.prev_named_sibling
    while sibling is not None and sibling.type in _COMMENTS:
        sibling = sibling.prev_named_sibling
    if sibling is None or sibling.type != "decorators":
        return {}
    calls = {}
    for decorator in named(sibling):
        call = named(decorator)[0]
        function = call.child_by_field_name("function")
        calls[text(function).split(".")[-1]] = call
    return calls


def arguments(call: tree_sitter.Node) -> list[tree_sitter.Node]:
    found = call.child_by_field_name("arguments")
    return named(found) if found is not None else []


def params(bicep: Bicep) -> dict[str, Param]:
    found = {}
    for node in named(bicep.root):
        if node.type != "parameter_declaration":
            continue
        parts = named(node)
        has_default = any(c.type == "=" for c in node.children)
        found[declared_name(node)] = Param(
            declared_name(node), parts[-1] if has_default else None, decorators(node)
        )
    return found


def variables(bicep: Bicep) -> dict[str, tree_sitter.Node]:
    return {declared_name(n): named(n)[-1] for n in named(bicep.root) if n.type == "variable_declaration"}


def outputs(bicep: Bicep) -> set[str]:
    return {declared_name(n) for n in named(bicep.root) if n.type == "output_declaration"}


def modules(bicep: Bicep) -> list[tuple[str, Path, tree_sitter.Node]]:
    found = []
    for node in named(bicep.root):
        if node.type == "module_declaration":
            path = next(literal(c) for c in named(node) if c.type == "string")
            found.append((declared_name(node), (bicep.path.parent / path).resolve(), _value(node)))
    return found


# --------------------------------------------------------------------------------------------
# Syntax and names


def syntax_problems(bicep: Bicep) -> list[str]:
    problems = [
        f"{bicep.name}:{node.start_point[0] + 1}: {'MISSING' if node.is_missing else 'ERROR'} "
        f"near {text(node)[:60]!r}"
        for node in walk(bicep.root)
        if node.is_error or node.is_missing
    ]
    if bicep.root.has_error and not problems:
        problems.append(f"{bicep.name}: the parser reports an error it could not place")
    return problems


def line_break_problems(bicep: Bicep) -> list[str]:
    """Line breaks the grammar accepts but Bicep rejects: inside a ternary, a binary expression
    or a function's argument list (objects and arrays may span lines)."""
    problems = []
    for node in walk(bicep.root):
        if node.type in ("ternary_expression", "binary_expression"):
            parts = list(node.children)
        elif node.type == "arguments":
            parts = list(node.children)
        else:
            continue
        for before, after in zip(parts, parts[1:]):
            if before.type in _COMMENTS or after.type in _COMMENTS:
                continue
            if before.end_point[0] != after.start_point[0]:
                problems.append(
                    f"{bicep.name}:{after.start_point[0] + 1}: Bicep allows no line break "
                    f"before {text(after)[:30]!r} in a {node.type.replace('_', ' ')}"
                )
                break
    return problems


_DECLARATIONS = (
    "parameter_declaration",
    "variable_declaration",
    "resource_declaration",
    "module_declaration",
    "output_declaration",
    "type_declaration",
    "metadata_declaration",
    "user_defined_function",
    "parameter",
)


def _lambda_parameters(node: tree_sitter.Node) -> list[tree_sitter.Node]:
    found = []
    for child in node.children:
        if child.type == "=>":
            break
        if child.type == "identifier":
            found.append(child)
        elif child.type == "parenthesized_expression":
            found.extend(c for c in named(child) if c.type == "identifier")
    return found


def _declarations(bicep: Bicep) -> tuple[set[str], set[str], set[tuple[int, int]]]:
    """Names a file declares (symbols, functions) and the positions of the declaring identifiers."""
    symbols: set[str] = set()
    functions: set[str] = set()
    positions: set[tuple[int, int]] = set()

    def declare(identifier: tree_sitter.Node, into: set[str]) -> None:
        into.add(text(identifier))
        positions.add((identifier.start_byte, identifier.end_byte))

    for node in walk(bicep.root):
        if node.type in _DECLARATIONS:
            name = (
                node.child_by_field_name("name")
                if node.type == "user_defined_function"
                else next((c for c in named(node) if c.type == "identifier"), None)
            )
            if name is not None:
                declare(name, functions if node.type == "user_defined_function" else symbols)
        elif node.type == "import_functionality":
            for child in named(node):
                if child.type == "identifier":
                    declare(child, symbols)
        elif node.type == "for_statement":
            initializer = node.child_by_field_name("initializer")
            if initializer is not None and initializer.type == "identifier":
                declare(initializer, symbols)
        elif node.type in ("loop_variable", "loop_enumerator"):
            declare(node, symbols)
        elif node.type == "lambda_expression":
            for parameter in _lambda_parameters(node):
                declare(parameter, symbols)
    return symbols, functions, positions


def undeclared_names(bicep: Bicep) -> list[str]:
    """Every identifier used in an expression that the file does not declare."""
    symbols, functions, positions = _declarations(bicep)
    resource_symbols = {r.symbol for r in resources(bicep)}
    problems = []
    for node in walk(bicep.root):
        if node.type != "identifier" or (node.start_byte, node.end_byte) in positions:
            continue
        parent = node.parent
        where = f"{bicep.name}:{node.start_point[0] + 1}"
        if parent.type == "object_property" and named(parent)[0] == node:
            continue  # a property key
        if any(a.type == "type" for a in _ancestors(node)):
            continue  # a type expression, not a value
        sibling = node.next_sibling
        # tree-sitter-bicep 1.1.0 reads a call that opens an array as a name and a parenthesis.
        first_call_in_array = (
            parent.type == "array"
            and sibling is not None
            and sibling.type == "parenthesized_expression"
            and sibling.start_byte == node.end_byte
        )
        if first_call_in_array or (
            parent.type == "call_expression" and parent.child_by_field_name("function") == node
        ):
            if text(node) not in BUILTIN_FUNCTIONS and text(node) not in functions:
                problems.append(f"{where}: unknown function {text(node)}()")
            continue
        if parent.type == "resource_expression" and parent.child_by_field_name("resource") == node:
            if text(node) not in resource_symbols:
                problems.append(f"{where}: unknown nested resource ::{text(node)}")
            continue
        if text(node) not in symbols and text(node) not in NAMESPACES:
            problems.append(f"{where}: {text(node)} is not declared")
    return problems


def _ancestors(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    node = node.parent
    while node is not None:
        yield node
        node = node.parent
