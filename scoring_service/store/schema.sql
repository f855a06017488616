-- The SQLite store's schema (scoring_service.store.sqlite); run at every start, so every
-- statement is idempotent.
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    agency_id TEXT,
    community_id TEXT,
    district_id TEXT,       -- district keys (SPEC §3); older files get it from ADDED_COLUMNS in sqlite.py
    secret_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS rubrics (
    rubric_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    digest TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS districts (
    district_id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS communities (
    community_id TEXT PRIMARY KEY,
    district_id TEXT NOT NULL,
    renovation_year INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS communities_by_year ON communities (renovation_year, district_id);
CREATE TABLE IF NOT EXISTS agencies (
    agency_id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    round_id TEXT PRIMARY KEY,
    rubric_id TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    digest TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rounds_by_rubric ON rounds (rubric_id);
CREATE TABLE IF NOT EXISTS snapshots (
    round_id TEXT PRIMARY KEY,
    body BLOB NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS responses (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    response_id TEXT NOT NULL UNIQUE,
    round_id TEXT NOT NULL,
    community_id TEXT NOT NULL,
    respondent_type TEXT NOT NULL,
    household_hash TEXT,
    content_hash TEXT NOT NULL,
    levels TEXT NOT NULL,
    voided_at TEXT,
    body TEXT NOT NULL,
    link_id TEXT,           -- survey links (SPEC §14); older files get these from ADDED_COLUMNS in sqlite.py
    address_hash TEXT,
    device_id TEXT,
    key_id TEXT,            -- anomaly facts (store.base.AnomalyFacts); older files get these from ADDED_COLUMNS
    received_minute INTEGER,
    content_key TEXT,
    content_window INTEGER,
    straight_level INTEGER
);
-- A household answers once per community and round while its response stands: a voided
-- response frees it. (The index of the first schema also counted voided responses.)
DROP INDEX IF EXISTS responses_one_per_household;
CREATE UNIQUE INDEX IF NOT EXISTS responses_one_live_per_household
    ON responses (round_id, community_id, household_hash) WHERE household_hash IS NOT NULL AND voided_at IS NULL;
CREATE INDEX IF NOT EXISTS responses_by_round ON responses (round_id, community_id);
CREATE TABLE IF NOT EXISTS survey_stats (
    round_id TEXT NOT NULL,
    community_id TEXT NOT NULL,
    respondent_type TEXT NOT NULL,
    responses INTEGER NOT NULL,
    counts BLOB NOT NULL,
    PRIMARY KEY (round_id, community_id, respondent_type)
);
-- The hot marks of each round's standing responses (store.base.AnomalyFacts): kept in the transaction
-- of every response written or voided, read by the anomaly report.
CREATE TABLE IF NOT EXISTS anomaly_marks (
    round_id TEXT NOT NULL,
    mark TEXT NOT NULL,
    PRIMARY KEY (round_id, mark)
);
CREATE TABLE IF NOT EXISTS inspections (
    inspection_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    round_id TEXT NOT NULL,
    community_id TEXT NOT NULL,
    agency_id TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS inspections_by_round ON inspections (round_id, community_id, agency_id);
CREATE TABLE IF NOT EXISTS inspection_versions (
    inspection_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    inspected_at TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT 'acceptance',  -- SPEC §13; older files get it from ADDED_COLUMNS in sqlite.py
    points BLOB NOT NULL,   -- float64 per rubric item: Σ points of checks not "na"
    maxima BLOB NOT NULL,   -- float64 per rubric item: Σ max_points of those checks
    vetoes TEXT NOT NULL,   -- JSON list of critical checks scored 0
    body TEXT NOT NULL,
    PRIMARY KEY (inspection_id, version)
);
-- Milestones (SPEC §11): every version kept; the current one of a code has the highest version.
-- seq numbers versions in commit order (MAX + 1 inside the write transaction), so a reader follows
-- what changed since the last seq it saw (its indexes are made by the store's init, after the
-- column is added to files made before it existed).
CREATE TABLE IF NOT EXISTS milestone_versions (
    round_id TEXT NOT NULL,
    community_id TEXT NOT NULL,
    code TEXT NOT NULL,
    version INTEGER NOT NULL,
    reached_on TEXT,        -- NULL: withdrawn
    content_hash TEXT NOT NULL,
    body TEXT NOT NULL,
    seq INTEGER,
    PRIMARY KEY (round_id, community_id, code, version)
);
-- Funding ledger (SPEC §12): every version of a community's funding record kept (the current one has
-- the highest version); disbursements insert-only, one per (round, community, tranche).
CREATE TABLE IF NOT EXISTS funding_versions (
    round_id TEXT NOT NULL,
    community_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (round_id, community_id, version)
);
CREATE TABLE IF NOT EXISTS disbursements (
    disbursement_id TEXT PRIMARY KEY,
    round_id TEXT NOT NULL,
    community_id TEXT NOT NULL,
    tranche INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (round_id, community_id, tranche)
);
-- Rectification responses (SPEC §13): a district's answers to rectification items, insert-only and
-- idempotent by response_id; seq numbers them in commit order (MAX + 1 inside the write transaction),
-- the change feed the rectification list follows.
CREATE TABLE IF NOT EXISTS rectification_responses (
    response_id TEXT PRIMARY KEY,
    round_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    body TEXT NOT NULL,
    seq INTEGER NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS rectification_responses_changes ON rectification_responses (round_id, seq);
CREATE INDEX IF NOT EXISTS rectification_responses_by_item ON rectification_responses (round_id, item_id, seq);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    key_id TEXT,
    round_id TEXT,
    entity_id TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_key ON audit (key_id, seq);
CREATE INDEX IF NOT EXISTS audit_by_entity ON audit (entity_id, seq);
CREATE INDEX IF NOT EXISTS audit_by_round ON audit (round_id, seq);
-- Survey links (SPEC §14): a credential bound to one round and one community; only the
-- secret's SHA-256 is stored.
CREATE TABLE IF NOT EXISTS survey_links (
    link_id TEXT PRIMARY KEY,
    round_id TEXT NOT NULL,
    community_id TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS survey_links_by_community ON survey_links (round_id, community_id, created_at);
-- Attachments (SPEC §13): the bytes are files named by their SHA-256 under the store's blob folder
-- (default: the folder "attachments" beside the database file, i.e. in the instance folder), written
-- before their record; a record here never names missing bytes.
CREATE TABLE IF NOT EXISTS attachments (
    sha256 TEXT PRIMARY KEY,
    body TEXT NOT NULL      -- the record: content_type, size, width, height, captured_at, gps, uploaded_by, …
);
-- References of a round's records to attachments (an inspection version's check_evidence, a
-- rectification response's evidence), one per (hash, source, source id).
CREATE TABLE IF NOT EXISTS attachment_refs (
    sha256 TEXT NOT NULL,
    source TEXT NOT NULL,
    source_id TEXT NOT NULL,
    round_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (sha256, source, source_id)
);
CREATE INDEX IF NOT EXISTS attachment_refs_by_round ON attachment_refs (round_id, sha256);
-- Who may read an attachment besides admin and leadership: key:<uploader>, district:<id>, agency:<id>
-- (store.base.attachment_grants), so that a read is one look-up.
CREATE TABLE IF NOT EXISTS attachment_access (
    sha256 TEXT NOT NULL,
    grantee TEXT NOT NULL,
    PRIMARY KEY (sha256, grantee)
) WITHOUT ROWID;
