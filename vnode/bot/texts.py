"""Everything the bot says, in one place (HTML parse mode: user text is always escaped)."""

from __future__ import annotations

from datetime import datetime
from html import escape

from vnode.bot.amounts import format_msat, format_units
from vnode.client import BTC, AssetBalance, HistoryEntry, InvoiceQuote, VNodeError

HELP = (
    "<b>bitMaskRGB</b>: a Lightning wallet in Telegram.\n\n"
    "/balance: what you hold, per asset\n"
    "/send <code>5000 @alice [memo]</code>: send to a user (a @username, a Telegram id or a "
    "vn_ id); reply to someone's message with <code>/send 5000</code> to pay its author\n"
    "/tip <code>1k</code>: in a group, reply to a message to tip its author\n"
    "/pay <code>lnbc...</code> (or /send <code>lnbc...</code>): pay a Lightning invoice\n"
    "/receive <code>5000 [asset]</code>: an invoice to be paid, with a QR code\n"
    "/history: your recent transactions\n"
    "/address <code>[name]</code>: your Lightning Address (claim one with a name you choose)\n"
    "/wallet: connect BlueWallet, Zeus or Alby (private chat only)\n"
    "/proof: proof that your balance is counted in what the wallet owes (private chat only)\n\n"
    "Amounts: <code>5000</code>, <code>5k</code>, <code>0.0001 btc</code>. Transfers between "
    "users are instant and free."
)


def welcome(node_id: str, pubkey: str, first_name: str) -> str:
    return (
        f"Welcome, {escape(first_name)}! Your virtual node is ready.\n\n"
        f"Node: <code>{escape(node_id)}</code>\nPublic key: <code>{escape(pubkey)}</code>"
        f"\n\n{HELP}"
    )


def asset_label(asset_id: str) -> str:
    """BTC, or an RGB asset id shortened for a chat line."""
    if asset_id == BTC:
        return BTC
    return asset_id if len(asset_id) <= 20 else f"{asset_id[:12]}…{asset_id[-6:]}"


def balance_line(balance: AssetBalance) -> str:
    if balance.asset_id == BTC:
        line = f"<b>{format_msat(balance.balance_msat or 0)}</b>"
        if balance.pending_msat:
            line += f" ({format_msat(balance.pending_msat)} held for payments in flight)"
        return f"BTC: {line}"
    units = balance.balance or 0
    line = f"{escape(asset_label(balance.asset_id))}: <b>{units:,}</b>"
    if balance.pending:
        line += f" ({balance.pending:,} held)"
    return line


def balances(lines: list[str]) -> str:
    if not lines:
        return "Your wallet is empty. /receive to get paid."
    return "Your balance\n" + "\n".join(lines)


def amount_of(asset_id: str, amount_msat: int | None, asset_amount: int | None) -> str:
    if asset_id == BTC or asset_amount is None:
        return format_msat(amount_msat or 0)
    return format_units(asset_amount, escape(asset_label(asset_id)))


def recipient(first_name: str | None, username: str | None, node_id: str) -> str:
    """Name, @username and vn_ id together: an id alone the sender cannot check, and a
    @username can point at someone they do not mean; a first name they can recognise."""
    name = f"<b>{escape(first_name)}</b>" if first_name else "<i>name unknown</i>"
    ids = ([f"@{escape(username)}"] if username else []) + [f"<code>{escape(node_id)}</code>"]
    return f"{name} ({', '.join(ids)})"


def confirm_transfer(amount_msat: int, to: str, memo: str | None) -> str:
    """`to` is `recipient(...)`, already HTML."""
    text = f"Send <b>{format_msat(amount_msat)}</b> to {to}?"
    if memo:
        text += f"\nMemo: {escape(memo)}"
    return text + "\nInstant and free."


def transfer_done(amount_msat: int, label: str, balance_msat: int | None) -> str:
    text = f"Sent {format_msat(amount_msat)} to {escape(label)}."
    if balance_msat is not None:
        text += f"\nBalance: {format_msat(balance_msat)}"
    return text


