//! Who may use the dashboard, and what a web page may make a browser do to it.
//!
//! - **Hosts.** A request's `Host` must be a loopback name (`localhost`,
//!   `*.localhost`), an IP address, or a name in `COLONY_WEB_HOSTS`.
//!   Anything else is a DNS-rebinding page speaking to the server through
//!   the visitor's browser, and is refused before any handler runs.
//! - **Writes.** Every POST must carry the CSRF token, and a browser's POST
//!   must come from this site: `Origin` (or else `Sec-Fetch-Site`) is checked.
//! - **The token.** With `COLONY_WEB_TOKEN` set (at least 32 characters),
//!   a script sends it as a bearer token; a browser signs in at `/login` and
//!   gets a session cookie: an expiry and an HMAC of it under a key derived
//!   from the token. The cookie never holds the token, expires, is `Secure`
//!   when the site is served over HTTPS, and a new token ends every session.
//!   Failed sign-ins and bearer tokens are rate-limited per client address.
//! - **Headers.** Every answer carries a CSP that the pages satisfy (no
//!   inline script or style), `frame-ancestors 'none'`, `nosniff` and
//!   `no-referrer`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{Web, WebError, pages};

/// The session cookie's name.
pub const COOKIE: &str = "colony_session";
/// The shortest token `serve` accepts.
pub const MIN_TOKEN_LEN: usize = 32;
/// Failed sign-ins (or bearer tokens) a client address may make per window.
const FAILURES_PER_WINDOW: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Client addresses the limiter remembers before it forgets the stale ones.
const REMEMBERED: usize = 10_000;

/// What access needs to know, built once at start.
pub struct Access {
    token: Option<String>,
    session_key: [u8; 32],
    session_ttl: Duration,
    hosts: Vec<String>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Access {
    pub fn new(token: Option<&str>, hosts: &[String], session_ttl: Duration) -> Self {
        let token = token.filter(|t| !t.is_empty()).map(str::to_owned);
        // The session key is the token's: every server sharing the token
        // accepts its cookies, and a new token ends every session.
        let mut mac = Hmac::<Sha256>::new_from_slice(token.as_deref().unwrap_or_default().as_bytes())
            .expect("HMAC takes any key length");
        mac.update(b"colony web session v1");
        let session_key: [u8; 32] = mac.finalize().into_bytes().into();
        let hosts = hosts
            .iter()
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        Self { token, session_key, session_ttl, hosts, failures: Mutex::new(HashMap::new()) }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// May a request name this host? Loopback names, IP addresses (a page
    /// cannot rebind a literal address) and the configured names.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        name == "localhost"
            || name.ends_with(".localhost")
            || name.parse::<IpAddr>().is_ok()
            || self.hosts.contains(&name)
    }

    /// A session cookie's value, valid for the session's length from now.
    pub fn new_session(&self, now: u64) -> String {
        let expires = now.saturating_add(self.session_ttl.as_secs());
        format!("{expires}.{}", hex::encode(self.sign(expires)))
    }

    fn sign(&self, expires: u64) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.session_key).expect("HMAC takes any key length");
        mac.update(expires.to_string().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Is this cookie value a session this server signed that has not expired?
    pub fn session_valid(&self, value: &str, now: u64) -> bool {
        let Some((expires, mac)) = value.split_once('.') else { return false };
        let (Ok(expires), Ok(mac)) = (expires.parse::<u64>(), hex::decode(mac)) else { return false };
        expires > now && mac.len() == 32 && bool::from(mac.ct_eq(&self.sign(expires)))
    }

    fn token_matches(&self, given: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|t| given.len() == t.len() && bool::from(given.as_bytes().ct_eq(t.as_bytes())))
    }

    /// Has this address failed too often lately? Counting a failure is `fail`.
    fn throttled(&self, ip: IpAddr) -> bool {
        let map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&ip).is_some_and(|(n, since)| since.elapsed() < WINDOW && *n >= FAILURES_PER_WINDOW)
    }

    fn fail(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= REMEMBERED {
            map.retain(|_, (_, since)| since.elapsed() < WINDOW);
        }
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
    }
}

/// The name part of a `Host` header: no port, no brackets, lowercase.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None if host.matches(':').count() > 1 => host,
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The start-up check: only loopback may go without a token, and a token
/// must be long enough not to be guessed.
pub fn check_exposure(bind: SocketAddr, token: Option<&str>) -> Result<(), colony::exit::Exit> {
    let token = token.filter(|t| !t.is_empty());
    if !bind.ip().is_loopback() && token.is_none() {
        return Err(colony::exit::Exit::config(format!(
            "refusing to serve on {bind} without COLONY_WEB_TOKEN: set it (e.g. `openssl rand -hex 32`), or bind 127.0.0.1"
        )));
    }
    if let Some(t) = token
        && t.chars().count() < MIN_TOKEN_LEN
    {
        return Err(colony::exit::Exit::config(format!(
            "COLONY_WEB_TOKEN has {} characters; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)",
            t.chars().count()
        )));
    }
    Ok(())
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn client_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |ConnectInfo(addr)| addr.ip())
}

