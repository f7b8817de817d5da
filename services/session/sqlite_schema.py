"""The SQLite schema of the session store, and its one-way migrations.

`session_counts` / `session_total` hold how many rows each user (and everyone) has,
kept exact by triggers inside the same statement as the insert or delete. Rows are an
upper bound on active sessions (expired ones stay until swept), so a create under the
cap by row count is admitted in O(1); only near a cap does the store count the
unexpired sessions themselves.
"""

from __future__ import annotations

import sqlite3

TABLES = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    display_name TEXT NOT NULL,
    active_job_id TEXT NOT NULL,
    create_time REAL NOT NULL,
    update_time REAL NOT NULL,
    last_active_time REAL NOT NULL,
    expires_at REAL NOT NULL,
    version INTEGER NOT NULL,
    assets BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id, create_time DESC, session_id DESC);
CREATE INDEX IF NOT EXISTS sessions_by_user_expiry ON sessions (user_id, expires_at);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at);
"""

# Version 1: row counts per user and in total, maintained by triggers.
_ROW_COUNTS = """
BEGIN IMMEDIATE;
CREATE TABLE session_counts (user_id TEXT PRIMARY KEY, sessions INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE session_total (id INTEGER PRIMARY KEY CHECK (id = 0), sessions INTEGER NOT NULL);
INSERT INTO session_counts SELECT user_id, count(*) FROM sessions GROUP BY user_id;
INSERT INTO session_total VALUES (0, (SELECT count(*) FROM sessions));
CREATE TRIGGER sessions_counted_on_insert AFTER INSERT ON sessions BEGIN
    INSERT INTO session_counts VALUES (NEW.user_id, 1)
        ON CONFLICT (user_id) DO UPDATE SET sessions = sessions + 1;
    UPDATE session_total SET sessions = sessions + 1;
END;
CREATE TRIGGER sessions_counted_on_delete AFTER DELETE ON sessions BEGIN
    UPDATE session_counts SET sessions = sessions - 1 WHERE user_id = OLD.user_id;
    DELETE FROM session_counts WHERE user_id = OLD.user_id AND sessions <= 0;
    UPDATE session_total SET sessions = sessions - 1;
END;
CREATE TRIGGER sessions_counted_on_owner_change AFTER UPDATE OF user_id ON sessions
WHEN OLD.user_id <> NEW.user_id BEGIN
    UPDATE session_counts SET sessions = sessions - 1 WHERE user_id = OLD.user_id;
    DELETE FROM session_counts WHERE user_id = OLD.user_id AND sessions <= 0;
    INSERT INTO session_counts VALUES (NEW.user_id, 1)
        ON CONFLICT (user_id) DO UPDATE SET sessions = sessions + 1;
END;
PRAGMA user_version = 1;
COMMIT;
"""

# Version 2: every user's sessions newest first, for the admins' ListActiveSessions.
_BY_CREATE_TIME = """
BEGIN IMMEDIATE;
CREATE INDEX IF NOT EXISTS sessions_by_create_time ON sessions (create_time DESC, session_id DESC);
PRAGMA user_version = 2;
COMMIT;
"""

MIGRATIONS = (_ROW_COUNTS, _BY_CREATE_TIME)


def migrate(conn: sqlite3.Connection) -> None:
    """Creates the tables, then applies every migration newer than the file's user_version."""
    conn.executescript(TABLES)
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    for script in MIGRATIONS[version:]:
        conn.executescript(script)
