//! The built module's calls into its host, in order, for each kind of request: the budget of
//! host calls per request, pinned.
//!
//! The release `.wasm` that Envoy loads (`CANARY_WASM`, built by `make wasm`) runs in the wasmi
//! interpreter behind a host that implements the proxy-wasm 0.2.1 calls the module imports
//! (headers, metrics, time, tick, logs, foreign functions) and WASI's `random_get`, and records
//! every call. The test drives the lifecycle Envoy drives: VM start and configure on a root
//! context, then per stream context create, request headers, response headers, done, log and
//! delete, and the root context's tick. Each call into Envoy costs about as much as the whole
//! decision (BENCHMARKS.md), so a call added to the request path fails a test here.

use std::path::Path;

use canary_e2e::{noop_wasm_build_path, noop_wasm_path, wasm_path};
use wasmi::{Caller, Engine, Extern, Func, Instance, Linker, Module, Store, TypedFunc, Val};

/// proxy-wasm's status codes.
const OK: i32 = 0;
const NOT_FOUND: i32 = 1;
const BAD_ARGUMENT: i32 = 2;
const UNIMPLEMENTED: i32 = 12;

const ROOT: i32 = 1;

/// What the host holds: the stream's headers, the plugin configuration, the metrics Envoy
/// would keep, and every call the module made.
#[derive(Default)]
struct Host {
    calls: Vec<String>,
    request: Vec<(String, Vec<u8>)>,
    response: Vec<(String, Vec<u8>)>,
    plugin_config: Vec<u8>,
    /// By id: name, type (0 counter, 2 histogram), counter value or histogram samples.
    metrics: Vec<(String, i32, Vec<i64>)>,
    now_ns: u64,
    tick_ms: Option<u32>,
    random_calls: u8,
    allocate: Option<TypedFunc<i32, i32>>,
}

impl Host {
    fn map(&mut self, map: i32) -> Option<&mut Vec<(String, Vec<u8>)>> {
        match map {
            0 => Some(&mut self.request),
            2 => Some(&mut self.response),
            _ => None,
        }
    }

    fn metric_name(&self, id: i32) -> String {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.metrics.get(i))
            .map_or_else(|| format!("#{id}"), |m| m.0.clone())
    }

    /// The value of counter `name`, as Envoy would show it.
    fn counter(&self, name: &str) -> Option<i64> {
        self.metrics
            .iter()
            .find(|(n, t, _)| n == name && *t == 0)
            .map(|(_, _, v)| v.iter().sum())
    }
}

fn map_name(map: i32) -> &'static str {
    match map {
        0 => "request_headers",
        1 => "request_trailers",
        2 => "response_headers",
        3 => "response_trailers",
        _ => "other_map",
    }
}

fn memory(caller: &Caller<'_, Host>) -> wasmi::Memory {
    caller
        .get_export("memory")
        .and_then(Extern::into_memory)
        .expect("the module exports its memory")
}

fn read(caller: &Caller<'_, Host>, ptr: i32, len: i32) -> Vec<u8> {
    let mut buf = vec![0; len as usize];
    memory(caller)
        .read(caller, ptr as usize, &mut buf)
        .expect("in bounds");
    buf
}

fn read_str(caller: &Caller<'_, Host>, ptr: i32, len: i32) -> String {
    String::from_utf8_lossy(&read(caller, ptr, len)).into_owned()
}

fn write(caller: &mut Caller<'_, Host>, ptr: i32, bytes: &[u8]) {
    memory(caller)
        .write(caller, ptr as usize, bytes)
        .expect("in bounds");
}

/// Hands `bytes` to the module as the proxy-wasm host does: in memory the module allocates
/// (`proxy_on_memory_allocate`), its address and length written at `ptr_out` and `len_out`.
fn give(caller: &mut Caller<'_, Host>, bytes: &[u8], ptr_out: i32, len_out: i32) {
    let allocate = caller.data().allocate.expect("allocator");
    let len = i32::try_from(bytes.len()).expect("small");
    let ptr = allocate.call(&mut *caller, len).expect("allocate");
    write(caller, ptr, bytes);
    write(caller, ptr_out, &ptr.to_le_bytes());
    write(caller, len_out, &len.to_le_bytes());
}

