//! The binary's configuration: flags, PEM files and the peer directory file, then a server
//! started from them answers over HTTPS.

mod support;

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
        for file in ["mimi-ds.sqlite3", "hub-signature.key", "qs-queue-key.seed"] {
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
            &["--storage", "postgres://db/hub"][..],
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
        assert!(
            ServerConfig::from_args(args(&base[..6])).is_err(),
            "no --ca accepted"
        );
    })
    .await
    .expect("within the deadline");
}
