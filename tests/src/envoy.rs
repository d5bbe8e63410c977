//! A real Envoy process running the built filter, configured the way a standalone deployment
//! is: the filter's configuration comes from an ECDS file in a watched directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use canaryctl::ecds::{self, ModuleSource};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::upstream::Upstream;
use crate::{envoy_bin, wasm_path};

/// The name of the filter's ECDS resource, and of its stats.
pub const FILTER_NAME: &str = "canary";
/// The decision header the test configurations use.
pub const DECISION_HEADER: &str = "x-canary-variant";
const ECDS_FILE: &str = "filter.json";

static INSTANCES: AtomicU64 = AtomicU64::new(0);

/// The `stats_tags` that turn the filter's metric names into Prometheus labels (documented in
/// the README; the tests assert on the labelled form).
pub fn stats_tags() -> Value {
    json!([
        { "tag_name": "canary_route", "regex": r"^wasmcustom\.canary\.(route\.([a-z0-9-]+)\.)" },
        { "tag_name": "canary_variant", "regex": r"^wasmcustom\.canary\.route\.[a-z0-9-]+\.(variant\.([a-z0-9-]+)\.)" },
        { "tag_name": "canary_reason", "regex": r"^wasmcustom\.canary\..*\.decision(\.([a-z]+))$" },
        { "tag_name": "canary_class", "regex": r"^wasmcustom\.canary\..*\.response(\.([1-5]xx))$" },
    ])
}

pub struct EnvoyBuilder {
    variants: Vec<(String, std::net::SocketAddr)>,
    plugin_config: String,
    concurrency: u32,
}

impl EnvoyBuilder {
    /// Adds a variant: requests whose decision header names it go to `upstream`. The first
    /// variant added also takes every request without a decision.
    pub fn variant(mut self, name: &str, upstream: &Upstream) -> Self {
        self.variants.push((name.to_owned(), upstream.addr));
        self
    }

    pub fn plugin_config(mut self, config: &str) -> Self {
        self.plugin_config = config.to_owned();
        self
    }

    /// Worker threads (default 2).
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// Starts Envoy and waits until it serves with the filter configured.
    pub async fn start(self) -> Envoy {
        let dir = tempfile::tempdir().expect("temp dir");
        let ecds_dir = dir.path().join("ecds");
        std::fs::create_dir(&ecds_dir).expect("ecds dir");
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let bootstrap = bootstrap(
            &format!("e2e-{}-{n}", std::process::id()),
            &self.variants,
            &ecds_dir,
        );
        let bootstrap_path = dir.path().join("envoy.json");
        std::fs::write(&bootstrap_path, bootstrap.to_string()).expect("write bootstrap");
        let mut envoy = Envoy {
            dir,
            ecds_dir,
            process: None,
            admin: String::new(),
            listener: String::new(),
            client: crate::client(),
        };
        envoy.write_ecds(&self.plugin_config);

        let admin_path = envoy.dir.path().join("admin-address");
        let log = std::fs::File::create(envoy.log_path()).expect("log file");
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&bootstrap_path)
            .args(["--concurrency", &self.concurrency.to_string()])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args([
                "--disable-hot-restart",
                "-l",
                "info",
                "--component-log-level",
                "wasm:debug",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start envoy");
        envoy.process = Some(child);
        envoy.wait_until_serving(&admin_path).await;
        envoy
    }
}

fn bootstrap(node: &str, variants: &[(String, std::net::SocketAddr)], ecds_dir: &Path) -> Value {
    let mut routes: Vec<Value> = variants
        .iter()
        .map(|(name, _)| {
            json!({
                "match": { "prefix": "/", "headers": [
                    { "name": DECISION_HEADER, "string_match": { "exact": name } }
                ] },
                "route": { "cluster": format!("variant-{name}") },
            })
        })
        .collect();
    if let Some((first, _)) = variants.first() {
        routes.push(json!({ "match": { "prefix": "/" }, "route": { "cluster": format!("variant-{first}") } }));
    }
    let clusters: Vec<Value> = variants
        .iter()
        .map(|(name, addr)| {
            json!({
                "name": format!("variant-{name}"),
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": format!("variant-{name}"),
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                        "address": addr.ip().to_string(), "port_value": addr.port()
                    } } } }] }],
                },
            })
        })
        .collect();
    json!({
        "node": { "id": node, "cluster": "canary-e2e" },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "stats_config": { "stats_tags": stats_tags() },
        "static_resources": {
            "listeners": [{
                "name": "main",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress",
                        "route_config": { "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": routes }] },
                        "http_filters": [
                            {
                                "name": FILTER_NAME,
                                "config_discovery": {
                                    "config_source": { "path_config_source": {
                                        "path": ecds_dir.join(ECDS_FILE),
                                        "watched_directory": { "path": ecds_dir },
                                    } },
                                    "type_urls": [ecds::WASM],
                                },
                            },
                            { "name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                            } },
                        ],
                    },
                }] }],
            }],
            "clusters": clusters,
        },
    })
}

