"""The console's routes (/console): login and logout, the pages, and the actions.

Every page needs a live session (a GET without one is sent to the login page); every form
carries the session's CSRF token; only an admin session may act (a `console` key looks only).
Refusals are pages with a 4xx status, never a 500: `ConsoleRefusal` carries the status and the
sentence a person reads.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from vnode import apikeys
from vnode.api.deps import Services, ServicesDep
from vnode.api.schemas import AdminMoveBody, LimitsBody
from vnode.apikeys import Scope
from vnode.console import actions, queries, sessions, traffic
from vnode.console.actions import ActionRefused, Done, Outcome
from vnode.console.forms import FormError, read_form
from vnode.console.pages import STATIC, render
from vnode.console.plots import line_plot
from vnode.console.sessions import COOKIE, LOGIN_COOKIE, ConsoleSession
from vnode.domain.ids import BTC
from vnode.events import endpoints
from vnode.ledger import solvency
from vnode.ledger.admin import AdminCommand, AdminMove, admin_move
from vnode.ledger.calls import Idempotency
from vnode.limits import store as limits_store
from vnode.limits.refusal import LIMIT_NAMES

PREFIX = "/console"
router = APIRouter(prefix=PREFIX, include_in_schema=False)
LOGIN_FORM_S = 600
_STATIC_FILES = {"console.css": "text/css"}
_MAX_INT = 2**63 - 1
# A row's id in a path (payment, user, key): a positive bigint, else FastAPI's 422.
RowId = Annotated[int, Path(ge=1, le=_MAX_INT)]


class ConsoleRefusal(Exception):
    """A page that refuses: its status and what the person is told."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def install(app: FastAPI) -> None:
    """The console's refusal pages, on the app (its routes are in vnode.app.ROUTES)."""

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleRefusal)
        if exc.status == 401 and request.method == "GET":
            return RedirectResponse(f"{PREFIX}/login", 303)
        return render("refused.html", exc.status, message=exc.message, status=exc.status)

    async def bad_form(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FormError)
        return render("refused.html", exc.status, message=str(exc), status=exc.status)

    app.add_exception_handler(ConsoleRefusal, refused)
    app.add_exception_handler(FormError, bad_form)


def _secure(services: Services) -> bool:
    url = services.settings.public_url
    return url is not None and url.startswith("https://")


async def _session(request: Request, services: ServicesDep) -> ConsoleSession:
    found = await sessions.find_session(services.pool, request.cookies.get(COOKIE))
    if found is None:
        raise ConsoleRefusal(401, "Your session has ended or was never opened: log in again.")
    return found


SessionDep = Annotated[ConsoleSession, Depends(_session)]


async def _posted(request: Request, session: SessionDep) -> dict[str, str]:
    """A form posted in a session, its CSRF token checked."""
    form = await read_form(request)
    if not sessions.same_token(form.get("csrf"), session.csrf_token):
        raise ConsoleRefusal(403, "The form's CSRF token is missing or wrong: reload the page.")
    return form


FormDep = Annotated[dict[str, str], Depends(_posted)]


def _acting(session: ConsoleSession) -> None:
    if not session.can_act:
        raise ConsoleRefusal(
            403, f"A '{session.scope.value}' key can look but not act; actions need an admin key."
        )


def _page(name: str, session: ConsoleSession, **context: object) -> HTMLResponse:
    # Each form drawn gets a fresh idempotency key: submitting it twice is one action.
    return render(name, 200, session=session, idem=secrets.token_urlsafe(18), **context)


# --- login and logout -------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request, services: ServicesDep) -> Response:
    if await sessions.find_session(services.pool, request.cookies.get(COOKIE)):
        return RedirectResponse(PREFIX, 303)
    return _login_form(services, None, 200)


def _login_form(services: Services, message: str | None, status: int) -> Response:
    token = sessions.new_token()
    response = render("login.html", status, login_csrf=token, message=message)
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=LOGIN_FORM_S,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=_secure(services),
    )
    return response


