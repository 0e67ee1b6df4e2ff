-- mimi-ds-sqlite schema, version 2: the outbox keeps each destination's order
-- (mimi_ds::storage::DsOutbox::pending). `pending` leaves out an entry while an older entry of
-- its destination is not yet due; this index finds a destination's put-off entries (its
-- entries with next_attempt_at_ms after now) without reading the rest. The id, the rowid, is
-- part of every index entry.
CREATE INDEX mimi_ds_outbox_destination_due ON mimi_ds_outbox (destination, next_attempt_at_ms);
