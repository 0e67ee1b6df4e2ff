//! A bounded load generator for `mimi-ds-server` (issue 13, item 7).
//!
//! It starts the server in this process on 127.0.0.1, builds groups with real openmls
//! clients, signs every application message up front, sends them over HTTPS with a few
//! requests in flight on kept-alive connections, waits until the relay delivered them, and
//! then does the same straight into the router (no HTTP, no TLS) on a fresh database of the
//! same kind, so that one run gives the server/direct ratio. See BENCHMARKS.md, "Server under
//! load (issue 13)", for figures, and `tests/support/load/mod.rs` for what is measured.
//!
//! ```sh
//! cargo run --release -p mimi-ds-server --example load -- \
//!     --scenario small-groups --groups 100 --members 3 --requests 2000 --max-duration 60
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "../tests/support/load/mod.rs"]
mod load;

use std::time::Duration;

use load::{Scenario, Spec, Storage};

const USAGE: &str = "\
usage: load [--storage sqlite|sqlite:<folder>|postgres|postgres://...]
            [--scenario small-groups|one-group] [--groups N] [--members N]
            [--requests N] [--max-duration SECONDS] [--concurrency N] [--http2]
            [--eager-drain]

  --storage       sqlite (default: a temporary folder), sqlite:<folder> (the databases are
                  left there), postgres (MIMI_DS_POSTGRES_URL, or a throw-away cluster with
                  fsync=off started for this run), or a postgres:// URL (two fresh schemas are
                  made there and dropped afterwards)
  --scenario      small-groups (default): --groups groups (100) of --members members (3);
                  one-group: one group of --members members (1000)
  --requests      messages per target, 1..=100000 (default 1000)
  --max-duration  each timed phase stops sending after this many seconds, 1..=240 (default 60)
  --concurrency   requests in flight, 1..=64 (default 4)
  --http2         one shared HTTP/2 connection instead of one HTTP/1.1 connection per worker
  --eager-drain   wake the direct run's drain loop at every accepted message, as the server
                  wakes its relay (default: it polls every 2 ms while the outbox is empty)";

fn parse(args: Vec<String>) -> Result<(Spec, Option<String>), String> {
    let mut storage = "sqlite".to_owned();
    let mut scenario = "small-groups".to_owned();
    let (mut groups, mut members) = (100, None);
    let (mut requests, mut seconds, mut concurrency, mut http2) = (1000, 60, 4, false);
    let mut eager_drain = false;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "--http2" {
            http2 = true;
            continue;
        }
        if flag == "--eager-drain" {
            eager_drain = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_owned());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag} {value:?}: not a number"))
        };
        match flag.as_str() {
            "--storage" => storage = value.clone(),
            "--scenario" => scenario = value.clone(),
            "--groups" => groups = number()?,
            "--members" => members = Some(number()?),
            "--requests" => requests = number()?,
            "--max-duration" => seconds = number()? as u64,
            "--concurrency" => concurrency = number()?,
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    let scenario = match scenario.as_str() {
        "small-groups" => Scenario::SmallGroups {
            groups,
            members: members.unwrap_or(3),
        },
        "one-group" => Scenario::OneGroup {
            members: members.unwrap_or(1000),
        },
        other => return Err(format!("--scenario {other:?}: small-groups or one-group")),
    };
    let (storage, postgres_base) = if storage == "sqlite" {
        (
            Storage::Sqlite {
                dir: std::path::PathBuf::new(),
            },
            None,
        )
    } else if let Some(dir) = storage.strip_prefix("sqlite:") {
        (Storage::Sqlite { dir: dir.into() }, None)
    } else if storage == "postgres" {
        let url = mimi_ds_postgres::test_cluster::server_url().to_owned();
        (
            Storage::Postgres {
                server_url: String::new(),
                direct_url: String::new(),
            },
            Some(url),
        )
    } else if storage.starts_with("postgres://") || storage.starts_with("postgresql://") {
        (
            Storage::Postgres {
                server_url: String::new(),
                direct_url: String::new(),
            },
            Some(storage),
        )
    } else {
        return Err(format!("--storage {storage:?}\n{USAGE}"));
    };
    let spec = Spec {
        scenario,
        storage,
        requests,
        max_duration: Duration::from_secs(seconds),
        concurrency,
        http2,
        eager_drain,
    };
    spec.check()?;
    Ok((spec, postgres_base))
}

async fn drop_schemas(base: &str) {
    let Ok((client, connection)) = tokio_postgres::connect(base, tokio_postgres::NoTls).await
    else {
        return;
    };
    tokio::spawn(connection);
    for name in ["server", "direct"] {
        let schema = format!("mimi_load_{}_{name}", std::process::id());
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await;
    }
}

fn main() {
    let (mut spec, postgres_base) = match parse(std::env::args().skip(1).collect()) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let code = runtime.block_on(async {
        let temporary = tempfile::tempdir().expect("a temporary folder");
        match &mut spec.storage {
            Storage::Sqlite { dir } if dir.as_os_str().is_empty() => {
                *dir = temporary.path().to_path_buf();
            }
            Storage::Sqlite { dir } => std::fs::create_dir_all(&*dir).expect("the folder"),
            Storage::Postgres {
                server_url,
                direct_url,
            } => {
                let base = postgres_base.as_deref().expect("a URL");
                *server_url = load::fresh_schema(base, "server").await.expect("schema");
                *direct_url = load::fresh_schema(base, "direct").await.expect("schema");
            }
        }
        let result = load::run(&spec).await;
        if let Some(base) = &postgres_base {
            drop_schemas(base).await;
        }
        match result {
            Ok(report) => {
                print!("{}", report.text(&spec));
                let all = |f: &load::Figures| {
                    f.accepted == f.sent && f.delivered_after.is_some() && f.probe.0 == f.probe.1
                };
                if all(&report.server) && all(&report.direct) {
                    0
                } else {
                    eprintln!("not every request was accepted and delivered");
                    1
                }
            }
            Err(error) => {
                eprintln!("load: {error}");
                1
            }
        }
    });
    std::process::exit(code);
}
