//! mimi-ds end to end over real HTTPS: two providers on 127.0.0.1 (TLS 1.3, a generated CA),
//! the hub and two Queueing Services embedded in them, and four openmls clients of two users
//! living through a whole group: create, invite by Welcome, messages, join by external commit,
//! resync after state loss, a removal the hub proposes because a queue is gone, a member
//! removal, deletion. Every client fetches its messages from its own queue.
//!
//! It prints a transcript of every HTTPS request and what each client got, then a summary.
//! The same flow runs as the integration test `tests/https_demo.rs`.
//!
//! Run it with `cargo run --release --example demo`.

#[path = "support/mod.rs"]
mod support;

fn main() {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let summary = support::flow::run(&mut out);
    assert!(summary.decrypted > 0);
}
