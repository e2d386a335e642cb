"""The RGB Lightning Node OpenAPI spec as JSON Schema validators (requests and answers).

The spec lives outside the repository, in ``shared/specs`` beside it; VNODE_SPECS_DIR
overrides the location. Its schemas do not forbid unknown keys, so on top of the schema we
check that every key vnode sends is one the spec declares (a typo or an invented parameter,
say a fee limit, would otherwise pass).
"""

from __future__ import annotations

import copy
import os
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_FILE = "rgb-lightning-node.openapi.yaml"
_BASE_URI = "urn:vnode:rgb-lightning-node"


def specs_dir() -> Path:
    given = os.environ.get("VNODE_SPECS_DIR")
    if given:
        return Path(given)
    return Path(__file__).resolve().parents[4] / "shared" / "specs"


@cache
def spec() -> dict[str, Any]:
    path = specs_dir() / SPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the contract tests need the RLN spec (set VNODE_SPECS_DIR)"
        )
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    # Known deviation (docs/design/DESIGN.md section 8): the spec says Payment.preimage is a
    # string, but the node sends null until the payment succeeds. Our canned answers follow
    # the node, so the answer schema must allow it.
    doc = copy.deepcopy(doc)
    doc["components"]["schemas"]["Payment"]["properties"]["preimage"]["type"] = ["string", "null"]
    _nullable_to_null_type(doc)
    return doc


def _nullable_to_null_type(node: object) -> None:
    """The spec is OpenAPI 3.1 but a few schemas keep 3.0's ``nullable: true``, which JSON
    Schema 2020-12 ignores: turn each into an explicit ``null`` alternative."""
    if isinstance(node, list):
        for item in node:
            _nullable_to_null_type(item)
        return
    if not isinstance(node, dict):
        return
    for value in node.values():
        _nullable_to_null_type(value)
    if node.pop("nullable", False):
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
        else:
            inner = dict(node)
            node.clear()
            node["anyOf"] = [inner, {"type": "null"}]


@cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(spec(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(_BASE_URI, resource)
    return registry


def _operation(method: str, path: str) -> dict[str, Any]:
    paths: dict[str, Any] = spec()["paths"]
    if path not in paths or method.lower() not in paths[path]:
        raise KeyError(f"{method} {path} is not in the RLN spec")
    operation: dict[str, Any] = paths[path][method.lower()]
    return operation


def request_schema(method: str, path: str) -> dict[str, Any] | None:
    body = _operation(method, path).get("requestBody")
    if body is None:
        return None
    schema: dict[str, Any] = body["content"]["application/json"]["schema"]
    return schema


def answer_schema(method: str, path: str) -> dict[str, Any]:
    schema: dict[str, Any] = _operation(method, path)["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    return schema


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    # Wrap the operation's schema so its "#/components/..." refs resolve inside the spec.
    return Draft202012Validator(
        {"$ref": _BASE_URI + schema["$ref"]} if "$ref" in schema else schema,
        registry=_registry(),
    )


def _component(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    if not ref.startswith("#/components/schemas/"):
        return schema
    component: dict[str, Any] = spec()["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return component


def request_errors(method: str, path: str, body: object) -> list[str]:
    """Why ``body`` is not a request the spec allows for this operation (empty: it is)."""
    schema = request_schema(method, path)
    if schema is None:
        return [] if body is None else [f"{method} {path} takes no body, got {body!r}"]
    if body is None:
        return [f"{method} {path} needs a JSON body"]
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in _validator(schema).iter_errors(body)
    ]
    declared = set(_component(schema).get("properties", {}))
    if isinstance(body, dict):
        errors += [f"{key}: not a parameter of {path}" for key in sorted(set(body) - declared)]
    return errors


def answer_errors(method: str, path: str, body: object) -> list[str]:
    """Why ``body`` is not a 200 answer the spec describes for this operation."""
    validator = _validator(answer_schema(method, path))
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(body)]
