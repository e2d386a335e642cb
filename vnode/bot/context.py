"""What the handlers work with, built once by the runtime and handed to every handler."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from vnode.bot.confirmations import PendingActions
from vnode.bot.payment_calls import PaymentCalls
from vnode.bot.profiles import ProfileStore
from vnode.bot.settings import BotSettings
from vnode.client import VNodeClient


@dataclass(frozen=True)
class BotContext:
    vnode: VNodeClient
    profiles: ProfileStore
    pending: PendingActions
    redis: Redis
    settings: BotSettings
    payment_calls: PaymentCalls


class UserError(Exception):
    """A refusal to show the user as it is (bad input, unknown recipient...)."""
