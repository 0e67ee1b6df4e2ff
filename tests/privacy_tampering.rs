//! Privacy mode against a storage that swaps, drops, adds or rolls back sealed records
//! (wire-format.md §17.5 binding, §17.6 manifest). The attacker is whoever can write the
//! database without the members' key: an operator, a bad migration, a restored backup. Every
//! such state is corrupt state: an internal error naming the group, no answer built from it,
//! and nothing written.
//!
//! Some checks can only be reached with the key (a manifest that is well sealed but lists the
//! wrong records); the tests seal those with the members' key, standing in for a hub bug. A
//! manifest re-sealed unchanged is accepted, so each refusal below is caused by its one edit.

use mimi_ds::privacy::{
    open_record, seal_record, Manifest, ManifestEntry, RecordBinding, StateKeys,
};
use mimi_ds::storage::{DsStorage, RecordKind, RecordWrite};
use mimi_ds::testing::{TestClient, TestDs};
use mimi_ds::wire::{decode_exact, encode, ErrorCode};
use mimi_ds::{ProcessError, Status, UnixTimeMs};
use openmls::prelude::Ciphersuite;
use openmls_rust_crypto::RustCrypto;

#[path = "support/privacy.rs"]
mod privacy_support;
use privacy_support::{private_group, private_pair};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(32).map(|b| format!("{b:02x}")).collect()
}

/// What the storage holds for the group: its version and the stored bytes of `kind`.
fn stored(ds: &TestDs, group_id: &[u8], kind: RecordKind) -> (u64, Vec<u8>) {
    let snapshot = ds
        .storage
        .read(group_id, &[kind])
        .expect("memory")
        .expect("the group");
    let bytes = snapshot.record(kind).expect("the record").to_vec();
    (snapshot.version, bytes)
}

/// The member's keys of the group's current epoch (`current()` is the state key).
fn keys_of(member: &TestClient) -> StateKeys {
    member.state_keys(false)
}

fn suite(member: &TestClient) -> Ciphersuite {
    member.group().ciphersuite()
}

/// The stored manifest, opened with the key; `version` is the group's.
fn manifest(ds: &TestDs, member: &TestClient) -> (u64, Manifest) {
    let group_id = member.group_id();
    let (version, stored_manifest) = stored(ds, &group_id, RecordKind::Manifest);
    // The ciphersuite is stored in the clear before the sealed record (§17.6).
    let plaintext = open_record(
        &RustCrypto::default(),
        suite(member),
        keys_of(member).current(),
        &RecordBinding::manifest(&group_id, version),
        &stored_manifest[2..],
    )
    .expect("the stored manifest opens");
    (version, decode_exact(&plaintext).expect("a manifest"))
}

/// `manifest` sealed with the member's key for the version the next write moves the group to.
fn resealed(member: &TestClient, version: u64, manifest: &Manifest) -> RecordWrite {
    let group_id = member.group_id();
    let sealed = seal_record(
        &RustCrypto::default(),
        suite(member),
        keys_of(member).current(),
        &RecordBinding::manifest(&group_id, version + 1),
        [7; 32],
        &encode(manifest).expect("a manifest"),
    )
    .expect("sealed");
    let mut stored = (suite(member) as u16).to_be_bytes().to_vec();
    stored.extend(sealed);
    RecordWrite::Put(RecordKind::Manifest, stored)
}

/// The member's keyed message, processed against the tampered storage: `Ok(status)` if served,
/// or the internal error, which must name the group and leave the storage as it was.
fn send(ds: &mut TestDs, member: &mut TestClient) -> Result<Status, String> {
    let request = member.message_request(b"hi", ds.now_ms);
    let request = member.keyed_by_member(&request, false, ds.now_ms);
    ds.advance(1);
    let before = ds.storage.clone();
    match ds
        .ds
        .process(UnixTimeMs(ds.now_ms), &request, &mut ds.storage)
    {
        Ok(outcome) => Ok(outcome.status),
        Err(ProcessError::Internal(what)) => {
            assert!(
                what.contains(&format!("group {}", hex(&member.group_id()))),
                "the error names the group: {what}"
            );
            assert!(ds.storage == before, "nothing is written: {what}");
            Err(what)
        }
        Err(other) => panic!("{other:?}"),
    }
}

fn entry_of(manifest: &Manifest, kind: RecordKind) -> usize {
    let binding = RecordBinding::for_record(&[], kind, 0).expect("a sealed kind");
    manifest
        .entries
        .iter()
        .position(|entry| entry.record_kind == binding.kind as u16)
        .expect("listed")
}

/// Alice's message after the storage re-sealed her group's manifest with `edit` applied:
/// served (`Ok`), or the internal error it met.
fn send_after_manifest_edit(edit: impl FnOnce(&mut Manifest)) -> Result<Status, String> {
    let (mut ds, mut alice, _bob) = private_pair();
    let (version, mut manifest) = manifest(&ds, &alice);
    edit(&mut manifest);
    ds.overwrite(
        &alice.group_id(),
        vec![resealed(&alice, version, &manifest)],
    );
    send(&mut ds, &mut alice)
}

