//! The process around the commands: the tokio runtime and the signals that
//! stop it.

use tokio_util::sync::CancellationToken;

/// The multi-threaded runtime, or `None` (said on stderr) when it cannot start.
pub fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            None
        }
    }
}

/// Cancel `token` on SIGTERM or Ctrl-C.
pub fn stop_on_signal(token: &CancellationToken) {
    let token = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        token.cancel();
    });
}

/// Wait for SIGTERM or Ctrl-C.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
