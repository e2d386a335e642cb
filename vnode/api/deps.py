"""Request dependencies: the services a route needs, and the caller's key checked for a scope."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vnode.apikeys import KeyVerifier, Principal, Scope
from vnode.db.reads import ReadRouting
from vnode.errors import ApiError, ErrorCode
from vnode.keys import Signer
from vnode.ledger.calls import Idempotency
from vnode.ledger.transfer_batch import TransferBatcher
from vnode.lightning.base import LightningBackend
from vnode.lightning.monitor import NodeMonitor
from vnode.limits.rate import RateLimiter
from vnode.metrics import Metrics
from vnode.payments.send import PaymentSender
from vnode.settings import Settings
from vnode.workers.supervisor import Supervisor

_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}")
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer vnk_...`")


@dataclass(frozen=True)
class Services:
    settings: Settings
    pool: asyncpg.Pool
    signer: Signer
    keys: KeyVerifier
    metrics: Metrics
    backend: LightningBackend
    monitor: NodeMonitor
    sender: PaymentSender
    workers: Supervisor
    # Rate limits per API key (docs/LIMITS.md); None: none (tests that build Services alone).
    rate: RateLimiter | None = None
    # Reads that may use the read replica (vnode/db/reads.py); None: every read on `pool`.
    reads: ReadRouting | None = None
    # Micro-batched transfers (docs/adr/0026); None: each transfer in its own call.
    transfers: TransferBatcher | None = None

    def read_pool(self, user_id: int | None = None) -> asyncpg.Pool:
        """The pool for a read about `user_id` (balances, history, console pages)."""
        return self.pool if self.reads is None else self.reads.for_user(user_id)

    def wrote_for(self, *user_ids: int) -> None:
        """A write for these users committed: their next reads see it (vnode/db/reads.py)."""
        if self.reads is not None:
            self.reads.note_write(*user_ids)


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain `def` dependency in a thread pool, on every request.
    services = request.app.state.services
    assert isinstance(services, Services)
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits keys whose scope includes `scope` (401 no key, 403 too weak)."""

    async def check(
        services: ServicesDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            return await authorize(services.keys, None, scope)
        return await authorize(services.keys, credentials.credentials, scope, services.rate)

    return check


async def authorize(
    keys: KeyVerifier, token: str | None, scope: Scope, rate: RateLimiter | None = None
) -> Principal:
    """The caller behind a bearer token, if its scope includes `scope` (401 / 403 otherwise)
    and, given `rate`, its key is within its rate limit (429 rate_limited otherwise)."""
    if not token:
        raise ApiError(ErrorCode.UNAUTHORIZED, "send an API key as 'Authorization: Bearer ...'")
    principal = await keys.verify(token)
    if principal is None:
        raise ApiError(ErrorCode.UNAUTHORIZED, "unknown or revoked API key")
    if not principal.scope.allows(scope):
        raise ApiError(
            ErrorCode.FORBIDDEN,
            f"this endpoint needs scope '{scope.value}' or above; "
            f"the key has '{principal.scope.value}'",
        )
    if rate is not None:
        await rate.check_key(principal.owner)
    return principal


ReadKey = Annotated[Principal, Depends(require(Scope.READ))]
ReceiveKey = Annotated[Principal, Depends(require(Scope.RECEIVE))]
SpendKey = Annotated[Principal, Depends(require(Scope.SPEND))]
AdminKey = Annotated[Principal, Depends(require(Scope.ADMIN))]


def idempotency(
    principal: Principal,
    key: str | None,
) -> Idempotency:
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(ErrorCode.INVALID_IDEMPOTENCY_KEY)
    return Idempotency(principal.owner, key)


IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description=(
            "Optional. The first answer under this key is stored and replayed for the same "
            "request; the same key with a different request is refused (idempotency_key_reused)."
        ),
    ),
]
