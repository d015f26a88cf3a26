-- Peers this node has seen, for re-dialing after a restart. The store keeps peer
-- ids and addresses as opaque text; it does not know the network layer's formats.

CREATE TABLE peers (
    peer_id    TEXT    PRIMARY KEY,
    addresses  TEXT    NOT NULL,       -- JSON array of strings, newest first, at most 16
    last_seen  INTEGER NOT NULL        -- unix seconds
);

CREATE INDEX peers_last_seen ON peers(last_seen);