/// The host a request was sent to: its `Host` header, or the authority of
/// its URI (HTTP/2 sends `:authority` instead of `Host`).
fn request_host(request: &Request) -> String {
    request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Did a browser send this POST from another site? `Origin` decides when
/// present (it must name `host`, the host the request was sent to); else
/// `Sec-Fetch-Site`; a client that sends neither is not a browser.
fn cross_site(host: &str, headers: &HeaderMap) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        return match url::Url::parse(origin) {
            Ok(o) => {
                let port = o.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}{port}", o.host_str().unwrap_or_default()).to_ascii_lowercase() != host
            }
            // `Origin: null` (a sandboxed frame, a redirect chain): not this site.
            Err(_) => true,
        };
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => !matches!(site, "same-origin" | "none"),
        None => false,
    }
}

fn refused(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// Every request: the host check, and for POSTs the origin check. Runs
/// before routing, so it covers every route, `/login` included.
pub async fn hosts_and_origins(State(web): State<Web>, request: Request, next: Next) -> Response {
    let host = request_host(&request);
    let health = matches!(request.uri().path(), "/healthz" | "/readyz");
    if !health && !web.access.host_allowed(&host) {
        return refused(
            StatusCode::MISDIRECTED_REQUEST,
            "this server does not answer for that host name; add it to COLONY_WEB_HOSTS if it is yours",
        );
    }
    if request.method() == Method::POST && cross_site(&host, request.headers()) {
        return refused(StatusCode::FORBIDDEN, "a request from another site may not change anything here");
    }
    next.run(request).await
}

/// The token check (when a token is set) and the CSRF check of every POST.
pub async fn guard(State(web): State<Web>, request: Request, next: Next) -> Response {
    if web.access.has_token() {
        let ip = client_ip(&request);
        let headers = request.headers();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = match bearer {
            Some(given) => !web.access.throttled(ip) && web.access.token_matches(given),
            None => cookie(headers, COOKIE).is_some_and(|c| web.access.session_valid(c, now_secs())),
        };
        if !ok {
            if bearer.is_some() {
                if web.access.throttled(ip) {
                    return too_many();
                }
                web.access.fail(ip);
            }
            let html =
                headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
            if html && request.method() == Method::GET {
                return (StatusCode::UNAUTHORIZED, pages::login_page(Some("sign in with the dashboard's token")))
                    .into_response();
            }
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(serde_json::json!({ "error": "a valid token is needed: Authorization: Bearer TOKEN" })),
            )
                .into_response();
        }
    }
    if request.method() == Method::POST {
        let (parts, body) = request.into_parts();
        // Forms are small; 64 KiB is far more than any of ours.
        let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
            return WebError::BadRequest("the request body is too large".into()).into_response();
        };
        let from_header = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let from_form = form_field(&bytes, "csrf");
        let expected = web.csrf();
        let matches = from_header
            .or(from_form)
            .is_some_and(|t| t.len() == expected.len() && bool::from(t.as_bytes().ct_eq(expected.as_bytes())));
        if !matches {
            return WebError::Forbidden("missing or wrong CSRF token (the csrf form field or x-csrf-token header)")
                .into_response();
        }
        return next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await;
    }
    next.run(request).await
}

fn too_many() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, WINDOW.as_secs().to_string())],
        axum::Json(serde_json::json!({ "error": "too many failed attempts from this address; wait a minute" })),
    )
        .into_response()
}

pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
}

