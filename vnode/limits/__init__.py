"""Per-user limits (issue 12, docs/LIMITS.md): what they are (`refusal`), where they are stored
and read (`store`). The checks themselves run inside the money functions
(vnode/db/functions/35_limits.sql)."""
