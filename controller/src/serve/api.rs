//! The HTTP API, module serving, metrics and probes.
//!
//! Reads need no credentials; `PUT /v1/routes/{route}/weights`, `POST …/promote` and
//! `POST …/abort` need `Authorization: Bearer <token>`, checked before the body is read. Bodies
//! are JSON in and out: a request body is `Content-Type: application/json`, read by axum's
//! [`Json`] extractor into a typed request that refuses unknown fields, and every error, the
//! extractor's too, is `{"errors": [{"path": "weights.canary", "reason": "…"}]}`.
//!
//! A read without the token gets no internal error text (file paths, API-server messages,
//! Envoy's NACK reasons): a generic reason and a request id instead, with the details logged
//! under that id.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::HttpBody as _;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Path, Request, State};
use axum::http::{header, request, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use canary_filter::table::parse_weight;
use canary_filter::Weight;
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::auth::Token;
use super::fleet::Fleet;
use super::metrics::{Format, Metrics};
use super::module::Module;
use super::store::{Snapshot, Store, StoreError};
use crate::targets;
use crate::weights::{self, weight_json, Change, WeightError};

#[derive(Clone)]
pub struct Api {
    pub store: Arc<Store>,
    pub fleet: Arc<Fleet>,
    pub token: Arc<Token>,
    pub module: Option<Arc<Module>>,
    pub metrics: Arc<Metrics>,
    /// False once shutting down.
    pub ready: Arc<AtomicBool>,
}

pub fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/routes", get(routes))
        .route("/v1/routes/{route}/weights", put(set_weights))
        .route("/v1/routes/{route}/promote", post(promote))
        .route("/v1/routes/{route}/abort", post(abort))
        .route("/v1/envoys", get(envoys))
        .route("/v1/module", get(module_info))
        .route("/filter.wasm", get(module_bytes))
        .route("/metrics", get(prometheus))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(api)
}

/// An error response: a status and what is wrong, each at a JSON path.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    errors: Vec<(String, String)>,
}

impl ApiError {
    fn new(status: StatusCode, path: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            errors: vec![(path.into(), reason.into())],
        }
    }

    fn bad(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, path, reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let errors: Vec<Value> = self
            .errors
            .into_iter()
            .map(|(path, reason)| json!({ "path": path, "reason": reason }))
            .collect();
        let mut response = (self.status, Json(json!({ "errors": errors }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// A body axum's [`Json`] extractor refused, as the API answers it: the JSON path of what is
/// wrong where serde knows it, 415 without a JSON content type, 400 for any other bad body.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(error) => match serde_error(&error) {
                Some((path, error)) => {
                    let path = if path == "." { "$".to_owned() } else { path };
                    ApiError::bad(path, without_position(error))
                }
                None => ApiError::bad("$", error.body_text()),
            },
            JsonRejection::JsonSyntaxError(error) => {
                let reason = serde_error(&error)
                    .map_or_else(|| error.body_text(), |(_, error)| error.to_string());
                ApiError::bad("$", format!("invalid JSON: {reason}"))
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "$",
                "the body must be JSON, sent with Content-Type: application/json",
            ),
            other => ApiError::new(other.status(), "$", other.body_text()),
        }
    }
}

/// The serde error behind a [`Json`] rejection, and the path it is at (`.` for the whole body).
fn serde_error<'e>(
    rejection: &'e (dyn std::error::Error + 'static),
) -> Option<(String, &'e serde_json::Error)> {
    std::iter::successors(Some(rejection), |e| e.source()).find_map(|e| {
        if let Some(e) = e.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>() {
            return Some((e.path().to_string(), e.inner()));
        }
        e.downcast_ref::<serde_json::Error>()
            .map(|e| (".".to_owned(), e))
    })
}

/// What serde says is wrong, without the line and column: the path says where.
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    text.strip_suffix(&position).unwrap_or(&text).to_owned()
}

