//! A real Prometheus (Debian's `prometheus`) scraping one target every second, a harness
//! Envoy's admin `/stats/prometheus` or `canaryctl serve`'s `/metrics`, with its storage in a
//! temporary directory. Its HTTP API is plain, or served over TLS with basic auth by Prometheus
//! itself (`--web.config.file`), as a Prometheus reached across a network is.

use std::path::{Path, PathBuf};
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
    /// The user and password the API asks for, if it does.
    basic_auth: Option<(String, String)>,
}

/// How Prometheus serves its API: over TLS with this certificate and key (PEM files), to a
/// client giving this user and password.
pub struct WebSecurity<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    /// The CA of `cert`, for the harness's own requests.
    pub ca: &'a Path,
    pub user: &'a str,
    pub password: &'a str,
}

impl Prometheus {
    /// Starts Prometheus scraping `admin` (`host:port` of an Envoy admin endpoint) every
    /// second as job `envoy`, and waits until it has scraped it successfully.
    pub async fn start(admin: &str) -> Prometheus {
        Prometheus::scraping("envoy", admin, "/stats/prometheus").await
    }

    /// As [`Prometheus::start`], with the API at `https://127.0.0.1:PORT` behind basic auth.
    pub async fn start_secured(admin: &str, web: WebSecurity<'_>) -> Prometheus {
        Self::start_with("envoy", admin, "/stats/prometheus", Some(web)).await
    }

    /// Starts Prometheus scraping `path` on `target` (`host:port`) every second as `job`, and
    /// waits until it has scraped it successfully: it could fetch and parse the exposition.
    pub async fn scraping(job: &str, target: &str, path: &str) -> Prometheus {
        Self::start_with(job, target, path, None).await
    }

    async fn start_with(
        job: &str,
        target: &str,
        path: &str,
        web: Option<WebSecurity<'_>>,
    ) -> Prometheus {
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
        let mut command = Command::new(prometheus_bin());
        let (scheme, client, basic_auth) = match &web {
            None => ("http", crate::client(), None),
            Some(web) => {
                let web_config = dir.path().join("web.yml");
                std::fs::write(&web_config, web_config_yaml(web)).expect("write web.yml");
                command.arg(format!("--web.config.file={}", web_config.display()));
                let ca = std::fs::read(web.ca).expect("read the CA");
                let client = reqwest::Client::builder()
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA PEM"))
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("http client");
                let auth = (web.user.to_owned(), web.password.to_owned());
                ("https", client, Some(auth))
            }
        };
        let process = command
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
            url: format!("{scheme}://127.0.0.1:{port}"),
            client,
            basic_auth,
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
            .get("/api/v1/query")
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
                .get("/-/ready")
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

impl Prometheus {
    /// A GET of `path` on the API, with the credentials it asks for.
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.get(format!("{}{path}", self.url));
        match &self.basic_auth {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }
}

/// Prometheus's web configuration: TLS with the certificate, and the one user, whose password
/// it holds as a bcrypt hash (at the lowest cost: Prometheus checks it at every request).
fn web_config_yaml(web: &WebSecurity<'_>) -> String {
    let hash = bcrypt::hash(web.password, 4).expect("bcrypt hash");
    format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  {}: '{hash}'\n",
        web.cert.display(),
        web.key.display(),
        web.user
    )
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