#[test]
fn a_manifest_resealed_unchanged_is_served() {
    assert_eq!(send_after_manifest_edit(|_| {}), Ok(Status::Accepted));
}

#[test]
fn a_manifest_that_names_another_epoch_is_corrupt_state() {
    let what = send_after_manifest_edit(|manifest| manifest.epoch += 1).unwrap_err();
    assert!(what.contains("another epoch"), "{what}");
}

#[test]
fn a_manifest_that_is_not_canonical_is_corrupt_state() {
    let what = send_after_manifest_edit(|manifest| {
        // The same record listed twice: which version would count?
        let repeated = manifest.entries[0].clone();
        manifest.entries.insert(0, repeated);
        assert!(!manifest.is_canonical());
    })
    .unwrap_err();
    assert!(what.contains("not canonical"), "{what}");
}

#[test]
fn a_record_present_but_not_listed_is_corrupt_state() {
    let what = send_after_manifest_edit(|manifest| {
        let roster = entry_of(manifest, RecordKind::Roster);
        manifest.entries.remove(roster);
    })
    .unwrap_err();
    assert!(what.contains("Roster is not in the manifest"), "{what}");
}

#[test]
fn a_record_listed_but_absent_is_corrupt_state() {
    let (mut ds, mut alice, _bob) = private_pair();
    let (version, manifest) = manifest(&ds, &alice);
    // The storage drops a record the manifest lists.
    let group_id = alice.group_id();
    ds.overwrite(
        &group_id,
        vec![
            RecordWrite::Delete(RecordKind::Activity),
            resealed(&alice, version, &manifest),
        ],
    );
    let what = send(&mut ds, &mut alice).unwrap_err();
    assert!(what.contains("lists a record that is absent"), "{what}");
}

#[test]
fn a_record_not_opening_under_its_listed_version_is_corrupt_state() {
    let what = send_after_manifest_edit(|manifest| {
        let roster = entry_of(manifest, RecordKind::Roster);
        manifest.entries[roster] = ManifestEntry {
            version: manifest.entries[roster].version + 1,
            ..manifest.entries[roster].clone()
        };
    })
    .unwrap_err();
    assert!(what.contains("Roster"), "{what}");
}

#[test]
fn a_record_moved_from_another_group_is_corrupt_state() {
    // Two privacy-mode groups on one hub; the storage copies the first one's roster into the
    // second. Even with a manifest that lists it at the right version, its binding names the
    // other group (§17.5).
    let (mut ds, mut alice, _bob) = private_pair();
    let mut carol = TestClient::new("carol", "carol-1", "c.example");
    let other_id = ds.request_group_id();
    carol.create_private_group(&other_id, &ds.external_sender);
    let request = carol.create_group_request(ds.now_ms);
    let _ = ds.accept(&carol.keyed_by_member(&request, false, ds.now_ms));
    let (_, carols_roster) = stored(&ds, &other_id, RecordKind::Roster);

    let (version, mut manifest) = manifest(&ds, &alice);
    let roster = entry_of(&manifest, RecordKind::Roster);
    manifest.entries[roster].version = version + 1;
    ds.overwrite(
        &alice.group_id(),
        vec![
            RecordWrite::Put(RecordKind::Roster, carols_roster),
            resealed(&alice, version, &manifest),
        ],
    );
    let what = send(&mut ds, &mut alice).unwrap_err();
    assert!(what.contains("Roster"), "{what}");
}

#[test]
fn a_rolled_back_record_or_manifest_without_the_key_is_corrupt_state() {
    // Without the key the storage can only put back bytes it saw: an earlier roster, or the
    // whole earlier manifest with it. Either is written at a newer version than the manifest it
    // needs was sealed for (§17.6).
    let (mut ds, mut alice) = private_group();
    let group_id = alice.group_id();
    let (_, old_roster) = stored(&ds, &group_id, RecordKind::Roster);
    let (_, old_manifest) = stored(&ds, &group_id, RecordKind::Manifest);
    let bob = TestClient::new("bob", "bob-1", "b.example");
    let request = alice.add_request(vec![bob.privacy_key_package()], ds.now_ms);
    let _ = ds.accept(&alice.keyed_by_member(&request, true, ds.now_ms));
    alice.confirm_commit();
    let fresh = ds.storage.clone();

    ds.overwrite(
        &group_id,
        vec![RecordWrite::Put(RecordKind::Roster, old_roster.clone())],
    );
    assert!(send(&mut ds, &mut alice).is_err());

    ds.storage = fresh;
    ds.overwrite(
        &group_id,
        vec![
            RecordWrite::Put(RecordKind::Roster, old_roster),
            RecordWrite::Put(RecordKind::Manifest, old_manifest),
        ],
    );
    // The old manifest was sealed under the previous epoch's key: the member's key is newer
    // than the stored state, which is how members notice a rollback across a commit (§17.6).
    assert_eq!(
        send(&mut ds, &mut alice),
        Ok(Status::Rejected(ErrorCode::StateKeyStale))
    );
}
