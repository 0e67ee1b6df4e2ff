//! The provider's KeyPackage directory over HTTPS (wire-format.md §14.4): a user's two real
//! openmls clients upload a set of pseudonymous KeyPackages at `/key_package_upload`, a
//! connected user claims it at `/group_key_packages`, a second claim finds nothing left, and
//! an upload under someone else's token is refused. Once on SQLite, once on PostgreSQL
//! (`Router::handle_directory_async`).

mod support;

use mimi_ds::directory::{KeyPackageUploadResponse, KeyPackageUploadResponseBody, SetPurpose};
use mimi_ds::testing::directory::{claimed_set, upload_request, DirectoryUser};
use mimi_ds::wire::{decode_exact, DsResponse, DsResponseBody, ErrorCode, LastResort};
use mimi_ds_server::StorageChoice;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_and_claim_over_https_on_sqlite() {
    let root = tempfile::tempdir().expect("tmp");
    let storage = StorageChoice::Sqlite(root.path().join("beta.sqlite3"));
    tokio::time::timeout(TEST_DEADLINE, run(&root, storage))
        .await
        .expect("within the deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_and_claim_over_https_on_postgresql() {
    let root = tempfile::tempdir().expect("tmp");
    let url = support::postgres::fresh_database().await;
    tokio::time::timeout(TEST_DEADLINE, run(&root, StorageChoice::Postgres(url)))
        .await
        .expect("within the deadline");
}

async fn run(root: &tempfile::TempDir, storage: StorageChoice) {
    let net = Net {
        pki: Pki::new(&[BETA]),
    };
    let beta = start(config(
        &net.pki,
        BETA,
        false,
        storage,
        &state_dir(root.path(), "beta"),
        directory(&[]),
    ))
    .await;
    let at = beta.local_addr();
    let bob = DirectoryUser::new("bob", 2, BETA);
    let (pseudonym, entries) = bob.set(SetPurpose::Group, false);

    let (status, body) = net
        .post(BETA, at, "/key_package_upload", bob.upload(entries))
        .await;
    assert_eq!(status, 200);
    let KeyPackageUploadResponseBody::Status(sets) =
        decode_exact::<KeyPackageUploadResponse>(&body)
            .expect("KeyPackageUploadResponse")
            .body
    else {
        panic!("not a status")
    };
    assert_eq!(sets.sets.len(), 1);
    assert_eq!(sets.sets[0].filled.as_slice(), [0, 1]);

    // Someone holding only the token cannot upload under it.
    let mallory = DirectoryUser::new("mallory", 1, BETA);
    let forged = upload_request(
        &bob.connection_token,
        &mallory.upload_secret,
        mallory.set(SetPurpose::Group, false).1,
    );
    let (status, body) = net.post(BETA, at, "/key_package_upload", forged).await;
    assert_eq!(status, 403);
    let KeyPackageUploadResponseBody::Error(error) =
        decode_exact::<KeyPackageUploadResponse>(&body)
            .expect("decodes")
            .body
    else {
        panic!("not an error")
    };
    assert_eq!(error.code, ErrorCode::AuthenticationFailed);

    // A connected user claims the set for a group.
    let claim = bob.claim(SetPurpose::Group, b"claim for group 1 (16+ bytes)");
    let (status, body) = net.post(BETA, at, "/group_key_packages", claim).await;
    assert_eq!(status, 200);
    let set = claimed_set(&body);
    assert_eq!(set.user_pseudonym.as_slice(), pseudonym);
    assert_eq!(set.last_resort, LastResort::No);
    assert_eq!(set.key_packages.len(), 2);

    // The set was consumed.
    let claim = bob.claim(SetPurpose::Group, b"claim for group 2 (16+ bytes)");
    let (status, body) = net.post(BETA, at, "/group_key_packages", claim).await;
    assert_eq!(status, 404);
    let DsResponseBody::Error(error) = decode_exact::<DsResponse>(&body).expect("decodes").body
    else {
        panic!("not an error")
    };
    assert_eq!(error.code, ErrorCode::KeyPackagesExhausted);
    beta.shutdown().await;
}
