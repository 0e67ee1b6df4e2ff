//! A MIMI provider pair on real sockets: HTTPS (TLS 1.3 only, rustls) servers embedding the
//! mimi-ds transport router, Delivery Service and Queueing Service.
//!
//! `alpha.example` runs the hub and a Queueing Service, `beta.example` a Queueing Service; both
//! listen on 127.0.0.1 with certificates from a CA generated at start-up, and call each other
//! with mutual TLS. The CA certificate is written (DER) to the system's temporary directory so
//! other programs can trust it. `examples/demo.rs` starts the same servers and drives clients
//! through them.
//!
//! It is an example, not a production server, but it bounds what a stranger can make it spend
//! (`examples/support/https/mod.rs` lists the limits): at most 256 connections at once (more
//! are closed at once), 10 s to complete the TLS handshake and then each request, 10 s of
//! idleness between requests, 4 MiB bodies, and one `Host` per request. Fanout goes only to
//! the two known providers: every destination (chosen by group members) passes
//! `Fanout::check_destination` before the provider directory is consulted.
//!
//! ```text
//! cargo run --release --example server              # until interrupted
//! cargo run --release --example server -- 30        # for 30 seconds
//! ```

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::flow::{ALPHA, BETA};
use support::https::Pki;
use support::node::Provider;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let seconds: Option<u64> = std::env::args().nth(1).map(|s| s.parse()).transpose()?;
    let pki = Pki::new(&[ALPHA, BETA])?;
    let alpha = Provider::start(&pki, ALPHA, true, &[ALPHA, BETA])?;
    let beta = Provider::start(&pki, BETA, false, &[ALPHA, BETA])?;
    let directory: HashMap<String, _> = [
        (ALPHA.to_string(), alpha.addr()),
        (BETA.to_string(), beta.addr()),
    ]
    .into();
    alpha.connect(&pki, &directory);
    beta.connect(&pki, &directory);
    let ca_path = std::env::temp_dir().join("mimi-ds-demo-ca.der");
    std::fs::write(&ca_path, pki.ca_certificate().as_ref())?;
    println!(
        "{ALPHA}: hub + queueing service at https://{}",
        alpha.addr()
    );
    println!("{BETA}: queueing service at https://{}", beta.addr());
    println!("TLS 1.3 only; CA certificate (DER): {}", ca_path.display());
    println!("endpoints: POST /group_operation /welcome_information /external_commit_information");
    println!(
        "           POST /verification_key /deliver_message /connection_request /queue_operation"
    );
    println!("           GET  /.well-known/mimi/ds-domain");
    match seconds {
        Some(s) => std::thread::sleep(Duration::from_secs(s)),
        None => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
    for provider in [&alpha, &beta] {
        let c = provider.counters();
        println!(
            "{}: {} requests, {} fanouts, {} enqueued",
            provider.domain,
            c.requests.load(std::sync::atomic::Ordering::Relaxed),
            c.fanouts.load(std::sync::atomic::Ordering::Relaxed),
            c.enqueued.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    Ok(())
}
