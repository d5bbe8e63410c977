//! The HTTP API, module serving, metrics and probes.
//!
//! Reads need no credentials; `PUT /v1/routes/{route}/weights`, `POST …/promote` and
//! `POST …/abort` need `Authorization: Bearer <token>`. Bodies are JSON in and out; an error
//! is `{"errors": [{"path": "weights.canary", "reason": "…"}]}`.
//!
//! A read without the token gets no internal error text (file paths, API-server messages,
//! Envoy's NACK reasons): a generic reason and a request id instead, with the details logged
//! under that id.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use canary_filter::table::parse_weight;
use serde_json::{json, Map, Value};
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
    State(api): State<Api>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    authorize(&api, &headers)?;
    let body = object_body(&body, &["weights"])?;
    let weights = body
        .get("weights")
        .and_then(Value::as_object)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| {
            ApiError::bad(
                "weights",
                "must be an object of variant names to percentages",
            )
        })?;
    let mut assignments = Vec::with_capacity(weights.len());
    for (variant, percent) in weights {
        let path = format!("weights.{variant}");
        let percent = percent
            .as_f64()
            .ok_or_else(|| ApiError::bad(&path, "must be a number"))?;
        let weight = parse_weight(percent).map_err(|reason| ApiError::bad(&path, reason))?;
        assignments.push((variant.clone(), weight));
    }
    apply(&api, &route, Change::Set(assignments), "weights").await
}

async fn promote(
    State(api): State<Api>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    authorize(&api, &headers)?;
    let body = object_body(&body, &["variant"])?;
    let variant = body
        .get("variant")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad("variant", "must be the name of a variant"))?;
    apply(&api, &route, Change::Promote(variant.to_owned()), "variant").await
}

async fn abort(
    State(api): State<Api>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    authorize(&api, &headers)?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        object_body(&body, &[])?;
    }
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

fn authorize(api: &Api, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if api.token.admits(presented) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "$",
            "a valid bearer token is required (Authorization: Bearer <token>)",
        ))
    }
}

/// The body as a JSON object with no fields but `known`.
fn object_body(body: &[u8], known: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad("$", format!("invalid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::bad("$", "must be a JSON object"));
    };
    if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::bad(unknown.as_str(), "unknown field"));
    }
    Ok(map)
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
