//! Cost per request of the filter in a real Envoy, side by side with Envoy alone, with Envoy's
//! native sticky split and with the same decision core as a native dynamic module, plus
//! configuration time and propagation. `make bench` runs it
//! through `src/bin/bench.rs`; `tests/bench_smoke.rs` runs a seconds-long version.
//!
//! Every configuration is its own Envoy with one worker, all started up front and measured in
//! turns (round-robin, several rounds) so that changes in the machine's load spread over all
//! of them. The load generator is `wrk`; its upstream is another Envoy answering directly. With
//! pinning on, the Envoys under test run on CPU 0, and `wrk`, the upstream and this process on
//! CPU 1. CPU per request is the Envoy process's `utime + stime` from `/proc/<pid>/stat` over a
//! run, divided by the requests `wrk` completed.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::{json, Value};

use crate::envoy::{ecds_stat, Envoy, EnvoyBuilder, Routing, DYNAMIC_MODULE};
use crate::upstream::SEEN_VARIANT_HEADER;

/// The header carrying the user's identity in every configuration.
pub const USER_HEADER: &str = "x-user-id";
/// Routes in the large configuration.
pub const MANY_ROUTES: usize = 1000;
/// Targeting rules on the matched route of the large configuration.
pub const MANY_RULES: usize = 10;
/// The route the large configuration's load is sent to.
const MATCHED_ROUTE: usize = MANY_ROUTES / 2;
/// The reference row: a proxy-wasm filter that does nothing (`tests/noop-filter`).
pub const FLOOR: &str =
    "(0) a proxy-wasm filter that does nothing (the floor of any proxy-wasm filter)";
/// The same filter making the first of the canary filter's two request-path host calls.
pub const FLOOR_READ: &str =
    "(0a) the same, reading the request header map (1 host call a request)";
/// The same filter making both, the floor of any proxy-wasm filter that routes on a header.
pub const FLOOR_READ_SET: &str =
    "(0b) the same, reading the request header map and setting one request header (2 host calls, as (3))";
/// The floor of any dynamic-module filter: the module built with feature `floor`.
pub const DYNMOD_FLOOR: &str =
    "(8) a dynamic module that does nothing (the floor of any dynamic-module filter)";
/// The same, reading the request headers as (6) does (feature `floor-read`).
pub const DYNMOD_FLOOR_READ: &str = "(8a) the same, reading the request headers as (6) does";
/// The dynamic module as the route's cluster specifier.
pub const SPECIFIER: &str =
    "(9) dynamic module as the route's cluster specifier, 2 variants, identity header";
pub const SPECIFIER_MANY: &str = "(9a) the same, 1,000 routes, 10 rules on the matched route";
/// The same, also setting one request header and clearing the route cache (`floor-set`).
pub const DYNMOD_FLOOR_READ_SET: &str =
    "(8b) the same, reading the request headers, setting one and clearing the route cache (as (6))";
/// The rows of no-op modules: they decide nothing.
const FLOORS: [&str; 6] = [
    FLOOR,
    FLOOR_READ,
    FLOOR_READ_SET,
    DYNMOD_FLOOR,
    DYNMOD_FLOOR_READ,
    DYNMOD_FLOOR_READ_SET,
];
/// CPU the Envoys under test run on when pinned; everything else runs on the other.
const ENVOY_CPU: usize = 0;
const LOAD_CPU: usize = 1;

#[derive(Debug, Clone)]
pub struct Options {
    /// Length of one measured `wrk` run.
    pub duration: Duration,
    /// Length of the unmeasured run each Envoy gets first (zero: none).
    pub warmup: Duration,
    /// Measured runs per configuration, taken in turns.
    pub rounds: usize,
    /// `wrk` connections (one thread).
    pub connections: u32,
    /// ECDS writes timed for propagation.
    pub propagation_trials: usize,
    /// ECDS updates of each size timed for configuration.
    pub configure_trials: usize,
    /// Pin the Envoys under test to one CPU and the load to another (needs `taskset`).
    pub pin: bool,
    /// Other builds of the filter, compared on the two-variant configuration: (label, module);
    /// a `lib<name>.so` is a build of the dynamic module.
    pub modules: Vec<(String, PathBuf)>,
    /// Requests whose Envoy instructions callgrind counts per configuration (0: none).
    pub counted_requests: usize,
    /// Where to keep callgrind's dumps, a folder per configuration, for `callgrind_annotate`
    /// (`None`: a temporary folder).
    pub callgrind_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            duration: Duration::from_secs(6),
            warmup: Duration::from_secs(3),
            rounds: 5,
            connections: 16,
            propagation_trials: 20,
            configure_trials: 10,
            pin: true,
            modules: Vec::new(),
            counted_requests: 1000,
            callgrind_dir: None,
        }
    }
}

/// What was measured for one configuration, over all its rounds.
#[derive(Debug, Clone)]
pub struct Measured {
    pub name: String,
    /// The filter module, for configurations running the filter or a no-op one.
    pub module: Option<PathBuf>,
    /// Whether the module is the canary filter (or the dynamic module), which decides every
    /// request, rather than a no-op filter, which decides none.
    pub decides: bool,
    pub runs: Vec<Run>,
    /// Envoy's resident memory after the runs, KiB.
    pub rss_kib: u64,
    /// Envoy's instructions per request, counted by callgrind (`None`: not counted).
    pub instructions: Option<f64>,
}

/// One `wrk` run against one Envoy.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub requests: u64,
    pub seconds: f64,
    /// Errors `wrk` counted: connect, read, write, timeouts and non-2xx/3xx statuses.
    pub errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Envoy's CPU time (user + system) during the run.
    pub envoy_cpu_seconds: f64,
    /// CPU time other processes used on Envoy's CPU during the run, as a share of the run.
    pub other_load: Option<f64>,
}

impl Run {
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    pub fn cpu_us_per_request(&self) -> f64 {
        self.envoy_cpu_seconds * 1e6 / self.requests.max(1) as f64
    }
}

impl Measured {
    /// Median over the rounds.
    fn median(&self, f: impl Fn(&Run) -> f64) -> f64 {
        median(self.runs.iter().map(f).collect())
    }

    pub fn requests_per_second(&self) -> f64 {
        self.median(Run::requests_per_second)
    }

    pub fn cpu_us_per_request(&self) -> f64 {
        self.median(Run::cpu_us_per_request)
    }

    pub fn p50_us(&self) -> f64 {
        self.median(|r| r.p50_us)
    }

    pub fn p99_us(&self) -> f64 {
        self.median(|r| r.p99_us)
    }

    pub fn errors(&self) -> u64 {
        self.runs.iter().map(|r| r.errors).sum()
    }

    fn cpu_range(&self) -> (f64, f64) {
        let cpu = self.runs.iter().map(Run::cpu_us_per_request);
        let min = cpu.clone().fold(f64::INFINITY, f64::min);
        (min, cpu.fold(0.0, f64::max))
    }
}

/// Configuration time: ECDS file write until Envoy counts the update, and the filter's own
/// `on_configure` time as it logs it, for a small and the large configuration.
#[derive(Debug, Clone, Default)]
pub struct Configure {
    pub small_apply: Vec<Duration>,
    pub large_apply: Vec<Duration>,
    pub small_on_configure: Vec<Duration>,
    pub large_on_configure: Vec<Duration>,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub options: Options,
    pub machine: Machine,
    pub scenarios: Vec<Measured>,
    pub configure: Configure,
    /// ECDS file write until the first response reflecting the new weights.
    pub propagation: Vec<Duration>,
}

/// One configuration: how to start its Envoy and the request sent to it.
struct Setup {
    name: String,
    module: Option<PathBuf>,
    decides: bool,
    make: Box<dyn Fn() -> EnvoyBuilder>,
    headers: Vec<(String, String)>,
}