/// proxy-wasm's serialised header map: the count, each name and value length, then each name
/// and value followed by a NUL.
fn serialize(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (name, value) in pairs {
        out.extend((name.len() as u32).to_le_bytes());
        out.extend((value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend(name.as_bytes());
        out.push(0);
        out.extend(value);
        out.push(0);
    }
    out
}

fn record(caller: &mut Caller<'_, Host>, call: String) {
    caller.data_mut().calls.push(call);
}

/// Defines every import of the module: the calls the filter makes, implemented; any other
/// recorded and answered `Unimplemented`, so that a new call shows up in the sequences.
fn linker(engine: &Engine, module: &Module) -> Linker<Host> {
    let mut l = Linker::<Host>::new(engine);
    let env = "env";
    l.func_wrap(
        env,
        "proxy_log",
        |mut c: Caller<'_, Host>, level: i32, p: i32, n: i32| {
            let message = read_str(&c, p, n);
            record(&mut c, format!("log({level}, {message})"));
            OK
        },
    )
    .unwrap();
    l.func_wrap(
        env,
        "proxy_get_buffer_bytes",
        |mut c: Caller<'_, Host>, buffer: i32, start: i32, max: i32, ptr: i32, len: i32| {
            record(&mut c, format!("get_buffer_bytes({buffer})"));
            // 7: the plugin configuration.
            if buffer != 7 {
                return NOT_FOUND;
            }
            let config = c.data().plugin_config.clone();
            let start = (start as usize).min(config.len());
            let end = start.saturating_add(max as u32 as usize).min(config.len());
            give(&mut c, &config[start..end], ptr, len);
            OK
        },
    )
    .unwrap();
    l.func_wrap(
        env,
        "proxy_get_header_map_pairs",
        |mut c: Caller<'_, Host>, map: i32, ptr: i32, len: i32| {
            record(&mut c, format!("get_header_map_pairs({})", map_name(map)));
            let Some(pairs) = c.data_mut().map(map).map(|m| serialize(m)) else {
                return BAD_ARGUMENT;
            };
            give(&mut c, &pairs, ptr, len);
            OK
        },
    )
    .unwrap();
    l.func_wrap(
        env,
        "proxy_get_header_map_value",
        |mut c: Caller<'_, Host>, map: i32, kp: i32, kn: i32, ptr: i32, len: i32| {
            let key = read_str(&c, kp, kn);
            record(
                &mut c,
                format!("get_header_map_value({}, {key})", map_name(map)),
            );
            let value = c
                .data_mut()
                .map(map)
                .and_then(|m| m.iter().find(|(n, _)| *n == key).map(|(_, v)| v.clone()));
            match value {
                Some(value) => {
                    give(&mut c, &value, ptr, len);
                    OK
                }
                None => NOT_FOUND,
            }
        },
    )
    .unwrap();
    l.func_wrap(
        env,
        "proxy_replace_header_map_value",
        |mut c: Caller<'_, Host>, map: i32, kp: i32, kn: i32, vp: i32, vn: i32| {
            let (key, value) = (read_str(&c, kp, kn), read(&c, vp, vn));
            let shown = String::from_utf8_lossy(&value).into_owned();
            record(
                &mut c,
                format!(
                    "replace_header_map_value({}, {key}, {shown})",
                    map_name(map)
                ),
            );
            let Some(m) = c.data_mut().map(map) else {
                return BAD_ARGUMENT;
            };
            m.retain(|(n, _)| *n != key);
            m.push((key, value));
            OK
        },
    )
    .unwrap();
    l.func_wrap(
        env,
        "proxy_add_header_map_value",
        |mut c: Caller<'_, Host>, map: i32, kp: i32, kn: i32, vp: i32, vn: i32| {
            let (key, value) = (read_str(&c, kp, kn), read(&c, vp, vn));
            let shown = String::from_utf8_lossy(&value).into_owned();
            record(
                &mut c,
                format!("add_header_map_value({}, {key}, {shown})", map_name(map)),
            );
            let Some(m) = c.data_mut().map(map) else {
                return BAD_ARGUMENT;
            };
            m.push((key, value));
            OK
        },
    )
    .unwrap();
    l.func_wrap(
        env,
        "proxy_remove_header_map_value",
        |mut c: Caller<'_, Host>, map: i32, kp: i32, kn: i32| {
            let key = read_str(&c, kp, kn);
            record(
                &mut c,
                format!("remove_header_map_value({}, {key})", map_name(map)),
            );
            let Some(m) = c.data_mut().map(map) else {
                return BAD_ARGUMENT;
            };
            m.retain(|(n, _)| *n != key);
            OK
        },
    )
    .unwrap();
    l.func_wrap(
        env,
        "proxy_define_metric",
        |mut c: Caller<'_, Host>, kind: i32, np: i32, nn: i32, id_out: i32| {
            let name = read_str(&c, np, nn);
            let kind_name = match kind {
                0 => "counter",
                2 => "histogram",
                _ => "other",
            };
            record(&mut c, format!("define_metric({kind_name}, {name})"));
            let metrics = &mut c.data_mut().metrics;
            // Envoy keeps a metric by name: the same name gives the same id.
            let id = match metrics
                .iter()
                .position(|(n, k, _)| *n == name && *k == kind)
            {
                Some(id) => id,
                None => {
                    metrics.push((name, kind, Vec::new()));
                    metrics.len() - 1
                }
            };
            write(&mut c, id_out, &(id as u32).to_le_bytes());
            OK
        },
    )
    .unwrap();
    l.func_wrap(
        env,
        "proxy_increment_metric",
        |mut c: Caller<'_, Host>, id: i32, delta: i64| {
            let name = c.data().metric_name(id);
            record(&mut c, format!("increment_metric({name}, {delta})"));
            match c.data_mut().metrics.get_mut(id as usize) {
                Some((_, 0, values)) => {
                    values.push(delta);
                    OK
                }
                _ => NOT_FOUND,
            }
        },
    )
    .unwrap();
    l.func_wrap(
        env,
        "proxy_record_metric",
        |mut c: Caller<'_, Host>, id: i32, value: i64| {
            let name = c.data().metric_name(id);
            record(&mut c, format!("record_metric({name}, {value})"));
            match c.data_mut().metrics.get_mut(id as usize) {
                Some((_, 2, values)) => {
                    values.push(value);
                    OK
                }
                _ => NOT_FOUND,
            }
        },
    )
    .unwrap();
    l.func_wrap(
        env,
        "proxy_get_current_time_nanoseconds",
        |mut c: Caller<'_, Host>, out: i32| {
            record(&mut c, "get_current_time_nanoseconds()".to_owned());
            let now = c.data().now_ns;
            write(&mut c, out, &now.to_le_bytes());
            OK
        },
    )
    .unwrap();
    l.func_wrap(
        env,
        "proxy_set_tick_period_milliseconds",
        |mut c: Caller<'_, Host>, period: i32| {
            record(&mut c, format!("set_tick_period_milliseconds({period})"));
            c.data_mut().tick_ms = Some(period as u32);
            OK
        },
    )
    .unwrap();
    l.func_wrap(
        env,
        "proxy_call_foreign_function",
        |mut c: Caller<'_, Host>, np: i32, nn: i32, _ap: i32, _an: i32, _rp: i32, _rn: i32| {
            let name = read_str(&c, np, nn);
            record(&mut c, format!("call_foreign_function({name})"));
            // Envoy's clear_route_cache: no result.
            OK
        },
    )
    .unwrap();
    l.func_wrap(
        "wasi_snapshot_preview1",
        "random_get",
        |mut c: Caller<'_, Host>, ptr: i32, len: i32| {
            record(&mut c, format!("random_get({len})"));
            // Distinct bytes on every call.
            let n = c.data().random_calls.wrapping_add(1);
            c.data_mut().random_calls = n;
            let bytes: Vec<u8> = (0..len).map(|i| (i as u8) ^ n.wrapping_mul(0x9d)).collect();
            write(&mut c, ptr, &bytes);
            0
        },
    )
    .unwrap();
    // Everything else the module imports: recorded, and refused.
    for import in module.imports() {
        let (module_name, name) = (import.module().to_owned(), import.name().to_owned());
        let Some(ty) = import.ty().func().cloned() else {
            continue;
        };
        if implemented(&module_name, &name) {
            continue;
        }
        let label = name.clone();
        l.func_new(&module_name, &name, ty, move |mut c, _params, results| {
            record(&mut c, format!("{label}(unimplemented)"));
            for result in results.iter_mut() {
                *result = Val::I32(UNIMPLEMENTED);
            }
            Ok(())
        })
        .unwrap();
    }
    l
}