@router.post("/login")
async def login(request: Request, services: ServicesDep) -> Response:
    form = await read_form(request)
    if not sessions.same_token(form.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
        return _login_form(services, "The login form expired: try again.", 403)
    key = form.get("key", "").strip()
    principal = await services.keys.verify(key) if 0 < len(key) <= 200 else None
    if principal is None:
        return _login_form(services, "Unknown or revoked API key.", 401)
    if not principal.scope.allows(Scope.CONSOLE):
        return _login_form(
            services,
            f"A '{principal.scope.value}' key cannot open the console: use a console or admin key.",
            403,
        )
    token = await sessions.open_session(
        services.pool, principal, services.settings.console_session_ttl_s
    )
    response = RedirectResponse(PREFIX, 303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=services.settings.console_session_ttl_s,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=_secure(services),
    )
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(
    request: Request, services: ServicesDep, session: SessionDep, _form: FormDep
) -> Response:
    token = request.cookies.get(COOKIE)
    if token:
        await sessions.end_session(services.pool, token)
    response = RedirectResponse(f"{PREFIX}/login", 303)
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


@router.get("/static/{name}")
async def static(name: str) -> Response:
    kind = _STATIC_FILES.get(name)
    if kind is None:
        raise ConsoleRefusal(404, "No such file.")
    return FileResponse(STATIC / name, media_type=kind, headers={"Cache-Control": "max-age=3600"})


# --- pages ----------------------------------------------------------------------------


@router.get("")
async def overview(services: ServicesDep, session: SessionDep) -> Response:
    spendable = services.monitor.spendable
    # From the system accounts: summing a million users' balances on every look took 300 ms
    # (docs/PERFORMANCE.md, "Console page loads"); the audit checks the two agree.
    owed = await solvency.liabilities_from_accounts(services.pool)
    assets = solvency.compare(owed, spendable.balances or {})
    now = time.time()
    workers = [
        {
            "name": name,
            "age_s": round(now - at, 1) if at else None,
            "interval_s": services.workers.intervals.get(name),
            "failures": services.workers.failures.get(name, 0),
        }
        for name in sorted(services.workers.started_at)
        for at in [services.workers.last_success.get(name)]
    ]
    return _page(
        "overview.html",
        session,
        assets=assets,
        node_known=spendable.balances is not None,
        node_checked_age=round(now - spendable.checked_at, 1) if spendable.checked_at else None,
        node=services.monitor.as_json(),
        audit=await queries.last_audit(services.pool),
        workers=workers,
        counts=await queries.counts(services.pool),
    )


@router.get("/payments")
async def payments_page(services: ServicesDep, session: SessionDep) -> Response:
    return _page(
        "payments.html", session, payments=await queries.pending_payments(services.read_pool())
    )


@router.get("/payments/{payment_id}")
async def payment_page(payment_id: RowId, services: ServicesDep, session: SessionDep) -> Response:
    found = await queries.payment(services.read_pool(), payment_id)
    if found is None:
        raise ConsoleRefusal(404, f"No payment {payment_id}.")
    life = await queries.payment_life(services.read_pool(), found["user_id"], found["payment_hash"])
    return _page("payment.html", session, payment=found, **life)


@router.get("/users")
async def users_page(services: ServicesDep, session: SessionDep, q: str | None = None) -> Response:
    if q:
        user_id = await queries.find_user(services.pool, q[:200])
        if user_id is not None:
            return RedirectResponse(f"{PREFIX}/users/{user_id}", 303)
        return _page("users.html", session, q=q, missing=True)
    return _page("users.html", session, q="", missing=False)


@router.get("/users/{user_id}")
async def user_page(user_id: RowId, services: ServicesDep, session: SessionDep) -> Response:
    found = await queries.user_page(services.read_pool(), user_id)
    if found is None:
        raise ConsoleRefusal(404, f"No user {user_id}: no movement has made the user's node yet.")
    limits = await limits_store.user_limits(services.pool, user_id)
    return _page("user.html", session, user_id=user_id, limits=limits, names=LIMIT_NAMES, **found)


@router.get("/alerts")
async def alerts_page(services: ServicesDep, session: SessionDep) -> Response:
    return _page(
        "alerts.html",
        session,
        alerts=await queries.alerts(services.read_pool()),
        webhooks=await endpoints.list_endpoints(services.pool),
        dead=await endpoints.dead_letters(services.pool),
    )


@router.get("/keys")
async def keys_page(services: ServicesDep, session: SessionDep) -> Response:
    return _page("keys.html", session, keys=await queries.keys(services.pool), scopes=list(Scope))


@router.get("/actions")
async def actions_page(services: ServicesDep, session: SessionDep) -> Response:
    return _page("actions.html", session, actions=await queries.actions(services.pool))


@router.get("/traffic")
async def traffic_page(
    services: ServicesDep, session: SessionDep, window: str = "hour"
) -> Response:
    span = traffic.WINDOWS.get(window)
    if span is None:
        raise ConsoleRefusal(400, f"Unknown window {window[:20]!r}: hour, day or month.")
    figures = await traffic.figures(services.read_pool(), span)
    plots = [
        line_plot(title, figures.times, series, unit=unit)
        for title, series, unit in figures.plots()
    ]
    return _page("traffic.html", session, window=window, windows=list(traffic.WINDOWS), plots=plots)


# --- actions --------------------------------------------------------------------------


def _done(session: ConsoleSession, done: Done, back: str, shown: str | None = None) -> Response:
    status = 200 if done.outcome in (None, "ok") else 409
    return render(
        "done.html", status, session=session, done=done, back=back, shown=shown, idem=None
    )


async def _act(
    services: Services,
    session: ConsoleSession,
    form: dict[str, str],
    action: str,
    target: str,
    details: dict[str, object],
    run: actions.Runner,
) -> Done:
    _acting(session)
    try:
        return await actions.perform(
            services.pool,
            session,
            form.get("idem", ""),
            action,
            target,
            details,
            form.get("reason", ""),
            run,
        )
    except ActionRefused as exc:
        raise ConsoleRefusal(422, str(exc)) from None


def _integer(form: dict[str, str], name: str, *, blank: bool = False) -> int | None:
    text = form.get(name, "").strip().replace("_", "")
    if not text and blank:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > _MAX_INT:
        raise ConsoleRefusal(422, f"{name}: give a whole number of 0 to {_MAX_INT}.")
    return int(text)


def _invalid(exc: ValidationError) -> ConsoleRefusal:
    errors = "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'form'}: {e['msg']}" for e in exc.errors()
    )
    return ConsoleRefusal(422, errors[:500])


