//! The MIMIMI flow over HTTPS (docs/wire-format.md §14): the steps of `examples/mimimi.rs`,
//! each a request to a real `mimi-ds-server` on 127.0.0.1. alpha's hub runs with
//! `--external-joins anyone --group-info-access anyone`, so Bob accepts by external commit
//! into the connection room (step 7) and Alice opens his response; the group is then created
//! by Bob, who holds Alice's token and connection key from her request.

use std::io::Write;

use mimi_ds::connection::{
    seal_connection_request, seal_connection_response, ConnectionClientRequest,
    ConnectionClientRequestBody, ConnectionEstablishmentKey, ConnectionKeyBundle,
    ConnectionKeyFetch, ConnectionResponder, ConnectionServiceResponse,
    ConnectionServiceResponseBody, RequestContents, ResponseContents, StoredConnectionRequest,
};
use mimi_ds::directory::SetPurpose;
use mimi_ds::pseudonym::group_links::add_aad_bytes;
use mimi_ds::testing::connection::{pseudonymous_client, RealIdentity};
use mimi_ds::testing::directory::{claim_request, claimed_set};
use mimi_ds::testing::mimimi::{
    credential_identity, group_id_request, short_hex, validated_key_package, MimimiUser,
};
use mimi_ds::testing::pseudonymous::{
    authenticate_members, random_wrapper_key, wrapper_key_of, LinkedAdd, PseudonymousClient,
};
use mimi_ds::testing::{decode_response, Received, TestClient, CIPHERSUITE};
use mimi_ds::wire::{
    decode_exact, encode, DsResponseBody, FanoutMessage, PROTOCOL_VERSION_MIMI_DS10,
};
use openmls::prelude::Credential;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::random::OpenMlsRand as _;
use openmls_traits::types::SignatureScheme;

use crate::net::{Error, Https};
use crate::providers::{Options, Providers, Storage, ALPHA, BETA};

/// What the run leaves behind: where each provider stored its state, and everything that must
/// not be found there.
pub struct Demo {
    /// alpha's and beta's storage (SQLite files in the run's folder).
    pub storage: [Storage; 2],
    /// The users, with their secrets (connection keys, tokens, upload secrets).
    pub users: Vec<MimimiUser>,
    /// The real clients: Alice's phone, Bob's phone.
    pub real_clients: Vec<RealIdentity>,
    /// The wrapper keys of the connection room and of the group (only their members hold
    /// them).
    pub wrapper_keys: Vec<Vec<u8>>,
    /// Application messages decrypted by their recipients.
    pub decrypted: usize,
    /// Bob's connection-establishment public key, which beta stores in the clear: the
    /// search's positive control.
    pub bob_public_key: Vec<u8>,
    /// The client pseudonyms the hub and the directory legitimately hold.
    pub client_pseudonyms: Vec<Vec<u8>>,
    /// The real identity of the client whose acceptance Alice opened from the connection
    /// room's commit (step 7).
    pub accepted_by: String,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn identity(credential: &Credential) -> String {
    credential_identity(credential)
}

/// The HTTPS clients of the run: the end users' (no client certificate) and alpha's server
/// when it posts a connection request to beta (its provider certificate, mutual TLS).
struct Clients {
    users: Https,
    alpha_server: Https,
}

impl Clients {
    /// `POST path` at `domain` as an end user; the status must be `expected`.
    async fn post(
        &mut self,
        out: &mut dyn Write,
        domain: &str,
        path: &str,
        body: &[u8],
        expected: u16,
    ) -> Result<Vec<u8>, Error> {
        let answer = self.users.request(domain, path, body).await?;
        writeln!(
            out,
            "  POST https://{domain}{path} ({} B) -> {}",
            body.len(),
            answer.status
        )?;
        if answer.status != expected {
            return Err(format!(
                "{path} at {domain}: {} (expected {expected})",
                answer.status
            )
            .into());
        }
        Ok(answer.body)
    }