fn implemented(module: &str, name: &str) -> bool {
    const IMPLEMENTED: [&str; 14] = [
        "proxy_log",
        "proxy_get_buffer_bytes",
        "proxy_get_header_map_pairs",
        "proxy_get_header_map_value",
        "proxy_replace_header_map_value",
        "proxy_add_header_map_value",
        "proxy_remove_header_map_value",
        "proxy_define_metric",
        "proxy_increment_metric",
        "proxy_record_metric",
        "proxy_get_current_time_nanoseconds",
        "proxy_set_tick_period_milliseconds",
        "proxy_call_foreign_function",
        "random_get",
    ];
    (module == "env" || module == "wasi_snapshot_preview1") && IMPLEMENTED.contains(&name)
}

/// The module, configured, on one root context.
struct Filter {
    store: Store<Host>,
    instance: Instance,
    next_context: i32,
}

/// The host calls of one stream, by callback, and its headers afterwards.
#[derive(Debug)]
struct Stream {
    on_request_headers: Vec<String>,
    on_response_headers: Vec<String>,
    /// `proxy_on_done`, `proxy_on_log` and `proxy_on_delete`.
    on_done: Vec<String>,
    /// The request headers as the upstream gets them.
    request: Vec<(String, String)>,
    /// The response headers as the client gets them.
    response: Vec<(String, String)>,
}

