-- mimi-ds-sqlite schema, version 1. Applied once by `mimi_ds_sqlite::migrate`, which records
-- it in mimi_ds_sqlite_schema. Never edit a released migration: add the next file instead.

-- Delivery Service: one row per group; `version` is the guard of every write
-- (storage contract, mimi_ds::storage). `reserved_until_ms` is set while the group holds only
-- a Reservation record (its expiry), so expired reservations are found through an index.
CREATE TABLE mimi_ds_group (
    group_id          BLOB    NOT NULL PRIMARY KEY,
    version           INTEGER NOT NULL,
    reserved_until_ms INTEGER
) WITHOUT ROWID;
CREATE INDEX mimi_ds_group_reserved_until ON mimi_ds_group (reserved_until_ms);

-- The group's records. `kind` numbers RecordKind (see src/ds.rs); `key` is the epoch of a
-- keyed kind (WelcomeTree) and 0 for the others.
CREATE TABLE mimi_ds_record (
    group_id BLOB    NOT NULL,
    kind     INTEGER NOT NULL,
    key      INTEGER NOT NULL,
    value    BLOB    NOT NULL,
    PRIMARY KEY (group_id, kind, key)
) WITHOUT ROWID;

-- Replay marks: live while now <= expires_at_ms.
CREATE TABLE mimi_ds_replay (
    group_id      BLOB    NOT NULL,
    key           BLOB    NOT NULL,
    request_hash  BLOB    NOT NULL,
    response      BLOB,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, key)
) WITHOUT ROWID;
CREATE INDEX mimi_ds_replay_expiry ON mimi_ds_replay (expires_at_ms);

-- The durable outbox (mimi_ds::storage::DsOutbox). AUTOINCREMENT: an ID is never reused, also
-- after its entry was delivered and deleted.
CREATE TABLE mimi_ds_outbox (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id           BLOB    NOT NULL,
    destination        TEXT    NOT NULL,
    request            BLOB    NOT NULL,
    created_at_ms      INTEGER NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL
);
CREATE INDEX mimi_ds_outbox_due ON mimi_ds_outbox (next_attempt_at_ms);

-- Queueing Service (mimi_ds::qs::QsStorage).
CREATE TABLE mimi_qs_queue (
    queue_id             BLOB    NOT NULL PRIMARY KEY,
    owner_key            BLOB    NOT NULL UNIQUE,
    fanout_auth_token    BLOB    NOT NULL,
    next_sequence        INTEGER NOT NULL,
    first_unacknowledged INTEGER NOT NULL,
    queued_bytes         INTEGER NOT NULL
) WITHOUT ROWID;

-- Queued messages: the encoded QueuedMessage and its queued_size.
CREATE TABLE mimi_qs_message (
    queue_id BLOB    NOT NULL,
    sequence INTEGER NOT NULL,
    message  BLOB    NOT NULL,
    size     INTEGER NOT NULL,
    PRIMARY KEY (queue_id, sequence)
) WITHOUT ROWID;

-- Delivery marks: a delivery is remembered while now <= expires_at_ms.
CREATE TABLE mimi_qs_mark (
    queue_id      BLOB    NOT NULL,
    hash          BLOB    NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (queue_id, hash)
) WITHOUT ROWID;
CREATE INDEX mimi_qs_mark_expiry ON mimi_qs_mark (expires_at_ms);
