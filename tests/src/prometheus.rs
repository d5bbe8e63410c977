//! A real Prometheus (Debian's `prometheus`) scraping one target every second, a harness
//! Envoy's admin `/stats/prometheus` or `canaryctl serve`'s `/metrics`, with its storage in a
//! temporary directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// The Prometheus binary: `$PROMETHEUS_BIN`, or `prometheus` as `make tools` installs it.
pub fn prometheus_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PROMETHEUS_BIN") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("prometheus"))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    found.unwrap_or_else(|| {
        panic!("no prometheus on PATH: `make tools` installs it (or set PROMETHEUS_BIN)")
    })
}

/// A running Prometheus; killed when dropped.
pub struct Prometheus {
    dir: TempDir,
    process: Option<Child>,
    url: String,
    client: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus scraping `admin` (`host:port` of an Envoy admin endpoint) every
    /// second as job `envoy`, and waits until it has scraped it successfully.
    pub async fn start(admin: &str) -> Prometheus {
        Prometheus::scraping("envoy", admin, "/stats/prometheus").await
    }

    /// Starts Prometheus scraping `path` on `target` (`host:port`) every second as `job`, and
    /// waits until it has scraped it successfully: it could fetch and parse the exposition.
    pub async fn scraping(job: &str, target: &str, path: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: {job}\n    metrics_path: {path}\n    \
             static_configs:\n      - targets: ['{target}']\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let process = Command::new(prometheus_bin())
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut prometheus = Prometheus {
            dir,
            process: Some(process),
            url: format!("http://127.0.0.1:{port}"),
            client: crate::client(),
        };
        prometheus.wait_until_scraping(job).await;
        prometheus
    }

    /// The HTTP API's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Everything Prometheus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The single value of an instant query now, if it has one.
    pub async fn query(&self, query: &str) -> Option<f64> {
        let response = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await
            .ok()?;
        let body: Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
        body.pointer("/data/result/0/value/1")?
            .as_str()?
            .parse()
            .ok()
    }

    /// The type of the metric family `family` as Prometheus read it from a scrape: `counter`,
    /// `gauge`, `info`, ….
    pub async fn metric_type(&self, family: &str) -> Option<String> {
        let response = self
            .client
            .get(format!("{}/api/v1/metadata", self.url))
            .query(&[("metric", family)])
            .send()
            .await
            .ok()?;
        let body: Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
        let kind = body.pointer(&format!("/data/{family}/0/type"))?.as_str()?;
        Some(kind.to_owned())
    }

    async fn wait_until_scraping(&mut self, job: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .process
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("Prometheus exited ({status}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus not scraping {job} within 30 s; log:\n{}",
                self.log()
            );
            let ready = self
                .client
                .get(format!("{}/-/ready", self.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready && self.query(&format!("up{{job=\"{job}\"}}")).await == Some(1.0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