impl Stream {
    fn request_values(&self, name: &str) -> Vec<&str> {
        values(&self.request, name)
    }

    fn response_values(&self, name: &str) -> Vec<&str> {
        values(&self.response, name)
    }
}

fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn text(headers: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

fn owned(headers: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
        .collect()
}

impl Filter {
    /// Loads the filter module and configures it as Envoy does; returns it with the calls of
    /// VM start and configure.
    fn start(config: &str) -> (Filter, Vec<String>) {
        Filter::load(&wasm_path(), config)
    }

    /// [`Filter::start`] with the module at `path`.
    fn load(path: &Path, config: &str) -> (Filter, Vec<String>) {
        let wasm = std::fs::read(path).expect("the built module (make wasm)");
        let engine = Engine::default();
        let module = Module::new(&engine, &wasm).expect("a valid module");
        let linker = linker(&engine, &module);
        let mut store = Store::new(
            &engine,
            Host {
                plugin_config: config.as_bytes().to_vec(),
                now_ns: 1_700_000_000_000_000_000,
                ..Host::default()
            },
        );
        let instance = linker
            .instantiate_and_start(&mut store, &module)
            .expect("instantiate");
        let allocate = instance
            .get_typed_func::<i32, i32>(&store, "proxy_on_memory_allocate")
            .expect("proxy_on_memory_allocate");
        store.data_mut().allocate = Some(allocate);
        let mut filter = Filter {
            store,
            instance,
            next_context: ROOT + 1,
        };
        if let Some(init) = filter.instance.get_func(&filter.store, "_initialize") {
            init.call(&mut filter.store, &[], &mut [])
                .expect("_initialize");
        }
        filter.call::<(i32, i32), ()>("proxy_on_context_create", (ROOT, 0));
        let started = filter.call::<(i32, i32), i32>("proxy_on_vm_start", (ROOT, 0));
        assert_eq!(started, 1, "VM start refused");
        let size = i32::try_from(config.len()).expect("small");
        let configured = filter.call::<(i32, i32), i32>("proxy_on_configure", (ROOT, size));
        assert_eq!(
            configured,
            1,
            "configuration refused: {:?}",
            filter.store.data().calls
        );
        let calls = filter.take_calls();
        (filter, calls)
    }

    fn call<P: wasmi::WasmParams, R: wasmi::WasmResults>(&mut self, name: &str, params: P) -> R {
        let func: Func = self
            .instance
            .get_func(&self.store, name)
            .unwrap_or_else(|| panic!("the module exports {name}"));
        func.typed::<P, R>(&self.store)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .call(&mut self.store, params)
            .unwrap_or_else(|e| panic!("{name} trapped: {e}"))
    }

    fn take_calls(&mut self) -> Vec<String> {
        std::mem::take(&mut self.store.data_mut().calls)
    }

    /// One stream through the filter: the request with these headers, answered upstream with
    /// these response headers after 7 ms.
    fn stream(&mut self, request: &[(&str, &str)], response: &[(&str, &str)]) -> Stream {
        let context = self.next_context;
        self.next_context += 1;
        self.take_calls();
        self.store.data_mut().request = owned(request);
        self.call::<(i32, i32), ()>("proxy_on_context_create", (context, ROOT));
        let n = request.len() as i32;
        let action = self.call::<(i32, i32, i32), i32>("proxy_on_request_headers", (context, n, 1));
        assert_eq!(action, 0, "the request continues");
        let on_request_headers = self.take_calls();

        self.store.data_mut().response = owned(response);
        self.store.data_mut().now_ns += 7_000_000;
        let n = response.len() as i32;
        let action =
            self.call::<(i32, i32, i32), i32>("proxy_on_response_headers", (context, n, 0));
        assert_eq!(action, 0, "the response continues");
        let on_response_headers = self.take_calls();

        let done = self.call::<i32, i32>("proxy_on_done", context);
        assert_eq!(done, 1);
        self.call::<i32, ()>("proxy_on_log", context);
        self.call::<i32, ()>("proxy_on_delete", context);
        let on_done = self.take_calls();
        let host = self.store.data();
        Stream {
            on_request_headers,
            on_response_headers,
            on_done,
            request: text(&host.request),
            response: text(&host.response),
        }
    }

    /// The root context's tick; returns its host calls.
    fn tick(&mut self) -> Vec<String> {
        self.take_calls();
        self.call::<i32, ()>("proxy_on_tick", ROOT);
        self.take_calls()
    }

    fn host(&self) -> &Host {
        self.store.data()
    }
}

/// Runs `test` on a thread with a large stack: wasmi's compiler, built without optimisation
/// in test builds, needs more than a test thread's default.
fn on_big_stack(test: impl FnOnce() + Send + 'static) {
    let thread = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(test)
        .expect("spawn");
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

const OK_RESPONSE: &[(&str, &str)] = &[(":status", "200")];

fn config(extra: &str) -> String {
    format!(
        r#"{{{extra}
        "routes": [{{
            "name": "web",
            "match": {{ "hosts": ["shop"] }},
            "variants": [ {{ "name": "stable", "weight": 50 }}, {{ "name": "canary", "weight": 50 }} ],
            "targeting": [ {{ "name": "qa", "header": "x-canary", "equals": "always", "variant": "canary" }} ],
            "stickiness": {{
                "keys": [ {{ "header": "x-user-id" }} ],
                "cookie": {{ "name": "canary_id", "maxAge": 60 }}
            }}
        }}]
    }}"#
    )
}

