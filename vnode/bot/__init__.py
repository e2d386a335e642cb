"""bitMaskRGB, the Telegram wallet bot on top of vnode (aiogram 3).

It reaches vnode only through its HTTP API (`vnode.client.VNodeClient`) and never writes
ledger tables; its own state is conversation state in Redis and user profiles in the `bitmask`
schema of PostgreSQL. Run it with `vnode bot`.
"""