/// A configuration under load: its Envoy and the runs measured so far.
struct Scenario<'s> {
    setup: &'s Setup,
    envoy: Envoy,
    runs: Vec<Run>,
}

/// `name` as a file name: its letters and digits, words joined by `-`.
fn slug(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// `Some((folder, name))` for a dynamic module `lib<name>.so`.
fn dynamic_module_name(module: &Path) -> Option<(PathBuf, String)> {
    let file = module.file_name()?.to_str()?;
    let name = file.strip_prefix("lib")?.strip_suffix(".so")?;
    Some((module.parent()?.to_owned(), name.to_owned()))
}

/// Instructions per request for `counted` requests of the configuration's request, sent one
/// after another on one connection to a fresh Envoy under callgrind, after as many
/// uncounted ones: the median of three counts.
async fn count_instructions(setup: &Setup, options: &Options) -> Result<f64> {
    let counted = options.counted_requests;
    let temporary = tempfile::tempdir()?;
    let dir = match &options.callgrind_dir {
        Some(dir) => {
            let dir = dir.join(slug(&setup.name));
            std::fs::create_dir_all(&dir)?;
            dir
        }
        None => temporary.path().to_owned(),
    };
    let envoy = (setup.make)()
        .concurrency(1)
        .log_level("warn")
        .callgrind(&dir)
        .start()
        .await;
    let client = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()?;
    let url = envoy.url("/");
    let send = |n: usize| {
        let (client, url) = (&client, &url);
        async move {
            for _ in 0..n {
                let mut request = client.get(url);
                for (name, value) in &setup.headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                let response = request.send().await?;
                ensure!(
                    response.status().is_success(),
                    "status {}",
                    response.status()
                );
                response.bytes().await?;
            }
            anyhow::Ok(())
        }
    };
    send(counted).await?;
    let mut per_request = Vec::new();
    for _ in 0..3 {
        let (instructions, sent) = envoy.count_instructions(send(counted)).await?;
        sent?;
        per_request.push(instructions as f64 / counted as f64);
    }
    Ok(median(per_request))
}

/// The two-variant configuration: 90/10, identity from `x-user-id`, identity cookie for
/// clients without one.
pub fn two_variants(canary: u32) -> Value {
    json!({
        "routes": [{
            "name": "web",
            "variants": [
                { "name": "stable", "weight": 100 - canary },
                { "name": "canary", "weight": canary },
            ],
            "stickiness": {
                "keys": [{ "header": USER_HEADER }],
                "cookie": { "name": "canary_id", "maxAge": 2_592_000 },
                "salt": "web-2026-11",
            },
        }]
    })
}

/// `config` without the identity cookies, which a route cluster specifier cannot issue: the
/// benchmark's requests carry an identity header.
fn without_response(config: &Value) -> Value {
    let mut config = config.clone();
    if let Some(routes) = config.get_mut("routes").and_then(Value::as_array_mut) {
        for route in routes {
            if let Some(stickiness) = route.get_mut("stickiness").and_then(Value::as_object_mut) {
                stickiness.remove("cookie");
            }
        }
    }
    config
}

/// The large configuration: [`MANY_ROUTES`] routes, each on its own host with two targeting
/// rules, the matched one (`svc-500`) with [`MANY_RULES`] rules that the benchmark's requests
/// do not meet, so that all are evaluated before hashing.
pub fn many_routes() -> Value {
    let routes: Vec<Value> = (0..MANY_ROUTES)
        .map(|i| {
            let targeting = if i == MATCHED_ROUTE {
                many_rules()
            } else {
                vec![
                    json!({ "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" }),
                    json!({ "name": "optout", "cookie": "canary", "equals": "never", "variant": "stable" }),
                ]
            };
            json!({
                "name": format!("svc-{i}"),
                "match": { "hosts": [many_routes_host(i)], "pathPrefixes": ["/"] },
                "variants": [
                    { "name": "stable", "weight": 90 },
                    { "name": "canary", "weight": 10 },
                ],
                "targeting": targeting,
                "stickiness": {
                    "keys": [{ "header": USER_HEADER }, { "cookie": "session_id" }],
                    "cookie": { "name": "canary_id" },
                },
            })
        })
        .collect();
    json!({ "routes": routes })
}

fn many_routes_host(i: usize) -> String {
    format!("svc-{i}.bench.svc.cluster.local")
}

/// Ten rules of every kind, none of which a benchmark request meets.
fn many_rules() -> Vec<Value> {
    vec![
        json!({ "name": "optout", "cookie": "canary", "equals": "never", "variant": "stable" }),
        json!({ "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" }),
        json!({ "name": "rings", "header": "x-user-group", "in": ["beta", "staff", "dogfood"], "variant": "canary" }),
        json!({ "name": "builds", "header": "x-build", "prefix": "rc-", "variant": "canary" }),
        json!({ "name": "tenants", "header": "x-tenant", "matches": "t-[0-9]{1,6}", "variant": "canary" }),
        json!({ "name": "debug", "header": "x-debug-canary", "present": true, "variant": "canary" }),
        json!({ "name": "optin", "cookie": "canary", "equals": "always", "variant": "canary" }),
        json!({ "name": "region", "header": "x-region", "equals": "eu-west-9", "variant": "canary" }),
        json!({ "name": "devices", "header": "x-device", "in": ["test-rig", "lab"], "variant": "canary" }),
        json!({ "name": "beta-cookie", "cookie": "beta", "present": true, "variant": "canary" }),
    ]
}

/// Runs every measurement.
pub async fn run(options: Options) -> Result<Report> {
    ensure!(
        command_works("wrk", &["-v"]),
        "wrk is not installed (`make bench` installs it)"
    );
    let pin = options.pin && command_works("taskset", &["-V"]);
    let envoy_cpus = pin.then(|| ENVOY_CPU.to_string());
    let load_cpus = pin.then(|| LOAD_CPU.to_string());
    if let Some(cpus) = &load_cpus {
        pin_process(std::process::id(), cpus)?;
    }
    let machine_before = Machine::now();

    let upstream = start(
        Envoy::builder().routing(Routing::DirectResponse),
        load_cpus.as_deref(),
    )
    .await;
    let upstream_addr: SocketAddr = upstream.listener().parse()?;
    let builder = move || {
        Envoy::builder()
            .variant_at("stable", upstream_addr)
            .variant_at("canary", upstream_addr)
    };
    let identity = vec![(USER_HEADER.to_owned(), "user-42".to_owned())];
    let small = two_variants(10).to_string();
    let large = many_routes().to_string();

    // Each configuration as a way to make its Envoy, so that the instruction count can start
    // another one under callgrind.
    let mut setups: Vec<Setup> = Vec::new();
    let mut add = |name: &str,
                   module: Option<PathBuf>,
                   make: Box<dyn Fn() -> EnvoyBuilder>,
                   headers: &[(String, String)]| {
        let decides = module.is_some() && !FLOORS.contains(&name);
        setups.push(Setup {
            name: name.to_owned(),
            module,
            decides,
            make,
            headers: headers.to_vec(),
        });
    };
    let default_module = crate::wasm_path();
    add(
        "(1) Envoy, no filter",
        None,
        Box::new(move || builder().routing(Routing::Plain)),
        &identity,
    );
    add(
        "(2) Envoy native sticky split (weighted_clusters, use_hash_policy)",
        None,
        Box::new(move || {
            builder().routing(Routing::NativeSticky {
                header: USER_HEADER.to_owned(),
                weights: vec![90, 10],
            })
        }),
        &identity,
    );
    let wasm = |config: &str, module: &Path| -> Box<dyn Fn() -> EnvoyBuilder> {
        let (config, module) = (config.to_owned(), module.to_owned());
        Box::new(move || builder().plugin_config(&config).module(&module))
    };
    let native = |config: &str, dir: &Path, name: &str| -> Box<dyn Fn() -> EnvoyBuilder> {
        let (config, dir, name) = (config.to_owned(), dir.to_owned(), name.to_owned());
        Box::new(move || builder().plugin_config(&config).dynamic_module(&dir, &name))
    };
    // Envoy enters the VM for every stream event whatever the filter does: this is the part of
    // (3)'s cost that no proxy-wasm filter avoids.
    let noop = crate::noop_wasm_path();
    add(FLOOR, Some(noop.clone()), wasm(&small, &noop), &identity);
    // The two host calls a decided request makes, and nothing else: what (3) costs over (0b)
    // is the filter's own work.
    for (name, feature) in [(FLOOR_READ, "read-headers"), (FLOOR_READ_SET, "set-header")] {
        let module = crate::noop_wasm_build_path(feature);
        add(name, Some(module.clone()), wasm(&small, &module), &identity);
    }
    add(
        "(3) filter, 2 variants, identity header",
        Some(default_module.clone()),
        wasm(&small, &default_module),
        &identity,
    );
    let mut many_headers = identity.clone();
    many_headers.push(("host".to_owned(), many_routes_host(MATCHED_ROUTE)));
    add(
        "(4) filter, 1,000 routes, 10 rules on the matched route",
        Some(default_module.clone()),
        wasm(&large, &default_module),
        &many_headers,
    );
    add(
        "(5) filter, anonymous clients, identity cookie issued",
        Some(default_module.clone()),
        wasm(&small, &default_module),
        &[],
    );
    // The same decision core as a native dynamic module: no VM to enter.
    let dynmod_dir = crate::dynmod_dir();
    let dynmod = dynmod_dir.join(format!("lib{DYNAMIC_MODULE}.so"));
    add(
        "(6) dynamic module, 2 variants, identity header",
        Some(dynmod.clone()),
        native(&small, &dynmod_dir, DYNAMIC_MODULE),
        &identity,
    );
    add(
        "(7) dynamic module, 1,000 routes, 10 rules on the matched route",
        Some(dynmod),
        native(&large, &dynmod_dir, DYNAMIC_MODULE),
        &many_headers,
    );
    // The same for the dynamic module: what Envoy costs for any dynamic-module filter, and for
    // the two things a decision asks of it.
    for (name, feature) in [
        (DYNMOD_FLOOR, "floor"),
        (DYNMOD_FLOOR_READ, "floor-read"),
        (DYNMOD_FLOOR_READ_SET, "floor-set"),
    ] {
        let dir = crate::dynmod_floor_dir(feature);
        let module = dir.join(format!("lib{DYNAMIC_MODULE}.so"));
        add(
            name,
            Some(module),
            native(&small, &dir, DYNAMIC_MODULE),
            &identity,
        );
    }
    // The same module as the route's cluster specifier: Envoy calls it once, while it
    // resolves the route, with no filter per stream and no second route match.
    let specifier = |routing: &Value| -> Box<dyn Fn() -> EnvoyBuilder> {
        let config =
            crate::envoy::specifier_config(&without_response(routing).to_string(), "stable");
        let dir = dynmod_dir.clone();
        Box::new(move || {
            builder()
                .dynamic_module(&dir, DYNAMIC_MODULE)
                .routing(Routing::ClusterSpecifier {
                    module: DYNAMIC_MODULE.to_owned(),
                    specifier_config: config.clone(),
                })
        })
    };
    let dynmod = dynmod_dir.join(format!("lib{DYNAMIC_MODULE}.so"));
    add(
        SPECIFIER,
        Some(dynmod.clone()),
        specifier(&two_variants(10)),
        &identity,
    );
    add(
        SPECIFIER_MANY,
        Some(dynmod),
        specifier(&many_routes()),
        &many_headers,
    );
    for (label, module) in &options.modules {
        match dynamic_module_name(module) {
            // Another build of the dynamic module: `lib<name>.so`, found in its folder.
            Some((dir, name)) => add(
                &format!("(6) with {label}"),
                Some(module.clone()),
                native(&small, &dir, &name),
                &identity,
            ),
            None => add(
                &format!("(3) with {label}"),
                Some(module.clone()),
                wasm(&small, module),
                &identity,
            ),
        }
    }

    let cpus = envoy_cpus.as_deref();
    let mut scenarios = Vec::new();
    for setup in &setups {
        scenarios.push(Scenario {
            envoy: start((setup.make)(), cpus).await,
            setup,
            runs: Vec::new(),
        });
    }

    let dir = tempfile::tempdir()?;
    let script = dir.path().join("report.lua");
    std::fs::write(&script, WRK_SCRIPT)?;
    let wrk = Wrk {
        script,
        connections: options.connections,
        cpus: load_cpus.clone(),
    };
    for scenario in &scenarios {
        check_serving(scenario).await?;
        if !options.warmup.is_zero() {
            wrk.run(&scenario.envoy, &scenario.setup.headers, options.warmup)
                .await?;
        }
    }
    for round in 0..options.rounds {
        // Rotate the order so that no configuration always runs first or last.
        let n = scenarios.len();
        for k in 0..n {
            let scenario = &mut scenarios[(round + k) % n];
            let run = wrk
                .run(&scenario.envoy, &scenario.setup.headers, options.duration)
                .await
                .with_context(|| format!("{} (round {round})", scenario.setup.name))?;
            scenario.runs.push(run);
        }
    }
    for scenario in &scenarios {
        check_decided(scenario).await?;
    }
    let mut measured: Vec<Measured> = scenarios
        .iter()
        .map(|s| Measured {
            name: s.setup.name.clone(),
            module: s.setup.module.clone(),
            decides: s.setup.decides,
            runs: s.runs.clone(),
            rss_kib: s.envoy.pid().and_then(rss_kib).unwrap_or(0),
            instructions: None,
        })
        .collect();
    drop(scenarios);

    if options.counted_requests > 0 {
        for (setup, measured) in setups.iter().zip(&mut measured) {
            let counted = count_instructions(setup, &options)
                .await
                .with_context(|| format!("{}: counting instructions", setup.name))?;
            measured.instructions = Some(counted);
        }
    }

    let configure = configure_time(&options, builder(), cpus, &small, &large).await?;
    let propagation = propagation(
        options.propagation_trials,
        builder().log_level("warn"),
        cpus,
    )
    .await?;
    Ok(Report {
        machine: machine_before.finish(pin),
        options,
        scenarios: measured,
        configure,
        propagation,
    })
}

async fn start(builder: crate::envoy::EnvoyBuilder, cpus: Option<&str>) -> Envoy {
    let builder = builder.concurrency(1).log_level("warn");
    match cpus {
        Some(cpus) => builder.cpus(cpus).start().await,
        None => builder.start().await,
    }
}

/// One request through the scenario's Envoy, to fail early on a broken setup.
async fn check_serving(scenario: &Scenario<'_>) -> Result<()> {
    let client = crate::client();
    let mut request = client.get(scenario.envoy.url("/"));
    for (name, value) in &scenario.setup.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await?;
    ensure!(
        response.status().is_success(),
        "{}: status {}",
        scenario.setup.name,
        response.status()
    );
    Ok(())
}

/// Checks that the filter decided every measured request of a filter configuration (and the
/// no-op filters none), from the filter's decision counters: a request that matched no route
/// of the configuration would be measured as a pass-through, not as a decision.
async fn check_decided(scenario: &Scenario<'_>) -> Result<()> {
    if scenario.setup.module.is_none() {
        return Ok(());
    }
    let measured: u64 = scenario.runs.iter().map(|r| r.requests).sum();
    let url = scenario
        .envoy
        .admin_url("/stats?filter=^wasmcustom[.]canary[.]route[.].*[.]decision[.]");
    // The filter hands its counts to Envoy about once a second: wait for the last of them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let decided = loop {
        let text = crate::client().get(&url).send().await?.text().await?;
        let decided: u64 = text
            .lines()
            .filter_map(|line| line.rsplit_once(": ")?.1.trim().parse::<u64>().ok())
            .sum();
        if decided >= measured || !scenario.setup.decides || Instant::now() > deadline {
            break decided;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if !scenario.setup.decides {
        ensure!(decided == 0, "{}: {decided} decisions", scenario.setup.name);
    } else {
        ensure!(
            decided >= measured,
            "{}: the filter decided {decided} requests of the {measured} measured",
            scenario.setup.name
        );
    }
    Ok(())
}

/// Times ECDS updates alternating between the small and the large configuration.
async fn configure_time(
    options: &Options,
    builder: crate::envoy::EnvoyBuilder,
    cpus: Option<&str>,
    small: &str,
    large: &str,
) -> Result<Configure> {
    // Info logging with `wasm` at debug, where the filter logs its `on_configure` time.
    let builder = builder.concurrency(1).plugin_config(small);
    let envoy = match cpus {
        Some(cpus) => builder.cpus(cpus).start().await,
        None => builder.start().await,
    };
    let mut result = Configure::default();
    for _ in 0..options.configure_trials {
        configure_round(&envoy, small, large, &mut result).await?;
    }
    ensure!(
        !result.large_on_configure.is_empty(),
        "the filter logged no on_configure time; log:\n{}",
        envoy.log()
    );
    Ok(result)
}

/// Writes the large configuration, then the small one, to `envoy` through its ECDS file, and
/// records how long each took to apply and the `on_configure` times the filter logged.
async fn configure_round(
    envoy: &Envoy,
    small: &str,
    large: &str,
    result: &mut Configure,
) -> Result<()> {
    for (config, apply, on_configure) in [
        (
            large,
            &mut result.large_apply,
            &mut result.large_on_configure,
        ),
        (
            small,
            &mut result.small_apply,
            &mut result.small_on_configure,
        ),
    ] {
        let log_before = envoy.log().len();
        let success = envoy.stat(&ecds_stat("update_success")).await.unwrap_or(0);
        let started = Instant::now();
        envoy.write_ecds(config);
        loop {
            if envoy.stat(&ecds_stat("update_success")).await.unwrap_or(0) > success {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(20),
                "ECDS update not applied in 20 s; log:\n{}",
                envoy.log()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        apply.push(started.elapsed());
        // The worker's VM configures after the main thread's; let it log.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let log = envoy.log();
        on_configure.extend(
            log.get(log_before..)
                .unwrap_or_default()
                .lines()
                .filter_map(on_configure_micros)
                .map(Duration::from_micros),
        );
    }
    Ok(())
}

/// One build of the filter in [`compare_configure`].
#[derive(Debug, Clone)]
pub struct ModuleConfigure {
    pub label: String,
    pub size: u64,
    pub configure: Configure,
    /// Envoy's resident memory, KiB, and the bytes its allocator holds (the admin `/memory`
    /// `allocated`), with the large configuration in place.
    pub rss_kib: u64,
    pub allocated: Option<u64>,
}

/// Configuration time and memory of several builds of the filter side by side: one Envoy
/// (one worker) per module, each given the same ECDS updates in turn, `trials` rounds.
pub async fn compare_configure(
    trials: usize,
    modules: &[(String, PathBuf)],
) -> Result<Vec<ModuleConfigure>> {
    let upstream = start(Envoy::builder().routing(Routing::DirectResponse), None).await;
    let upstream_addr: SocketAddr = upstream.listener().parse()?;
    let small = two_variants(10).to_string();
    let large = many_routes().to_string();
    let mut envoys = Vec::new();
    for (label, module) in modules {
        let envoy = Envoy::builder()
            .variant_at("stable", upstream_addr)
            .variant_at("canary", upstream_addr)
            .module(module)
            .concurrency(1)
            .plugin_config(&small)
            .start()
            .await;
        let size = std::fs::metadata(module)
            .with_context(|| module.display().to_string())?
            .len();
        envoys.push((label.clone(), size, envoy, Configure::default()));
    }
    for round in 0..trials {
        // Rotate the order each round, so that neither build always goes first.
        let count = envoys.len();
        for i in 0..count {
            let (_, _, envoy, result) = &mut envoys[(i + round) % count];
            configure_round(envoy, &small, &large, result).await?;
        }
    }
    let mut compared = Vec::new();
    for (label, size, envoy, configure) in envoys {
        envoy.write_ecds(&large);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let allocated = match reqwest::get(envoy.admin_url("/memory")).await {
            Ok(response) => response.bytes().await.ok().and_then(|body| {
                let memory: Value = serde_json::from_slice(&body).ok()?;
                memory["allocated"].as_str()?.parse().ok()
            }),
            Err(_) => None,
        };
        compared.push(ModuleConfigure {
            label,
            size,
            configure,
            rss_kib: envoy.pid().and_then(rss_kib).unwrap_or(0),
            allocated,
        });
    }
    Ok(compared)
}

/// [`compare_configure`]'s results as a Markdown table.
pub fn compare_configure_markdown(compared: &[ModuleConfigure]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| module | size | 1,000 routes: `on_configure` p50 (min–max) | ECDS write → `update_success` p50 | 1 route: `on_configure` p50 | RSS | allocated |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    for m in compared {
        let c = &m.configure;
        let min = c
            .large_on_configure
            .iter()
            .min()
            .copied()
            .unwrap_or_default();
        let max = c
            .large_on_configure
            .iter()
            .max()
            .copied()
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} KiB ({} bytes) | {} ({}–{}) | {} | {} | {:.1} MiB | {} |",
            m.label,
            m.size / 1024,
            m.size,
            ms(quantile(&c.large_on_configure, 0.5)),
            ms(min),
            ms(max),
            ms(quantile(&c.large_apply, 0.5)),
            ms(quantile(&c.small_on_configure, 0.5)),
            m.rss_kib as f64 / 1024.0,
            m.allocated
                .map(|b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
                .unwrap_or_else(|| "–".to_owned()),
        );
    }
    out
}

/// The time in an `on_configure took N us` log line.
fn on_configure_micros(line: &str) -> Option<u64> {
    let (_, rest) = line.split_once("on_configure took ")?;
    rest.strip_suffix(" us")?.trim().parse().ok()
}

/// Times, over `trials` ECDS writes, how long until a user's requests see the new weights.
async fn propagation(
    trials: usize,
    builder: crate::envoy::EnvoyBuilder,
    cpus: Option<&str>,
) -> Result<Vec<Duration>> {
    let (low, high) = (two_variants(10).to_string(), two_variants(90).to_string());
    let builder = builder.concurrency(1).plugin_config(&low);
    let envoy = match cpus {
        Some(cpus) => builder.cpus(cpus).start().await,
        None => builder.start().await,
    };
    let client = crate::client();
    let variant_of = |user: String| {
        let (client, url) = (client.clone(), envoy.url("/"));
        async move {
            let response = client.get(url).header(USER_HEADER, user).send().await?;
            let seen = response
                .headers()
                .get(SEEN_VARIANT_HEADER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            anyhow::Ok(seen.unwrap_or_default())
        }
    };
    // A user on stable at 10 % canary and on canary at 90 %.
    let users: Vec<String> = (0..50).map(|i| format!("user-{i}")).collect();
    let mut at_low = Vec::new();
    for user in &users {
        at_low.push(variant_of(user.clone()).await?);
    }
    envoy.push_config(&high).await;
    let mut user = None;
    for (u, low_variant) in users.iter().zip(&at_low) {
        if low_variant == "stable" && variant_of(u.clone()).await? == "canary" {
            user = Some(u.clone());
            break;
        }
    }
    let Some(user) = user else {
        bail!("no user among {} moves from stable to canary", users.len());
    };
    let mut times = Vec::new();
    for trial in 0..trials {
        // Each trial flips the weights; the user's variant flips with them.
        let (config, want) = if trial.is_multiple_of(2) {
            (&low, "stable")
        } else {
            (&high, "canary")
        };
        let started = Instant::now();
        envoy.write_ecds(config);
        loop {
            if variant_of(user.clone()).await? == want {
                times.push(started.elapsed());
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(20),
                "trial {trial}: new weights not served in 20 s"
            );
        }
        // Let the update settle before the next one.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(envoy);
    Ok(times)
}

const WRK_SCRIPT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"#;

struct Wrk {
    script: PathBuf,
    connections: u32,
    cpus: Option<String>,
}

impl Wrk {
    async fn run(
        &self,
        envoy: &Envoy,
        headers: &[(String, String)],
        length: Duration,
    ) -> Result<Run> {
        let pid = envoy.pid().context("Envoy is not running")?;
        let mut command = match &self.cpus {
            Some(cpus) => {
                let mut c = tokio::process::Command::new("taskset");
                c.args(["-c", cpus, "wrk"]);
                c
            }
            None => tokio::process::Command::new("wrk"),
        };
        command
            .args(["-t1", &format!("-c{}", self.connections)])
            .arg(format!("-d{}s", length.as_secs().max(1)))
            .arg("-s")
            .arg(&self.script);
        for (name, value) in headers {
            // wrk adds its own `Host` unless one is given under exactly that name; a second
            // Host header would leave the request matching no route of the configuration.
            let name = if name.eq_ignore_ascii_case("host") {
                "Host"
            } else {
                name.as_str()
            };
            command.arg("-H").arg(format!("{name}: {value}"));
        }
        command.arg(envoy.url("/"));
        let cpu_before = process_cpu_ticks(pid)?;
        let core_before = cpu_busy_ticks(ENVOY_CPU);
        let output = command.output().await.context("run wrk")?;
        let cpu = process_cpu_ticks(pid)? - cpu_before;
        let core = cpu_busy_ticks(ENVOY_CPU)
            .zip(core_before)
            .map(|(after, before)| after - before);
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success(),
            "wrk failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("BENCH "))
            .with_context(|| format!("no report from wrk: {stdout}"))?;
        let field = |name: &str| -> Result<f64> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .with_context(|| format!("{name} missing in {line:?}"))?
                .parse()
                .with_context(|| format!("{name} in {line:?}"))
        };
        let seconds = field("duration_us")? / 1e6;
        let hz = clock_ticks_per_second();
        Ok(Run {
            requests: field("requests")? as u64,
            seconds,
            errors: field("errors")? as u64,
            p50_us: field("p50_us")?,
            p99_us: field("p99_us")?,
            envoy_cpu_seconds: cpu as f64 / hz,
            other_load: core.map(|busy| ((busy - cpu) as f64 / hz / seconds).max(0.0)),
        })
    }
}

fn command_works(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// Moves every thread of process `pid` to `cpus`; threads it starts later inherit it.
fn pin_process(pid: u32, cpus: &str) -> Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()?;
    ensure!(status.success(), "taskset -a -p -c {cpus} {pid} failed");
    Ok(())
}

/// `utime + stime` of a process, in clock ticks.
fn process_cpu_ticks(pid: u32) -> Result<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let tick =
        |i: usize| -> Result<i64> { Ok(fields.get(i).context("short /proc/<pid>/stat")?.parse()?) };
    Ok(tick(11)? + tick(12)?)
}

/// Busy (non-idle) ticks of one CPU, from `/proc/stat`.
fn cpu_busy_ticks(cpu: usize) -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat
        .lines()
        .find(|l| l.starts_with(&format!("cpu{cpu} ")))?;
    let ticks: Vec<i64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: i64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some(total - idle)
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The `q` quantile (0..=1) by nearest rank.
pub fn quantile(values: &[Duration], q: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}

/// The machine the benchmark ran on, and how busy it was.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
    pub envoy: String,
    pub wrk: String,
    pub load_before: String,
    pub load_after: String,
    pub pinned: bool,
    started: Option<Instant>,
    pub minutes: f64,
}

impl Machine {
    fn now() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map(|(_, m)| m.trim().to_owned())
            .unwrap_or_default();
        let output = |program: &str, arg: &str| {
            std::process::Command::new(program)
                .arg(arg)
                .output()
                .map(|o| {
                    let text = [o.stdout, o.stderr].concat();
                    String::from_utf8_lossy(&text)
                        .lines()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                })
                .unwrap_or_default()
        };
        Machine {
            cpu,
            // Counted from /proc/cpuinfo: this process may be pinned to one CPU already.
            cpus: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            envoy: output(&crate::envoy_bin().display().to_string(), "--version")
                .split_once("version: ")
                .map(|(_, version)| version.to_owned())
                .unwrap_or_default(),
            wrk: output("wrk", "-v"),
            load_before: read_trimmed("/proc/loadavg"),
            started: Some(Instant::now()),
            ..Machine::default()
        }
    }

    fn finish(mut self, pinned: bool) -> Machine {
        self.load_after = read_trimmed("/proc/loadavg");
        self.pinned = pinned;
        self.minutes = self
            .started
            .map_or(0.0, |s| s.elapsed().as_secs_f64() / 60.0);
        self
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Native criterion results: (benchmark id, mean ns), read from criterion's output directory.
pub fn criterion_results(dir: &Path) -> Vec<(String, f64)> {
    let mut results = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && path.file_name().is_some_and(|n| n != "report") {
                stack.push(path);
            }
        }
        let (Some(benchmark), Some(estimates)) = (
            read_json(&dir.join("new/benchmark.json")),
            read_json(&dir.join("new/estimates.json")),
        ) else {
            continue;
        };
        if let (Some(id), Some(mean)) = (
            benchmark.get("full_id").and_then(Value::as_str),
            estimates
                .pointer("/mean/point_estimate")
                .and_then(Value::as_f64),
        ) {
            results.push((id.to_owned(), mean));
        }
    }
    results.sort_by(|a, b| a.0.cmp(&b.0));
    results
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The targets the README promises, as (what, limit, measured, met).
pub fn targets(
    report: &Report,
    criterion: &[(String, f64)],
) -> Vec<(String, String, String, bool)> {
    let mut rows = Vec::new();
    let row = |prefix: &str| report.scenarios.iter().find(|s| s.name.starts_with(prefix));
    let cpu = |prefix: &str| row(prefix).map(Measured::cpu_us_per_request);
    let instructions = |prefix: &str| row(prefix).and_then(|s| s.instructions);
    let ratio_row =
        |rows: &mut Vec<_>, what: &str, num: Option<f64>, den: Option<f64>, limit: f64| {
            if let (Some(n), Some(d)) = (num, den) {
                let ratio = n / d;
                rows.push((
                    what.to_owned(),
                    format!("≤ {limit:.2}×"),
                    format!("{ratio:.2}×"),
                    ratio <= limit,
                ));
            }
        };
    // Each ratio in CPU time, and again in counted instructions where they were counted.
    let ratios = [
        ("(3) vs (1)", "(3)", "(1)", 1.10),
        ("(3) vs (2)", "(3)", "(2)", 1.10),
        ("(0) vs (1): the proxy-wasm floor", "(0)", "(1)", 1.10),
        ("(3) vs (0): the filter's own work", "(3)", "(0)", 1.10),
        ("(4) vs (3)", "(4)", "(3)", 1.05),
        ("(5) vs (3)", "(5)", "(3)", 1.05),
        ("(6) vs (1): the dynamic module", "(6)", "(1)", 1.05),
        (
            "(6) vs (2): the dynamic module against the native split",
            "(6)",
            "(2)",
            1.00,
        ),
        (
            "(7) vs (1): the dynamic module, 1,000 routes",
            "(7)",
            "(1)",
            1.08,
        ),
        ("(9) vs (1): the cluster specifier", "(9)", "(1)", 1.05),
        (
            "(9) vs (2): the cluster specifier against the native split",
            "(9)",
            "(2)",
            1.00,
        ),
        (
            "(9a) vs (1): the cluster specifier, 1,000 routes",
            "(9a)",
            "(1)",
            1.08,
        ),
    ];
    for (what, num, den, limit) in ratios {
        ratio_row(
            &mut rows,
            &format!("CPU/request {what}"),
            cpu(num),
            cpu(den),
            limit,
        );
    }
    for (what, num, den, limit) in ratios {
        ratio_row(
            &mut rows,
            &format!("instructions/request {what}"),
            instructions(num),
            instructions(den),
            limit,
        );
    }
    let filter = report
        .scenarios
        .iter()
        .find(|s| s.name.starts_with("(3)"))
        .and_then(|s| s.module.as_ref());
    if let Some(module) = filter {
        let size = std::fs::metadata(module).map_or(0, |m| m.len());
        rows.push((
            ".wasm size".to_owned(),
            "≤ 512 KiB".to_owned(),
            format!("{} KiB", size / 1024),
            size <= 512 * 1024,
        ));
    }
    let c = &report.configure;
    if !c.large_on_configure.is_empty() {
        let p50 = quantile(&c.large_on_configure, 0.5);
        rows.push((
            format!("on_configure, {MANY_ROUTES} routes, in Envoy (p50)"),
            "≤ 20 ms".to_owned(),
            format!("{:.1} ms", p50.as_secs_f64() * 1e3),
            p50 <= Duration::from_millis(20),
        ));
    }
    if let Some((_, ns)) = criterion
        .iter()
        .find(|(id, _)| id.starts_with("configure/1000"))
    {
        rows.push((
            format!("on_configure, {MANY_ROUTES} routes, native"),
            "≤ 20 ms".to_owned(),
            format!("{:.1} ms", ns / 1e6),
            *ns <= 20e6,
        ));
    }
    if !report.propagation.is_empty() {
        let p95 = quantile(&report.propagation, 0.95);
        rows.push((
            "propagation, ECDS write → new weights served (p95)".to_owned(),
            "≤ 1 s".to_owned(),
            format!("{:.0} ms", p95.as_secs_f64() * 1e3),
            p95 <= Duration::from_secs(1),
        ));
    }
    for (id, ns) in criterion.iter().filter(|(id, _)| id.starts_with("decide/")) {
        rows.push((
            format!("decision core, native: {id}"),
            "≤ 200 ns".to_owned(),
            format!("{ns:.0} ns"),
            *ns <= 200.0,
        ));
    }
    rows
}

/// The heading of the table of counted instructions.
pub const INSTRUCTIONS_HEADING: &str = "## Instructions per request";

/// The heading of the table taking the floor apart.
pub const FLOOR_HEADING: &str = "## The proxy-wasm floor taken apart";

/// One part of the filter's cost over Envoy alone, from two rows of the cost table.
#[derive(Debug, Clone, PartialEq)]
pub struct FloorPart {
    pub what: &'static str,
    /// The rows subtracted, e.g. `(0a) − (0)`.
    pub rows: &'static str,
    /// The difference of their median CPU per request.
    pub cpu_us: f64,
    /// Its share of (3) − (0), for the parts of that.
    pub share: Option<f64>,
}

/// One part of a build's counted instructions per request, from two rows.
#[derive(Debug, Clone, PartialEq)]
pub struct InstructionPart {
    pub what: &'static str,
    /// The rows subtracted, e.g. `(8a) − (8)`.
    pub rows: &'static str,
    pub instructions: f64,
    /// As a share of Envoy alone, (1).
    pub of_alone: Option<f64>,
}

/// The heading of the table taking the counted instructions apart.
pub const INSTRUCTION_PARTS_HEADING: &str = "## Instructions per request taken apart";

impl Report {
    /// Envoy alone, the no-op filters and the filter on two variants, each row's median CPU per
    /// request less the one before it (empty if a row is missing).
    pub fn floor_parts(&self) -> Vec<FloorPart> {
        let cpu = |row: &str| {
            self.scenarios
                .iter()
                .find(|s| s.name.starts_with(row))
                .map(Measured::cpu_us_per_request)
        };
        let (Some(alone), Some(floor), Some(read), Some(set), Some(filter)) =
            (cpu("(1)"), cpu("(0)"), cpu("(0a)"), cpu("(0b)"), cpu("(3)"))
        else {
            return Vec::new();
        };
        let own = filter - floor;
        let part = |what, rows, cpu_us: f64, of_own: bool| FloorPart {
            what,
            rows,
            cpu_us,
            share: (of_own && own > 0.0).then(|| cpu_us / own),
        };
        vec![
            part(
                "entering the VM on every stream event",
                "(0) − (1)",
                floor - alone,
                false,
            ),
            part(
                "reading the request header map (1 host call)",
                "(0a) − (0)",
                read - floor,
                true,
            ),
            part(
                "setting one request header (1 host call)",
                "(0b) − (0a)",
                set - read,
                true,
            ),
            part(
                "the filter's own work: reading the headers, deciding, counting",
                "(3) − (0b)",
                filter - set,
                true,
            ),
            part("the filter over the floor, in all", "(3) − (0)", own, false),
        ]
    }

    /// Each build's counted instructions per request taken apart, row by row: what Envoy costs
    /// for any filter of the kind, for the two things a decision asks of Envoy, and the
    /// filter's own work; beside them Envoy's native split. A part is left out when one of its
    /// rows was not counted.
    pub fn instruction_parts(&self) -> Vec<InstructionPart> {
        let count = |row: &str| {
            self.scenarios
                .iter()
                .find(|s| s.name.starts_with(&format!("{row} ")))
                .and_then(|s| s.instructions)
        };
        let alone = count("(1)");
        [
            ("Envoy's native sticky split", "(2) − (1)", "(2)", "(1)"),
            (
                "proxy-wasm: entering the VM on every stream event",
                "(0) − (1)",
                "(0)",
                "(1)",
            ),
            (
                "proxy-wasm: reading the request header map",
                "(0a) − (0)",
                "(0a)",
                "(0)",
            ),
            (
                "proxy-wasm: setting one request header (Envoy then matches the route again)",
                "(0b) − (0a)",
                "(0b)",
                "(0a)",
            ),
            (
                "proxy-wasm: the filter's own work",
                "(3) − (0b)",
                "(3)",
                "(0b)",
            ),
            (
                "dynamic module: calling the module on every stream event",
                "(8) − (1)",
                "(8)",
                "(1)",
            ),
            (
                "dynamic module: reading the request headers",
                "(8a) − (8)",
                "(8a)",
                "(8)",
            ),
            (
                "dynamic module: setting one request header and clearing the route cache",
                "(8b) − (8a)",
                "(8b)",
                "(8a)",
            ),
            (
                "dynamic module: the module's own work",
                "(6) − (8b)",
                "(6)",
                "(8b)",
            ),
            (
                "cluster specifier: the module deciding while Envoy resolves the route",
                "(9) − (1)",
                "(9)",
                "(1)",
            ),
        ]
        .into_iter()
        .filter_map(|(what, rows, minuend, subtrahend)| {
            let instructions = count(minuend)? - count(subtrahend)?;
            Some(InstructionPart {
                what,
                rows,
                instructions,
                of_alone: alone.map(|a| instructions / a),
            })
        })
        .collect()
    }

    /// The results as Markdown: machine, the table, the targets, configuration and propagation.
    pub fn markdown(&self, command: &str, criterion: &[(String, f64)]) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let o = &self.options;
        let _ = writeln!(out, "# Benchmarks\n");
        let _ = writeln!(out, "Produced by `{command}`; regenerate with the same command. Numbers are from one run on one machine: compare rows with each other, not with another machine.\n");
        let _ = writeln!(out, "## Machine and method\n");
        let _ = writeln!(
            out,
            "- CPU: {} × {} ({}), Linux {}",
            m.cpus,
            m.cpu,
            if m.pinned {
                "pinned: the Envoys under test on CPU 0; wrk, the upstream Envoy and the driver on CPU 1"
            } else {
                "not pinned"
            },
            m.kernel
        );
        let _ = writeln!(out, "- Envoy: {}", m.envoy);
        let _ = writeln!(out, "- Load generator: {}, 1 thread, {} connections, HTTP/1.1 keep-alive, closed loop (as fast as Envoy answers)", m.wrk, o.connections);
        let _ = writeln!(out, "- Each configuration is its own Envoy (`--concurrency 1`), upstream an Envoy answering directly; {} measured runs of {} s each, taken in turns (round-robin, order rotated each round) after a {} s warm-up; the table shows the median run", o.rounds, o.duration.as_secs(), o.warmup.as_secs());
        let _ = writeln!(out, "- CPU/request: the Envoy process's utime + stime (`/proc/<pid>/stat`) over a run ÷ requests completed; memory: `VmRSS` after the runs");
        let other: Vec<f64> = self
            .scenarios
            .iter()
            .flat_map(|s| s.runs.iter().filter_map(|r| r.other_load))
            .collect();
        if !other.is_empty() {
            let max = other.iter().copied().fold(0.0, f64::max);
            let _ = writeln!(out, "- Machine load: load average {} before and {} after ({:.1} min); other processes used {:.0} % (median) and up to {:.0} % of the Envoys' CPU during runs", first3(&m.load_before), first3(&m.load_after), m.minutes, median(other.clone()) * 100.0, max * 100.0);
        }
        let _ = writeln!(out, "\n## Cost per request\n");
        let _ = writeln!(out, "| configuration | req/s | ÷ (1) | Envoy CPU µs/req (min–max) | ÷ (1) | p50 | p99 | RSS | errors |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let base = self.scenarios.first();
        for s in &self.scenarios {
            let (rps, cpu) = (s.requests_per_second(), s.cpu_us_per_request());
            let (lo, hi) = s.cpu_range();
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.2} | {:.1} ({:.1}–{:.1}) | {:.2} | {:.0} µs | {:.0} µs | {:.1} MiB | {} |",
                s.name,
                rps,
                base.map_or(0.0, |b| rps / b.requests_per_second()),
                cpu, lo, hi,
                base.map_or(0.0, |b| cpu / b.cpu_us_per_request()),
                s.p50_us(),
                s.p99_us(),
                s.rss_kib as f64 / 1024.0,
                s.errors(),
            );
        }
        let floor = self.floor_parts();
        if !floor.is_empty() {
            let _ = writeln!(out, "\n{FLOOR_HEADING}\n");
            let _ = writeln!(out, "The difference between the medians of neighbouring rows above, which the rows' min–max ranges blur: (3) − (0) split into the two host calls a decided request makes, measured with the no-op filter making only them, and the rest, which is the filter's own work inside the VM.\n");
            let _ = writeln!(out, "| part | rows | CPU µs/req | share of (3) − (0) |");
            let _ = writeln!(out, "|---|---|---:|---:|");
            for part in &floor {
                let share = part
                    .share
                    .map_or(String::from("–"), |s| format!("{:.0} %", s * 100.0));
                let _ = writeln!(
                    out,
                    "| {} | {} | {:+.1} | {share} |",
                    part.what, part.rows, part.cpu_us
                );
            }
        }
        if self.scenarios.iter().any(|s| s.instructions.is_some()) {
            let _ = writeln!(out, "\n{INSTRUCTIONS_HEADING}\n");
            let _ = writeln!(out, "Counted by callgrind (valgrind): the instructions the Envoy process executed, in all its threads, while {n} requests were sent one after another on one connection to a fresh Envoy of the configuration under callgrind (after {n} uncounted ones), divided by {n}; the median of three counts. The same binary, configuration and requests count the same whatever else the machine runs, so these ratios hold still where the CPU times above move by several per cent. An instruction is not a cycle: what an instruction costs, cache misses among it, is not in the count.\n", n = o.counted_requests);
            let _ = writeln!(
                out,
                "| configuration | instructions/request | ÷ (1) | ÷ (2) | ÷ (0) |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|");
            let of = |row: &str, value: f64| {
                self.scenarios
                    .iter()
                    .find(|s| s.name.starts_with(row))
                    .and_then(|s| s.instructions)
                    .map_or(String::from("–"), |base| format!("{:.3}", value / base))
            };
            for s in &self.scenarios {
                if let Some(n) = s.instructions {
                    let _ = writeln!(
                        out,
                        "| {} | {:.0} | {} | {} | {} |",
                        s.name,
                        n,
                        of("(1)", n),
                        of("(2)", n),
                        of("(0)", n)
                    );
                }
            }
        }
        let parts = self.instruction_parts();
        if !parts.is_empty() {
            let _ = writeln!(out, "\n{INSTRUCTION_PARTS_HEADING}\n");
            let _ = writeln!(out, "The difference between neighbouring rows of the count above, which holds still from run to run: for each build, what Envoy spends on any filter of its kind, on the two things a decision asks of Envoy (measured with modules doing only them: (0a), (0b) and (8a), (8b)), and the filter's own work.\n");
            let _ = writeln!(out, "| part | rows | instructions/request | of (1) |");
            let _ = writeln!(out, "|---|---|---:|---:|");
            for part in &parts {
                let of = part
                    .of_alone
                    .map_or(String::from("–"), |s| format!("{:+.1} %", s * 100.0));
                let _ = writeln!(
                    out,
                    "| {} | {} | {:+.0} | {of} |",
                    part.what, part.rows, part.instructions
                );
            }
        }
        let modules: Vec<&PathBuf> = {
            let mut seen: Vec<&PathBuf> = Vec::new();
            let filters = self.scenarios.iter().filter(|s| s.decides);
            for p in filters.filter_map(|s| s.module.as_ref()) {
                if !seen.contains(&p) {
                    seen.push(p);
                }
            }
            seen
        };
        let _ = writeln!(out, "\n## Filter module\n");
        let _ = writeln!(out, "| module | size | CPU µs/req on (3) or (6) |");
        let _ = writeln!(out, "|---|---:|---:|");
        for module in modules {
            let size = std::fs::metadata(module).map_or(0, |m| m.len());
            let cpu = self
                .scenarios
                .iter()
                .find(|s| {
                    s.module.as_ref() == Some(module)
                        && (s.name.starts_with("(3)") || s.name.starts_with("(6)"))
                })
                .map_or(String::from("–"), |s| {
                    format!("{:.1}", s.cpu_us_per_request())
                });
            let name = module
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let label = self
                .scenarios
                .iter()
                .find(|s| {
                    s.module.as_ref() == Some(module)
                        && (s.name.starts_with("(3) with ") || s.name.starts_with("(6) with "))
                })
                .map_or_else(
                    || {
                        let native = self.scenarios.iter().any(|s| {
                            s.module.as_ref() == Some(module) && s.name.starts_with("(6)")
                        });
                        if native {
                            "`make dynmod` (native dynamic module, opt-level 3)".to_owned()
                        } else {
                            "`make build` (opt-level z, wasm-opt -Oz)".to_owned()
                        }
                    },
                    |s| s.name[s.name.find(" with ").map_or(0, |i| i + 6)..].to_owned(),
                );
            let _ = writeln!(
                out,
                "| {label} (`{name}`) | {:.0} KiB ({size} bytes) | {cpu} |",
                size as f64 / 1024.0
            );
        }
        let c = &self.configure;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let _ = writeln!(out, "\n## Configuration\n");
        let _ = writeln!(out, "In Envoy, {} updates of each size through the ECDS file (one worker, so the filter configures twice per update: main thread and worker):\n", o.configure_trials);
        let _ = writeln!(out, "| configuration | ECDS write → `update_success` p50 | filter `on_configure` p50 | max |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for (name, apply, conf) in [
            ("1 route, 2 variants", &c.small_apply, &c.small_on_configure),
            (
                "1,000 routes (2 rules each, 10 on one)",
                &c.large_apply,
                &c.large_on_configure,
            ),
        ] {
            let _ = writeln!(
                out,
                "| {name} | {:.1} ms | {:.2} ms | {:.2} ms |",
                ms(quantile(apply, 0.5)),
                ms(quantile(conf, 0.5)),
                ms(quantile(conf, 1.0))
            );
        }
        let p = &self.propagation;
        let _ = writeln!(out, "\nPropagation: ECDS file written (atomic rename) → first response carrying the new weights, polled by one client, {} trials: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms.", p.len(), ms(quantile(p, 0.5)), ms(quantile(p, 0.95)), ms(quantile(p, 1.0)));
        if !criterion.is_empty() {
            let _ = writeln!(
                out,
                "\n## Native (criterion, `cargo bench -p canary-filter`)\n"
            );
            let _ = writeln!(out, "| benchmark | mean |");
            let _ = writeln!(out, "|---|---:|");
            for (id, ns) in criterion {
                let value = if *ns >= 1e6 {
                    format!("{:.2} ms", ns / 1e6)
                } else if *ns >= 1e3 {
                    format!("{:.2} µs", ns / 1e3)
                } else {
                    format!("{ns:.0} ns")
                };
                let _ = writeln!(out, "| {id} | {value} |");
            }
        }
        let _ = writeln!(out, "\n## Targets\n");
        let _ = writeln!(out, "| target | limit | measured | met |");
        let _ = writeln!(out, "|---|---:|---:|:---:|");
        for (what, limit, measured, met) in targets(self, criterion) {
            let _ = writeln!(
                out,
                "| {what} | {limit} | {measured} | {} |",
                if met { "yes" } else { "**no**" }
            );
        }
        out
    }
}

