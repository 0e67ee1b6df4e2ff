-- mimi-ds-postgres schema, version 1. Applied once by `mimi_ds_postgres::migrate`, which
-- records it in mimi_ds_postgres_schema. Never edit a released migration: add the next file.
--
-- IDs chosen by clients (group IDs, replay keys, queue IDs, owner keys, mark hashes) are
-- indexed by their SHA-256 (`*_hash` columns, sha256() of the bytes), never by the bytes: a
-- B-tree entry holds at most about 2.7 kB, and a client may choose a longer ID.

-- Delivery Service: one row per group; `version` is the guard of every write
-- (storage contract, mimi_ds::storage). `reserved_until_ms` is set while the group holds only
-- a Reservation record (its expiry), so expired reservations are found through an index.
CREATE TABLE mimi_ds_group (
    group_hash        bytea  NOT NULL PRIMARY KEY,
    group_id          bytea  NOT NULL,
    version           bigint NOT NULL,
    reserved_until_ms bigint
);
CREATE INDEX mimi_ds_group_reserved_until ON mimi_ds_group (reserved_until_ms)
    WHERE reserved_until_ms IS NOT NULL;

-- The group's records. `kind` numbers RecordKind (see src/ds.rs); `key` is the epoch of a
-- keyed kind (WelcomeTree) and 0 for the others.
CREATE TABLE mimi_ds_record (
    group_hash bytea    NOT NULL REFERENCES mimi_ds_group ON DELETE CASCADE,
    kind       smallint NOT NULL,
    key        bigint   NOT NULL,
    value      bytea    NOT NULL,
    PRIMARY KEY (group_hash, kind, key)
);

-- Replay marks: live while now <= expires_at_ms.
CREATE TABLE mimi_ds_replay (
    group_hash    bytea  NOT NULL,
    key_hash      bytea  NOT NULL,
    request_hash  bytea  NOT NULL,
    response      bytea,
    expires_at_ms bigint NOT NULL,
    PRIMARY KEY (group_hash, key_hash)
);
CREATE INDEX mimi_ds_replay_expiry ON mimi_ds_replay (expires_at_ms);

-- The durable outbox (mimi_ds::storage::DsOutbox). An identity column draws from a sequence:
-- an ID is never reused, also after its entry was delivered and deleted, or its transaction
-- rolled back.
CREATE TABLE mimi_ds_outbox (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id           bytea  NOT NULL,
    destination        text   NOT NULL,
    request            bytea  NOT NULL,
    created_at_ms      bigint NOT NULL,
    attempts           bigint NOT NULL DEFAULT 0,
    next_attempt_at_ms bigint NOT NULL
);
CREATE INDEX mimi_ds_outbox_due ON mimi_ds_outbox (next_attempt_at_ms);

-- Queueing Service (mimi_ds::qs::QsStorage).
CREATE TABLE mimi_qs_queue (
    queue_hash           bytea  NOT NULL PRIMARY KEY,
    queue_id             bytea  NOT NULL,
    owner_hash           bytea  NOT NULL UNIQUE,
    owner_key            bytea  NOT NULL,
    fanout_auth_token    bytea  NOT NULL,
    next_sequence        bigint NOT NULL,
    first_unacknowledged bigint NOT NULL,
    queued_bytes         bigint NOT NULL
);

-- Queued messages: the encoded QueuedMessage and its queued_size.
CREATE TABLE mimi_qs_message (
    queue_hash bytea  NOT NULL REFERENCES mimi_qs_queue ON DELETE CASCADE,
    sequence   bigint NOT NULL,
    message    bytea  NOT NULL,
    size       bigint NOT NULL,
    PRIMARY KEY (queue_hash, sequence)
);

-- Delivery marks: a delivery is remembered while now <= expires_at_ms.
CREATE TABLE mimi_qs_mark (
    queue_hash    bytea  NOT NULL REFERENCES mimi_qs_queue ON DELETE CASCADE,
    mark_hash     bytea  NOT NULL,
    expires_at_ms bigint NOT NULL,
    PRIMARY KEY (queue_hash, mark_hash)
);
CREATE INDEX mimi_qs_mark_expiry ON mimi_qs_mark (expires_at_ms);