def confirm_payment(quote: InvoiceQuote) -> str:
    amount = quote.amount_msat or 0
    lines = [
        f"Pay <b>{format_msat(amount)}</b>"
        + (
            f" ({quote.asset_amount:,} {escape(asset_label(quote.asset_id))})"
            if quote.asset_id and quote.asset_amount
            else ""
        )
        + "?"
    ]
    if quote.description:
        lines.append(f"For: {escape(quote.description)}")
    if quote.internal:
        lines.append("Fee: none (the payee is a bitMaskRGB user)")
    else:
        reserve = quote.fee_reserve_msat or 0
        lines.append(
            f"Fee reserve: up to {format_msat(reserve)}; what the route does not use comes back"
        )
        lines.append(f"Held now: {format_msat(amount + reserve)}")
    lines.append(f"Invoice expires {_when(quote.expires_at)}")
    return "\n".join(lines)


def payment_result(
    status: str, amount_msat: int, fee_msat: int | None, failure_reason: str | None
) -> str:
    if status == "succeeded":
        fee = f", fee {format_msat(fee_msat)}" if fee_msat else ""
        return f"Paid {format_msat(amount_msat)}{fee}."
    if status == "failed":
        reason = f" ({escape(failure_reason)})" if failure_reason else ""
        return (
            f"The payment of {format_msat(amount_msat)} failed{reason}. "
            "Everything held for it is back in your balance."
        )
    return (
        f"Payment of {format_msat(amount_msat)} is in flight. The amount and fee reserve "
        "are held; I will tell you when it settles."
    )


def invoice_text(invoice: str, amount: str | None, expires_at: datetime) -> str:
    what = f"Invoice for {amount}" if amount else "Invoice (any amount)"
    return f"{what}, expires {_when(expires_at)}:\n\n<code>{escape(invoice)}</code>"


def history(entries: list[HistoryEntry], page: int) -> str:
    if not entries:
        return "No transactions yet." if page == 0 else "No older transactions."
    lines = [f"Transactions (page {page + 1})"]
    for entry in entries:
        sign = "+" if entry.direction == "in" else "−"
        amount = amount_of(entry.asset_id, entry.amount_msat, entry.asset_amount)
        who = "from" if entry.direction == "in" else "to"
        line = (
            f"{entry.created_at:%Y-%m-%d %H:%M} {sign}{amount} {who} "
            f"{escape(_counterparty(entry.counterparty))}"
        )
        if entry.status not in ("completed", "succeeded"):
            line += f" [{escape(entry.status)}]"
        if entry.memo:  # shortened: a page of long memos must fit Telegram's 4,096 characters
            memo = entry.memo if len(entry.memo) <= 60 else entry.memo[:59] + "…"
            line += f": {escape(memo)}"
        lines.append(line)
    return "\n".join(lines)


def _counterparty(value: str) -> str:
    return value if len(value) <= 24 else f"{value[:12]}…{value[-6:]}"


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


# --- /wallet and /address ------------------------------------------------------------------

WALLET_PRIVATE_ONLY = (
    "/wallet works only in a private chat with me: its credentials can spend your balance."
)
WALLET_USAGE = "Usage: /wallet (spending), or /wallet invoice (receive only, for a point of sale)."
WALLET_OFFER_GONE = "This button has expired or was used. Send /wallet again."
WALLET_KEPT = "Cancelled. Your wallet credentials are unchanged."
WALLET_REPLACED = "These credentials were replaced: they no longer work."
WALLET_ISSUED = "New credentials made (below). Any earlier ones of this kind no longer work."
_SCOPE_WORDS = {
    "spend": ("spending", "can <b>spend your whole balance</b>"),
    "invoice": ("receive-only", "can make invoices and see your balance and history (not pay)"),
}


def wallet_offer(scope: str) -> str:
    kind, power = _SCOPE_WORDS[scope]
    return (
        f"Connect BlueWallet, Zeus or Alby to this wallet with {kind} LndHub credentials.\n\n"
        f"Anyone who has them {power}: never share them, and keep them out of screenshots.\n"
        "Creating them replaces any you made before with /wallet"
        + (" invoice" if scope == "invoice" else "")
        + ": apps connected with those stop working."
    )


def wallet_rotate_offer(scope: str) -> str:
    kind, _ = _SCOPE_WORDS[scope]
    return (
        f"Replace your {kind} credentials? The ones you have stop working at once in every "
        "app that uses them; you then import the new ones."
    )


def wallet_credentials(url: str, scope: str) -> str:
    kind, power = _SCOPE_WORDS[scope]
    return (
        f"Your {kind} LndHub credentials. In BlueWallet: Add wallet, Import wallet, then paste "
        "or scan this (Zeus and Alby: LNDHub).\n\n"
        f"<code>{escape(url)}</code>\n\n"
        f"Anyone who has this {power}. If it leaks, tap Rotate."
    )


