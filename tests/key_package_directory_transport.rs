//! The KeyPackage directory behind the router (wire-format.md §11, §14.4): an upload at
//! `/key_package_upload` and claims at `/group_key_packages` and `/connection_key_packages`,
//! through `Router::handle_directory` and `Router::handle_directory_async`, with the HTTP
//! checks and the request-type check of those endpoints.

use mimi_ds::directory::{
    DirectoryConfig, InMemoryDirectoryStorage, KeyPackageDirectory, SetPurpose,
};
use mimi_ds::qs::InMemoryQsStorage;
use mimi_ds::storage::InMemoryStorage;
use mimi_ds::testing::directory::{claimed_set, DirectoryUser};
use mimi_ds::testing::driver::block_on;
use mimi_ds::testing::{decode_response, START_MS};
use mimi_ds::transport::{CallStats, Endpoint, HttpRequest, Routed, Router, TransportConfig};
use mimi_ds::wire::{DsResponseBody, ErrorCode, LastResort};
use mimi_ds::{Status, UnixTimeMs};
use openmls_rust_crypto::RustCrypto;

const PROVIDER: &str = "bob.example";
const HEADERS: [(&str, &str); 2] = [
    ("Host", PROVIDER),
    ("Content-Type", "application/octet-stream"),
];

fn router() -> Router {
    Router::new(TransportConfig::new(PROVIDER, None)).with_directory(KeyPackageDirectory::new(
        DirectoryConfig::default(),
        RustCrypto::default(),
    ))
}

fn post<'a>(path: &'a str, body: &'a [u8]) -> HttpRequest<'a> {
    HttpRequest {
        method: "POST",
        path,
        headers: &HEADERS,
        body,
        authenticated_peer: None,
    }
}

fn send(
    router: &Router,
    asynchronous: bool,
    request: &HttpRequest<'_>,
    storage: &mut InMemoryDirectoryStorage,
) -> Routed {
    let now = UnixTimeMs(START_MS);
    if asynchronous {
        block_on(router.handle_directory_async(now, request, storage)).unwrap()
    } else {
        router.handle_directory(now, request, storage).unwrap()
    }
}

fn error_code(routed: &Routed) -> ErrorCode {
    match decode_response(&routed.response.body).body {
        DsResponseBody::Error(error) => error.code,
        other => panic!("not an error: {other:?}"),
    }
}

/// Upload, claim, and the last answer: `key_packages_exhausted` as 404. Sync and async.
#[test]
fn upload_and_claim_over_the_router() {
    for asynchronous in [false, true] {
        let router = router();
        let mut storage = InMemoryDirectoryStorage::new();
        let bob = DirectoryUser::new("bob", 2, PROVIDER);
        let (pseudonym, entries) = bob.set(SetPurpose::Group, false);
        let upload = bob.upload(entries);
        let routed = send(
            &router,
            asynchronous,
            &post("/key_package_upload", &upload),
            &mut storage,
        );
        assert_eq!(routed.response.status, 200);
        assert_eq!(routed.endpoint, Some(Endpoint::KeyPackageUpload));
        assert!(matches!(
            routed.call,
            Some(CallStats::Directory(Status::Accepted, "upload", 0))
        ));

        let claim = bob.claim(SetPurpose::Group, b"claim for group 1 (16+ bytes)");
        let routed = send(
            &router,
            asynchronous,
            &post("/group_key_packages", &claim),
            &mut storage,
        );
        assert_eq!(routed.response.status, 200);
        let set = claimed_set(&routed.response.body);
        assert_eq!(set.user_pseudonym.as_slice(), pseudonym);
        assert_eq!(set.last_resort, LastResort::No);
        assert_eq!(set.key_packages.len(), 2);

        let claim = bob.claim(SetPurpose::Group, b"claim for group 2 (16+ bytes)");
        let before = storage.clone();
        let routed = send(
            &router,
            asynchronous,
            &post("/group_key_packages", &claim),
            &mut storage,
        );
        assert_eq!(routed.response.status, 404);
        assert_eq!(error_code(&routed), ErrorCode::KeyPackagesExhausted);
        assert!(storage == before);
    }
}

/// Each KeyPackage endpoint takes its own request type; `/group_operation` takes neither; and
/// `Router::handle` (which has no directory storage) answers the directory endpoints 501.
#[test]
fn claims_belong_at_their_own_endpoint() {
    let router = router();
    let mut storage = InMemoryDirectoryStorage::new();
    let bob = DirectoryUser::new("bob", 1, PROVIDER);
    storage = {
        let upload = bob.upload(bob.set(SetPurpose::Group, false).1);
        let routed = send(
            &router,
            false,
            &post("/key_package_upload", &upload),
            &mut storage,
        );
        assert_eq!(routed.response.status, 200);
        storage
    };
    let group_claim = bob.claim(SetPurpose::Group, b"claim for group 1 (16+ bytes)");
    let connection_claim = bob.claim(SetPurpose::Connection, b"claim for group 1 (16+ bytes)");
    for (path, body) in [
        ("/connection_key_packages", &group_claim),
        ("/group_key_packages", &connection_claim),
    ] {
        let before = storage.clone();
        let routed = send(&router, false, &post(path, body), &mut storage);
        assert_eq!(routed.response.status, 400, "{path}");
        assert_eq!(error_code(&routed), ErrorCode::UnsupportedOperation);
        assert!(storage == before);
    }
    // `handle` does not reach the directory.
    let mut ds = InMemoryStorage::new();
    let mut qs = InMemoryQsStorage::new();
    let routed = router
        .handle(
            UnixTimeMs(START_MS),
            &post("/group_key_packages", &group_claim),
            &mut ds,
            &mut qs,
        )
        .unwrap();
    assert_eq!(routed.response.status, 501);
    // A router with a DS refuses a claim at `/group_operation`: it has its own endpoint.
    let hub = mimi_ds::testing::TestDs::new(PROVIDER);
    let with_ds = Router::new(TransportConfig::new(PROVIDER, None)).with_ds(hub.ds);
    let mut hub_storage = hub.storage;
    let routed = with_ds
        .handle(
            UnixTimeMs(START_MS),
            &post("/group_operation", &group_claim),
            &mut hub_storage,
            &mut qs,
        )
        .unwrap();
    assert_eq!(routed.response.status, 400);
    assert_eq!(error_code(&routed), ErrorCode::UnsupportedOperation);
    // HTTP checks run first: a wrong content type is 415 and reaches nothing.
    let headers = [("Host", PROVIDER), ("Content-Type", "text/plain")];
    let request = HttpRequest {
        headers: &headers,
        ..post("/group_key_packages", &group_claim)
    };
    let routed = send(&router, false, &request, &mut storage);
    assert_eq!(routed.response.status, 415);
    // The claim itself is still there.
    let routed = send(
        &router,
        false,
        &post("/group_key_packages", &group_claim),
        &mut storage,
    );
    assert_eq!(routed.response.status, 200);
}
