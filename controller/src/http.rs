//! GETs to the HTTP APIs `canaryctl` reads: Prometheus (or what stands in front of it: Thanos,
//! a managed Prometheus, kube-rbac-proxy) and Envoy's admin endpoint. Its callers (`status`,
//! the rollout loop) are synchronous, so the client is reqwest's blocking one.
//!
//! What a client does is fixed by [`HttpOptions`]:
//!
//! - `http://` or `https://`. HTTPS trusts the system's roots, or with a CA bundle only the
//!   bundle's certificates: a server of a private CA is not trusted for anything else.
//! - A bearer token or basic-auth credentials, each read from a file at every request, so a
//!   rotated token (a projected service-account token) is picked up. Credentials in the URL
//!   (`https://user:password@host`) are refused: URLs are logged and reported.
//! - A timeout for connecting and one for the whole request, answer included.
//! - Redirects are not followed: a redirect is an error naming where it points, so credentials
//!   are never sent to a host they were not given for.
//! - Proxy environment variables (`HTTPS_PROXY`, ...) are not used: a token for Prometheus is
//!   not given to a proxy, and an Envoy admin endpoint on localhost is reached directly.
//!
//! Errors name the URL and, for an answer other than 2xx, its status and the start of its
//! body; never the credentials.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::body::Bytes;
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::LOCATION;
use reqwest::Url;

/// How long connecting, and then the whole request, may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an answer's body an error about it shows.
const BODY_EXCERPT: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    #[error("cannot read the {what} file {}: {reason}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot read {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} answered {status}, a redirect to {location:?}, which is not followed: give that URL instead")]
    Redirect {
        url: String,
        status: u16,
        location: String,
    },
}

/// How to reach an HTTP API: the files are paths on this machine, read when used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// PEM certificates to trust for `https://`, instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// A file holding a bearer token, sent as `Authorization: Bearer`.
    pub token_file: Option<PathBuf>,
    /// A file holding `user:password`, sent as HTTP basic auth.
    pub basic_auth_file: Option<PathBuf>,
    /// For connecting, and again for the whole request.
    pub timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            ca_file: None,
            token_file: None,
            basic_auth_file: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Credentials, read from their file at each request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Auth {
    None,
    Bearer(PathBuf),
    Basic(PathBuf),
}

/// A client for one API. Cheap to clone: clones share connections.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: Client,
    auth: Auth,
    timeout: Duration,
}

impl HttpClient {
    /// A client as `options` say. The credentials file is read once here, so a missing or
    /// malformed one is reported before the first request.
    pub fn new(options: &HttpOptions) -> Result<Self, HttpError> {
        let auth = match (&options.token_file, &options.basic_auth_file) {
            (None, None) => Auth::None,
            (Some(path), None) => Auth::Bearer(path.clone()),
            (None, Some(path)) => Auth::Basic(path.clone()),
            (Some(_), Some(_)) => {
                return Err(HttpError::Setup(
                    "give a bearer token or basic-auth credentials, not both".to_owned(),
                ))
            }
        };
        let mut builder = Client::builder()
            .use_rustls_tls()
            .connect_timeout(options.timeout)
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some(path) = &options.ca_file {
            builder = builder.tls_built_in_root_certs(false);
            for certificate in read_ca_bundle(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder
            .build()
            .map_err(|e| HttpError::Setup(error_chain(&e)))?;
        auth.check()?;
        Ok(Self {
            client,
            auth,
            timeout: options.timeout,
        })
    }

    /// The body of a successful (2xx) GET of `url`.
    pub fn get(&self, url: &str) -> Result<Bytes, HttpError> {
        let parsed = parse_url(url)?;
        let shown = parsed.as_str().to_owned();
        let fetch_error = |e: reqwest::Error| HttpError::Fetch {
            url: shown.clone(),
            reason: if e.is_timeout() {
                format!("timed out after {:?}", self.timeout)
            } else {
                error_chain(&e.without_url())
            },
        };
        let response = self
            .with_auth(self.client.get(parsed.clone()))?
            .send()
            .map_err(fetch_error)?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .map(|l| redacted_location(&parsed, &String::from_utf8_lossy(l.as_bytes())))
                .unwrap_or_else(|| "(no Location)".to_owned());
            return Err(HttpError::Redirect {
                url: shown,
                status: status.as_u16(),
                location,
            });
        }
        let body = response.bytes().map_err(fetch_error)?;
        if !status.is_success() {
            return Err(HttpError::Status {
                url: shown,
                status: status.as_u16(),
                body: excerpt(&body),
            });
        }
        Ok(body)
    }

    fn with_auth(&self, request: RequestBuilder) -> Result<RequestBuilder, HttpError> {
        Ok(match &self.auth {
            Auth::None => request,
            Auth::Bearer(path) => request.bearer_auth(read_token(path)?),
            Auth::Basic(path) => {
                let (user, password) = read_basic_auth(path)?;
                request.basic_auth(user, Some(password))
            }
        })
    }
}

impl Auth {
    /// Whether the credentials file can be read and holds what it should.
    fn check(&self) -> Result<(), HttpError> {
        match self {
            Auth::None => Ok(()),
            Auth::Bearer(path) => read_token(path).map(drop),
            Auth::Basic(path) => read_basic_auth(path).map(drop),
        }
    }
}

/// `url`, if it is `http://` or `https://` and carries no credentials.
fn parse_url(url: &str) -> Result<Url, HttpError> {
    let invalid = |reason: &str| HttpError::Url {
        url: redacted(url),
        reason: reason.to_owned(),
    };
    let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("only http:// and https:// are supported"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "credentials in the URL are not accepted: give them in a file",
        ));
    }
    Ok(parsed)
}

