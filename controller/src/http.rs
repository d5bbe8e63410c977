//! A plain-HTTP GET (Envoy admin, Prometheus), run to completion on its own small runtime:
//! its callers (`status`, the rollout loop) are synchronous.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot start the HTTP client runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot read {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

/// The body of a successful GET of `url` (`http://` only).
pub fn get(url: &str) -> Result<Bytes, HttpError> {
    let uri: hyper::Uri =
        url.parse()
            .map_err(|e: hyper::http::uri::InvalidUri| HttpError::Url {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
    if uri.scheme_str() != Some("http") {
        return Err(HttpError::Url {
            url: url.to_owned(),
            reason: "only plain http:// is supported".to_owned(),
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(HttpError::Runtime)?;
    runtime.block_on(fetch(url, uri))
}

async fn fetch(url: &str, uri: hyper::Uri) -> Result<Bytes, HttpError> {
    let fetch_error = |reason: String| HttpError::Fetch {
        url: url.to_owned(),
        reason,
    };
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = tokio::time::timeout(TIMEOUT, client.get(uri))
        .await
        .map_err(|_| fetch_error(format!("no answer within {TIMEOUT:?}")))?
        .map_err(|e| fetch_error(e.to_string()))?;
    let status = response.status();
    let body = tokio::time::timeout(TIMEOUT, response.into_body().collect())
        .await
        .map_err(|_| fetch_error(format!("no complete answer within {TIMEOUT:?}")))?
        .map_err(|e| fetch_error(e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(HttpError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).chars().take(300).collect(),
        });
    }
    Ok(body)
}

/// `text` percent-encoded for a URL query component: everything but `A-Z a-z 0-9 - . _ ~`.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_query_components() {
        assert_eq!(encode("a-b.c_d~"), "a-b.c_d~");
        assert_eq!(
            encode(r#"sum(x{a="b"}[5s])"#),
            "sum%28x%7Ba%3D%22b%22%7D%5B5s%5D%29"
        );
        assert_eq!(encode("^a\\.b é"), "%5Ea%5C.b%20%C3%A9");
    }

    #[test]
    fn refuses_what_is_not_plain_http() {
        assert!(matches!(
            get("https://127.0.0.1:1/"),
            Err(HttpError::Url { .. })
        ));
        assert!(matches!(get("not a url"), Err(HttpError::Url { .. })));
    }
}
