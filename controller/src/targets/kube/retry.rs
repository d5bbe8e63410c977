//! Calls to the Kubernetes API that survive a briefly unavailable server.
//!
//! An answer of 429 Too Many Requests (API priority and fairness, or a server starting up),
//! 500, 502, 503 or 504 (an overloaded server, or a load balancer in front of one), and a
//! connection that cannot be opened or is dropped mid-answer, are retried with exponential
//! backoff and jitter: 200 ms, then twice as long each time up to 5 s, each wait stretched by
//! a random part of up to its own length, so that many clients do not retry in step. A 429's or
//! 503's `Retry-After` is waited out instead, up to 30 s. The retries of one call stop when the
//! next wait would take the call past its budget (`CANARYCTL_KUBE_RETRY_BUDGET`, 30 s by
//! default), and the last error is returned. Every other answer (401, 403, 404, 409, 422) is
//! returned at once: retrying would not change it.
//!
//! kube's error keeps only the answer's `Status` body, so a layer of the client's stack reads
//! `Retry-After` as each answer passes and hands it to the call that is waiting for that very
//! answer: each attempt runs in a task-local scope of its own ([`RETRY_AFTER`]), and the layer
//! runs inside it, where the answer is awaited. Concurrent calls on the one shared client
//! (`serve`) each see only their own answers' `Retry-After`.
//!
//! Retrying a write is safe because every write carries the `resourceVersion` it was computed
//! from: a write that did land before its answer was lost is refused the second time with 409
//! Conflict, and the change is then recomputed on a fresh read.

use std::cell::Cell;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use http::{Response, StatusCode};
use tracing::warn;

/// The environment variable that sets how long one API call may be retried.
pub const BUDGET_VARIABLE: &str = "CANARYCTL_KUBE_RETRY_BUDGET";
const DEFAULT_BUDGET: Duration = Duration::from_secs(30);
const FIRST_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(5);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How long a call is retried for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget(pub Duration);

impl Budget {
    /// The budget `CANARYCTL_KUBE_RETRY_BUDGET` sets (`30s`, `2m`, `500ms`), else 30 s.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(BUDGET_VARIABLE) {
            Err(_) => Ok(Budget(DEFAULT_BUDGET)),
            Ok(text) => crate::duration::parse_duration(&text)
                .map(Budget)
                .map_err(|error| format!("{BUDGET_VARIABLE}: {error}")),
        }
    }
}

tokio::task_local! {
    /// The `Retry-After` of the answer to the attempt under way, set by [`retry_after_layer`].
    static RETRY_AFTER: Cell<Option<Duration>>;
}

/// A layer for `kube::client::ClientBuilder::with_layer` that records each answer's
/// `Retry-After` for the attempt awaiting it. Outside an attempt of [`retrying`] it records
/// nothing.
pub fn retry_after_layer<B>(
) -> tower::util::MapResponseLayer<impl FnOnce(Response<B>) -> Response<B> + Clone> {
    tower::util::MapResponseLayer::new(|response: Response<B>| {
        let wait = retry_after(&response);
        let _ = RETRY_AFTER.try_with(|slot| slot.set(wait));
        response
    })
}

/// The wait a 429 or 503 answer asks for.
fn retry_after<B>(response: &Response<B>) -> Option<Duration> {
    matches!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    )
    .then(|| response.headers().get(http::header::RETRY_AFTER))
    .flatten()
    .and_then(|value| value.to_str().ok())
    .and_then(parse_retry_after)
}

/// `Retry-After` in delay-seconds, the form the Kubernetes API server sends. The HTTP-date form
/// is not used by it and counts as absent.
fn parse_retry_after(text: &str) -> Option<Duration> {
    text.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Whether `error` may go away by itself: an overloaded or restarting server, a dropped
/// connection.
pub fn transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => matches!(status.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => connection_failure(error),
        _ => false,
    }
}

/// A connection refused, reset, dropped, closed before the request went out, or timed out
/// anywhere in the error's chain; not, say, a certificate the client does not trust.
fn connection_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::*;
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | BrokenPipe
                    | UnexpectedEof
                    | TimedOut
            ) {
                return true;
            }
        }
        if let Some(hyper) = error.downcast_ref::<hyper::Error>() {
            // Canceled: the request was never sent, because its pooled connection closed
            // first.
            if hyper.is_incomplete_message()
                || hyper.is_closed()
                || hyper.is_canceled()
                || hyper.is_timeout()
            {
                return true;
            }
        }
        source = error.source();
    }
    false
}

