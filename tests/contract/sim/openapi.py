"""Validation of RGB Lightning Node bodies against the node's own OpenAPI document.

The document lives in shared/specs beside the repository (VNODE_SPECS_DIR overrides). Every
object schema that lists its properties is closed here (additionalProperties: false), so a
field the real node never sends, or never accepts, fails the test instead of leaking into
vnode's adapter. Two readings of the document, and only these, differ from it literally:

* ``nullable: true`` is OpenAPI 3.0's way to allow null, still used in a few places of this
  3.1 document (RefreshRequest.asset_id, RefreshedTransfer.*): it is read as allowing null.
* Payment.preimage is declared a non-nullable string, but the node sends null until a payment
  succeeds (docs/design/DESIGN.md section 8): null is allowed there, and nowhere else it is not
  declared.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

SPEC_FILE = "rgb-lightning-node.openapi.yaml"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "code", "name"],
    "additionalProperties": False,
    "properties": {
        "error": {"type": "string"},
        "code": {"type": "integer"},
        "name": {"type": "string"},
    },
}


def specs_dir() -> Path:
    given = os.environ.get("VNODE_SPECS_DIR")
    # tests/contract/sim/openapi.py -> parents[4] is the folder holding the repo and shared/.
    return Path(given) if given else Path(__file__).resolve().parents[4] / "shared" / "specs"


def _allow_null(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if kind is None:
        return {"anyOf": [schema, {"type": "null"}]}
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


def _normalise(node: Any) -> Any:
    if isinstance(node, list):
        return [_normalise(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _normalise(value) for key, value in node.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if out.pop("nullable", False):
        out = _allow_null(out)
    return out


class RlnSpec:
    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing: set VNODE_SPECS_DIR to shared/specs")
        document = yaml.safe_load(path.read_text())
        self._paths: dict[str, Any] = document["paths"]
        schemas = _normalise(copy.deepcopy(document["components"]["schemas"]))
        preimage = schemas["Payment"]["properties"]["preimage"]
        preimage["type"] = ["string", "null"]  # the one deviation: see the module docstring
        self._components = {"schemas": schemas}
        self._validators: dict[tuple[str, str, str], Draft202012Validator | None] = {}

    def _operation(self, method: str, path: str) -> dict[str, Any]:
        try:
            operation: dict[str, Any] = self._paths[path][method.lower()]
        except KeyError:
            raise AssertionError(f"{method} {path} is not in the RLN spec") from None
        return operation

    def _validator(self, method: str, path: str, part: str) -> Draft202012Validator | None:
        key = (method, path, part)
        if key not in self._validators:
            self._validators[key] = self._build_validator(method, path, part)
        return self._validators[key]

    def _build_validator(self, method: str, path: str, part: str) -> Draft202012Validator | None:
        operation = self._operation(method, path)
        if part == "request":
            content = operation.get("requestBody", {}).get("content")
        else:
            content = operation["responses"]["200"].get("content")
        if content is None:
            return None
        schema = {"components": self._components, **content["application/json"]["schema"]}
        Draft202012Validator.check_schema(schema)
        return Draft202012Validator(schema)

    def request_errors(self, method: str, path: str, body: Any) -> list[str]:
        validator = self._validator(method, path, "request")
        if validator is None:
            return [] if body is None else [f"{method} {path} takes no body"]
        return [e.message for e in validator.iter_errors(body)]

    def check_request(self, method: str, path: str, body: Any) -> None:
        problems = self.request_errors(method, path, body)
        assert not problems, f"request {method} {path} breaks the spec: {problems}: {body}"

    def check_response(self, method: str, path: str, status: int, body: Any) -> None:
        if status == 200:
            validator = self._validator(method, path, "response")
            assert validator is not None, f"{method} {path} has no 200 body in the spec"
        else:
            validator = Draft202012Validator(ERROR_SCHEMA)
            assert isinstance(body, dict) and body.get("code") == status, body
        problems = [e.message for e in validator.iter_errors(body)]
        assert not problems, f"{method} {path} {status} breaks the spec: {problems}: {body}"


def load_spec() -> RlnSpec:
    return RlnSpec(specs_dir() / SPEC_FILE)
