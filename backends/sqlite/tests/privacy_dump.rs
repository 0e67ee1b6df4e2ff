//! Privacy mode (mimi-ds wire-format.md §17) on SQLite: a privacy-mode group's life runs on
//! the in-memory storage of a `TestDs` and, request for request, on a SQLite database; then
//! every value of every row of every table of the database, once the durable outbox is drained,
//! is searched for the members' signature keys, credentials and queue configurations (§17.8:
//! none is at rest in the clear).

use mimi_ds::storage::{
    DsOutbox as _, DsStorage as _, RecordKind, RecordWrite, VersionGuard, WriteSet,
};
use mimi_ds::testing::{Received, TestClient, TestDs};
use mimi_ds::{Status, UnixTimeMs};
use mimi_ds_sqlite::SqliteDsStorage;
use rusqlite::types::ValueRef;
use rusqlite::Connection;

/// Runs `request` on both storages; both must accept it.
fn both(ds: &mut TestDs, sqlite: &mut SqliteDsStorage, request: &[u8]) -> mimi_ds::Outcome {
    let on_sqlite = ds
        .ds
        .process(UnixTimeMs(ds.now_ms), request, sqlite)
        .expect("SQLite");
    assert_eq!(on_sqlite.status, Status::Accepted, "on SQLite");
    ds.accept(request)
}

/// Every value stored in the database, as bytes.
fn every_stored_value(connection: &Connection) -> Vec<Vec<u8>> {
    let mut tables = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .expect("tables");
    let names: Vec<String> = tables
        .query_map([], |row| row.get(0))
        .expect("tables")
        .collect::<Result<_, _>>()
        .expect("names");
    let mut values = Vec::new();
    for name in names {
        let mut rows = connection
            .prepare(&format!("SELECT * FROM \"{name}\""))
            .expect("select");
        let columns = rows.column_count();
        let mut rows = rows.query([]).expect("rows");
        while let Some(row) = rows.next().expect("row") {
            for column in 0..columns {
                match row.get_ref(column).expect("value") {
                    ValueRef::Blob(bytes) | ValueRef::Text(bytes) => values.push(bytes.to_vec()),
                    ValueRef::Integer(n) => values.push(n.to_be_bytes().to_vec()),
                    ValueRef::Real(_) | ValueRef::Null => {}
                }
            }
        }
    }
    values
}

#[test]
fn a_privacy_mode_group_leaves_no_member_data_in_the_sqlite_database() {
    let mut ds = TestDs::new("hub.example");
    let mut sqlite =
        SqliteDsStorage::new(Connection::open_in_memory().expect("open")).expect("migrate");
    let mut alice = TestClient::new("alice", "alice-1", "a.example");
    let mut bob = TestClient::new("bob", "bob-1", "b.example");

    // The reservation, copied: `request_group_id` draws a fresh ID on each storage.
    let group_id = ds.request_group_id();
    let reserved = ds
        .storage
        .read(&group_id, &[RecordKind::Reservation])
        .expect("in-memory")
        .expect("reserved");
    let reservation = reserved
        .record(RecordKind::Reservation)
        .expect("a reservation");
    let copy = WriteSet {
        group_id: group_id.clone(),
        guard: VersionGuard::Absent,
        records: vec![RecordWrite::Put(
            RecordKind::Reservation,
            reservation.to_vec(),
        )],
        replay_mark: None,
        now_ms: ds.now_ms,
        fanout: Vec::new(),
    };
    let _ = sqlite.write(&copy).expect("SQLite");

    alice.create_private_group(&group_id, &ds.external_sender);
    let request = alice.create_group_request(ds.now_ms);
    let _ = {
        let keyed = alice.keyed_by_member(&request, false, ds.now_ms);
        both(&mut ds, &mut sqlite, &keyed)
    };
    let request = alice.add_request(vec![bob.privacy_key_package()], ds.now_ms);
    let out = {
        let keyed = alice.keyed_by_member(&request, true, ds.now_ms);
        both(&mut ds, &mut sqlite, &keyed)
    };
    alice.confirm_commit();
    TestDs::route(&out, &mut [&mut bob]);
    let Some(Received::Welcome(welcome)) = bob.process_inbox().pop() else {
        panic!("no Welcome")
    };
    bob.join_from_welcome_with_its_tree(&welcome);
    let request = bob.message_request(b"hello", ds.now_ms);
    let out = {
        let keyed = bob.keyed_by_member(&request, false, ds.now_ms);
        both(&mut ds, &mut sqlite, &keyed)
    };
    TestDs::route(&out, &mut [&mut alice]);
    assert_eq!(
        alice.process_inbox(),
        vec![Received::Application(b"hello".to_vec())]
    );
    let request = bob.update_request(ds.now_ms);
    let out = {
        let keyed = bob.keyed_by_member(&request, true, ds.now_ms);
        both(&mut ds, &mut sqlite, &keyed)
    };
    bob.confirm_commit();
    TestDs::route(&out, &mut [&mut alice]);
    alice.process_inbox();

    // The durable outbox keeps each fanout in the clear until a relay delivered it (§17.8: a
    // commit there carries the leaves it changes); the relay drains it.
    assert!(sqlite.outbox_len().expect("SQLite") > 0, "fanout was kept");
    loop {
        let pending = sqlite.pending(u64::MAX, 100).expect("SQLite");
        if pending.is_empty() {
            break;
        }
        for entry in pending {
            assert!(sqlite.mark_delivered(entry.id).expect("SQLite"));
        }
    }
    let values = every_stored_value(sqlite.connection());
    assert!(values.len() > 10, "the dump found the stored rows");
    for client in [&alice, &bob] {
        let needles = [
            ("signature key", client.signer.to_public_vec()),
            (
                "credential",
                client.credential.credential.serialized_content().to_vec(),
            ),
            (
                "queue configuration",
                mimi_ds::wire::encode(&client.queue).expect("encode"),
            ),
        ];
        for (what, needle) in needles {
            for value in &values {
                assert!(
                    !value.windows(needle.len()).any(|w| w == needle.as_slice()),
                    "{}'s {what} is stored in the clear",
                    client.name
                );
            }
        }
    }
}
