-- Per-user limits (issue 12, part 3; docs/LIMITS.md). One row per user with overrides, and the
-- row user_id 0 holding the server's defaults (VNODE_LIMIT_* settings, written by every
-- `vnode serve` at start). A NULL column means "no override": the user gets the default, and a
-- NULL default means the limit is off. All amounts are msat of BTC.
--
-- No row at all (the usual case) means no limit for anyone: the money functions look up rows
-- 0 and the users concerned once, by primary key, and skip every check when there are none.
-- No foreign key to virtual_nodes: an operator may set a user's limits before the user's first
-- movement creates the node.
CREATE TABLE user_limits (
    user_id             bigint PRIMARY KEY CHECK (user_id >= 0),
    send_max_msat       bigint CHECK (send_max_msat >= 0),
    receive_max_msat    bigint CHECK (receive_max_msat >= 0),
    balance_max_msat    bigint CHECK (balance_max_msat >= 0),
    send_24h_msat       bigint CHECK (send_24h_msat >= 0),
    send_30d_msat       bigint CHECK (send_30d_msat >= 0),
    receive_24h_msat    bigint CHECK (receive_24h_msat >= 0),
    receive_30d_msat    bigint CHECK (receive_30d_msat >= 0),
    fee_max_msat        bigint CHECK (fee_max_msat >= 0),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Rate limits (docs/LIMITS.md, "Rate limits"): one token bucket per API key or LndHub account,
-- shared by every vnode process on this database. UNLOGGED: a crash empties it, which only
-- refills every bucket; it is not worth a WAL write per request.
CREATE UNLOGGED TABLE rate_buckets (
    key         text PRIMARY KEY,
    tokens      double precision NOT NULL,
    updated_at  timestamptz NOT NULL
);
