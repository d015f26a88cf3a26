-- Evidence a node shows its user and never serves as the package: competing
-- claims to a name (validly signed indexes by another key than the one this
-- node trusts for the name, with their manifests) and proofs that an owner
-- signed two different indexes with one sequence.

CREATE TABLE claims (
    name     TEXT    NOT NULL,
    owner    BLOB    NOT NULL,
    sequence INTEGER NOT NULL,
    seen     INTEGER NOT NULL,     -- arrival order, for display
    record   BLOB    NOT NULL,     -- SignedPackageIndex wire bytes, the highest sequence seen
    PRIMARY KEY (name, owner)
) WITHOUT ROWID;

CREATE TABLE claim_manifests (
    name    TEXT NOT NULL,
    owner   BLOB NOT NULL,
    version TEXT NOT NULL,
    record  BLOB NOT NULL,         -- SignedManifest wire bytes
    PRIMARY KEY (name, owner, version)
) WITHOUT ROWID;

CREATE TABLE equivocations (
    owner    BLOB    NOT NULL,
    name     TEXT    NOT NULL,
    sequence INTEGER NOT NULL,
    proof    BLOB    NOT NULL,     -- Equivocation wire bytes
    PRIMARY KEY (owner, name)
) WITHOUT ROWID;

-- 1 when the user chose the package's owner (`agora trust`) rather than this
-- node trusting the first claim it saw.
ALTER TABLE packages ADD COLUMN chosen INTEGER NOT NULL DEFAULT 0;