/// The variant the filter's own assignment gives `user` under `config`.
fn variant_of(config: &str, user: &str) -> String {
    let table = canary_filter::parse(config.as_bytes()).expect("valid configuration");
    let route = &table.routes[0];
    route.variants[route.assign(user.as_bytes())].name.clone()
}

fn request(user: &str) -> Vec<(&str, &str)> {
    vec![(":authority", "shop"), (":path", "/"), ("x-user-id", user)]
}

const HEADERS: &str = "get_header_map_pairs(request_headers)";

fn decided(variant: &str) -> String {
    format!("replace_header_map_value(request_headers, x-canary-variant, {variant})")
}

fn counter(variant: &str, reason: &str) -> String {
    format!("canary.route.web.variant.{variant}.decision.{reason}")
}

#[test]
fn configure_reads_the_configuration_and_sets_the_tick() {
    on_big_stack(|| {
        let (_, calls) = Filter::start(&config(""));
        assert!(
            calls.contains(&"get_buffer_bytes(7)".to_owned()),
            "{calls:#?}"
        );
        assert!(
            calls.contains(&"set_tick_period_milliseconds(1000)".to_owned()),
            "{calls:#?}"
        );
        assert!(
            calls
                .iter()
                .any(|c| c.contains("configuration accepted: 1 route(s)")),
            "{calls:#?}"
        );
    });
}

/// A request decided by its identity header, response metrics off: the header map read once,
/// the decision written, and nothing else; nothing at all on the response.
#[test]
fn a_decided_request_makes_two_host_calls() {
    on_big_stack(|| {
        let config = config("");
        let (mut filter, _) = Filter::start(&config);
        let first_user = variant_of(&config, "alice");
        let first = filter.stream(&request("alice"), OK_RESPONSE);
        // The first decision of a (variant, reason) also defines its counter, once per
        // configuration.
        assert_eq!(
            first.on_request_headers,
            [
                HEADERS.to_owned(),
                decided(&first_user),
                format!("define_metric(counter, {})", counter(&first_user, "hash")),
            ]
        );
        assert_eq!(
            first.request_values("x-canary-variant"),
            [first_user.as_str()]
        );

        let mut defined = vec![first_user.clone()];
        for user in (0..16).map(|i| format!("user-{i}")) {
            let user = user.as_str();
            let variant = variant_of(&config, user);
            let s = filter.stream(&request(user), OK_RESPONSE);
            let mut want = vec![HEADERS.to_owned(), decided(&variant)];
            if !defined.contains(&variant) {
                want.push(format!(
                    "define_metric(counter, {})",
                    counter(&variant, "hash")
                ));
                defined.push(variant.clone());
            }
            assert_eq!(s.on_request_headers, want, "{user}");
            assert!(
                s.on_response_headers.is_empty(),
                "{:?}",
                s.on_response_headers
            );
            assert!(s.on_done.is_empty(), "{:?}", s.on_done);
            assert_eq!(s.request_values("x-canary-variant"), [variant.as_str()]);
            assert!(
                s.response_values("set-cookie").is_empty(),
                "a key, so no cookie"
            );
        }
        assert_eq!(defined.len(), 2, "both variants drawn");
    });
}

