//! A stand-in Kubernetes API server for the Istio resources that carry the plugin configuration
//! (WasmPlugin, TrafficExtension, EnvoyFilter), and Envoy Gateway's EnvoyExtensionPolicy,
//! keeping the semantics `canaryctl` relies on:
//!
//! - `GET`, `PATCH` (`application/merge-patch+json`; other patch types get 415 as a custom
//!   resource does for strategic merge, which this stand-in extends to JSON patch and apply),
//!   `PUT` and `POST` on `/apis/GROUP/VERSION/namespaces/NS/PLURAL[/NAME]`, for the group and
//!   served version of each CRD (`extensions.istio.io/v1alpha1`, `networking.istio.io/v1alpha3`,
//!   `gateway.envoyproxy.io/v1alpha1`);
//! - `metadata.resourceVersion` bumped on every write; a write carrying a stale one gets
//!   409 Conflict, a `PUT` without one 422, a missing object 404, each with a `metav1.Status`;
//! - every written object pruned and validated against the CRD's `openAPIV3Schema`
//!   (422 Invalid listing the causes); `generation` bumped when `spec` changes;
//! - once a test configures tokens or RBAC, bearer tokens and RBAC checked before anything
//!   else, as [`rbac`] describes (401, 403), the kubeconfig's token staying a cluster admin's;
//!   until then, every request is served;
//! - test hooks: a concurrent writer that changes the object just before the next writes,
//!   faults (answers such as 429 with `Retry-After` or 503 for the next requests, an outage
//!   for a while, connections closed without an answer), and a log of the requests served.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::rbac::{self, Rbac, User};
use super::schema;

/// A change another client makes to the object, just before one of ours is served.
pub type ConcurrentWrite = Box<dyn FnOnce(&mut Value) + Send>;

/// One request as served: method, path and query, content type, body, response status; a
/// connection closed unanswered by [`KubeApi::drop_connections`] is logged with status 0 and
/// all else empty.
#[derive(Debug, Clone)]
pub struct Served {
    pub method: String,
    pub uri: String,
    pub content_type: String,
    pub body: Value,
    pub status: u16,
}

struct Crd {
    group: String,
    version: String,
    kind: String,
    schema: Value,
}

impl Crd {
    fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

#[derive(Default)]
struct Store {
    crds: BTreeMap<String, Crd>,
    /// (plural, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
    last_resource_version: u64,
    concurrent_writes: VecDeque<ConcurrentWrite>,
    /// Answers given instead of serving the next requests.
    faults: VecDeque<Fault>,
    /// Answers given instead of serving the next writes (not `GET`s).
    write_faults: VecDeque<Fault>,
    /// Until then, every request is answered 503.
    outage_until: Option<Instant>,
    /// How many of the next connections are closed as soon as they are accepted.
    connections_to_drop: usize,
    served: Vec<Served>,
    /// Authentication and authorization, once a test configures them.
    rbac: Option<Rbac>,
}

/// An answer the stand-in gives instead of serving a request, as an overloaded or restarting
/// API server (or the load balancer in front of it) does.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub code: u16,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
}

impl Fault {
    pub fn status(code: u16) -> Self {
        Fault {
            code,
            retry_after: None,
        }
    }

    pub fn too_many_requests(retry_after: u64) -> Self {
        Fault {
            code: 429,
            retry_after: Some(retry_after),
        }
    }

    /// The answer, with the `Status` body and headers the real server gives.
    fn answer(self) -> Response {
        let code = StatusCode::from_u16(self.code).expect("a status code");
        let (reason, message) = match self.code {
            429 => (
                "TooManyRequests",
                "Too many requests, please try again later.",
            ),
            500 => ("InternalError", "Internal error occurred: stand-in fault"),
            503 => (
                "ServiceUnavailable",
                "The server is currently unable to handle the request",
            ),
            504 => (
                "Timeout",
                "The server was unable to return a response in the time allotted",
            ),
            _ => ("Unknown", "stand-in fault"),
        };
        let details = match self.retry_after {
            Some(seconds) => json!({ "retryAfterSeconds": seconds }),
            None => json!({}),
        };
        let (code, body) = status(code, reason, message, details);
        let mut response = (code, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                "retry-after",
                seconds.to_string().parse().expect("a header value"),
            );
        }
        response
    }
}

