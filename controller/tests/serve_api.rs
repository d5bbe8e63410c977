//! The request bodies `canaryctl serve`'s API takes: JSON with `Content-Type: application/json`,
//! typed, with no field but the documented ones. Every refusal is a JSON error naming the path
//! of what is wrong, never axum's plain-text rejection, and changes nothing on the target; a
//! request without the token is refused before its body is read.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use canaryctl::ecds::{self, ModuleSource};
use canaryctl::serve::{Config, GrpcSecurity, Limits, Server, Token};
use canaryctl::targets::Target;
use serde_json::Value;

const TOKEN: &str = "test-token-0123456789";
const JSON: Option<&str> = Some("application/json");

const PLUGIN_CONFIG: &str = r#"{"routes":[{"name":"web","variants":[
    {"name":"stable","weight":90},{"name":"canary","weight":10}]}]}"#;

async fn start(path: &Path) -> Server {
    let document = ecds::document(
        "canary",
        &ModuleSource::Local("canary_filter.wasm".to_owned()),
        PLUGIN_CONFIG,
    );
    std::fs::write(path, serde_json::to_vec(&document).expect("JSON")).expect("write");
    Server::start(Config {
        target: Target::File(path.to_owned()),
        listen: "127.0.0.1:0".parse().expect("address"),
        grpc_listen: "127.0.0.1:0".parse().expect("address"),
        module: None,
        token: Token::new(TOKEN).expect("token"),
        poll: Duration::from_millis(500),
        fleet: Limits::default(),
        grpc: GrpcSecurity::insecure(None),
        api_tls: None,
    })
    .await
    .expect("canaryctl serve starts")
}

/// The answer to one HTTP/1.1 request.
struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

