"""The store's SQLite schema: one place to read what is persisted (and to port to PostgreSQL).

Versions: 1, the first; 2 adds label_decisions and label_log (reviewers' corrections of original labels).
Every table is CREATE IF NOT EXISTS and no existing one changes, so opening a version-1 store adds the new
(empty) tables and raises its recorded version: old stores stay readable, nothing stored is touched.
"""

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    data_source TEXT NOT NULL,
    created_at REAL NOT NULL,
    lock_owner TEXT,
    lock_time REAL
);
CREATE TABLE IF NOT EXISTS pairs (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    pair_id TEXT NOT NULL,
    split TEXT NOT NULL CHECK (split IN ('train', 'test')),
    prompt TEXT NOT NULL,
    chosen TEXT NOT NULL,
    rejected TEXT NOT NULL,
    source TEXT NOT NULL,
    parent_id TEXT,
    epoch_added INTEGER NOT NULL,
    gold_margin REAL,
    chosen_paraphrase_id TEXT,
    rejected_paraphrase_id TEXT,
    PRIMARY KEY (run_id, pair_id)
);
CREATE INDEX IF NOT EXISTS pairs_by_epoch ON pairs(run_id, epoch_added);
CREATE TABLE IF NOT EXISTS paraphrases (
    id TEXT NOT NULL,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    pair_id TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('chosen', 'rejected')),
    epoch INTEGER NOT NULL,
    source_text TEXT NOT NULL,
    text TEXT NOT NULL,
    model TEXT NOT NULL,
    similarity REAL,
    verdicts TEXT NOT NULL,
    status TEXT NOT NULL,
    edited_text TEXT,
    reviewer TEXT,
    reviewed_at REAL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, id)
);
CREATE INDEX IF NOT EXISTS paraphrases_by_status ON paraphrases(run_id, status);
CREATE TABLE IF NOT EXISTS review_log (
    run_id INTEGER NOT NULL,
    paraphrase_id TEXT NOT NULL,
    status TEXT NOT NULL,
    edited_text TEXT,
    reviewer TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    allocation TEXT NOT NULL,
    curvature TEXT NOT NULL,
    model_state BLOB,
    seconds REAL NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS margins (
    run_id INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    pair_id TEXT NOT NULL,
    split TEXT NOT NULL,
    margin REAL NOT NULL,
    alloc_margin REAL,
    q REAL,
    count INTEGER,
    curvature REAL,
    PRIMARY KEY (run_id, epoch, pair_id)
);
CREATE TABLE IF NOT EXISTS label_decisions (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    pair_id TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('keep', 'swap', 'drop', 'unsure')),
    reviewer TEXT NOT NULL,
    decided_at REAL NOT NULL,
    score REAL,
    PRIMARY KEY (run_id, pair_id)
);
CREATE TABLE IF NOT EXISTS label_log (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    pair_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    previous TEXT,
    reviewer TEXT NOT NULL,
    score REAL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feature_cache (key TEXT PRIMARY KEY, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS generation_cache (key TEXT PRIMARY KEY, texts TEXT NOT NULL, created_at REAL NOT NULL);
"""
