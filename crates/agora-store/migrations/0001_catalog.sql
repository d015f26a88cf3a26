-- Catalog: one row per package name (its owner-signed index), one per version
-- (its signed manifest), a search document per package (its default version), and
-- the artifacts this node holds.

CREATE TABLE packages (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    owner       BLOB    NOT NULL,      -- ed25519 key that owns the name (trust on first use)
    sequence    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    record      BLOB    NOT NULL       -- SignedPackageIndex wire bytes
);

CREATE TABLE manifests (
    package_id   INTEGER NOT NULL REFERENCES packages(id),
    version      TEXT    NOT NULL,
    digest       BLOB    NOT NULL,
    size         INTEGER NOT NULL,
    published_at INTEGER NOT NULL,
    record       BLOB    NOT NULL,     -- SignedManifest wire bytes
    PRIMARY KEY (package_id, version)
) WITHOUT ROWID;

CREATE INDEX manifests_digest ON manifests(digest);

-- What search shows for a package: its default (newest live) version.
CREATE TABLE search_docs (
    package_id   INTEGER PRIMARY KEY REFERENCES packages(id),
    version      TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    keywords     TEXT    NOT NULL,     -- JSON array
    categories   TEXT    NOT NULL,     -- JSON array
    publisher    BLOB    NOT NULL,
    published_at INTEGER NOT NULL
);

CREATE INDEX search_docs_publisher ON search_docs(publisher);

CREATE TABLE search_tags (
    tag        TEXT    NOT NULL,
    package_id INTEGER NOT NULL,
    PRIMARY KEY (tag, package_id)
) WITHOUT ROWID;

CREATE TABLE search_categories (
    category   TEXT    NOT NULL,
    package_id INTEGER NOT NULL,
    PRIMARY KEY (category, package_id)
) WITHOUT ROWID;

-- rowid = packages.id
CREATE VIRTUAL TABLE search_fts USING fts5(
    name, description, keywords,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);

CREATE TABLE artifacts (
    digest     BLOB    PRIMARY KEY,
    size       INTEGER NOT NULL,
    pinned     INTEGER NOT NULL,       -- 1: published or pinned here, never evicted
    stored_at  INTEGER NOT NULL,
    last_used  INTEGER NOT NULL
) WITHOUT ROWID;