@router.post("/users/{user_id}/move")
async def move(
    user_id: RowId,
    services: ServicesDep,
    session: SessionDep,
    form: FormDep,
) -> Response:
    """Credit or debit a user, through ledger/admin.admin_move as POST /admin/credit does."""
    _acting(session)
    kind = form.get("move", "")
    if kind not in ("credit", "debit"):
        raise ConsoleRefusal(422, "move: credit or debit.")
    asset_id = form.get("asset_id", "").strip() or BTC
    amount = _integer(form, "amount")
    field = "amount_msat" if asset_id == BTC else "asset_amount"
    try:
        body = AdminMoveBody.model_validate(
            {
                "user_id": user_id,
                "asset_id": asset_id,
                field: amount,
                "reason": actions.check_reason(form.get("reason", "")),
            }
        )
    except ValidationError as exc:
        raise _invalid(exc) from None
    except ActionRefused as exc:
        raise ConsoleRefusal(422, str(exc)) from None
    command = AdminCommand(
        AdminMove.CREDIT if kind == "credit" else AdminMove.DEBIT,
        body.user_id,
        body.asset_id,
        body.amount,
        body.reason,
    )
    idempotency = Idempotency(session.owner, form.get("idem"))

    async def run() -> Outcome:
        answer = await admin_move(services.pool, services.signer, command, idempotency)
        services.wrote_for(body.user_id)  # the user's page then reads the primary
        return Outcome(answer.code, answer.detail)

    details = {"asset_id": body.asset_id, "amount": body.amount}
    done = await _act(services, session, form, kind, f"user:{user_id}", details, run)
    return _done(session, done, f"{PREFIX}/users/{user_id}")


