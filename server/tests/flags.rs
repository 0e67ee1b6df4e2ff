//! The binary's configuration: flags, PEM files and the peer directory file, then a server
//! started from them answers over HTTPS.

mod support;

use mimi_ds::{ExternalJoinPolicy, GroupInfoAccess};
use mimi_ds_server::{ConfigError, ServerConfig, StorageChoice};
use support::*;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_starts_from_its_flags_and_files() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let root = tempfile::tempdir().expect("tmp");
        let net = Net {
            pki: Pki::new(&[ALPHA, BETA]),
        };
        let [cert, key, ca] = net.pki.write_pem_files(root.path(), ALPHA);
        let peers = root.path().join("peers.txt");
        std::fs::write(
            &peers,
            "# the providers\nbeta.example https://127.0.0.1:9/\n",
        )
        .expect("write");
        let state = root.path().join("state");
        let path = |p: &std::path::Path| p.to_str().expect("utf-8").to_owned();
        let config = ServerConfig::from_args(args(&[
            "--domain",
            ALPHA,
            "--hub",
            "--listen",
            "127.0.0.1:0",
            "--cert",
            &path(&cert),
            "--key",
            &path(&key),
            "--ca",
            &path(&ca),
            "--peers",
            &path(&peers),
            "--state-dir",
            &path(&state),
        ]))
        .expect("flags parse");
        assert!(config.runs_hub);
        assert_eq!(
            config.storage,
            StorageChoice::Sqlite(state.join("mimi-ds.sqlite3"))
        );
        assert_eq!(config.peers.address(BETA), Some("127.0.0.1:9"));

        let server = start(config).await;
        let (status, body) = net
            .send(
                ALPHA,
                server.local_addr(),
                http::Request::get("/.well-known/mimi/ds-domain")
                    .header("host", ALPHA)
                    .body(Default::default())
                    .expect("request"),
                None,
            )
            .await;
        assert_eq!((status, body.as_slice()), (200, ALPHA.as_bytes()));
        server.shutdown().await;
        for file in [
            "mimi-ds.sqlite3",
            "mimi-ds-qs.sqlite3",
            "hub-signature.key",
            "qs-queue-key.seed",
        ] {
            assert!(state.join(file).exists(), "{file} in the state folder");
        }

        // Wrong flags are errors, not guesses.
        let base = [
            "--domain",
            ALPHA,
            "--cert",
            &path(&cert),
            "--key",
            &path(&key),
            "--ca",
            &path(&ca),
        ];
        assert!(matches!(
            ServerConfig::from_args(args(&["--help"])),
            Err(ConfigError::Help)
        ));
        for extra in [
            &["--storage", "postgres://db:notaport/hub"][..],
            &["--storage", "mysql://db/hub"],
            &["--listen", "nowhere"],
            &["--frobnicate"],
            &["--peers"],
        ] {
            let mut list = base.to_vec();
            list.extend_from_slice(extra);
            assert!(
                ServerConfig::from_args(args(&list)).is_err(),
                "{extra:?} accepted"
            );
        }
        let mut with_postgres = base.to_vec();
        with_postgres.extend_from_slice(&["--storage", "postgres://hub@db/hub"]);
        let config = ServerConfig::from_args(args(&with_postgres)).expect("a PostgreSQL URL");
        assert_eq!(
            config.storage,
            StorageChoice::Postgres("postgres://hub@db/hub".into())
        );
        assert!(
            ServerConfig::from_args(args(&base[..6])).is_err(),
            "no --ca accepted"
        );

        // The hub's join and GroupInfo policies: DsConfig's defaults unless a flag says
        // otherwise (MIMIMI connection rooms need `anyone` for both).
        let config = ServerConfig::from_args(args(&base)).expect("defaults");
        assert_eq!(
            (config.external_joins, config.group_info_access),
            (ExternalJoinPolicy::ExistingUsers, GroupInfoAccess::Members)
        );
        for (joins, access, expected) in [
            (
                "anyone",
                "anyone",
                (ExternalJoinPolicy::Anyone, GroupInfoAccess::Anyone),
            ),
            (
                "disabled",
                "members",
                (ExternalJoinPolicy::Disabled, GroupInfoAccess::Members),
            ),
            (
                "existing-users",
                "anyone",
                (ExternalJoinPolicy::ExistingUsers, GroupInfoAccess::Anyone),
            ),
        ] {
            let mut list = base.to_vec();
            list.extend_from_slice(&["--external-joins", joins, "--group-info-access", access]);
            let config = ServerConfig::from_args(args(&list)).expect("valid policies");
            assert_eq!((config.external_joins, config.group_info_access), expected);
        }
        for (flag, value, expected) in [
            (
                "--external-joins",
                "everyone",
                "--external-joins \"everyone\": expected disabled, existing-users or anyone",
            ),
            (
                "--group-info-access",
                "Anyone",
                "--group-info-access \"Anyone\": expected members or anyone",
            ),
        ] {
            let mut list = base.to_vec();
            list.extend_from_slice(&[flag, value]);
            match ServerConfig::from_args(args(&list)) {
                Err(ConfigError::Invalid(message)) => assert_eq!(message, expected),
                other => panic!("{flag} {value} gave {other:?}"),
            }
        }
    })
    .await
    .expect("within the deadline");
}

/// TLS 1.3 only: a client offering nothing newer than TLS 1.2 gets no connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_1_2_client_is_refused() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let root = tempfile::tempdir().expect("tmp");
        let net = Net {
            pki: Pki::new(&[ALPHA]),
        };
        let server = start(config(
            &net.pki,
            ALPHA,
            false,
            StorageChoice::Memory,
            &state_dir(root.path(), "alpha"),
            directory(&[]),
        ))
        .await;
        let connect = |versions: &'static [&'static rustls::SupportedProtocolVersion]| {
            let mut roots = rustls::RootCertStore::empty();
            for ca in net.pki.material(ALPHA).trusted_cas {
                roots.add(ca).expect("CA");
            }
            let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            let at = server.local_addr();
            async move {
                let tcp = tokio::net::TcpStream::connect(at).await.expect("connect");
                tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                    .connect(
                        rustls::pki_types::ServerName::try_from(ALPHA).expect("name"),
                        tcp,
                    )
                    .await
            }
        };
        static TLS12_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
        static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        assert!(connect(&TLS12_ONLY).await.is_err());
        assert!(connect(&TLS13_ONLY).await.is_ok());
        server.shutdown().await;
    })
    .await
    .expect("within the deadline");
}