ADDRESS_USAGE = "Usage: /address to see yours, /address NAME to claim NAME@this service."
ADDRESS_OFF = "Lightning Addresses are not enabled on this service."
NO_ADDRESS_YET = (
    "You have no Lightning Address yet. Choose a name (letters, digits, . _ -) and claim it: "
    "<code>/address yourname</code>"
)


def address_card(address: str, lnurl: str, *, claimed: bool, old: str | None = None) -> str:
    head = "Your Lightning Address is now" if claimed else "Your Lightning Address:"
    text = (
        f"{head} <code>{escape(address)}</code>\n"
        "Anyone can pay you there from a wallet that supports Lightning Addresses, "
        "or by scanning this QR (LNURL):\n\n"
        f"<code>{escape(lnurl)}</code>"
    )
    if old is not None:
        text += (
            f"\n\n{escape(old)} still pays you for a while; after that anyone may claim it, "
            "so tell your payers the new one."
        )
    return text


# --- refusals: short, friendly, never a stack trace ---------------------------------------

UNREACHABLE = (
    "I can't reach the wallet service right now. Nothing was sent; please try again in a minute."
)
UNREACHABLE_AMBIGUOUS = (
    "I can't reach the wallet service right now, so I don't know yet "
    "whether that went through. Tap Try again in a moment to find out: "
    "it can only ever be sent once."
)
CANNOT_CANCEL = (
    "That may already have gone through, so it can't be cancelled. Tap Try again to find out."
)
SOMETHING_WRONG = "Something went wrong on my side. Nothing was sent; please try again."
SOMETHING_WRONG_AFTER_TAP = "Something went wrong on my side. Check /history before trying again."
SLOW_DOWN = "Slow down a little: try again in a few seconds."
EXPIRED = "This confirmation has expired. Nothing was sent."
NOT_YOURS = "This button is not for you."
ALREADY = "Already done."
CANCELLED = "Cancelled. Nothing was sent."
START_FIRST = "Send /start first to open your wallet."
NO_PROOF_YET = (
    "No proof of liabilities has been published since your wallet got its balance; they are "
    "published every hour. Try again later."
)


def proof_caption(asset_id: str, epoch: int, pubkey: str) -> str:
    """The one line that tells how to check a proof file, with the operator's key."""
    return (
        f"Your balance of {escape(asset_label(asset_id))} in proof epoch {epoch}. Check it "
        f"without trusting us: <code>python verifier.py FILE --pubkey {escape(pubkey)}</code> "
        "(vnode/proofs/verifier.py; docs/PROOFS.md)."
    )


PRIVATE_ONLY = "Ask me that in a private chat: your balance and history are yours alone."

_BY_CODE = {
    "insufficient_balance": "Not enough balance for that.",
    "invalid_invoice": "That is not a valid Lightning invoice.",
    "wrong_network": "That invoice is for another Bitcoin network.",
    "invoice_expired": "That invoice has expired. Ask for a new one.",
    "amount_mismatch": "That amount does not match the invoice.",
    "amount_too_large": "That amount is above the per-payment limit.",
    "self_payment": "That is your own invoice.",
    "self_transfer": "You can't send to yourself.",
    "invoice_already_paid": "That invoice is already paid.",
    "payment_in_progress": "A payment of that invoice is already in flight.",
    "unknown_user": "That user has no bitMaskRGB wallet yet: they need to send /start first.",
    "node_unavailable": "Lightning payments are paused right now (the node is not ready). "
    "Nothing was sent; try again later.",
    "invalid_memo": "The memo is too long or has odd characters.",
    "invalid_amount": "That amount is not valid.",
    "invalid_asset_id": "Unknown asset.",
    "invalid_address_name": "That name can't be an address: 1 to 64 of a-z, 0-9, . _ - "
    "(with at least one letter or digit).",
    "address_reserved": "That name is reserved for the service. Choose another.",
    "address_taken": "That name is taken. Choose another.",
    "no_address": "You have no Lightning Address yet: /address yourname claims one.",
    "unavailable": UNREACHABLE,
    "database_unavailable": UNREACHABLE,
    "transport_error": UNREACHABLE,
}


def refusal(error: VNodeError) -> str:
    """What to tell the user about a refusal from vnode (matched on its stable code)."""
    if error.status == 429:
        return SLOW_DOWN
    return _BY_CODE.get(error.code, SOMETHING_WRONG)
