//! Fuzz body for the KeyPackage directory (wire-format.md §14.4).
//!
//! [`directory_bytes`]: a valid upload or claim from real clients (a user's two clients, three
//! sets, one of them last-resort), mutated at the positions the input names (or replaced by
//! raw bytes), against a directory that already holds the user's sets. No panic and no `Err`;
//! the answer decodes; a refused request changes nothing; an accepted claim returns a complete
//! set whose every KeyPackage carries the set's user pseudonym and says `last_resort` exactly
//! when the set was one; an accepted upload's status lists only sets whose filled slots are
//! below their size; the async driver decides as the sync one.

use std::sync::OnceLock;

use tls_codec::DeserializeBytes as _;

use crate::directory::{
    user_pseudonym, DirectoryConfig, InMemoryDirectoryStorage, KeyPackageDirectory,
    KeyPackageUploadResponse, KeyPackageUploadResponseBody, SetPurpose,
};
use crate::testing::directory::{claimed_set, DirectoryUser, TestDirectory};
use crate::testing::driver::block_on;
use crate::testing::START_MS;
use crate::wire::{decode_exact, DsResponse, DsResponseBody};
use crate::{Status, UnixTimeMs};

struct DirectoryFixture {
    storage: InMemoryDirectoryStorage,
    /// `(bytes, is_upload)`.
    requests: Vec<(Vec<u8>, bool)>,
}

fn fixture() -> &'static DirectoryFixture {
    static FIXTURE: OnceLock<DirectoryFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut directory = TestDirectory::default();
        let bob = DirectoryUser::new("bob", 2, "b.example");
        let mut stored = bob.set(SetPurpose::Group, false).1;
        stored.extend(bob.set(SetPurpose::Group, true).1);
        stored.extend(bob.set(SetPurpose::Connection, false).1);
        directory.accept_upload(&bob.upload(stored));
        let (pseudonym, mut fresh) = bob.set(SetPurpose::Group, false);
        let half = fresh.split_off(1);
        let requests = vec![
            (bob.upload(fresh), true),
            (bob.upload(half), true),
            (
                bob.upload(vec![bob.entry(
                    SetPurpose::Connection,
                    1,
                    bob.key_package(1, &pseudonym, false),
                )]),
                true,
            ),
            (bob.upload(Vec::new()), true),
            (
                bob.claim(SetPurpose::Group, b"claim for group 1 (16+ bytes)"),
                false,
            ),
            (
                bob.claim(SetPurpose::Connection, b"claim for a connection group"),
                false,
            ),
        ];
        DirectoryFixture {
            storage: directory.storage,
            requests,
        }
    })
}

/// Fuzz body: see the module documentation. `data[0]` picks the request (high bit: use the
/// rest of `data` as raw bytes instead); then `(position: u16, xor: u8)` triples mutate it.
pub fn directory_bytes(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    let (valid, is_upload) =
        &fixture.requests[usize::from(selector & 0x7f) % fixture.requests.len()];
    let request = if selector & 0x80 != 0 {
        rest.to_vec()
    } else {
        let mut request = valid.clone();
        for mutation in rest.chunks_exact(3) {
            if request.is_empty() {
                break;
            }
            let position =
                usize::from(u16::from_be_bytes([mutation[0], mutation[1]])) % request.len();
            request[position] ^= mutation[2];
        }
        request
    };
    let directory = KeyPackageDirectory::new(
        DirectoryConfig::default(),
        openmls_rust_crypto::RustCrypto::default(),
    );
    let now = UnixTimeMs(START_MS);
    let mut storage = fixture.storage.clone();
    let mut async_storage = fixture.storage.clone();
    let (outcome, async_outcome) = if *is_upload {
        (
            directory.upload(now, &request, &mut storage),
            block_on(directory.upload_async(now, &request, &mut async_storage)),
        )
    } else {
        (
            directory.claim(now, &request, &mut storage),
            block_on(directory.claim_async(now, &request, &mut async_storage)),
        )
    };
    let Ok(outcome) = outcome else {
        panic!("memory storage cannot fail")
    };
    let Ok(async_outcome) = async_outcome else {
        panic!("memory storage cannot fail")
    };
    assert_eq!(
        outcome, async_outcome,
        "the async driver decides as the sync one"
    );
    assert!(storage == async_storage);
    if let Status::Rejected(code) = outcome.status {
        assert!(storage == fixture.storage, "a refusal changes nothing");
        let wire = if *is_upload {
            match decode_exact::<KeyPackageUploadResponse>(&outcome.response)
                .expect("the answer decodes")
                .body
            {
                KeyPackageUploadResponseBody::Error(error) => error.code,
                other => panic!("a refusal answered {other:?}"),
            }
        } else {
            match decode_exact::<DsResponse>(&outcome.response)
                .expect("the answer decodes")
                .body
            {
                DsResponseBody::Error(error) => error.code,
                other => panic!("a refusal answered {other:?}"),
            }
        };
        assert_eq!(wire, code);
        return;
    }
    if *is_upload {
        let KeyPackageUploadResponseBody::Status(status) =
            decode_exact::<KeyPackageUploadResponse>(&outcome.response)
                .expect("the answer decodes")
                .body
        else {
            panic!("an accepted upload answers its status")
        };
        for set in status.sets {
            assert!(set.filled.as_slice().iter().all(|&i| i < set.set_size));
        }
        return;
    }
    let set = claimed_set(&outcome.response);
    assert_eq!(set.last_resort.is_last_resort(), outcome.last_resort);
    assert!(!set.key_packages.is_empty());
    for key_package in &set.key_packages {
        let message =
            openmls::prelude::MlsMessageIn::tls_deserialize_exact_bytes(key_package.as_bytes())
                .expect("a stored KeyPackage decodes");
        let openmls::prelude::MlsMessageBodyIn::KeyPackage(kp) = message.extract() else {
            panic!("a claim answered something other than KeyPackages")
        };
        let parts = user_pseudonym(&kp.unverified_credential().credential)
            .expect("a stored KeyPackage is pseudonymous");
        assert_eq!(parts.user_pseudonym, set.user_pseudonym.as_slice());
    }
}
