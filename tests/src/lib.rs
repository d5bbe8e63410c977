//! End-to-end harness: a real Envoy running the built filter, real upstream HTTP servers and a
//! real HTTP client. Used by the tests in `tests/tests/` and by the demo.

pub mod bench;
pub mod canaryctl;
pub mod churn;
pub mod envoy;
pub mod load;
pub mod pki;
pub mod prometheus;
pub mod upstream;

use std::path::PathBuf;

use futures::stream::{self, StreamExt};

pub use envoy::{Build, Envoy, GrpcClientTls, Routing, Update, Validation};
pub use load::Load;
pub use upstream::Upstream;

/// Makes each named `async fn NAME(build: Build)` of the calling test file one test per build
/// of the filter: `wasm::NAME` runs it against the proxy-wasm filter, `dynamic_module::NAME`
/// against the native dynamic module.
#[macro_export]
macro_rules! for_each_build {
    ($($name:ident),+ $(,)?) => {
        mod wasm {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Build::Wasm).await
                }
            )+
        }
        mod dynamic_module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Build::DynamicModule).await
                }
            )+
        }
    };
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The Envoy binary: `$ENVOY_BIN`, or the one `make` installs into `.venv`.
pub fn envoy_bin() -> PathBuf {
    let path = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/envoy"));
    assert!(
        path.exists(),
        "no Envoy at {}: `make test` installs it (or set ENVOY_BIN)",
        path.display()
    );
    path
}

/// The built filter: `$CANARY_WASM`, or the release build of `make build`.
pub fn wasm_path() -> PathBuf {
    let path = std::env::var_os("CANARY_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root().join("target/wasm32-wasip1/release/canary_filter.wasm")
        });
    assert!(
        path.exists(),
        "no filter module at {}: `make build` builds it (or set CANARY_WASM)",
        path.display()
    );
    path
}

/// The directory holding the native dynamic module, `libcanary_router.so`: `$CANARY_DYNMOD_DIR`,
/// or where `make build` puts it.
pub fn dynmod_dir() -> PathBuf {
    let dir = std::env::var_os("CANARY_DYNMOD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/dynmod"));
    assert!(
        dir.join("libcanary_router.so").exists(),
        "no libcanary_router.so in {}: `make build` builds it (or set CANARY_DYNMOD_DIR)",
        dir.display()
    );
    dir
}

/// The directory holding the dynamic module built with its test-only `panic-probe` feature:
/// `$CANARY_DYNMOD_PROBE_DIR`, or where `make build` puts it.
pub fn dynmod_probe_dir() -> PathBuf {
    let dir = std::env::var_os("CANARY_DYNMOD_PROBE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/dynmod-probe"));
    assert!(
        dir.join("libcanary_router.so").exists(),
        "no libcanary_router.so in {}: `make build` builds it (or set CANARY_DYNMOD_PROBE_DIR)",
        dir.display()
    );
    dir
}

/// The proxy-wasm filter that does nothing (`tests/noop-filter`), the benchmarks' floor:
/// `$CANARY_NOOP_WASM`, or the release build of `make build`.
pub fn noop_wasm_path() -> PathBuf {
    let path = std::env::var_os("CANARY_NOOP_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root().join("target/wasm32-wasip1/release/canary_noop_filter.wasm")
        });
    assert!(
        path.exists(),
        "no no-op filter module at {}: `make build` builds it (or set CANARY_NOOP_WASM)",
        path.display()
    );
    path
}

/// The no-op filter built with cargo feature `feature` (`make wasm` builds each next to the
/// plain one, as `canary_noop_filter.FEATURE.wasm`), for the benchmark rows that make the
/// canary filter's request-path host calls and nothing else.
pub fn noop_wasm_build_path(feature: &str) -> PathBuf {
    let path = noop_wasm_path().with_extension(format!("{feature}.wasm"));
    assert!(
        path.exists(),
        "no no-op filter module with feature {feature} at {}: `make build` builds it",
        path.display()
    );
    path
}

/// The folder holding the dynamic module built with benchmark floor `feature`
/// (`dynmod/Cargo.toml`): `$CANARY_DYNMOD_FLOOR_DIR/<feature>`, as `make build` builds them.
pub fn dynmod_floor_dir(feature: &str) -> PathBuf {
    let dir = std::env::var_os("CANARY_DYNMOD_FLOOR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/dynmod-floors"))
        .join(feature);
    assert!(
        dir.join("libcanary_router.so").exists(),
        "no libcanary_router.so in {}: `make build` builds it (or set CANARY_DYNMOD_FLOOR_DIR)",
        dir.display()
    );
    dir
}

/// An HTTP client with connection pooling and no cookie jar: tests carry cookies by hand.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// What a client saw of one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// The upstream that answered (`x-upstream`), i.e. the variant served.
    pub upstream: Option<String>,
    /// The decision header the upstream received.
    pub seen_variant: Option<String>,
    /// The `x-canary-decision` debug header.
    pub decision: Option<String>,
    pub set_cookies: Vec<String>,
}

/// Sends one GET with the given headers.
pub async fn get(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, reqwest::Error> {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let reply = Reply {
        status: response.status().as_u16(),
        upstream: header(upstream::UPSTREAM_HEADER),
        seen_variant: header(upstream::SEEN_VARIANT_HEADER),
        decision: header("x-canary-decision"),
        set_cookies: response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect(),
    };
    response.bytes().await?;
    Ok(reply)
}

/// Runs `f` for each item with at most `concurrency` in flight; results in input order.
pub async fn concurrently<T, F, Fut, R>(items: Vec<T>, concurrency: usize, f: F) -> Vec<R>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = R>,
{
    stream::iter(items.into_iter().map(f))
        .buffered(concurrency)
        .collect()
        .await
}

/// The variant each user id is served, one request each with `x-user-id`, in input order.
pub async fn variants_of(envoy: &Envoy, users: &[String], concurrency: usize) -> Vec<Reply> {
    let client = client();
    let url = envoy.url("/");
    concurrently(users.to_vec(), concurrency, |user| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            get(&client, &url, &[("x-user-id", &user)])
                .await
                .unwrap_or_else(|e| panic!("request for {user} failed: {e}"))
        }
    })
    .await
}

/// The lines of an Envoy log that show the filter failing at run time: its panic hook's message
/// (`[canary] panic: …`, logged at critical) or the VM trapping in a callback. Envoy's own
/// critical lines about a refused configuration failing to load are not among them.
pub fn filter_failures(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| {
            line.contains("[canary] panic")
                || line.contains("Function: proxy_on_")
                || line.contains("RuntimeError")
        })
        .collect()
}