type Shared = Arc<Mutex<Store>>;

pub struct KubeApi {
    addr: SocketAddr,
    store: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KubeApi {
    /// Serves the WasmPlugin, TrafficExtension and EnvoyFilter CRDs from
    /// `tests/fixtures/istio-crds/`, and the EnvoyExtensionPolicy CRD from
    /// `tests/fixtures/envoy-gateway-crds/`.
    pub fn start() -> Self {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut files = Self::istio_crds(&fixtures.join("istio-crds"));
        files.push(fixtures.join("envoy-gateway-crds/envoyextensionpolicy.crd.yaml"));
        Self::start_with_crd_files(&files)
    }

    /// Serves the WasmPlugin, TrafficExtension and EnvoyFilter CRDs of the files in `crds`,
    /// for the tests of another crate that include this file.
    pub fn start_with_crds(crds: &Path) -> Self {
        Self::start_with_crd_files(&Self::istio_crds(crds))
    }

    fn istio_crds(dir: &Path) -> Vec<PathBuf> {
        [
            "wasmplugin.crd.yaml",
            "trafficextension.crd.yaml",
            "envoyfilter.crd.yaml",
        ]
        .into_iter()
        .map(|file| dir.join(file))
        .collect()
    }

    /// Serves the CRDs of these files.
    pub fn start_with_crd_files(files: &[PathBuf]) -> Self {
        let mut store = Store::default();
        for path in files {
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let crd: Value = serde_yaml::from_str(&text).expect("CRD YAML");
            let plural = crd["spec"]["names"]["plural"].as_str().expect("plural");
            let version = crd["spec"]["versions"]
                .as_array()
                .and_then(|v| v.iter().find(|v| v["storage"] == json!(true)))
                .expect("a storage version in the CRD");
            store.crds.insert(
                plural.to_owned(),
                Crd {
                    group: crd["spec"]["group"].as_str().expect("group").to_owned(),
                    version: version["name"].as_str().expect("version").to_owned(),
                    kind: crd["spec"]["names"]["kind"]
                        .as_str()
                        .expect("kind")
                        .to_owned(),
                    schema: version["schema"]["openAPIV3Schema"].clone(),
                },
            );
        }
        let store = Arc::new(Mutex::new(store));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route(
                "/apis/{group}/{version}/namespaces/{ns}/{plural}",
                any(collection),
            )
            .route(
                "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}",
                any(item),
            )
            .fallback(|| async {
                let (code, body) = not_served();
                (code, Json(body))
            })
            .with_state(store.clone());
        let dropping = store.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = Dropping {
                    inner: tokio::net::TcpListener::from_std(listener).expect("listener"),
                    store: dropping,
                };
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        KubeApi {
            addr,
            store,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig file in `dir` whose current context is this server, as a cluster admin.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        self.kubeconfig_at(&dir.join("kubeconfig"), rbac::ADMIN_TOKEN)
    }

    /// A kubeconfig file at `path` whose current context is this server, with `token`.
    pub fn kubeconfig_at(&self, path: &Path, token: &str) -> PathBuf {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: {}\n\
             users:\n- name: tester\n  user:\n    token: {token}\n\
             contexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    user: tester\n    namespace: default\n\
             current-context: stand-in\n",
            self.url()
        );
        std::fs::write(path, text).expect("write kubeconfig");
        path.to_owned()
    }

    /// Requests bearing `token` are made by `user` (e.g.
    /// `system:serviceaccount:canary-system:canaryctl`), with the groups [`User::named`] gives
    /// it. From then on every request is authenticated and authorized.
    pub fn token(&self, token: &str, user: &str) {
        self.lock()
            .rbac
            .get_or_insert_with(Rbac::default)
            .token(token, User::named(user));
    }

    /// Applies the Roles, ClusterRoles, RoleBindings and ClusterRoleBindings of a YAML stream
    /// (panics on any other document). From then on every request is authenticated and
    /// authorized.
    pub fn apply_rbac(&self, yaml: &str) {
        let mut store = self.lock();
        if let Err(error) = store
            .rbac
            .get_or_insert_with(Rbac::default)
            .apply_yaml(yaml)
        {
            panic!("the RBAC objects do not apply: {error}");
        }
    }

    /// Creates an object as `POST` would; panics if the server refuses it.
    pub fn create(&self, object: Value) -> Value {
        let plural = plural_of(&object);
        let ns = object["metadata"]["namespace"]
            .as_str()
            .expect("namespace")
            .to_owned();
        let mut store = self.lock();
        let (code, body) = store.create(&plural, &ns, object);
        assert_eq!(code, StatusCode::CREATED, "create refused: {body}");
        body
    }

    /// Creates an object as `POST` would, and returns the status code and body the server
    /// answers with.
    pub fn try_create(&self, object: Value) -> (u16, Value) {
        let plural = plural_of(&object);
        let ns = object["metadata"]["namespace"]
            .as_str()
            .expect("namespace")
            .to_owned();
        let (code, body) = self.lock().create(&plural, &ns, object);
        (code.as_u16(), body)
    }

    /// Stores an object without validating it against the CRD (its schema or its CEL rules),
    /// as if it had been created before a rule it breaks was added; it gets a uid, generation 1
    /// and a resourceVersion as `create` gives. Panics if the object already exists.
    pub fn insert_unchecked(&self, mut object: Value) -> Value {
        let plural = plural_of(&object);
        let ns = object["metadata"]["namespace"]
            .as_str()
            .expect("namespace")
            .to_owned();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let mut store = self.lock();
        let key = (plural, ns, name);
        assert!(!store.objects.contains_key(&key), "{key:?} already exists");
        store.last_resource_version += 1;
        let version = store.last_resource_version;
        let metadata = &mut object["metadata"];
        metadata["uid"] = json!(format!("stand-in-{version}"));
        metadata["generation"] = json!(1);
        metadata["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        metadata["resourceVersion"] = json!(version.to_string());
        store.objects.insert(key, object.clone());
        object
    }

    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(plural.to_owned(), namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Before each of the next writes, another client changes the object first (so the
    /// write's resourceVersion is stale and it gets 409).
    pub fn concurrent_write(&self, change: ConcurrentWrite) {
        self.lock().concurrent_writes.push_back(change);
    }

    /// `count` concurrent writers that each touch an annotation.
    pub fn force_conflicts(&self, count: usize) {
        for i in 0..count {
            self.concurrent_write(Box::new(move |object| {
                object["metadata"]["annotations"]["stand-in/concurrent-write"] =
                    json!(i.to_string());
            }));
        }
    }

    /// The next requests are answered with these faults, one each, before anything else.
    pub fn fail_next(&self, faults: &[Fault]) {
        self.lock().faults.extend(faults.iter().copied());
    }

    /// For the next `duration`, every request is answered 503 Service Unavailable.
    pub fn outage(&self, duration: Duration) {
        self.lock().outage_until = Some(Instant::now() + duration);
    }

    /// The next writes (`PATCH`, `PUT`, `POST`) are answered with these faults, one each.
    pub fn fail_next_writes(&self, faults: &[Fault]) {
        self.lock().write_faults.extend(faults.iter().copied());
    }

    /// Ends an outage now.
    pub fn end_outage(&self) {
        self.lock().outage_until = None;
    }

    /// The next `count` connections are closed as soon as they are accepted, without an answer.
    pub fn drop_connections(&self, count: usize) {
        self.lock().connections_to_drop += count;
    }

    /// The faults queued by [`fail_next`](Self::fail_next) not yet given.
    pub fn faults_left(&self) -> usize {
        let store = self.lock();
        store.faults.len() + store.write_faults.len()
    }

    pub fn served(&self) -> Vec<Served> {
        self.lock().served.clone()
    }

    /// The requests served with this method.
    pub fn served_with(&self, method: &str) -> Vec<Served> {
        self.served()
            .into_iter()
            .filter(|s| s.method == method)
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A listener that closes the connections [`KubeApi::drop_connections`] asks for as soon as
/// it accepts them.
struct Dropping {
    inner: tokio::net::TcpListener,
    store: Shared,
}

impl axum::serve::Listener for Dropping {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else {
                continue;
            };
            let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
            if store.connections_to_drop == 0 {
                return (stream, addr);
            }
            store.connections_to_drop -= 1;
            store.served.push(Served {
                method: String::new(),
                uri: String::new(),
                content_type: String::new(),
                body: Value::Null,
                status: 0,
            });
            drop(stream);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

fn plural_of(object: &Value) -> String {
    match object["kind"].as_str() {
        Some("WasmPlugin") => "wasmplugins".to_owned(),
        Some("TrafficExtension") => "trafficextensions".to_owned(),
        Some("EnvoyFilter") => "envoyfilters".to_owned(),
        Some("EnvoyExtensionPolicy") => "envoyextensionpolicies".to_owned(),
        other => panic!("the stand-in serves no kind {other:?}"),
    }
}

async fn collection(
    State(store): State<Shared>,
    UrlPath((group, version, ns, plural)): UrlPath<(String, String, String, String)>,
    method: Method,
    headers: HeaderMap,
    uri: axum::http::Uri,
    request: Bytes,
) -> Response {
    let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
    let path = rbac::Path {
        group: &group,
        resource: &plural,
        namespace: &ns,
        name: None,
    };
    if let Some(refused) = store.refuse(&method, &uri, &headers, &request, path) {
        return refused;
    }
    let (code, body) = if !store.serves(&group, &version, &plural) {
        not_served()
    } else if method != Method::POST {
        method_not_allowed(&method)
    } else {
        match serde_json::from_slice::<Value>(&request) {
            Ok(object) => store.create(&plural, &ns, object),
            Err(e) => bad_request(&e.to_string()),
        }
    };
    store.log(&method, &uri, &headers, &request, code);
    (code, Json(body)).into_response()
}

async fn item(
    State(store): State<Shared>,
    UrlPath((group, version, ns, plural, name)): UrlPath<(String, String, String, String, String)>,
    method: Method,
    headers: HeaderMap,
    uri: axum::http::Uri,
    request: Bytes,
) -> Response {
    let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
    let path = rbac::Path {
        group: &group,
        resource: &plural,
        namespace: &ns,
        name: Some(&name),
    };
    if let Some(refused) = store.refuse(&method, &uri, &headers, &request, path) {
        return refused;
    }
    let content_type = content_type(&headers);
    let (code, body) = if !store.serves(&group, &version, &plural) {
        not_served()
    } else {
        let key = (plural.clone(), ns.clone(), name.clone());
        match method {
            Method::GET => match store.objects.get(&key) {
                Some(object) => (StatusCode::OK, object.clone()),
                None => store.not_found(&plural, &name),
            },
            Method::PATCH => {
                if content_type != "application/merge-patch+json" {
                    unsupported_media_type(&content_type)
                } else {
                    match serde_json::from_slice::<Value>(&request) {
                        Ok(patch) => store.patch(key, patch),
                        Err(e) => bad_request(&e.to_string()),
                    }
                }
            }
            Method::PUT => match serde_json::from_slice::<Value>(&request) {
                Ok(object) => store.replace(key, object),
                Err(e) => bad_request(&e.to_string()),
            },
            _ => method_not_allowed(&method),
        }
    };
    store.log(&method, &uri, &headers, &request, code);
    (code, Json(body)).into_response()
}

impl Store {
    /// The answer to a request refused before it is served: a fault due now, else a missing
    /// or unknown token, or a verb RBAC does not allow. Logged as served.
    fn refuse(
        &mut self,
        method: &Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        request: &[u8],
        path: rbac::Path<'_>,
    ) -> Option<Response> {
        let refused = self.fault(method).or_else(|| {
            rbac::refusal(self.rbac.as_ref(), method, uri, headers, path)
                .map(|(code, body)| (code, Json(body)).into_response())
        })?;
        self.log(method, uri, headers, request, refused.status());
        Some(refused)
    }

    /// The fault to answer this request with, if one is due.
    fn fault(&mut self, method: &Method) -> Option<Response> {
        if let Some(until) = self.outage_until {
            if Instant::now() < until {
                return Some(Fault::status(503).answer());
            }
            self.outage_until = None;
        }
        let fault = match self.faults.pop_front() {
            Some(fault) => Some(fault),
            None if method != Method::GET => self.write_faults.pop_front(),
            None => None,
        };
        fault.map(Fault::answer)
    }

    fn serves(&self, group: &str, version: &str, plural: &str) -> bool {
        self.crds
            .get(plural)
            .is_some_and(|crd| crd.group == group && crd.version == version)
    }

    fn group(&self, plural: &str) -> &str {
        self.crds.get(plural).map_or("", |c| c.group.as_str())
    }

    fn log(
        &mut self,
        method: &Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        request: &[u8],
        code: StatusCode,
    ) {
        self.served.push(Served {
            method: method.to_string(),
            uri: uri.to_string(),
            content_type: content_type(headers),
            body: serde_json::from_slice(request).unwrap_or(Value::Null),
            status: code.as_u16(),
        });
    }

    fn create(&mut self, plural: &str, ns: &str, mut object: Value) -> (StatusCode, Value) {
        let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
            return invalid(
                self.kind(plural),
                self.group(plural),
                "",
                vec![(
                    "metadata.name".into(),
                    "Required value: name is required".into(),
                )],
            );
        };
        let key = (plural.to_owned(), ns.to_owned(), name.clone());
        if self.objects.contains_key(&key) {
            let group = self.group(plural);
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                &format!("{plural}.{group} \"{name}\" already exists"),
                json!({"name": name, "group": group, "kind": plural}),
            );
        }
        if object["metadata"]
            .get("resourceVersion")
            .is_some_and(|rv| !rv.is_null())
        {
            return invalid(
                self.kind(plural),
                self.group(plural),
                &name,
                vec![(
                    "metadata.resourceVersion".into(),
                    "Invalid value: must be unspecified for create".into(),
                )],
            );
        }
        object["metadata"]["namespace"] = json!(ns);
        object["metadata"]["uid"] = json!(format!("stand-in-{}", self.last_resource_version + 1));
        object["metadata"]["generation"] = json!(1);
        object["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        self.store(key, object, StatusCode::CREATED)
    }

    fn patch(&mut self, key: (String, String, String), patch: Value) -> (StatusCode, Value) {
        let Some(current) = self.current(&key) else {
            return self.not_found(&key.0, &key.2);
        };
        let mut object = current.clone();
        merge_patch(&mut object, &patch);
        self.write(key, &current, object)
    }

    fn replace(&mut self, key: (String, String, String), object: Value) -> (StatusCode, Value) {
        let Some(current) = self.current(&key) else {
            return self.not_found(&key.0, &key.2);
        };
        if object["metadata"]
            .get("resourceVersion")
            .is_none_or(Value::is_null)
        {
            return invalid(
                self.kind(&key.0),
                self.group(&key.0),
                &key.2,
                vec![(
                    "metadata.resourceVersion".into(),
                    "Invalid value: 0x0: must be specified for an update".into(),
                )],
            );
        }
        self.write(key, &current, object)
    }

    /// The object after any concurrent write queued for this moment.
    fn current(&mut self, key: &(String, String, String)) -> Option<Value> {
        let mut object = self.objects.get(key)?.clone();
        if let Some(change) = self.concurrent_writes.pop_front() {
            change(&mut object);
            let (code, body) = self.store(key.clone(), object, StatusCode::OK);
            assert_eq!(
                code,
                StatusCode::OK,
                "the concurrent write was refused: {body}"
            );
            object = body;
        }
        Some(object)
    }

    /// Checks the new object's resourceVersion, identity and schema, then stores it.
    fn write(
        &mut self,
        key: (String, String, String),
        current: &Value,
        mut object: Value,
    ) -> (StatusCode, Value) {
        let (plural, _, name) = &key;
        let sent = &object["metadata"]["resourceVersion"];
        if !sent.is_null() && sent != &current["metadata"]["resourceVersion"] {
            let group = self.group(plural);
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                &format!("Operation cannot be fulfilled on {plural}.{group} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
                json!({"name": name, "group": group, "kind": plural}),
            );
        }
        if object["metadata"]["name"] != current["metadata"]["name"]
            || object["metadata"]["namespace"]
                .as_str()
                .is_some_and(|ns| ns != key.1)
        {
            return bad_request("the name or namespace of the object does not match the request");
        }
        for field in ["uid", "creationTimestamp", "generation", "namespace"] {
            object["metadata"][field] = current["metadata"][field].clone();
        }
        if object.get("spec") != current.get("spec") {
            let generation = current["metadata"]["generation"].as_u64().unwrap_or(0);
            object["metadata"]["generation"] = json!(generation + 1);
        }
        self.store(key, object, StatusCode::OK)
    }

    /// Prunes and validates `object`, gives it a new resourceVersion and keeps it.
    fn store(
        &mut self,
        key: (String, String, String),
        mut object: Value,
        code: StatusCode,
    ) -> (StatusCode, Value) {
        let crd = &self.crds[&key.0];
        let kind = crd.kind.clone();
        let group = crd.group.clone();
        if object["apiVersion"] != json!(crd.api_version()) || object["kind"] != json!(kind) {
            return bad_request("apiVersion or kind does not match the request");
        }
        let causes = schema::validate(&crd.schema, &mut object);
        if !causes.is_empty() {
            return invalid(&kind, &group, &key.2, causes);
        }
        self.last_resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.last_resource_version.to_string());
        self.objects.insert(key, object.clone());
        (code, object)
    }

    fn kind(&self, plural: &str) -> &str {
        self.crds.get(plural).map_or("", |c| c.kind.as_str())
    }

    fn not_found(&self, plural: &str, name: &str) -> (StatusCode, Value) {
        let group = self.group(plural);
        status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{plural}.{group} \"{name}\" not found"),
            json!({"name": name, "group": group, "kind": plural}),
        )
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(fields) = target {
        for (key, value) in patch {
            if value.is_null() {
                fields.remove(key);
            } else {
                merge_patch(fields.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .unwrap_or_default()
}

fn status(code: StatusCode, reason: &str, message: &str, details: Value) -> (StatusCode, Value) {
    (
        code,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": details,
            "code": code.as_u16(),
        }),
    )
}

fn invalid(
    kind: &str,
    group: &str,
    name: &str,
    causes: Vec<(String, String)>,
) -> (StatusCode, Value) {
    let summary: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
    let causes: Vec<Value> = causes
        .iter()
        .map(|(field, message)| json!({"reason": "FieldValueInvalid", "message": message, "field": field}))
        .collect();
    status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        &format!(
            "{kind}.{group} \"{name}\" is invalid: {}",
            summary.join(", ")
        ),
        json!({"name": name, "group": group, "kind": kind, "causes": causes}),
    )
}

fn not_served() -> (StatusCode, Value) {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
        json!({}),
    )
}

fn bad_request(message: &str) -> (StatusCode, Value) {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, json!({}))
}

fn method_not_allowed(method: &Method) -> (StatusCode, Value) {
    status(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        &format!("the server does not allow this method on the requested resource: {method}"),
        json!({}),
    )
}

fn unsupported_media_type(content_type: &str) -> (StatusCode, Value) {
    status(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        &format!("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json (got {content_type:?})"),
        json!({}),
    )
}
