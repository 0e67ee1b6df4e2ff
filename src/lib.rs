//! mimi-ds
#![forbid(unsafe_code)]
#![deny(missing_docs)]
pub mod wire;
pub mod storage;
mod state;
mod error;
mod config;
mod fanout;
mod auth;
mod handlers;
mod service;
pub use error::*;
pub use config::*;
pub use fanout::Fanout;
pub use service::*;
#[cfg(feature = "test-utils")]
pub mod testing;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