/// The header map is read as the host serialised it: a decision header and an identity key
/// among many headers, some repeated and some empty, are found as they are with three.
#[test]
fn a_request_with_many_headers_is_read_from_one_buffer() {
    on_big_stack(|| {
        let config = config("");
        let (mut filter, _) = Filter::start(&config);
        let names: Vec<String> = (0..40).map(|i| format!("x-extra-{i}")).collect();
        let mut headers: Vec<(&str, &str)> = vec![(":authority", "shop"), (":path", "/")];
        headers.extend(names.iter().map(|n| (n.as_str(), "")));
        headers.extend([
            ("x-canary-variant", "forged"),
            ("x-user-id", "bob"),
            ("x-user-id", "alice"),
            ("x-canary-variant", "forged again"),
        ]);
        let s = filter.stream(&headers, OK_RESPONSE);
        let variant = variant_of(&config, "bob");
        assert_eq!(
            s.on_request_headers[..3],
            [
                HEADERS.to_owned(),
                "remove_header_map_value(request_headers, x-canary-variant)".to_owned(),
                decided(&variant),
            ],
            "the first identity value decides"
        );
        assert_eq!(s.request_values("x-canary-variant"), [variant.as_str()]);
        assert_eq!(s.request_values("x-extra-39"), [""]);
    });
}

/// The no-op builds of the benchmark's floor rows make exactly the calls their rows name: none,
/// the header map read, and the read and one header set, all on the request.
#[test]
fn the_benchmark_floors_make_only_the_calls_they_name() {
    on_big_stack(|| {
        let set = "replace_header_map_value(request_headers, x-canary-variant, stable)";
        for (module, want) in [
            (noop_wasm_path(), vec![]),
            (noop_wasm_build_path("read-headers"), vec![HEADERS]),
            (noop_wasm_build_path("set-header"), vec![HEADERS, set]),
        ] {
            let (mut filter, calls) = Filter::load(&module, "");
            assert!(calls.is_empty(), "{}: {calls:?}", module.display());
            for _ in 0..3 {
                let s = filter.stream(&request("alice"), OK_RESPONSE);
                assert_eq!(s.on_request_headers, want, "{}", module.display());
                assert!(s.on_response_headers.is_empty(), "{}", module.display());
                assert!(s.on_done.is_empty(), "{}", module.display());
            }
            assert!(filter.tick().is_empty(), "{}", module.display());
        }
    });
}

#[test]
fn a_request_decided_by_a_targeting_rule() {
    on_big_stack(|| {
        let (mut filter, _) = Filter::start(&config(""));
        let mut headers = request("alice");
        headers.push(("x-canary", "always"));
        let first = filter.stream(&headers, OK_RESPONSE);
        assert_eq!(
            first.on_request_headers,
            [
                HEADERS.to_owned(),
                decided("canary"),
                format!("define_metric(counter, {})", counter("canary", "rule")),
            ]
        );
        let again = filter.stream(&headers, OK_RESPONSE);
        assert_eq!(
            again.on_request_headers,
            [HEADERS.to_owned(), decided("canary")]
        );
        assert!(again.on_response_headers.is_empty());
        assert_eq!(again.request_values("x-canary-variant"), ["canary"]);
    });
}

/// An anonymous request: the identity drawn from the random source on the request, and the
/// identity cookie added on the response, the response's only host call.
#[test]
fn an_anonymous_request_is_issued_an_identity_cookie() {
    on_big_stack(|| {
        let (mut filter, _) = Filter::start(&config(""));
        let anonymous = [(":authority", "shop"), (":path", "/")];
        filter.stream(&anonymous, OK_RESPONSE);
        let s = filter.stream(
            &anonymous,
            &[(":status", "200"), ("set-cookie", "upstream=1")],
        );
        let cookie = s.response_values("set-cookie");
        assert_eq!(cookie.len(), 2, "{cookie:?}");
        assert_eq!(cookie[0], "upstream=1", "the upstream's cookie kept");
        let ours = cookie[1];
        let id = ours
            .strip_prefix("canary_id=")
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_else(|| panic!("{ours}"));
        assert_eq!(id.len(), 32, "128 random bits as hex: {ours}");
        let variant = variant_of(&config(""), id);
        assert_eq!(
            s.on_request_headers,
            [
                HEADERS.to_owned(),
                "random_get(16)".to_owned(),
                decided(&variant)
            ],
            "the variant is the one the issued identity hashes to"
        );
        assert_eq!(
            s.on_response_headers,
            [format!(
                "add_header_map_value(response_headers, set-cookie, {ours})"
            )]
        );
        assert!(
            ours.ends_with("; Max-Age=60; Path=/; HttpOnly; SameSite=Lax"),
            "{ours}"
        );
    });
}

