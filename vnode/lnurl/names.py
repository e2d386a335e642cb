"""The name rules of a Lightning Address: LUD-16's characters, lower-case, and the words no
user may take (they name the service, its operator or its roles, and could be used to pose as
them). Declared once here; the table's CHECK repeats the pattern as a backstop."""

from __future__ import annotations

import re

NAME_PATTERN = re.compile(r"[a-z0-9._-]{1,64}")

RESERVED_NAMES = frozenset(
    {
        "admin",
        "administrator",
        "root",
        "system",
        "operator",
        "support",
        "help",
        "info",
        "contact",
        "security",
        "abuse",
        "postmaster",
        "hostmaster",
        "webmaster",
        "noreply",
        "no-reply",
        "billing",
        "payments",
        "pay",
        "wallet",
        "bank",
        "vnode",
        "bitmask",
        "bitmaskrgb",
        "lnurl",
        "lnurlp",
        "lightning",
        "node",
        "bot",
        "official",
        "team",
        "staff",
        "moderator",
        "api",
        "www",
        "mail",
        "test",
        "null",
        "none",
        "undefined",
        "anonymous",
        "everyone",
        "all",
    }
)


class NameRefused(ValueError):
    """A name that breaks the rules (`reserved` True: only because it is a reserved word)."""

    def __init__(self, message: str, *, reserved: bool = False) -> None:
        super().__init__(message)
        self.reserved = reserved


def canonical_name(value: str) -> str:
    """The one spelling of a name (lower-case), or NameRefused.

    Case-insensitive: `Alice` is `alice`. Nothing else is rewritten (no trimming, no Unicode
    folding): a name that is not already LUD-16 characters is refused, not guessed at."""
    name = value.lower() if value.isascii() else value
    if not NAME_PATTERN.fullmatch(name):
        raise NameRefused("a name is 1 to 64 characters of a-z, 0-9, '.', '_' and '-' (LUD-16)")
    if name.strip("._-") == "":
        raise NameRefused("a name needs at least one letter or digit")
    if name in RESERVED_NAMES:
        raise NameRefused(f"the name {name!r} is reserved", reserved=True)
    return name