/// Is the site served over HTTPS (directly, or behind a proxy that says so)?
fn https(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// `POST /login`: check the token, and give the browser a session cookie.
pub async fn login(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    if !web.access.has_token() {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    }
    if web.access.throttled(peer.ip()) {
        return too_many();
    }
    if !web.access.token_matches(form.token.trim()) {
        web.access.fail(peer.ip());
        return (StatusCode::UNAUTHORIZED, pages::login_page(Some("that is not the dashboard's token")))
            .into_response();
    }
    let secure = if https(&headers) { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        web.access.new_session(now_secs()),
        web.access.session_ttl.as_secs()
    );
    (StatusCode::SEE_OTHER, [(header::SET_COOKIE, cookie), (header::LOCATION, "/".to_owned())]).into_response()
}

/// A `next` path to go back to after a form, if it stays on this site for
/// every way a browser might read it: one leading `/`, no backslash (which
/// browsers read as `/`), no control or space characters (which they drop).
pub fn safe_next(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.chars().all(|c| c.is_ascii_graphic() || (!c.is_ascii() && !c.is_control() && !c.is_whitespace()));
    ok.then_some(next)
}

/// The headers every answer carries.
pub async fn security_headers(State(web): State<Web>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&web.csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    response
}

/// The CSP: scripts and styles from this server only, media and images from
/// here or the object store that presigned URLs point at (`media_origin`).
pub fn content_security_policy(media_origin: Option<&str>) -> String {
    let media = media_origin.map(|o| format!(" {o}")).unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:{media}; \
         media-src 'self' blob:{media}; connect-src 'self'{media}; form-action 'self'; frame-ancestors 'none'; \
         base-uri 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(token: Option<&str>) -> Access {
        Access::new(token, &["colony.example.com".into()], Duration::from_secs(3600))
    }

    /// Defect: with no token, a page on another site could rebind its name
    /// to 127.0.0.1 and drive the dashboard; only known host names pass now.
    #[test]
    fn only_loopback_addresses_and_configured_hosts_pass() {
        let a = access(None);
        for ok in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "app.localhost",
            "colony.example.com",
            "COLONY.example.com.:443",
            "192.168.1.5:8080",
        ] {
            assert!(a.host_allowed(ok), "{ok}");
        }
        for bad in ["evil.example:8080", "", "localhost.evil.example", "colony.example.com.evil.example"] {
            assert!(!a.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn only_loopback_may_go_without_a_token_and_tokens_are_long() {
        assert!(check_exposure("127.0.0.1:8080".parse().unwrap(), None).is_ok());
        assert!(check_exposure("[::1]:8080".parse().unwrap(), None).is_ok());
        assert!(check_exposure("0.0.0.0:8080".parse().unwrap(), None).is_err());
        assert!(check_exposure("0.0.0.0:8080".parse().unwrap(), Some("")).is_err());
        // Defect: any non-empty token was accepted, `x` included.
        assert!(check_exposure("0.0.0.0:8080".parse().unwrap(), Some("x")).is_err());
        assert!(check_exposure("127.0.0.1:8080".parse().unwrap(), Some("short")).is_err());
        assert!(check_exposure("0.0.0.0:8080".parse().unwrap(), Some(&"t".repeat(32))).is_ok());
    }

    /// Defect: the cookie was the token itself, for ever.
    #[test]
    fn sessions_are_signed_expire_and_never_hold_the_token() {
        let token = "a".repeat(40);
        let a = access(Some(&token));
        let value = a.new_session(1_000);
        assert!(!value.contains(&token));
        assert!(a.session_valid(&value, 1_000));
        assert!(!a.session_valid(&value, 1_000 + 3600));
        let (expires, mac) = value.split_once('.').unwrap();
        assert!(!a.session_valid(&format!("{}.{mac}", expires.parse::<u64>().unwrap() + 100), 1_000));
        assert!(!a.session_valid(&token, 1_000) && !a.session_valid("", 1_000));
        // Another token signs other sessions.
        assert!(!access(Some(&"b".repeat(40))).session_valid(&value, 1_000));
    }

    #[test]
    fn failures_are_counted_per_address_within_a_window() {
        let a = access(Some(&"a".repeat(40)));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..FAILURES_PER_WINDOW {
            assert!(!a.throttled(ip));
            a.fail(ip);
        }
        assert!(a.throttled(ip));
        assert!(!a.throttled("10.0.0.2".parse().unwrap()));
    }

    /// Defect: `next=/\evil.example/phish` passed the redirect filter.
    #[test]
    fn redirects_stay_on_the_site_for_every_spelling() {
        for ok in ["/", "/jobs", "/channels/a?x=1", "/recordings/3#t"] {
            assert_eq!(safe_next(ok), Some(ok));
        }
        for bad in [
            "//evil.example",
            "/\\evil.example/phish",
            "\\\\evil",
            "/\t/evil.example",
            "/\n/evil",
            "https://evil.example",
            "evil",
            "",
            "/ /x",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cross_site_posts_are_told_by_origin_or_fetch_metadata() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        let here = "127.0.0.1:8080";
        assert!(!cross_site(here, &headers(&[("origin", "http://127.0.0.1:8080")])));
        assert!(cross_site(here, &headers(&[("origin", "http://evil.example")])));
        assert!(cross_site(here, &headers(&[("origin", "null")])));
        assert!(cross_site(here, &headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!cross_site(here, &headers(&[("sec-fetch-site", "same-origin")])));
        // curl, scripts: neither header; the token and CSRF checks decide.
        assert!(!cross_site(here, &headers(&[])));
        // HTTP/2 names the host in the URI, not in a header.
        let h2 = Request::builder().uri("http://127.0.0.1:8080/x").body(axum::body::Body::empty()).unwrap();
        assert_eq!(request_host(&h2), "127.0.0.1:8080");
    }
}
