//! `mimi-ds-server`: runs a MIMI provider (Queueing Service, and with `--hub` the Delivery
//! Service) until interrupted. `mimi-ds-server --help` lists the flags.
//!
//! Logs go to stderr at INFO. With `MIMI_DS_SERVER_LOG_CALLS=1` in the environment, every DS
//! and QS call is logged too when it ends: mimi-ds's span with its operation, outcome, epoch,
//! retries and sizes, and `time.busy` (the hub's own work) and `time.idle` (storage I/O).
//! Off by default: one line per request costs more than the request on a busy server.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let calls = std::env::var_os("MIMI_DS_SERVER_LOG_CALLS").is_some_and(|v| v == "1");
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_span_events(if calls {
            tracing_subscriber::fmt::format::FmtSpan::CLOSE
        } else {
            tracing_subscriber::fmt::format::FmtSpan::NONE
        })
        .init();
    let config = match mimi_ds_server::ServerConfig::from_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(mimi_ds_server::ConfigError::Help) => {
            println!("{}", mimi_ds_server::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let storage = config.storage.clone();
    let server = match mimi_ds_server::start(config).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("could not start: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "listening on https://{} (storage: {storage:?})",
        server.local_addr()
    );
    stopped().await;
    println!("stopping: finishing open requests");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Ctrl-C, or (on Unix) SIGTERM, which service managers send.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
