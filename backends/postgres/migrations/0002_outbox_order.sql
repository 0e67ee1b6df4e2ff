-- mimi-ds-postgres schema, version 2: the outbox keeps each destination's order
-- (mimi_ds::storage::DsOutbox::pending). `pending` leaves out an entry while an older entry of
-- its destination is not yet due; this index answers that probe from a destination's put-off
-- entries alone (next_attempt_at_ms after now), however long its backlog of due entries.
-- Built inside the migration transaction: it blocks outbox writes while it builds, which
-- takes moments on an outbox that is drained (it should hold little).
CREATE INDEX mimi_ds_outbox_destination_due
    ON mimi_ds_outbox (destination, next_attempt_at_ms, id);
