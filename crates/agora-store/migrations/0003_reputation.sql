-- Peer reputation, persisted so it survives restarts: outcome counters, a latency
-- average, how many packages a peer has given us, and bans. Existing rows keep
-- their data and start from zero counters, an unknown latency and no ban.

ALTER TABLE peers ADD COLUMN successes         INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peers ADD COLUMN failures          INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peers ADD COLUMN timeouts          INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peers ADD COLUMN invalid           INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peers ADD COLUMN latency_ewma_ms   REAL;                       -- NULL: no sample yet
ALTER TABLE peers ADD COLUMN packages_provided INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peers ADD COLUMN banned_until      INTEGER NOT NULL DEFAULT 0; -- unix seconds; 0: not banned
ALTER TABLE peers ADD COLUMN bans              INTEGER NOT NULL DEFAULT 0;

CREATE INDEX peers_banned_until ON peers(banned_until);

-- Eviction walks unpinned artifacts least recently used first.
CREATE INDEX artifacts_lru ON artifacts(pinned, last_used, stored_at);
