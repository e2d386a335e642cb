"""The LNURL answers as the LUDs define them, and nothing more: strict wallets (lnurl 2.0.2 among
them) refuse a field they do not know, so each model forbids extras and is dumped without the
fields left None. Field names are the LUDs' (camelCase), hence the N815 exemptions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lud(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class PayRequest(_Lud):
    """LUD-06 step 1, with LUD-12's commentAllowed (absent when comments are off)."""

    tag: Literal["payRequest"] = "payRequest"
    callback: str
    minSendable: int = Field(ge=1)  # noqa: N815
    maxSendable: int = Field(ge=1)  # noqa: N815
    metadata: str
    commentAllowed: int | None = Field(default=None, ge=1)  # noqa: N815


class PayAction(_Lud):
    """LUD-06 step 3 (`pr`, `routes` always empty) with LUD-21's `verify`."""

    pr: str
    routes: list[Any] = Field(default_factory=list)
    verify: str


class Verify(_Lud):
    """LUD-21: `preimage` is null until settled (and when vnode cannot learn it)."""

    status: Literal["OK"] = "OK"
    settled: bool
    preimage: str | None
    pr: str

    def wire(self) -> dict[str, Any]:
        # LUD-21 shows preimage as null, not absent.
        return self.model_dump(mode="json")


# The reason of the 503 a LNURL path answers while the database is out of reach
# (api/middleware.py); the node's 503 gives its own.
DATABASE_DOWN_REASON = "the service is briefly unavailable: try again in a moment"


class LudError(_Lud):
    status: Literal["ERROR"] = "ERROR"
    reason: str
