//! MIMIMI end to end over HTTPS (docs/wire-format.md §14): the flow of the in-process example
//! `examples/mimimi.rs`, against two `mimi-ds-server` providers on 127.0.0.1, started the way
//! the README's demo starts them (its modules `demo/{pki,net,providers}.rs`): `alpha.example`
//! runs the hub, a Queueing Service, a KeyPackage directory and connection keys,
//! `beta.example` the last three, each on SQLite files in a folder. Every client is a real
//! openmls client; it prints every HTTPS request and what each party saw. The server's hub
//! refuses Bob's acceptance by external commit into the connection room (its join policy
//! admits only users already in a group, and the server has no setting for it yet); the
//! transcript shows the refusal, and Bob, who holds Alice's token and connection key from her
//! request, claims her KeyPackage set and creates the pseudonymous group instead.
//!
//! ```text
//! cargo run -p mimi-ds-server --example mimimi
//! cargo run -p mimi-ds-server --example mimimi -- --dir ./mimimi-state
//! ```
//!
//! `tests/mimimi_demo.rs` runs the same flow and searches every byte both providers stored for
//! the users' real identifiers.

// The modules are shared with `tests/mimimi_demo.rs` (which reads the run's results) and with
// the README's demo (whose Postgres options and relay counters this example does not use).
#![allow(dead_code, unreachable_pub)]

mod flow;
#[path = "../demo/net.rs"]
mod net;
#[path = "../demo/pki.rs"]
mod pki;
#[path = "../demo/providers.rs"]
mod providers;

use std::path::PathBuf;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let dir = match (args.next().as_deref(), args.next()) {
        (None, _) => std::env::temp_dir().join(format!("mimi-ds-mimimi-{}", flow::now_ms())),
        (Some("--dir"), Some(dir)) => PathBuf::from(dir),
        _ => {
            eprintln!("usage: mimimi [--dir <folder for the providers' SQLite files and keys>]");
            return ExitCode::from(2);
        }
    };
    let options = providers::Options {
        dir,
        postgres: None,
        hub_instances: 1,
        open_joins: true,
    };
    let mut out = std::io::stdout();
    match flow::run(&options, &mut out).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("the MIMIMI demo failed: {error}");
            ExitCode::FAILURE
        }
    }
}
