//! The KeyPackage directory's vectors (wire-format.md §14.4): an upload of a complete set by
//! a user's two seeded clients, its status answer, a refused upload, and the answers to a
//! group and a connection claim (`key_packages(6)`, `connection_key_packages(7)`).

use mimi_ds::directory::SetPurpose;
use mimi_ds::testing::directory::{upload_request, DirectoryUser, TestDirectory};
use mimi_ds::wire::ErrorCode;
use mimi_ds::Status;

use super::Vectors;

pub(super) fn run(v: &mut Vectors) {
    let provider = "bob.example";
    let bob = DirectoryUser::new_seeded("bob", 2, provider, "golden directory");
    let mut directory = TestDirectory::default();

    let (_, mut entries) = bob.set(SetPurpose::Group, false);
    entries.extend(bob.set(SetPurpose::Connection, true).1);
    let upload = bob.upload(entries);
    let outcome = directory.upload(&upload);
    assert_eq!(outcome.status, Status::Accepted, "{:?}", outcome.refusal);
    v.add(
        "directory_upload_request",
        "a group set and a last-resort connection set of bob's two clients",
        upload,
    );
    v.add(
        "directory_upload_response_status",
        "status (0): the two sets, both complete",
        outcome.response,
    );

    // The token with another secret: refused.
    let forged = upload_request(&bob.connection_token, &[0x55; 32], Vec::new());
    let outcome = directory.upload(&forged);
    assert_eq!(
        outcome.status,
        Status::Rejected(ErrorCode::AuthenticationFailed)
    );
    v.add(
        "directory_upload_response_error",
        "error (1) authentication_failed: bob's token with a secret that does not derive it",
        outcome.response,
    );

    let claim = directory.claim(&bob.claim(SetPurpose::Group, b"golden claim, group 1"));
    assert_eq!(claim.status, Status::Accepted, "{:?}", claim.refusal);
    v.add(
        "response_key_packages",
        "key_packages (6): bob's group set, consumed",
        claim.response,
    );
    let claim = directory.claim(&bob.claim(SetPurpose::Connection, b"golden claim, connection 1"));
    assert_eq!(claim.status, Status::Accepted, "{:?}", claim.refusal);
    v.add(
        "response_connection_key_packages",
        "connection_key_packages (7): bob's last-resort connection set, kept",
        claim.response,
    );
}