fn first3(loadavg: &str) -> String {
    loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let ms: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        assert_eq!(quantile(&ms, 0.5), Duration::from_millis(10));
        assert_eq!(quantile(&ms, 0.95), Duration::from_millis(19));
        assert_eq!(quantile(&ms, 1.0), Duration::from_millis(20));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn on_configure_lines() {
        let line = "[2026-11-22 04:00:00.000][12][debug][wasm] wasm log canary: [canary 1] on_configure took 1234 us";
        assert_eq!(on_configure_micros(line), Some(1234));
        assert_eq!(on_configure_micros("configuration accepted"), None);
    }

    fn measured(name: &str, cpu_us: f64) -> Measured {
        Measured {
            name: name.to_owned(),
            module: None,
            decides: false,
            runs: vec![Run {
                requests: 1_000_000,
                seconds: 1.0,
                errors: 0,
                p50_us: 1.0,
                p99_us: 1.0,
                envoy_cpu_seconds: cpu_us,
                other_load: None,
            }],
            rss_kib: 0,
            instructions: None,
        }
    }

    #[test]
    fn the_floor_is_taken_apart_row_by_row() {
        let mut report = Report {
            options: Options::default(),
            machine: Machine::default(),
            scenarios: vec![
                measured("(1) Envoy, no filter", 50.0),
                measured(FLOOR, 60.0),
                measured(FLOOR_READ, 63.0),
                measured(FLOOR_READ_SET, 65.0),
                measured("(3) filter, 2 variants, identity header", 70.0),
                measured("(3) with another build", 90.0),
            ],
            configure: Configure::default(),
            propagation: Vec::new(),
        };
        let parts: Vec<(&str, f64, Option<f64>)> = report
            .floor_parts()
            .iter()
            .map(|p| (p.rows, (p.cpu_us * 10.0).round() / 10.0, p.share))
            .collect();
        assert_eq!(
            parts,
            [
                ("(0) − (1)", 10.0, None),
                ("(0a) − (0)", 3.0, Some(0.3)),
                ("(0b) − (0a)", 2.0, Some(0.2)),
                ("(3) − (0b)", 5.0, Some(0.5)),
                ("(3) − (0)", 10.0, None),
            ]
        );
        let text = report.markdown("test", &[]);
        assert!(text.contains(FLOOR_HEADING), "{text}");
        assert!(
            text.contains(
                "| setting one request header (1 host call) | (0b) − (0a) | +2.0 | 20 % |"
            ),
            "{text}"
        );

        report.scenarios.retain(|s| s.name != FLOOR_READ);
        assert!(report.floor_parts().is_empty(), "a row missing");
        assert!(!report.markdown("test", &[]).contains(FLOOR_HEADING));
    }

    #[test]
    fn counted_instructions_are_taken_apart_and_compared() {
        let counted = |name: &str, n: f64| Measured {
            instructions: Some(n),
            ..measured(name, 1.0)
        };
        let mut report = Report {
            options: Options::default(),
            machine: Machine::default(),
            scenarios: vec![
                counted("(1) Envoy, no filter", 100_000.0),
                counted("(2) Envoy native sticky split", 103_000.0),
                counted(DYNMOD_FLOOR, 105_000.0),
                counted(DYNMOD_FLOOR_READ, 106_000.0),
                counted(DYNMOD_FLOOR_READ_SET, 110_000.0),
                counted("(6) dynamic module, 2 variants, identity header", 111_000.0),
                counted("(6) with another build", 150_000.0),
            ],
            configure: Configure::default(),
            propagation: Vec::new(),
        };
        let parts: Vec<(&str, f64, Option<f64>)> = report
            .instruction_parts()
            .iter()
            .map(|p| (p.rows, p.instructions, p.of_alone))
            .collect();
        assert_eq!(
            parts,
            [
                ("(2) − (1)", 3000.0, Some(0.03)),
                ("(8) − (1)", 5000.0, Some(0.05)),
                ("(8a) − (8)", 1000.0, Some(0.01)),
                ("(8b) − (8a)", 4000.0, Some(0.04)),
                ("(6) − (8b)", 1000.0, Some(0.01)),
            ],
            "the wasm rows are missing, so are their parts"
        );
        let text = report.markdown("test", &[]);
        for line in [
            INSTRUCTIONS_HEADING,
            "| (6) dynamic module, 2 variants, identity header | 111000 | 1.110 | 1.078 | – |",
            "| dynamic module: the module's own work | (6) − (8b) | +1000 | +1.0 % |",
            "| instructions/request (6) vs (2): the dynamic module against the native split | ≤ 1.00× | 1.08× | **no** |",
            "| instructions/request (6) vs (1): the dynamic module | ≤ 1.05× | 1.11× | **no** |",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }

        for s in &mut report.scenarios {
            s.instructions = None;
        }
        assert!(report.instruction_parts().is_empty());
        let text = report.markdown("test", &[]);
        assert!(!text.contains(INSTRUCTIONS_HEADING));
        assert!(!text.contains("instructions/request"));
    }

    #[test]
    fn large_configuration_is_valid() {
        let config = many_routes();
        assert_eq!(config["routes"].as_array().map(Vec::len), Some(MANY_ROUTES));
        assert_eq!(
            config["routes"][MATCHED_ROUTE]["targeting"]
                .as_array()
                .map(Vec::len),
            Some(MANY_RULES)
        );
    }
}