/// `url` as it may be shown: without the `user:password@` of its authority, if it has one.
/// Works on text, so that what does not parse as a URL is redacted too.
fn redacted(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (&url[..scheme.len() + 3], rest),
        None => ("", url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}{}{path}", &authority[at + 1..]),
        None => url.to_owned(),
    }
}

/// A redirect's `Location`, resolved against the URL asked for, as it may be shown.
fn redacted_location(base: &Url, location: &str) -> String {
    match base.join(location) {
        Ok(resolved) => redacted(resolved.as_str()),
        Err(_) => redacted(location),
    }
}

/// The start of a body, as text.
fn excerpt(body: &[u8]) -> String {
    let cut = body.len().min(BODY_EXCERPT);
    let mut text = String::from_utf8_lossy(&body[..cut]).trim_end().to_owned();
    if body.len() > cut {
        text.push('…');
    }
    text
}

/// An error and its causes, as `error: cause: cause`. reqwest's own message alone says only
/// "error sending request"; the reason (refused, certificate, ...) is in its causes.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn read_ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, HttpError> {
    let unreadable = |reason: String| HttpError::File {
        what: "CA bundle",
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| unreadable(error_chain(&e)))?;
    if certificates.is_empty() {
        return Err(unreadable("no PEM certificate in it".to_owned()));
    }
    Ok(certificates)
}

/// A credentials file's content, without the line end an editor or `echo` adds.
fn read_secret(what: &'static str, path: &Path) -> Result<String, HttpError> {
    let unreadable = |reason: &str| HttpError::File {
        what,
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(&e.to_string()))?;
    let text = text.trim_end_matches(['\n', '\r']);
    if text.is_empty() {
        return Err(unreadable("it is empty"));
    }
    Ok(text.to_owned())
}

fn read_token(path: &Path) -> Result<String, HttpError> {
    let token = read_secret("bearer token", path)?;
    // Checked here so that the header cannot fail to build with the token in its error.
    if token.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return Err(HttpError::File {
            what: "bearer token",
            path: path.to_owned(),
            reason: "the token holds spaces or characters that are not printable ASCII".to_owned(),
        });
    }
    Ok(token)
}

fn read_basic_auth(path: &Path) -> Result<(String, String), HttpError> {
    let text = read_secret("basic-auth", path)?;
    match text.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok((user.to_owned(), password.to_owned())),
        _ => Err(HttpError::File {
            what: "basic-auth",
            path: path.to_owned(),
            reason: "expected one line user:password".to_owned(),
        }),
    }
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
    fn refuses_what_is_not_http_or_https() {
        let client = HttpClient::new(&HttpOptions::default()).unwrap();
        for url in ["ftp://127.0.0.1:1/", "not a url", "127.0.0.1:9090"] {
            assert!(
                matches!(client.get(url), Err(HttpError::Url { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn refuses_credentials_in_the_url_without_showing_them() {
        let client = HttpClient::new(&HttpOptions::default()).unwrap();
        let error = client
            .get("https://admin:hunter2@127.0.0.1:1/")
            .unwrap_err();
        assert!(matches!(error, HttpError::Url { .. }), "{error}");
        let text = error.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("admin"),
            "{text}"
        );
        assert!(text.contains("in a file"), "{text}");
    }

    #[test]
    fn redacts_urls() {
        assert_eq!(
            redacted("https://u:p@example.com/x?q"),
            "https://example.com/x?q"
        );
        assert_eq!(redacted("http://h:1/a"), "http://h:1/a");
        assert_eq!(redacted("u:p@h:1 x"), "h:1 x");
        assert_eq!(redacted("http://h/a@b"), "http://h/a@b");
        let base = Url::parse("https://prometheus:9090/api/v1/query").unwrap();
        assert_eq!(
            redacted_location(&base, "/graph"),
            "https://prometheus:9090/graph"
        );
        assert_eq!(
            redacted_location(&base, "https://u:p@elsewhere/"),
            "https://elsewhere/"
        );
    }

    #[test]
    fn excerpts_bodies() {
        assert_eq!(excerpt(b"unauthorized\n"), "unauthorized");
        let long = "é".repeat(150);
        let shown = excerpt(long.as_bytes());
        assert!(shown.ends_with('…'));
        assert!(shown.len() <= BODY_EXCERPT + '…'.len_utf8(), "{shown}");
    }

    #[test]
    fn reads_credentials_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, content: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            path
        };
        assert_eq!(read_token(&file("t", "abc.def\n")).unwrap(), "abc.def");
        assert!(read_token(&file("e", "\n")).is_err());
        let spaced = read_token(&file("s", "abc def")).unwrap_err().to_string();
        assert!(!spaced.contains("abc"), "{spaced}");
        assert_eq!(
            read_basic_auth(&file("b", "user:pa:ss\r\n")).unwrap(),
            ("user".to_owned(), "pa:ss".to_owned())
        );
        let bad = read_basic_auth(&file("n", "secret"))
            .unwrap_err()
            .to_string();
        assert!(!bad.contains("secret"), "{bad}");
        assert!(read_token(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_missing_credentials_file_or_two_kinds_of_credentials_are_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let missing = HttpOptions {
            token_file: Some(dir.path().join("token")),
            ..HttpOptions::default()
        };
        assert!(matches!(
            HttpClient::new(&missing),
            Err(HttpError::File { .. })
        ));
        let both = HttpOptions {
            token_file: Some("t".into()),
            basic_auth_file: Some("b".into()),
            ..HttpOptions::default()
        };
        assert!(matches!(HttpClient::new(&both), Err(HttpError::Setup(_))));
    }
}
