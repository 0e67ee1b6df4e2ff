-- A provider's connection-establishment keys and connection inboxes (mimi-ds
-- wire-format.md §14.3.2-§14.3.3). Users are named by the provider's stored name (for the
-- client endpoints RefHash("MIMIMI ConnectionUser", user)); requests are sealed to the user,
-- stored as the encoded StoredConnectionRequest; a replay mark is the hash of a delivered
-- sealed request, kept until its window ends.
CREATE TABLE mimi_ds_connection_key (
    user_name BLOB NOT NULL PRIMARY KEY,
    ciphersuite INTEGER NOT NULL,
    connection_establishment_key BLOB NOT NULL,
    inbox_id BLOB NOT NULL,
    owner_key BLOB NOT NULL,
    -- When the key was published (rule R-CONN-9: only a newer publication replaces it).
    published_at_ms INTEGER NOT NULL
);
CREATE TABLE mimi_ds_connection_inbox (
    inbox_id BLOB NOT NULL PRIMARY KEY,
    user_name BLOB NOT NULL,
    next_sequence INTEGER NOT NULL
);
CREATE TABLE mimi_ds_connection_request (
    inbox_id BLOB NOT NULL,
    sequence_number INTEGER NOT NULL,
    request BLOB NOT NULL,
    PRIMARY KEY (inbox_id, sequence_number)
);
CREATE TABLE mimi_ds_connection_mark (
    inbox_id BLOB NOT NULL,
    mark BLOB NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (inbox_id, mark)
);
CREATE INDEX mimi_ds_connection_mark_expiry ON mimi_ds_connection_mark (expires_at_ms);