/// A running Envoy; killed when dropped.
pub struct Envoy {
    dir: TempDir,
    ecds_dir: PathBuf,
    process: Option<Child>,
    admin: String,
    listener: String,
    client: reqwest::Client,
}

impl Envoy {
    pub fn builder() -> EnvoyBuilder {
        EnvoyBuilder {
            variants: Vec::new(),
            plugin_config: String::new(),
            concurrency: 2,
        }
    }

    /// URL of `path` on the listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listener)
    }

    /// URL of `path` on the admin endpoint.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The ECDS file Envoy watches (JSON).
    pub fn ecds_path(&self) -> PathBuf {
        self.ecds_dir.join(ECDS_FILE)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("envoy.log")
    }

    /// Everything Envoy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Writes a plugin configuration to the ECDS file, as an atomic rename.
    pub fn write_ecds(&self, plugin_config: &str) {
        let module = ModuleSource::Local(wasm_path().display().to_string());
        let document = ecds::document(FILTER_NAME, &module, plugin_config);
        let tmp = self.ecds_dir.join(".filter.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&document).expect("json"))
            .expect("write ecds");
        std::fs::rename(&tmp, self.ecds_path()).expect("rename ecds");
    }

    /// Pushes a configuration and waits until Envoy accepted or rejected it.
    pub async fn push_config(&self, plugin_config: &str) -> Update {
        let before = self.ecds_attempts().await;
        self.write_ecds(plugin_config);
        self.wait_for_ecds_attempts(before + 1).await
    }

    /// Waits until Envoy has processed `attempts` ECDS updates; says how the last one went.
    pub async fn wait_for_ecds_attempts(&self, attempts: u64) -> Update {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ecds_attempts().await >= attempts {
                let rejected = self.stat(&ecds_stat("update_rejected")).await.unwrap_or(0);
                let success = self.stat(&ecds_stat("update_success")).await.unwrap_or(0);
                return Update { success, rejected };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "Envoy did not process ECDS update {attempts} within 10 s; log:\n{}",
            self.log()
        );
    }

    async fn ecds_attempts(&self) -> u64 {
        self.stat(&ecds_stat("update_attempt")).await.unwrap_or(0)
    }

    /// The value of a counter or gauge, by its full name.
    pub async fn stat(&self, name: &str) -> Option<u64> {
        let url = self.admin_url(&format!("/stats?filter=^{}$", regex_escape(name)));
        let text = self.client.get(url).send().await.ok()?.text().await.ok()?;
        text.lines().find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(": ")?
                .trim()
                .parse()
                .ok()
        })
    }

    /// A filter counter, by its name without the `wasmcustom.` prefix.
    pub async fn counter(&self, name: &str) -> Option<u64> {
        self.stat(&format!("wasmcustom.{name}")).await
    }

    /// The admin `/stats/prometheus` text.
    pub async fn prometheus(&self) -> String {
        let response = self
            .client
            .get(self.admin_url("/stats/prometheus"))
            .send()
            .await;
        response
            .expect("admin reachable")
            .text()
            .await
            .expect("prometheus text")
    }

    /// Stops Envoy now (it is also stopped when dropped).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn wait_until_serving(&mut self, admin_path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .process
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "Envoy exited ({status}) while starting; log:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!("Envoy not serving within 30 s; log:\n{}", self.log());
            }
            if self.admin.is_empty() {
                if let Ok(address) = std::fs::read_to_string(admin_path) {
                    self.admin = address.trim().to_owned();
                }
            } else if self.listener.is_empty() {
                self.listener = self.listener_address().await.unwrap_or_default();
            } else if self.stat(&ecds_stat("update_attempt")).await.unwrap_or(0) >= 1 {
                let ready = self.client.get(self.admin_url("/ready")).send().await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn listener_address(&self) -> Option<String> {
        let url = self.admin_url("/listeners?format=json");
        let body: Value = self.client.get(url).send().await.ok()?.json_value().await?;
        let address = body
            .get("listener_statuses")?
            .as_array()?
            .iter()
            .find(|l| l.get("name").and_then(Value::as_str) == Some("main"))?
            .pointer("/local_address/socket_address")?;
        let ip = address.get("address")?.as_str()?;
        let port = address.get("port_value")?.as_u64()?;
        (port != 0).then(|| format!("{ip}:{port}"))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How ECDS updates have gone so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    pub success: u64,
    pub rejected: u64,
}

/// The name of one of the filter's ECDS stats.
pub fn ecds_stat(stat: &str) -> String {
    format!("extension_config_discovery.http_filter.{FILTER_NAME}.{stat}")
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escape = "\\.+*?()|[]{}^$".contains(c);
            escape.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

trait JsonValue {
    async fn json_value(self) -> Option<Value>;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Option<Value> {
        serde_json::from_slice(&self.bytes().await.ok()?).ok()
    }
}