/// An attempt's error, with the wait its answer asked for.
struct Failed {
    error: kube::Error,
    retry_after: Option<Duration>,
}

/// Runs `call` until it succeeds, fails for good, or its retries would outlast `budget`.
/// `what` names the call in the warnings logged before each retry.
pub async fn retrying<T, Fut>(
    budget: Budget,
    what: &str,
    mut call: impl FnMut() -> Fut,
) -> Result<T, kube::Error>
where
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let started = Instant::now();
    let backoff = ExponentialBuilder::new()
        .with_min_delay(FIRST_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    let attempt = || {
        let answer = call();
        RETRY_AFTER.scope(Cell::new(None), async move {
            answer.await.map_err(|error| Failed {
                error,
                retry_after: RETRY_AFTER.try_with(Cell::get).ok().flatten(),
            })
        })
    };
    attempt
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|failed: &Failed| transient(&failed.error))
        .adjust(|failed: &Failed, backoff| {
            let wait = failed
                .retry_after
                .map(|asked| asked.min(MAX_RETRY_AFTER))
                .or(backoff)?;
            (started.elapsed() + wait <= budget.0).then_some(wait)
        })
        .notify(|failed: &Failed, wait| {
            warn!(call = what, error = %describe_briefly(&failed.error), retry_in = ?wait,
                "the Kubernetes API is unavailable; retrying")
        })
        .await
        .map_err(|failed| failed.error)
}

fn describe_briefly(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.reason, status.code),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(kube::core::ErrorResponse {
            status: "Failure".into(),
            message: "stand-in".into(),
            reason: "Test".into(),
            code,
        })
    }

    #[test]
    fn only_answers_that_can_change_are_retried() {
        for code in [429, 500, 502, 503, 504] {
            assert!(transient(&api_error(code)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 415, 422] {
            assert!(!transient(&api_error(code)), "{code}");
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(transient(&kube::Error::Service(Box::new(refused))));
        let other = std::io::Error::other("certificate not trusted");
        assert!(!transient(&kube::Error::Service(Box::new(other))));
    }

    #[test]
    fn retry_after_is_read_from_429_and_503_only() {
        let answer = |code: u16, header: Option<&str>| {
            let mut response = Response::builder().status(code);
            if let Some(value) = header {
                response = response.header("retry-after", value);
            }
            response.body(()).unwrap()
        };
        assert_eq!(
            retry_after(&answer(429, Some("3"))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&answer(503, Some(" 1 "))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            retry_after(&answer(500, Some("3"))),
            None,
            "a 500's Retry-After is not the API server's"
        );
        assert_eq!(
            retry_after(&answer(429, Some("Wed, 21 Oct 2026 07:28:00 GMT"))),
            None
        );
        assert_eq!(retry_after(&answer(429, None)), None);
    }

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn transient_errors_are_retried_until_the_call_succeeds() {
        let calls = AtomicU32::new(0);
        let result = run(retrying(
            Budget(Duration::from_secs(10)),
            "test",
            || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(api_error(503)),
                    1 => Err(api_error(429)),
                    _ => Ok("done"),
                }
            },
        ));
        assert_eq!(result.unwrap(), "done");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_lasting_error_ends_within_the_budget_and_a_final_one_at_once() {
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let result: Result<(), _> = run(retrying(
            Budget(Duration::from_millis(1500)),
            "test",
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(api_error(503))
            },
        ));
        assert!(matches!(result, Err(kube::Error::Api(ref s)) if s.code == 503));
        assert!(
            started.elapsed() <= Duration::from_millis(1500),
            "within the budget"
        );
        assert!(calls.load(Ordering::SeqCst) >= 2, "retried at least once");

        let calls = AtomicU32::new(0);
        let result: Result<(), _> = run(retrying(
            Budget(Duration::from_secs(10)),
            "test",
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(api_error(403))
            },
        ));
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "403 is not retried");
    }

    #[test]
    fn retry_after_beyond_the_budget_is_not_waited_for() {
        let started = Instant::now();
        let result: Result<(), _> =
            run(retrying(Budget(Duration::from_secs(2)), "test", || async {
                RETRY_AFTER.with(|slot| slot.set(Some(Duration::from_secs(20))));
                Err(api_error(429))
            }));
        assert!(result.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "gave up at once"
        );
    }
}
