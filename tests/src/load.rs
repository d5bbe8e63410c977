//! Steady background traffic from many users, for tests that change configuration under load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::{client, get, Envoy};

/// No load runs longer than this, even if nobody stops it.
const LONGEST: Duration = Duration::from_secs(120);

/// Clients sending requests with `x-user-id` until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// `workers` concurrent clients, each cycling through `users` user ids.
    pub fn start(envoy: &Envoy, workers: usize, users: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let tasks = (0..workers)
            .map(|worker| {
                let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
                let url = envoy.url("/");
                tokio::spawn(async move {
                    let client = client();
                    let deadline = Instant::now() + LONGEST;
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        i += 1;
                        let user = format!("load-{worker}-{}", i % users.max(1));
                        let reply = get(&client, &url, &[("x-user-id", &user)]).await;
                        sent.fetch_add(1, Ordering::Relaxed);
                        if !reply.is_ok_and(|r| r.status == 200) {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            failed,
            tasks,
        }
    }

    /// Waits until at least `min_sent` requests were sent (10 s at most), then stops, so that
    /// a change that took effect quickly is still judged under enough traffic.
    pub async fn stop_after(self, min_sent: u64) -> (u64, u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.sent.load(Ordering::Relaxed) < min_sent && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop().await
    }

    /// Stops the clients and says how many requests were sent and how many failed (anything
    /// but a 200).
    pub async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}
