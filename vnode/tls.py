"""The one TLS context of a process, for every HTTP client vnode makes."""

from __future__ import annotations

import ssl
from functools import cache

import httpx


@cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verification (certifi, or SSL_CERT_FILE / SSL_CERT_DIR), built once.

    An httpx client made without `verify=` builds its own context and loads the whole CA bundle:
    about 30-90 ms of CPU per client, even for a plain-HTTP loopback URL. Contexts are safe to
    share, and every client of vnode's (the node's, the webhooks', the CLI's) passes this one."""
    return httpx.create_ssl_context()