/// A JSON request body: a JSON object read by axum's [`Json`] into `T`, refused as an
/// [`ApiError`].
struct JsonBody<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Json(Object(body)) =
            <Json<Object<T>> as FromRequest<S>>::from_request(request, state).await?;
        Ok(JsonBody(body))
    }
}

/// A JSON request body, or none: a request without one (`Content-Length: 0`) has none.
impl<T: DeserializeOwned, S: Send + Sync> OptionalFromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, ApiError> {
        if request.body().size_hint().exact() == Some(0) {
            return Ok(None);
        }
        <JsonBody<T> as FromRequest<S>>::from_request(request, state)
            .await
            .map(Some)
    }
}

/// `T` read from a JSON object only: serde's derived structs also take an array of their
/// fields' values, which no client of this API means.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Object)
            }
        }

        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// A request that carried the bearer token; extracted before the body, so a client without the
/// token learns nothing about what its body would have done.
struct Authorized;

impl FromRequestParts<Api> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut request::Parts, api: &Api) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if api.token.admits(presented) {
            Ok(Authorized)
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "$",
                "a valid bearer token is required (Authorization: Bearer <token>)",
            ))
        }
    }
}

/// `PUT /v1/routes/{route}/weights`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetWeights {
    /// Variant names to percentages; missing and empty are the same mistake, answered at
    /// `weights`.
    #[serde(default)]
    weights: BTreeMap<String, Percent>,
}

/// A variant's weight as the API takes it: a number of percent, with at most three decimals.
#[derive(Debug)]
struct Percent(Weight);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        let percent = number
            .as_f64()
            .ok_or_else(|| serde::de::Error::custom("must be a number"))?;
        parse_weight(percent)
            .map(Percent)
            .map_err(serde::de::Error::custom)
    }
}

/// `POST /v1/routes/{route}/promote`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Promote {
    /// Missing is answered at `variant`.
    variant: Option<String>,
}

/// `POST /v1/routes/{route}/abort`: nothing to say.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Abort {}

type ApiResult = Result<Response, ApiError>;

/// An id for a read whose error details were withheld, unique within this process's log.
fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "r{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `detail` for a caller with the token; for anyone else, a generic reason and a request id,
/// with `detail` logged under that id.
fn disclose(api: &Api, headers: &HeaderMap, what: &str, detail: String) -> String {
    if api
        .token
        .admits(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
    {
        return detail;
    }
    let request_id = request_id();
    warn!(%request_id, %detail, "{what} withheld from a read without the token");
    format!("{what}; details are in the controller's log under request id {request_id}")
}

async fn routes(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    let snapshot = api.store.current();
    let mut body = json!({
        "target": api.store.target().to_string(),
        "version": snapshot.version,
        "routes": routes_json(&snapshot)?,
    });
    if let Some(error) = api.store.last_error() {
        let error = disclose(
            &api,
            &headers,
            "the target could not be read or applied",
            error,
        );
        body["targetError"] = json!(error);
    }
    Ok(Json(body).into_response())
}

async fn envoys(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    let snapshot = api.store.current();
    let mut envoys = api.fleet.envoys();
    for envoy in &mut envoys {
        if let Some(nack) = &mut envoy.nack {
            let reason = std::mem::take(&mut nack.reason);
            nack.reason = disclose(&api, &headers, "Envoy rejected this version", reason);
        }
    }
    Ok(Json(json!({ "version": snapshot.version, "envoys": envoys })).into_response())
}

async fn set_weights(
    _: Authorized,
    State(api): State<Api>,
    Path(route): Path<String>,
    JsonBody(body): JsonBody<SetWeights>,
) -> ApiResult {
    if body.weights.is_empty() {
        return Err(ApiError::bad(
            "weights",
            "must be an object of variant names to percentages",
        ));
    }
    let assignments = body
        .weights
        .into_iter()
        .map(|(variant, Percent(weight))| (variant, weight))
        .collect();
    apply(&api, &route, Change::Set(assignments), "weights").await
}

async fn promote(
    _: Authorized,
    State(api): State<Api>,
    Path(route): Path<String>,
    JsonBody(body): JsonBody<Promote>,
) -> ApiResult {
    let variant = body
        .variant
        .ok_or_else(|| ApiError::bad("variant", "must be the name of a variant"))?;
    apply(&api, &route, Change::Promote(variant), "variant").await
}

async fn abort(
    _: Authorized,
    State(api): State<Api>,
    Path(route): Path<String>,
    _: Option<JsonBody<Abort>>,
) -> ApiResult {
    apply(&api, &route, Change::Abort, "$").await
}

async fn module_info(State(api): State<Api>) -> ApiResult {
    let module = api.module.as_ref().ok_or_else(no_module)?;
    Ok(Json(json!({
        "url": "/filter.wasm",
        "sha256": module.sha256,
        "size": module.bytes.len(),
    }))
    .into_response())
}

async fn module_bytes(State(api): State<Api>) -> ApiResult {
    let module = api.module.as_ref().ok_or_else(no_module)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/wasm".to_owned()),
            (header::ETAG, format!("\"{}\"", module.sha256)),
        ],
        module.bytes.clone(),
    )
        .into_response())
}