@router.post("/users/{user_id}/limits")
async def set_limits(
    user_id: RowId,
    services: ServicesDep,
    session: SessionDep,
    form: FormDep,
) -> Response:
    """Set a user's limit overrides (blank: the default applies), as POST /admin/limits."""
    _acting(session)
    values = {name: _integer(form, name, blank=True) for name in LIMIT_NAMES}
    try:
        body = LimitsBody.model_validate({"user_id": user_id, **values})
    except ValidationError as exc:
        raise _invalid(exc) from None

    async def run() -> Outcome:
        await limits_store.set_overrides(services.pool, body.user_id, body.changes())
        return Outcome("ok")

    done = await _act(services, session, form, "set_limits", f"user:{user_id}", dict(values), run)
    return _done(session, done, f"{PREFIX}/users/{user_id}")


@router.post("/webhooks/retry")
async def retry_webhooks(services: ServicesDep, session: SessionDep, form: FormDep) -> Response:
    """Queue dead deliveries again, as POST /webhooks/retry does."""
    _acting(session)
    webhook_id = _integer(form, "webhook_id", blank=True)

    async def run() -> Outcome:
        requeued = await endpoints.retry_dead_letters(services.pool, webhook_id)
        if requeued is None:
            return Outcome("not_found", f"no webhook endpoint {webhook_id}")
        return Outcome("ok", f"{requeued} deliveries queued again")

    target = "webhooks:all" if webhook_id is None else f"webhook:{webhook_id}"
    done = await _act(services, session, form, "retry_webhooks", target, {}, run)
    return _done(session, done, f"{PREFIX}/alerts")


@router.post("/keys/{key_id}/revoke")
async def revoke_key(
    key_id: RowId,
    services: ServicesDep,
    session: SessionDep,
    form: FormDep,
) -> Response:
    """Revoke a key, as `vnode keys revoke` does (every process hears of it at once)."""
    _acting(session)

    async def run() -> Outcome:
        async with services.pool.acquire() as conn:
            revoked = await services.keys.revoke(conn, key_id)
        return Outcome("ok") if revoked else Outcome("not_found", "no such live key")

    done = await _act(services, session, form, "revoke_key", f"key:{key_id}", {}, run)
    return _done(session, done, f"{PREFIX}/keys")


@router.post("/keys")
async def create_key(services: ServicesDep, session: SessionDep, form: FormDep) -> Response:
    """Create a key, as `vnode keys create` does; the key is shown on this answer only."""
    _acting(session)
    name = form.get("name", "").strip()
    if not 1 <= len(name) <= 100:
        raise ConsoleRefusal(422, "name: 1 to 100 characters.")
    try:
        scope = Scope(form.get("scope", ""))
    except ValueError:
        raise ConsoleRefusal(422, "scope: " + ", ".join(s.value for s in Scope) + ".") from None
    created: list[str] = []

    async def run() -> Outcome:
        async with services.pool.acquire() as conn:
            info, key = await apikeys.create_key(conn, name, scope)
        created.append(key)
        return Outcome("ok", f"key {info.id} ({info.key_prefix}…)")

    details: dict[str, object] = {"name": name, "scope": scope.value}
    done = await _act(services, session, form, "create_key", f"scope:{scope.value}", details, run)
    return _done(session, done, f"{PREFIX}/keys", shown=created[0] if created else None)


@router.post("/audit")
async def audit(services: ServicesDep, session: SessionDep, form: FormDep) -> Response:
    """Run `vnode audit` now; the overview shows its result."""
    _acting(session)

    async def run() -> Outcome:
        return await actions.audit_now(services.pool)

    done = await _act(services, session, form, "run_audit", "ledger", {}, run)
    return _done(session, done, PREFIX)