    /// Fetches and acknowledges `client`'s queue at `domain` until `want` messages arrived
    /// (the hub's relay delivers them asynchronously from its outbox).
    async fn fetch(
        &mut self,
        out: &mut dyn Write,
        client: &mut TestClient,
        domain: &str,
        want: usize,
    ) -> Result<Vec<FanoutMessage>, Error> {
        let mut requests = 0;
        for _ in 0..200 {
            let answer = self
                .users
                .request(
                    domain,
                    "/queue_operation",
                    &client.fetch_request(50, now_ms()),
                )
                .await?;
            client.take_page(&answer.body);
            self.users
                .request(domain, "/queue_operation", &client.ack_request(now_ms()))
                .await?;
            requests += 2;
            if client.inbox.len() >= want {
                writeln!(
                    out,
                    "  POST https://{domain}/queue_operation x{requests} (fetch, acknowledge) -> \
                     {} message(s)",
                    client.inbox.len()
                )?;
                return Ok(std::mem::take(&mut client.inbox));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(format!("fewer than {want} messages reached a queue at {domain}").into())
    }

    /// A DS request at the hub (alpha), which must be accepted.
    async fn ds(&mut self, out: &mut dyn Write, body: &[u8]) -> Result<DsResponseBody, Error> {
        let answer = self.post(out, ALPHA, "/group_operation", body, 200).await?;
        Ok(decode_response(&answer).body)
    }

    /// Creates `client`'s queue at `domain`, sealed for deliveries from the hub (alpha).
    async fn create_queue(
        &mut self,
        out: &mut dyn Write,
        client: &mut TestClient,
        domain: &str,
    ) -> Result<(), Error> {
        let body = self
            .post(
                out,
                domain,
                "/queue_operation",
                &client.create_queue_request(now_ms()),
                200,
            )
            .await?;
        client.use_queue(&body, ALPHA);
        Ok(())
    }
}

/// A request of Bob's account at beta's connection endpoints, signed by the key that owns his
/// name there.
fn account_request(
    name: &[u8],
    owner: &SignatureKeyPair,
    body: ConnectionClientRequestBody,
) -> Result<Vec<u8>, Error> {
    let request =
        ConnectionClientRequest::signed(body, name, &owner.to_public_vec(), now_ms(), owner)
            .ok_or("signing failed")?;
    Ok(encode(&request)?)
}

fn service_body(body: &[u8]) -> Result<ConnectionServiceResponseBody, Error> {
    Ok(decode_exact::<ConnectionServiceResponse>(body)?.body)
}

/// Starts the providers in `options.dir`, runs the flow, writes the transcript to `out` and
/// stops the providers.
pub async fn run(options: &Options, out: &mut dyn Write) -> Result<Demo, Error> {
    let providers = Providers::start(options).await?;
    let pki = &providers.pki;
    let material = pki.material(ALPHA);
    let mut alpha_tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(alpha_tls_roots(&material)?)
    .with_client_auth_cert(material.certificate_chain, material.private_key)?;
    alpha_tls.alpn_protocols = vec![b"h2".to_vec()];
    let mut clients = Clients {
        users: Https::new(pki.end_user_client(), providers.servers()),
        alpha_server: Https::new(std::sync::Arc::new(alpha_tls), providers.servers()),
    };
    let result = steps(&mut clients, &providers, out).await;
    let storage = providers.storage.clone();
    providers.shutdown().await;
    let mut demo = result?;
    writeln!(out, "\nWhat each provider stored (rows per table)")?;
    for storage in &storage {
        let (Some(ds), Some(qs)) = (storage.sqlite_path(), storage.qs_sqlite_path()) else {
            continue;
        };
        for file in [ds, qs.as_path()] {
            writeln!(
                out,
                "  {} {}: {}",
                storage.domain,
                file.display(),
                row_counts(file)?.join(", ")
            )?;
        }
    }
    writeln!(
        out,
        "  server/tests/mimimi_demo.rs searches every stored byte for the real names, \
         credentials, keys, tokens and upload secrets"
    )?;
    demo.storage = storage;
    Ok(demo)
}

/// "table rows" for every non-empty table of a SQLite file: the hub's, Queueing Service's,
/// KeyPackage directory's and connection tables alike.
fn row_counts(file: &std::path::Path) -> Result<Vec<String>, Error> {
    let connection = rusqlite::Connection::open(file)?;
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut counts = Vec::new();
    for table in tables {
        let rows: i64 =
            connection.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |row| {
                row.get(0)
            })?;
        if rows > 0 {
            counts.push(format!("{table} {rows}"));
        }
    }
    Ok(counts)
}

fn alpha_tls_roots(material: &mimi_ds_server::TlsMaterial) -> Result<rustls::RootCertStore, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in &material.trusted_cas {
        roots.add(ca.clone())?;
    }
    Ok(roots)
}

async fn steps(
    clients: &mut Clients,
    providers: &Providers,
    out: &mut dyn Write,
) -> Result<Demo, Error> {
    let crypto = RustCrypto::default();
    let alice = MimimiUser::new("alice.smith", ALPHA);
    let bob = MimimiUser::new("bob.jones", BETA);
    let alice_phone = alice.real_client("phone");
    let alice_laptop = alice.real_client("laptop");
    let bob_phone = bob.real_client("phone");
    // Bob's account at beta's connection endpoints is owned by a key of his own, not by a
    // client's MLS signature key.
    let bob_account = SignatureKeyPair::new(SignatureScheme::ED25519)?;
    writeln!(
        out,
        "{ALPHA} (mimi-ds-server) runs the hub, a Queueing Service, a KeyPackage directory and \
         connection keys; {BETA} (mimi-ds-server) the last three. Storage: SQLite."
    )?;
    for real in [&alice_phone, &alice_laptop, &bob_phone] {
        writeln!(out, "real client: {}", text(&real.identity()))?;
    }

    writeln!(out, "\n1. Bob publishes his connection-establishment key")?;
    let bob_key = ConnectionEstablishmentKey::derive(
        &crypto,
        CIPHERSUITE,
        &crypto.random_vec(32).map_err(|e| format!("{e:?}"))?,
    )
    .map_err(|e| format!("a connection key: {e:?}"))?;
    let publish = account_request(
        bob.name.as_bytes(),
        &bob_account,
        ConnectionClientRequestBody::Publish {
            ciphersuite: u16::from(CIPHERSUITE),
            connection_establishment_key: bob_key.public_key().to_vec().into(),
        },
    )?;
    let answer = clients
        .post(out, BETA, "/connection_operation", &publish, 200)
        .await?;
    if service_body(&answer)? != ConnectionServiceResponseBody::Ok {
        return Err("publish refused".into());
    }
    writeln!(
        out,
        "  bob -> {BETA}: public key {}, signed by his account key",
        short_hex(bob_key.public_key(), 8)
    )?;
    writeln!(
        out,
        "  {BETA} saw: a name of its own user (stored as a hash), his account key and a public key"
    )?;

    writeln!(
        out,
        "\n2. Bob's phone uploads a KeyPackage set under his connection token"
    )?;
    let bob_pseudonym = bob.pseudonym();
    let mut bob_member = PseudonymousClient::with_real_identity(&bob_phone, BETA, &bob_pseudonym);
    clients
        .create_queue(out, &mut bob_member.client, BETA)
        .await?;
    let upload = bob.group_set_upload(&bob_member);
    clients
        .post(out, BETA, "/key_package_upload", &upload, 200)
        .await?;
    writeln!(
        out,
        "  bob's phone: KeyPackage with user pseudonym {}, client pseudonym {}, its identity \
         link encrypted under Bob's connection key; no login",
        text(bob_pseudonym.uri.as_slice()),
        text(bob_member.pseudonymous.client_pseudonym.uri.as_slice()),
    )?;
    writeln!(
        out,
        "  {BETA}'s directory saw: a token it stores only as a hash, and pseudonymous KeyPackages"
    )?;

    writeln!(
        out,
        "\n3. Anyone fetches Bob's connection-establishment key, unauthenticated"
    )?;
    let fetch = encode(&ConnectionKeyFetch {
        version: PROTOCOL_VERSION_MIMI_DS10,
        user: bob.name.as_bytes().to_vec().into(),
    })?;
    let answer = clients
        .post(out, BETA, "/connection_key", &fetch, 200)
        .await?;
    let ConnectionServiceResponseBody::KeyBundle(bundle) = service_body(&answer)? else {
        return Err("no key bundle".into());
    };
    let bundle: ConnectionKeyBundle = bundle;
    writeln!(
        out,
        "  {BETA} answered: the public key, and Bob's inbox address sealed by {BETA} to itself \
         ({} B of ciphertext)",
        bundle.inbox.ciphertext.as_slice().len()
    )?;

    writeln!(out, "\n4. Alice opens a connection room at the hub")?;
    let mut alice_room = pseudonymous_client(ALPHA);
    clients.create_queue(out, &mut alice_room, ALPHA).await?;
    let DsResponseBody::GroupId(room_id) = clients.ds(out, &group_id_request()).await? else {
        return Err("no group ID".into());
    };
    let room_id = room_id.as_slice().to_vec();
    alice_room.create_group(&room_id, providers.hub());
    clients
        .ds(out, &alice_room.create_group_request(now_ms()))
        .await?;
    writeln!(
        out,
        "  {ALPHA}'s hub saw: room {}, created by {}, a client with random names",
        text(&room_id),
        identity(&alice_room.credential.credential)
    )?;

    writeln!(out, "\n5. Alice sends a sealed ConnectionRequest")?;
    let room_wrapper_key = random_wrapper_key();
    let alice_signature_key = alice_phone.signature_key();
    let (pending, delivery) = seal_connection_request(
        &crypto,
        &crypto,
        &alice_phone.signer,
        &RequestContents {
            credential: &alice_phone.credential,
            signature_key: &alice_signature_key,
            connection_room_id: &room_id,
            identity_link_wrapper_key: &room_wrapper_key,
            connection_key: &alice.connection_key,
            connection_token: &alice.connection_token,
        },
        &bundle,
        ALPHA,
    )
    .map_err(|e| format!("sealing: {e}"))?;
    let body = encode(&delivery)?;
    // Alice's client hands the sealed request to her provider, whose server posts it to
    // beta's /connection_request over mutual TLS (wire-format.md §14.3).
    let answer = clients
        .alpha_server
        .request(BETA, "/connection_request", &body)
        .await?;
    writeln!(
        out,
        "  {ALPHA}'s server -> POST https://{BETA}/connection_request ({} B, mutual TLS as \
         {ALPHA}) -> {}",
        body.len(),
        answer.status
    )?;
    if answer.status != 200 {
        return Err(format!("connection request refused: {}", answer.status).into());
    }
    writeln!(
        out,
        "  {BETA} saw: some user of {ALPHA} wrote {} B of ciphertext to the inbox the sealed \
         address names",
        delivery.sealed_request.ciphertext.as_slice().len()
    )?;

    writeln!(out, "\n6. Bob reads his inbox and opens the request")?;
    let read = account_request(
        bob.name.as_bytes(),
        &bob_account,
        ConnectionClientRequestBody::Read {
            from_sequence: 0,
            max_requests: 10,
        },
    )?;
    let answer = clients
        .post(out, BETA, "/connection_operation", &read, 200)
        .await?;
    let ConnectionServiceResponseBody::Requests(stored) = service_body(&answer)? else {
        return Err("no inbox".into());
    };
    let stored: Vec<StoredConnectionRequest> = stored;
    let first = stored.first().ok_or("an empty inbox")?;
    let acknowledge = account_request(
        bob.name.as_bytes(),
        &bob_account,
        ConnectionClientRequestBody::Acknowledge {
            up_to_sequence: first.sequence_number + 1,
        },
    )?;
    clients
        .post(out, BETA, "/connection_operation", &acknowledge, 200)
        .await?;
    let mut responder = ConnectionResponder::new(bob_key);
    let opened = responder
        .open(&crypto, BETA, first)
        .map_err(|e| format!("opening the request: {e}"))?;
    writeln!(
        out,
        "  bob's phone opened it: from {} (signature verified), room {}",
        identity(&opened.request.requester_client_credential),
        text(opened.request.connection_room_id.as_slice())
    )?;

    writeln!(
        out,
        "\n7. Bob accepts by external commit into the room, the response in its SafeAAD"
    )?;
    let mut bob_room = pseudonymous_client(BETA);
    clients.create_queue(out, &mut bob_room, BETA).await?;
    // Not a member yet, he fetches the room's GroupInfo unauthenticated: alpha's hub runs
    // with `--group-info-access anyone --external-joins anyone` (wire-format.md §14.3.4).
    let answer = clients
        .post(
            out,
            ALPHA,
            "/external_commit_information",
            &TestClient::group_info_request(&room_id),
            200,
        )
        .await?;
    let DsResponseBody::ExternalCommitInfo(info) = decode_response(&answer).body else {
        return Err("no GroupInfo for Bob".into());
    };
    let aad = seal_connection_response(
        &crypto,
        &bob_phone.signer,
        &opened,
        &ResponseContents {
            credential: &bob_phone.credential,
            signature_key: &bob_phone.signature_key(),
            connection_key: &bob.connection_key,
            connection_token: &bob.connection_token,
        },
    )
    .map_err(|e| format!("sealing the response: {e}"))?;
    let aad_len = aad.len();
    clients
        .ds(out, &bob_room.external_join_request_with_aad(&info, aad))
        .await?;
    bob_room.confirm_commit();
    writeln!(
        out,
        "  {ALPHA}'s hub saw: {} joined by external commit with {aad_len} B of authenticated \
         data it cannot open; the commit went to the room's queue at {ALPHA}",
        identity(&bob_room.credential.credential)
    )?;

    writeln!(
        out,
        "  Alice's room client reads the response from its queue"
    )?;
    let messages = clients.fetch(out, &mut alice_room, ALPHA, 1).await?;
    let received = alice_room.receive_commit_with_aad(messages.first().ok_or("no commit")?);
    let response = pending
        .open_response(&crypto, &received)
        .map_err(|e| format!("opening the response: {e}"))?;
    if response.responder_client_credential != bob_phone.credential
        || response.responder_connection_token.as_slice() != bob.connection_token.as_slice()
        || response.responder_connection_key.as_slice() != bob.connection_key.as_slice()
    {
        return Err("the response does not carry Bob's credential, token and key".into());
    }
    let accepted_by = identity(&response.responder_client_credential);
    writeln!(
        out,
        "  alice's phone opened it: {accepted_by} accepted (signature verified); each now holds \
         the other's connection key and token. Bob adds her to their group below."
    )?;

    writeln!(
        out,
        "\n8. Alice's phone uploads a KeyPackage set under her connection token"
    )?;
    let alice_pseudonym = alice.pseudonym();
    let mut alice_member =
        PseudonymousClient::with_real_identity(&alice_phone, ALPHA, &alice_pseudonym);
    clients
        .create_queue(out, &mut alice_member.client, ALPHA)
        .await?;
    let upload = alice.group_set_upload(&alice_member);
    clients
        .post(out, ALPHA, "/key_package_upload", &upload, 200)
        .await?;

    writeln!(
        out,
        "\n9. Bob claims Alice's set with the token from her request"
    )?;
    let claim_id = crypto.random_vec(16).map_err(|e| format!("{e:?}"))?;
    let answer = clients
        .post(
            out,
            ALPHA,
            "/group_key_packages",
            &claim_request(
                SetPurpose::Group,
                opened.request.requester_connection_token.as_slice(),
                &claim_id,
            ),
            200,
        )
        .await?;
    let set = claimed_set(&answer);
    writeln!(
        out,
        "  {ALPHA}'s directory saw: a claim under a token; it handed out the set of {}",
        text(set.user_pseudonym.as_slice())
    )?;

    writeln!(
        out,
        "\n10. Bob creates a pseudonymous group at the hub and adds Alice with identity links"
    )?;
    let DsResponseBody::GroupId(group_id) = clients.ds(out, &group_id_request()).await? else {
        return Err("no group ID".into());
    };
    let group_id = group_id.as_slice().to_vec();
    bob_member.create_group(&group_id, providers.hub(), true);
    clients
        .ds(out, &bob_member.client.create_group_request(now_ms()))
        .await?;
    let wrapper_key = random_wrapper_key();
    let key_package = validated_key_package(&set.key_packages[0]);
    let alice_connection_key = opened.request.requester_connection_key.as_slice().to_vec();
    let (alice_seen, _) =
        PseudonymousClient::entry_for(&key_package, &alice_connection_key, &wrapper_key, &group_id);
    writeln!(
        out,
        "  bob's phone opened the identity link of Alice's KeyPackage with her connection key: {}",
        identity(&alice_seen.credential)
    )?;
    let request = bob_member.add_linked_request(
        LinkedAdd {
            added: vec![(key_package, &alice_connection_key)],
            own: true,
        },
        &wrapper_key,
        now_ms(),
    );
    clients.ds(out, &request).await?;
    bob_member.client.confirm_commit();
    writeln!(
        out,
        "  {ALPHA}'s hub saw: group {} with leaves {} and {}, identity-link keys wrapped under a \
         key it never gets; a Welcome for a queue at {ALPHA}",
        text(&group_id),
        text(bob_member.pseudonymous.client_pseudonym.uri.as_slice()),
        text(alice_member.pseudonymous.client_pseudonym.uri.as_slice()),
    )?;

    writeln!(
        out,
        "\n11. Alice's phone joins from the Welcome in her queue"
    )?;
    alice_member.client.inbox = clients
        .fetch(out, &mut alice_member.client, ALPHA, 1)
        .await?;
    let Some(Received::Welcome(welcome)) = alice_member.client.process_inbox().pop() else {
        return Err("no Welcome for Alice".into());
    };
    let (request, processed) = alice_member.client.welcome_info_request(&welcome, now_ms());
    let alice_wrapper_key = wrapper_key_of(&processed).ok_or("no wrapper key in the Welcome")?;
    let answer = clients
        .post(out, ALPHA, "/welcome_information", &request, 200)
        .await?;
    let DsResponseBody::WelcomeInfo(welcome_info) = decode_response(&answer).body else {
        return Err("no welcome information".into());
    };
    alice_member
        .client
        .join_with_tree(processed, &welcome_info.ratchet_tree);
    writeln!(
        out,
        "  alice's phone joined at epoch {}",
        alice_member.client.epoch()
    )?;

    writeln!(
        out,
        "\n12. Alice's laptop joins by external commit with its own identity link"
    )?;
    let mut laptop = PseudonymousClient::with_real_identity(&alice_laptop, ALPHA, &alice_pseudonym);
    clients.create_queue(out, &mut laptop.client, ALPHA).await?;
    // The phone, a member, fetches the GroupInfo for it (a join link).
    let answer = clients
        .post(
            out,
            ALPHA,
            "/external_commit_information",
            &alice_member
                .client
                .signed_group_info_request(&group_id, None, now_ms()),
            200,
        )
        .await?;
    let DsResponseBody::ExternalCommitInfo(info) = decode_response(&answer).body else {
        return Err("no GroupInfo".into());
    };
    let own = laptop.own_entry(&alice_wrapper_key, &group_id);
    let request = laptop.external_join_request_with_aad(
        &info,
        add_aad_bytes(vec![own]).map_err(|e| format!("AddAAD: {e:?}"))?,
    );
    clients.ds(out, &request).await?;
    laptop.client.confirm_commit();
    alice_member.client.inbox = clients
        .fetch(out, &mut alice_member.client, ALPHA, 1)
        .await?;
    alice_member.client.process_inbox();
    bob_member.client.inbox = clients.fetch(out, &mut bob_member.client, BETA, 1).await?;
    bob_member.client.process_inbox();
    writeln!(
        out,
        "  {ALPHA}'s hub saw {} join under Alice's user pseudonym; the commit went to {ALPHA}'s \
         and {BETA}'s queues",
        text(laptop.pseudonymous.client_pseudonym.uri.as_slice())
    )?;

    writeln!(
        out,
        "\n13. Every member authenticates every other member's real identity"
    )?;
    let members = [&bob_member, &alice_member, &laptop];
    for (member, name, key) in [
        (&bob_member, "bob's phone", &wrapper_key),
        (&alice_member, "alice's phone", &alice_wrapper_key),
        (&laptop, "alice's laptop", &alice_wrapper_key),
    ] {
        let DsResponseBody::IdentityLinkKeys(links) = clients
            .ds(out, &member.identity_link_keys_request(now_ms()))
            .await?
        else {
            return Err("no identity link keys".into());
        };
        let mut seen = Vec::new();
        for (leaf, result) in authenticate_members(member.client.group(), &links, key) {
            let real = result.map_err(|e| format!("{name}, leaf {leaf}: {e}"))?;
            let expected = members
                .iter()
                .find(|m| m.client.leaf() == leaf)
                .ok_or("a member at that leaf")?;
            if real.credential != expected.real_credential {
                return Err(format!("{name}: leaf {leaf} is not who it claims").into());
            }
            seen.push(format!("leaf {leaf} = {}", identity(&real.credential)));
        }
        writeln!(out, "  {name}: {}", seen.join(", "))?;
    }

    writeln!(out, "\n14. Messages through the queues")?;
    let mut decrypted = 0;
    let request = bob_member.client.message_request(b"Hi Alice!", now_ms());
    clients.ds(out, &request).await?;
    for (member, name) in [(&mut alice_member, "phone"), (&mut laptop, "laptop")] {
        for message in clients.fetch(out, &mut member.client, ALPHA, 1).await? {
            if let Received::Application(plaintext) = member.client.receive(&message) {
                decrypted += 1;
                writeln!(out, "  alice's {name} read: {}", text(&plaintext))?;
            }
        }
    }
    let request = laptop.client.message_request(b"Hi Bob!", now_ms());
    clients.ds(out, &request).await?;
    for message in clients.fetch(out, &mut bob_member.client, BETA, 1).await? {
        if let Received::Application(plaintext) = bob_member.client.receive(&message) {
            decrypted += 1;
            writeln!(out, "  bob's phone read: {}", text(&plaintext))?;
        }
    }
    writeln!(
        out,
        "  {ALPHA}'s hub saw PrivateMessages from pseudonymous leaves; each Queueing Service \
         ciphertext for queues of its own"
    )?;

    let client_pseudonyms = vec![
        alice_room
            .credential
            .credential
            .serialized_content()
            .to_vec(),
        bob_member
            .pseudonymous
            .client_pseudonym
            .uri
            .as_slice()
            .to_vec(),
    ];
    Ok(Demo {
        storage: providers.storage.clone(),
        users: vec![alice, bob],
        real_clients: vec![alice_phone, alice_laptop, bob_phone],
        wrapper_keys: vec![room_wrapper_key, wrapper_key],
        decrypted,
        bob_public_key: bundle.connection_establishment_key.as_slice().to_vec(),
        client_pseudonyms,
        accepted_by,
    })
}