#[test]
fn a_request_no_route_matches_is_only_read() {
    on_big_stack(|| {
        let (mut filter, _) = Filter::start(&config(""));
        let s = filter.stream(
            &[
                (":authority", "elsewhere"),
                (":path", "/"),
                ("x-user-id", "alice"),
            ],
            OK_RESPONSE,
        );
        assert_eq!(s.on_request_headers, [HEADERS]);
        assert!(s.on_response_headers.is_empty());
        assert!(s.request_values("x-canary-variant").is_empty());
    });
}

/// A client-sent decision header is removed, every value of it, and then the decision written;
/// on a request no route matches it is removed all the same.
#[test]
fn a_forged_decision_header_is_removed() {
    on_big_stack(|| {
        let config = config("");
        let (mut filter, _) = Filter::start(&config);
        let variant = variant_of(&config, "alice");
        let mut forged = request("alice");
        forged.extend([
            ("x-canary-variant", "canary"),
            ("x-canary-variant", "stable"),
        ]);
        filter.stream(&forged, OK_RESPONSE);
        let s = filter.stream(&forged, OK_RESPONSE);
        let remove = "remove_header_map_value(request_headers, x-canary-variant)".to_owned();
        assert_eq!(
            s.on_request_headers,
            [HEADERS.to_owned(), remove.clone(), decided(&variant)]
        );
        assert_eq!(s.request_values("x-canary-variant"), [variant.as_str()]);

        let unmatched = filter.stream(
            &[(":authority", "elsewhere"), ("x-canary-variant", "canary")],
            OK_RESPONSE,
        );
        assert_eq!(unmatched.on_request_headers, [HEADERS.to_owned(), remove]);
        assert!(unmatched.request_values("x-canary-variant").is_empty());
    });
}

