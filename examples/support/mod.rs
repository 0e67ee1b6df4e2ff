//! What the examples and the loopback test share: HTTPS plumbing ([`https`]), a provider
//! embedding mimi-ds on real sockets ([`node`]), and the demo's group life ([`flow`]).
//!
//! Include it with `#[path = "support/mod.rs"] mod support;` (from `tests/`:
//! `../examples/support/mod.rs`). It is not an example of its own: Cargo builds only
//! `examples/*.rs` and `examples/*/main.rs` as examples.

// Each includer uses a different part, as a private module.
#![allow(dead_code, unreachable_pub)]

pub mod flow;
pub mod https;
pub mod node;
