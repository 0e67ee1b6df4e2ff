//! `mimi-ds-server`: runs a MIMI provider (Queueing Service, and with `--hub` the Delivery
//! Service) until interrupted. `mimi-ds-server --help` lists the flags.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
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
