//! The README's demo (`examples/demo`) as a test: two mimi-ds-server providers on loopback
//! HTTPS, real openmls clients, every message fetched from a real queue after the relay
//! delivered it. The flow itself asserts each step; here the totals and the databases are
//! checked too. Once on SQLite files (the demo's default), once on PostgreSQL with two hub
//! instances sharing the hub's database (the README's "same thing on PostgreSQL"), twice at
//! once on one database.

// The demo's modules, each at the crate root as in the example.
#![allow(dead_code, unreachable_pub)]

#[path = "../examples/demo/flow.rs"]
mod flow;
#[path = "../examples/demo/net.rs"]
mod net;
#[path = "../examples/demo/pki.rs"]
mod pki;
#[path = "../examples/demo/providers.rs"]
mod providers;

use std::time::Duration;

use providers::Options;

/// The whole run's bound (it takes a few seconds in debug builds).
const DEADLINE: Duration = Duration::from_secs(180);

async fn run(options: Options) -> (flow::Summary, String) {
    let mut transcript = Vec::new();
    let summary = tokio::time::timeout(DEADLINE, flow::run(&options, &mut transcript))
        .await
        .expect("within the deadline")
        .expect("the demo runs");
    let transcript = String::from_utf8(transcript).expect("text");
    // Messages: Alice's two, Bob's two; each decrypted by every other member present.
    // "Hi Bob!" x2, "Hi Alice" x2, "Back again." x3, "Anyone there?" x2 (the wiped laptop
    // never gets it).
    assert_eq!(
        summary.decrypted, 9,
        "decrypted {}\n{transcript}",
        summary.decrypted
    );
    // beta rejected the wiped laptop's queue for a message, and again for the commit that
    // removed it; each went back to the hub as an event. With two hub instances both relays
    // may deliver the same outbox entry (delivery is at least once, docs/deploy.md), and
    // each counts beta's rejection, so only one instance pins the count.
    // The counts come first in the message: a long transcript gets cut at the end.
    let counts = format!(
        "rejected queues {}, failed attempts {}, decrypted {}",
        summary.rejected_queues, summary.failed_attempts, summary.decrypted
    );
    if options.hub_instances == 1 {
        assert_eq!(summary.rejected_queues, 2, "{counts}\n{transcript}");
    } else {
        assert!(summary.rejected_queues >= 2, "{counts}\n{transcript}");
    }
    assert_eq!(summary.final_members, 2, "Alice's two clients remain");
    assert!(summary.delivered > 0 && summary.fetched > 0);
    assert!(transcript.contains("POST https://beta.example/queue_operation"));
    assert!(transcript.ends_with("'.tables'\n") || options.postgres.is_some());
    for (storage, tables) in &summary.databases {
        let rows = |name: &str| {
            tables
                .iter()
                .find(|(table, _)| table == name)
                .map(|(_, rows)| *rows)
                .unwrap_or_else(|| panic!("{}: no table {name}: {tables:?}", storage.domain))
        };
        // The relay drained the outbox, and the clients acknowledged every message.
        assert_eq!(rows("mimi_ds_outbox"), 0, "{}", storage.domain);
        assert_eq!(rows("mimi_qs_message"), 0, "{}", storage.domain);
        // alice's two queues at alpha; at beta bob/phone's (bob/laptop's was deleted).
        let queues = if storage.domain == providers::ALPHA {
            2
        } else {
            1
        };
        assert_eq!(rows("mimi_qs_queue"), queues, "{}", storage.domain);
        assert!(
            transcript.contains(&storage.state_dir.display().to_string()),
            "the transcript names where the keys are"
        );
    }
    (summary, transcript)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_group_life_runs_on_the_server_with_sqlite() {
    let dir = tempfile::tempdir().expect("tmp");
    let (summary, transcript) = run(Options {
        dir: dir.path().to_path_buf(),
        postgres: None,
        hub_instances: 1,
        open_joins: false,
    })
    .await;
    // The databases are where the transcript says, and outlive the servers.
    // The hub's file holds the groups, the QS's file beside it the queues.
    for (storage, _) in &summary.databases {
        let path = storage.sqlite_path().expect("SQLite by default");
        let qs_path = storage.qs_sqlite_path().expect("SQLite by default");
        for file in [path, qs_path.as_path()] {
            assert!(file.starts_with(dir.path()) && file.is_file());
            assert!(transcript.contains(&format!("SQLite file {}", file.display())));
        }
        let rows = |file: &std::path::Path, table: &str| -> i64 {
            rusqlite::Connection::open(file)
                .expect("open")
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                    row.get(0)
                })
                .expect("count")
        };
        assert!(rows(&qs_path, "mimi_qs_queue") > 0);
        assert_eq!(rows(path, "mimi_qs_queue"), 0, "no queue in the hub's file");
        // The group is deleted at the end; the hub's replay marks of its requests remain.
        if storage.domain == providers::ALPHA {
            assert!(
                rows(path, "mimi_ds_replay") > 0,
                "the hub's state in the hub's file"
            );
        }
        assert_eq!(
            rows(&qs_path, "mimi_ds_replay"),
            0,
            "no hub state in the QS's file"
        );
    }
}

/// The README's PostgreSQL run, twice at once on one database: each run makes its own schemas
/// (named for the provider, the run's start time and the process), so neither sees or drops
/// the other's tables. One run has two hub instances sharing the hub's schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_postgresql_with_two_hub_instances_and_two_runs_at_once() {
    let (first_dir, second_dir) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let url = mimi_ds_postgres::test_cluster::server_url().to_owned();
    let ((first, first_transcript), (second, second_transcript)) = tokio::join!(
        run(Options {
            dir: first_dir.path().to_path_buf(),
            postgres: Some(url.clone()),
            hub_instances: 2,
            open_joins: false,
        }),
        run(Options {
            dir: second_dir.path().to_path_buf(),
            postgres: Some(url.clone()),
            hub_instances: 1,
            open_joins: false,
        }),
    );
    // Requests went to both hub instances, and both providers' tables are in PostgreSQL.
    assert!(first_transcript.contains("[alpha instance 1]"));
    assert!(first_transcript.contains("[alpha instance 2]"));
    let mut schemas = Vec::new();
    for (summary, transcript) in [(&first, &first_transcript), (&second, &second_transcript)] {
        for (storage, _) in &summary.databases {
            let schema = storage.schema.clone().expect("a PostgreSQL schema");
            let name = storage.domain.split('.').next().expect("a name");
            assert!(
                schema.starts_with(&format!("mimi_demo_{name}_")),
                "{schema}"
            );
            let url = storage.postgres_url().expect("PostgreSQL");
            assert!(url.ends_with(&format!("search_path%3D{schema}")), "{url}");
            assert!(
                transcript.contains(&format!("PostgreSQL schema {schema} in ")),
                "the transcript names the schema"
            );
            schemas.push(schema);
        }
    }
    let mut distinct = schemas.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        4,
        "every run and provider has its own: {schemas:?}"
    );

    // The demo keeps its schemas for a look inside; the test removes them.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let connection = tokio::spawn(connection);
    for schema in &schemas {
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .expect("drop the run's schema");
    }
    drop(client);
    let _ = connection.await;
}
