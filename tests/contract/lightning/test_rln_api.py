"""The shared wire-format models (vnode/lightning/rln_api.py) against the node's OpenAPI spec:
each model is named after the spec's schema, each field is a property of it with a type the
spec allows, a field the model requires is one the spec requires, and the enums are the spec's.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import pytest
from pydantic import BaseModel

from tests.contract.lightning import spec
from vnode.lightning import rln_api as api
from vnode.lightning.base import Network

MODELS = sorted(
    (
        value
        for value in vars(api).values()
        if isinstance(value, type) and issubclass(value, api.Model) and value is not api.Model
    ),
    key=lambda model: model.__name__,
)
# The spec's AssetFilter is a oneOf of three objects; the model flattens it (type + value).
FLATTENED = {"AssetFilter"}


def _components() -> dict[str, Any]:
    schemas: dict[str, Any] = spec.spec()["components"]["schemas"]
    return schemas


def _types(schema: dict[str, Any], defs: dict[str, Any]) -> set[str]:
    """The JSON types a schema admits ("null" included), following $ref into ``defs``."""
    if "$ref" in schema:
        return _types(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return set().union(*(_types(part, defs) for part in schema[key]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return set(kind)
    if isinstance(kind, str):
        return {kind}
    if "enum" in schema or "const" in schema:
        return {"string"}
    return {"object"} if "properties" in schema else set()


@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
def test_model_follows_the_spec(model: type[BaseModel]) -> None:
    components = _components()
    name = model.__name__
    assert name in components, f"{name} is not a schema of the spec"
    if name in FLATTENED:
        return
    theirs = components[name]
    ours = model.model_json_schema()
    our_defs = ours.get("$defs", {})
    declared = theirs.get("properties", {})
    for field, field_schema in ours.get("properties", {}).items():
        assert field in declared, f"{name}.{field} is not in the spec"
        our_types = _types(field_schema, our_defs) - {"null"}
        their_types = _types(declared[field], components) - {"null"}
        assert our_types <= their_types, (name, field, our_types, their_types)
    # A model may leave out what it does not read, never demand what the spec lets go.
    assert set(ours.get("required", [])) <= set(theirs.get("required", [])), name


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (api.HtlcStatus, "HTLCStatus"),
        (api.TransferStatus, "TransferStatus"),
        (api.TransferKind, "TransferKind"),
        (api.BitcoinNetwork, "BitcoinNetwork"),
    ],
)
def test_enums_are_the_specs(ours: type[StrEnum], theirs: str) -> None:
    assert [member.value for member in ours] == _components()[theirs]["enum"]


def test_every_network_is_read_and_named_both_ways() -> None:
    assert set(api.NETWORK_OF) == set(api.BitcoinNetwork)
    assert set(api.NODE_NETWORK) == set(Network)
    assert all(api.NETWORK_OF[api.NODE_NETWORK[network]] == network for network in Network)
