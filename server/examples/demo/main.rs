//! mimi-ds end to end on the real server: two providers, each a `mimi-ds-server` on
//! 127.0.0.1 (HTTP/1.1 and HTTP/2 over TLS 1.3, certificates from a CA generated at start-up,
//! SQLite storage in a folder), and four openmls clients of two users living through a whole
//! group: create, invite by Welcome, messages, join by external commit, resync after state
//! loss, a removal the hub proposes because a queue is gone, a member removal, deletion.
//! The hub's relay delivers every fanout from its durable outbox; every client fetches its
//! messages from its own queue.
//!
//! It prints every HTTPS request the clients make with its status, what each client got, a
//! summary, and where the databases are. The same flow runs as the test `tests/demo.rs`.
//!
//! ```text
//! cargo run --release -p mimi-ds-server --example demo
//! cargo run --release -p mimi-ds-server --example demo -- --dir ./demo-state
//! cargo run --release -p mimi-ds-server --example demo -- --postgres postgres://user:pw@127.0.0.1/db --hub-instances 2
//! ```

// The modules are shared with `tests/demo.rs`, where their items are used from another module.
#![allow(unreachable_pub)]

mod flow;
mod net;
mod pki;
mod providers;

use std::path::PathBuf;
use std::process::ExitCode;

use providers::Options;

const USAGE: &str = "\
Runs a whole MIMI group life over HTTPS against two mimi-ds-server providers on 127.0.0.1.

Options:
  --dir <folder>         where the providers keep their SQLite databases and keys (created if
                         missing; kept after the run). Default: a new folder in the system's
                         temporary directory, printed at the end.
  --postgres <url>       keep each provider's tables in PostgreSQL instead, in new schemas
                         mimi_demo_alpha_<run> and mimi_demo_beta_<run> of this database
                         (<run>: start time in ms and process ID; printed, kept after the
                         run). Keys still go to the folder.
  --hub-instances <n>    run the hub's provider as n servers (1 to 8) on one storage and one
                         key folder; clients send their requests to them in turn. Default: 1.
  --help                 this text.";

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("{error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout();
    match flow::run(&options, &mut out).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("the demo failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The options, or `None` for `--help`.
fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut dir = None;
    let mut postgres = None;
    let mut hub_instances = 1;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--postgres" => postgres = Some(value()?),
            "--hub-instances" => {
                hub_instances = value()?
                    .parse()
                    .ok()
                    .filter(|n| (1..=8).contains(n))
                    .ok_or("--hub-instances takes a number from 1 to 8")?;
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let dir = match dir {
        Some(dir) => dir,
        None => fresh_folder().map_err(|e| format!("a folder for the demo: {e}"))?,
    };
    Ok(Some(Options {
        dir,
        postgres,
        hub_instances,
        open_joins: false,
    }))
}

/// A new folder `mimi-ds-demo-<time>` in the system's temporary directory.
fn fresh_folder() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir();
    let stamp = flow::now_ms();
    for attempt in 0..100u64 {
        let dir = base.join(format!("mimi-ds-demo-{}", stamp + attempt));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free folder name"))
}
