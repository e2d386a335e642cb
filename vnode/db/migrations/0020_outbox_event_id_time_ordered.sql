-- Time-ordered event ids for every event (issue 13). A random uuid (gen_random_uuid) puts each
-- new entry of outbox_event_id_key on a random page of the index; once the index outgrows the
-- cache, every such page is a read, and the first change to it after a checkpoint writes the
-- whole page to the WAL. With uuidv7 (PostgreSQL 18) new entries land on the index's rightmost
-- pages. Measured on transfers, which set uuidv7() themselves since session 6: at 200,000 users
-- the index's full-page images went from 0.70 to none per transfer, the WAL per transfer from
-- 18.5 kB to 12.6 kB (docs/PERFORMANCE.md, "Issue 13, transfers (session 6)"). The column's
-- default now gives every writer (payments, invoices, receipts, node state) the same. Ids stay
-- unique (the index checks it); existing events keep theirs.
ALTER TABLE outbox ALTER COLUMN event_id SET DEFAULT uuidv7();
