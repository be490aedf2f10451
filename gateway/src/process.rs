//! The process around the commands: the tokio runtime and the signals that
//! stop it.

use tokio_util::sync::CancellationToken;

/// The multi-threaded runtime with `threads` workers (0: one per CPU core, or
/// `TOKIO_WORKER_THREADS`), or `None` (said on stderr) when it cannot start.
pub fn runtime(threads: usize) -> Option<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        b.worker_threads(threads);
    }
    match b.enable_all().build() {
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_runtime_has_the_threads_asked_for() {
        for n in [1, 3] {
            let rt = super::runtime(n).expect("a runtime");
            assert_eq!(rt.metrics().num_workers(), n);
        }
        let rt = super::runtime(0).expect("a runtime");
        assert!(rt.metrics().num_workers() >= 1);
    }
}