fn no_module() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "$",
        "no module is served: start with --module PATH",
    )
}

async fn prometheus(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    let format = Format::negotiate(&headers);
    let text = api.metrics.render(format).map_err(|e| {
        warn!(error = %e, "cannot encode the metrics");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "$",
            "the metrics could not be encoded",
        )
    })?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], text).into_response())
}

async fn readyz(State(api): State<Api>) -> Response {
    if api.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

/// Applies a change and answers with the route as now live.
async fn apply(api: &Api, route: &str, change: Change, variant_path: &str) -> ApiResult {
    let described = format!("{change:?}");
    let snapshot = api
        .store
        .change(route, change)
        .await
        .map_err(|e| change_error(e, variant_path))?;
    info!(route, change = %described, version = %snapshot.version, "changed through the API");
    let routes = routes_json(&snapshot)?;
    let live = routes
        .into_iter()
        .find(|r| r["name"] == route)
        .unwrap_or(Value::Null);
    Ok(Json(json!({ "version": snapshot.version, "route": live })).into_response())
}

fn routes_json(snapshot: &Snapshot) -> Result<Vec<Value>, ApiError> {
    let routes = weights::read_routes(&snapshot.plugin_config)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "$", e.to_string()))?;
    Ok(routes
        .iter()
        .map(|route| {
            let variants: Vec<Value> = route
                .variants
                .iter()
                .map(|v| json!({ "name": v.name, "weight": weight_json(v.weight) }))
                .collect();
            json!({ "name": route.name, "variants": variants })
        })
        .collect())
}

/// What went wrong with a change, as the client should see it.
fn change_error(error: StoreError, variant_path: &str) -> ApiError {
    let variant_at = |variant: &str| match variant_path {
        "weights" => format!("weights.{variant}"),
        other => other.to_owned(),
    };
    match error {
        StoreError::Target(targets::Error::Edit(edit)) => match edit {
            WeightError::UnknownRoute { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "route", edit.to_string())
            }
            WeightError::UnknownVariant { ref variant, .. } => {
                ApiError::bad(variant_at(variant), edit.to_string())
            }
            WeightError::Shape { path, reason } => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, path, reason)
            }
            other => ApiError::bad(variant_path, other.to_string()),
        },
        StoreError::Target(targets::Error::Invalid(errors)) => ApiError {
            status: StatusCode::BAD_REQUEST,
            errors: errors
                .iter()
                .map(|e| (e.path.clone(), e.reason.clone()))
                .collect(),
        },
        other => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "$", other.to_string()),
    }
}
