//! Long-running tasks (servers, pollers, deliveries) under supervision: each is named, a panic in
//! one is logged with its message and the task started again, so a poller never dies silently.
//! They all end with the gateway's runtime (Ctrl-C, SIGTERM), and with them the function
//! processes they hold.

use std::future::Future;
use std::time::Duration;

/// Wait before a panicked task starts again.
pub const RESTART_DELAY: Duration = Duration::from_millis(500);

fn panic_text(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned()),
        Err(error) => error.to_string(),
    }
}

/// Runs `make()` as the task `name`; whenever it panics, reports it and runs `make()` again.
/// A task that returns is done.
pub fn supervise<F, Fut>(name: String, mut make: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match tokio::spawn(make()).await {
                Ok(()) => return,
                Err(error) if error.is_panic() => {
                    tracing::error!(task = %name, panic = %panic_text(error), "task panicked; restarting it");
                    tokio::time::sleep(RESTART_DELAY).await;
                }
                Err(_) => return, // cancelled: the gateway is stopping
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_panicking_task_is_started_again() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        let handle = super::supervise("poller".into(), move || {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("poison");
                }
            }
        });
        handle.await.expect("supervisor");
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "two panics, then a run that returned"
        );
    }
}
