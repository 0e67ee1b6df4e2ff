//! Corrupt stored state (issue 12, "Bad input and faults"): a record mimi-ds wrote that no
//! longer decodes (garbage, or cut short) makes the request fail with an internal error that
//! names the group. Never a panic, never an answer built from a reset group, never a write.
//! Swept over every record a member's message, commit or proposal reads, through both drivers.

use mimi_ds::storage::{DsStorage, RecordKind, RecordWrite};
use mimi_ds::testing::{TestClient, TestDs};
use mimi_ds::{ProcessError, Status, UnixTimeMs};

const KINDS: [RecordKind; 6] = [
    RecordKind::Roster,
    RecordKind::Sequencer,
    RecordKind::MlsState,
    RecordKind::GroupInfo,
    RecordKind::PendingProposals,
    RecordKind::WelcomeSnapshots,
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(32).map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_record_that_does_not_decode_is_an_internal_error_naming_the_group() {
    let mut failures = 0;
    for kind in KINDS {
        for cut_short in [false, true] {
            let mut ds = TestDs::new("hub.example");
            let mut alice = TestClient::new("alice", "a1", "alice.example");
            let mut bob = TestClient::new("bob", "b1", "bob.example");
            let group_id = ds.create_group_with(&mut alice, &mut [&mut bob]);
            let snapshot = ds
                .storage
                .read(&group_id, &[kind])
                .expect("memory")
                .expect("the group");
            let original = snapshot.record(kind).map(<[u8]>::to_vec);
            let corrupt = match (cut_short, original) {
                (true, Some(bytes)) if bytes.len() > 1 => bytes[..bytes.len() / 2].to_vec(),
                _ => vec![0xff; 7],
            };
            ds.overwrite(&group_id, vec![RecordWrite::Put(kind, corrupt)]);
            let requests = [
                alice.message_request(b"hi", ds.now_ms),
                alice.update_request(ds.now_ms),
                bob.propose_remove_request(0, ds.now_ms),
            ];
            alice.discard_commit();
            for request in requests {
                let before = ds.storage.clone();
                let mut storage = ds.storage.clone();
                let now = UnixTimeMs(ds.now_ms);
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    match mimi_ds::testing::driver::Driver::from_env() {
                        mimi_ds::testing::driver::Driver::Sync => {
                            ds.ds.process(now, &request, &mut storage)
                        }
                        mimi_ds::testing::driver::Driver::Async => {
                            mimi_ds::testing::driver::block_on(ds.ds.process_async(
                                now,
                                &request,
                                &mut storage,
                            ))
                        }
                    }
                }))
                .unwrap_or_else(|_| panic!("{kind:?} corrupt (cut short: {cut_short}): a panic"));
                match result {
                    Err(ProcessError::Internal(what)) => {
                        failures += 1;
                        assert!(
                            what.contains(&format!("group {}", hex(&group_id))),
                            "{kind:?}: the error names the group: {what}"
                        );
                        assert!(storage == before, "{kind:?}: nothing is written");
                    }
                    // A request that does not read the record is served as usual.
                    Ok(outcome) => assert!(
                        !matches!(outcome.status, Status::Rejected(_)) || outcome.refusal.is_some(),
                        "{kind:?}: {outcome:?}"
                    ),
                    Err(other) => panic!("{kind:?}: {other:?}"),
                }
            }
        }
    }
    // Every kind but WelcomeSnapshots is read by some of the three requests.
    assert!(failures >= 2 * 5, "only {failures} requests failed");
}