/// A lane kept on a route that trusts incoming decisions stays in the header as it came: the
/// header map read is the request's one host call, once its counter is defined.
#[test]
fn a_kept_lane_is_only_read() {
    on_big_stack(|| {
        const SEAL: &str = "Host-calls_seal-0123456789";
        let config = config(&format!(r#""seal": "{SEAL}","#)).replacen(
            r#""name": "web","#,
            r#""name": "web", "trustIncoming": true,"#,
            1,
        );
        let (mut filter, _) = Filter::start(&config);
        let lane = format!("stable.{SEAL}");
        let mut headers = request("alice");
        headers.push(("x-canary-variant", lane.as_str()));
        let first = filter.stream(&headers, OK_RESPONSE);
        assert_eq!(
            first.on_request_headers,
            [
                HEADERS.to_owned(),
                format!("define_metric(counter, {})", counter("stable", "lane")),
            ]
        );
        let again = filter.stream(&headers, OK_RESPONSE);
        assert_eq!(again.on_request_headers, [HEADERS]);
        assert!(again.on_response_headers.is_empty());
        assert_eq!(again.request_values("x-canary-variant"), [lane.as_str()]);
    });
}

/// With `metrics.responses` the request also reads the clock, and the response reads
/// `:status` and the clock and records `upstream_time`; the response counter is counted in
/// the VM like the decision counter.
#[test]
fn response_metrics_cost_four_host_calls_more() {
    on_big_stack(|| {
        let config = config(r#""metrics": { "responses": true },"#);
        let (mut filter, _) = Filter::start(&config);
        let variant = variant_of(&config, "alice");
        let base = format!("canary.route.web.variant.{variant}");
        let first = filter.stream(&request("alice"), OK_RESPONSE);
        assert_eq!(
            first.on_response_headers,
            [
                "get_header_map_value(response_headers, :status)".to_owned(),
                format!("define_metric(counter, {base}.response.2xx)"),
                "get_current_time_nanoseconds()".to_owned(),
                format!("define_metric(histogram, {base}.upstream_time)"),
                format!("record_metric({base}.upstream_time, 7)"),
            ]
        );
        let s = filter.stream(&request("alice"), OK_RESPONSE);
        assert_eq!(
            s.on_request_headers,
            [
                HEADERS.to_owned(),
                decided(&variant),
                "get_current_time_nanoseconds()".to_owned(),
            ]
        );
        assert_eq!(
            s.on_response_headers,
            [
                "get_header_map_value(response_headers, :status)".to_owned(),
                "get_current_time_nanoseconds()".to_owned(),
                format!("record_metric({base}.upstream_time, 7)"),
            ]
        );
        assert!(s.on_done.is_empty());
        assert_eq!(
            filter.tick(),
            [
                format!("increment_metric({}, 2)", counter(&variant, "hash")),
                format!("increment_metric({base}.response.2xx, 2)"),
            ]
        );
    });
}

/// The tick hands Envoy each changed counter once, with what it gained since the last tick,
/// and makes no call when nothing changed.
#[test]
fn the_tick_flushes_each_changed_counter_once() {
    on_big_stack(|| {
        let config = config("");
        let (mut filter, _) = Filter::start(&config);
        assert!(filter.tick().is_empty(), "nothing counted yet");

        let users: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
        let mut hashed = [0_i64; 2];
        for user in &users {
            let variant = variant_of(&config, user);
            hashed[usize::from(variant == "canary")] += 1;
            filter.stream(&request(user), OK_RESPONSE);
        }
        for _ in 0..3 {
            let mut targeted = request("alice");
            targeted.push(("x-canary", "always"));
            filter.stream(&targeted, OK_RESPONSE);
        }
        assert!(
            hashed.iter().all(|&n| n > 0),
            "both variants drawn: {hashed:?}"
        );
        assert_eq!(
            filter.host().counter(&counter("stable", "hash")),
            Some(0),
            "not yet flushed"
        );

        // In the order the counters were defined, which is the order of Envoy's ids.
        let first = variant_of(&config, "user-0");
        let other = if first == "stable" {
            "canary"
        } else {
            "stable"
        };
        let count = |v: &str| hashed[usize::from(v == "canary")];
        let want = [
            (counter(&first, "hash"), count(&first)),
            (counter(other, "hash"), count(other)),
            (counter("canary", "rule"), 3),
        ];
        let expected: Vec<String> = want
            .iter()
            .map(|(name, n)| format!("increment_metric({name}, {n})"))
            .collect();
        assert_eq!(filter.tick(), expected);
        for (name, n) in &want {
            assert_eq!(filter.host().counter(name), Some(*n), "{name}");
        }
        assert!(filter.tick().is_empty(), "nothing changed since");

        filter.stream(&request("user-0"), OK_RESPONSE);
        assert_eq!(
            filter.tick(),
            [format!("increment_metric({}, 1)", want[0].0)]
        );
    });
}

/// Counts made under one configuration reach Envoy when the next is configured, before any
/// tick.
#[test]
fn a_new_configuration_flushes_the_counts_first() {
    on_big_stack(|| {
        let config = config("");
        let (mut filter, _) = Filter::start(&config);
        let variant = variant_of(&config, "alice");
        filter.stream(&request("alice"), OK_RESPONSE);
        let size = config.len() as i32;
        assert_eq!(
            filter.call::<(i32, i32), i32>("proxy_on_configure", (ROOT, size)),
            1
        );
        let calls = filter.take_calls();
        assert_eq!(
            calls.first(),
            Some(&format!(
                "increment_metric({}, 1)",
                counter(&variant, "hash")
            )),
            "{calls:#?}"
        );
        assert_eq!(filter.host().counter(&counter(&variant, "hash")), Some(1));
    });
}

/// A pin rule's response adds the pin cookie, its only host call; a request carrying the pin is
/// then decided by it with the calls of any decision, and nothing on the response.
#[test]
fn a_pin_costs_one_host_call_on_the_response_that_sets_it() {
    on_big_stack(|| {
        let config = config("").replace(
            r#""variant": "canary" }"#,
            r#""variant": "canary", "pin": true }"#,
        );
        let (mut filter, _) = Filter::start(&config);
        let mut headers = request("alice");
        headers.push(("x-canary", "always"));
        let pinned = filter.stream(&headers, OK_RESPONSE);
        let pin = "canary_pin_web=canary; Max-Age=86400; Path=/; HttpOnly; SameSite=Lax";
        assert_eq!(
            pinned.on_response_headers,
            [format!(
                "add_header_map_value(response_headers, set-cookie, {pin})"
            )]
        );
        let mut later = request("alice");
        later.push(("cookie", "canary_pin_web=canary"));
        let s = filter.stream(&later, OK_RESPONSE);
        assert_eq!(
            s.on_request_headers,
            [
                HEADERS.to_owned(),
                decided("canary"),
                format!("define_metric(counter, {})", counter("canary", "pin")),
            ]
        );
        assert!(
            s.on_response_headers.is_empty(),
            "{:?}",
            s.on_response_headers
        );
    });
}
