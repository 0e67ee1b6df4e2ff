//! PostgreSQL for the server's tests: `MIMI_DS_POSTGRES_URL` if set (a role that may
//! `CREATE SCHEMA`; CI sets it), otherwise one throw-away cluster per test process
//! ([`mimi_ds_postgres::test_cluster`]). Each server under test gets a fresh schema of its own
//! ([`fresh_database`]).

use std::sync::atomic::{AtomicUsize, Ordering};

use mimi_ds_postgres::test_cluster::server_url;

/// A URL for a new, empty schema of its own on the test server (the server creates its
/// tables there at start).
pub async fn fresh_database() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let schema = format!(
        "mimi_server_test_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let url = server_url().to_owned();
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the test server ({url}): {e}"));
    let connection = tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create the test schema");
    drop(admin);
    let _ = connection.await;
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}
