//! Which driver the harness sends requests through, so the whole test suite can run once
//! through each: [`TestDs`](super::TestDs) and [`TestQs`](super::TestQs) call the sync
//! `process`/`deliver`/`client_request`, or their `*_async` drivers over the async storage
//! traits, as the environment variable `MIMI_DS_TEST_DRIVER` says (`sync`, the default, or
//! `async`). Both drive the same step API ([`crate::DsStep`]), so the suite passing under
//! both shows that the async path makes the same decisions as the sync one.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// The environment variable that picks the [`Driver`].
pub const DRIVER_VARIABLE: &str = "MIMI_DS_TEST_DRIVER";

/// How the harness drives requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// `DeliveryService::process` and the QS's sync calls, over the sync storage traits.
    Sync,
    /// `DeliveryService::process_async` and the QS's async calls, over the async storage
    /// traits, polled by [`block_on`].
    Async,
}

impl Driver {
    /// The driver `MIMI_DS_TEST_DRIVER` names; [`Driver::Sync`] when it is unset.
    ///
    /// # Panics
    /// On any other value, so that a typo never silently runs the default.
    pub fn from_env() -> Self {
        match std::env::var(DRIVER_VARIABLE).as_deref() {
            Err(std::env::VarError::NotPresent) | Ok("sync") => Self::Sync,
            Ok("async") => Self::Async,
            other => panic!("{DRIVER_VARIABLE} must be `sync` or `async`, not {other:?}"),
        }
    }
}

/// Runs a future that never waits (the async drivers over in-memory storage) to its end,
/// without a runtime.
///
/// # Panics
/// If the future returns `Pending`: nothing would wake it, so a future that waits for real
/// I/O needs a runtime (tokio's `block_on`), not this.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("block_on: the future waits for I/O; use a runtime"),
    }
}