/// Sends `method path` with `body`, the token if `token`, and `content_type` if given.
async fn send(
    addr: SocketAddr,
    method: &'static str,
    path: &'static str,
    token: bool,
    content_type: Option<&'static str>,
    body: &'static str,
) -> Answer {
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: canaryctl\r\nContent-Length: {}\r\n",
            body.len()
        );
        if token {
            head.push_str(&format!("Authorization: Bearer {TOKEN}\r\n"));
        }
        if let Some(content_type) = content_type {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        write!(stream, "{head}Connection: close\r\n\r\n{body}").expect("write");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read");
        let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        let content_type = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-type")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default();
        Answer {
            status,
            content_type,
            body: serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
        }
    })
    .await
    .expect("the request ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_fields_are_json_errors_at_their_path() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let target = dir.path().join("ecds.json");
    let server = start(&target).await;
    let before = std::fs::read(&target).expect("read the target");
    let addr = server.http_addr();
    let (weights, promote, abort) = (
        "/v1/routes/web/weights",
        "/v1/routes/web/promote",
        "/v1/routes/web/abort",
    );

    for (label, method, path, content_type, body, status, error_path, reason) in [
        (
            "not JSON",
            "PUT",
            weights,
            JSON,
            "{weights:",
            400,
            "$",
            "invalid JSON",
        ),
        (
            "trailing text",
            "PUT",
            weights,
            JSON,
            r#"{"weights":{"canary":5}} x"#,
            400,
            "$",
            "invalid JSON",
        ),
        (
            "an array",
            "PUT",
            weights,
            JSON,
            "[1]",
            400,
            "$",
            "a JSON object",
        ),
        (
            "no weights",
            "PUT",
            weights,
            JSON,
            "{}",
            400,
            "weights",
            "variant names",
        ),
        (
            "a typo",
            "PUT",
            weights,
            JSON,
            r#"{"weight":{"canary":5}}"#,
            400,
            "weight",
            "unknown field `weight`, expected `weights`",
        ),
        (
            "an extra field",
            "PUT",
            weights,
            JSON,
            r#"{"weights":{"canary":5},"force":true}"#,
            400,
            "force",
            "unknown field `force`",
        ),
        (
            "weights not an object",
            "PUT",
            weights,
            JSON,
            r#"{"weights":30}"#,
            400,
            "weights",
            "invalid type",
        ),
        (
            "a string weight",
            "PUT",
            weights,
            JSON,
            r#"{"weights":{"canary":"ten"}}"#,
            400,
            "weights.canary",
            "a JSON number",
        ),
        (
            "above 100",
            "PUT",
            weights,
            JSON,
            r#"{"weights":{"canary":150}}"#,
            400,
            "weights.canary",
            "between 0 and 100",
        ),
        (
            "four decimals",
            "PUT",
            weights,
            JSON,
            r#"{"weights":{"canary":1.2345}}"#,
            400,
            "weights.canary",
            "more than 3 decimals",
        ),
        (
            "no content type",
            "PUT",
            weights,
            None,
            r#"{"weights":{"canary":5}}"#,
            415,
            "$",
            "Content-Type: application/json",
        ),
        (
            "a form",
            "PUT",
            weights,
            Some("application/x-www-form-urlencoded"),
            r#"{"weights":{"canary":5}}"#,
            415,
            "$",
            "Content-Type",
        ),
        (
            "no variant",
            "POST",
            promote,
            JSON,
            "{}",
            400,
            "variant",
            "name of a variant",
        ),
        (
            "a number variant",
            "POST",
            promote,
            JSON,
            r#"{"variant":5}"#,
            400,
            "variant",
            "expected a string",
        ),
        (
            "a typo",
            "POST",
            promote,
            JSON,
            r#"{"varaint":"canary"}"#,
            400,
            "varaint",
            "unknown field `varaint`, expected `variant`",
        ),
        (
            "a field",
            "POST",
            abort,
            JSON,
            r#"{"force":true}"#,
            400,
            "force",
            "unknown field `force`",
        ),
    ] {
        let answer = send(addr, method, path, true, content_type, body).await;
        let label = format!("{path}, {label}: {} {}", answer.status, answer.body);
        assert_eq!(answer.status, status, "{label}");
        assert_eq!(answer.content_type, "application/json", "{label}");
        let error = &answer.body["errors"][0];
        assert_eq!(error["path"], error_path, "{label}");
        let text = error["reason"].as_str().unwrap_or_default();
        assert!(text.contains(reason), "{label}: the reason says {reason:?}");
        if !text.starts_with("invalid JSON") {
            assert!(!text.contains("line 1"), "{label}: the path says where");
        }
    }

    // Without the token, the body is not even read.
    let answer = send(addr, "PUT", weights, false, JSON, "{weights:").await;
    assert_eq!(answer.status, 401, "{}", answer.body);

    assert_eq!(
        std::fs::read(&target).expect("read the target"),
        before,
        "nothing changed"
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_formed_bodies_change_the_target() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let target = dir.path().join("ecds.json");
    let server = start(&target).await;
    let addr = server.http_addr();
    let weight = |answer: &Answer| answer.body["route"]["variants"][1]["weight"].clone();

    let answer = send(
        addr,
        "PUT",
        "/v1/routes/web/weights",
        true,
        Some("application/json; charset=utf-8"),
        r#"{"weights":{"canary":12.5}}"#,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(weight(&answer), 12.5, "{}", answer.body);

    let answer = send(
        addr,
        "POST",
        "/v1/routes/web/promote",
        true,
        JSON,
        r#"{"variant":"canary"}"#,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(weight(&answer), 100, "{}", answer.body);

    // An abort takes no body, or an empty object.
    for (content_type, body) in [(None, ""), (JSON, ""), (JSON, "{}")] {
        let answer = send(
            addr,
            "POST",
            "/v1/routes/web/abort",
            true,
            content_type,
            body,
        )
        .await;
        assert_eq!(answer.status, 200, "{body:?}: {}", answer.body);
        assert_eq!(weight(&answer), 0, "{}", answer.body);
    }
    let written: Value =
        serde_json::from_slice(&std::fs::read(&target).expect("read the target")).expect("JSON");
    let plugin_config = written
        .pointer("/resources/0/typed_config/config/configuration/value")
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .unwrap_or_default();
    assert_eq!(
        plugin_config.pointer("/routes/0/variants/1"),
        Some(&serde_json::json!({"name": "canary", "weight": 0})),
        "the target holds the abort: {written}"
    );
    server.shutdown().await.expect("shutdown");
}
