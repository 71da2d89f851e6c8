//! Where a source may send Colony. A playlist is untrusted: its variant,
//! key, map and segment URIs, and every redirect, could point at the cloud's
//! metadata service or at the operator's internal services, and whatever
//! came back would be stored as media. So every URL is checked before any
//! connection is made:
//!
//! - only `http` and `https`;
//! - link-local and cloud-metadata addresses are always refused, whether the
//!   URL names them or a host name resolves to them ([`GuardedResolver`]);
//! - the host must be the source's own host, or one the channel allows
//!   (`--allow-host`, exact or `*.suffix`, for CDNs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use url::{Host, Url};

/// Most redirects followed for one request; each hop is checked like the first URL.
pub const MAX_REDIRECTS: usize = 5;

/// A host a channel allows besides its source's own: `cdn.example.com`, or
/// `*.example.com` for that domain and every name under it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    Suffix(String),
}

impl HostPattern {
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self {
            HostPattern::Exact(h) => host == *h,
            HostPattern::Suffix(s) => {
                host == *s || host.strip_suffix(s.as_str()).is_some_and(|rest| rest.ends_with('.'))
            }
        }
    }
}

impl FromStr for HostPattern {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let lower = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        let (suffix, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']'))
            && !name.starts_with('.')
            && !name.contains("..");
        if !valid {
            return Err(format!(
                "'{}' is not a host name; use a host like cdn.example.com or *.example.com",
                raw.escape_debug().take(80).collect::<String>()
            ));
        }
        Ok(if suffix { HostPattern::Suffix(name.to_owned()) } else { HostPattern::Exact(name.to_owned()) })
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Suffix(s) => write!(f, "*.{s}"),
        }
    }
}

/// Why a URL was not fetched. Recorded as the segment's gap reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("scheme '{0}' is not http or https")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("{host} is a link-local or cloud-metadata address, which Colony never fetches")]
    Forbidden { host: String },
    #[error(
        "{host} resolves only to loopback or private addresses; if that is meant, allow it for the channel with \
         --allow-host {host}"
    )]
    PrivateName { host: String },
    #[error("a redirect led to {host}, a loopback or private address the source's own URL did not name")]
    PrivateRedirect { host: String },
    #[error("host {host} is not the source's host; allow it for the channel with --allow-host {host}")]
    ForeignHost { host: String },
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
}

/// The hosts one source may send Colony to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchPolicy {
    /// `None`: any host (forbidden addresses are still refused). Used only
    /// for URLs the operator typed or a resolver on the allow-list printed.
    allowed: Option<Vec<HostPattern>>,
}

impl FetchPolicy {
    /// Any host that is not a forbidden address: for the source URL itself.
    pub fn any_host() -> Self {
        Self { allowed: None }
    }

    /// The host of `source`, plus the channel's extra allowed hosts.
    pub fn for_source(source: &Url, extra: &[HostPattern]) -> Self {
        let mut allowed: Vec<HostPattern> = extra.to_vec();
        if let Some(host) = source.host_str() {
            allowed.push(HostPattern::Exact(host.trim_end_matches('.').to_ascii_lowercase()));
        }
        Self { allowed: Some(allowed) }
    }

    /// May `url` be fetched? Decided before any connection.
    pub fn check(&self, url: &Url) -> Result<(), Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::Scheme(url.scheme().chars().take(20).collect()));
        }
        let host = url.host().ok_or(Refusal::NoHost)?;
        let shown = url.host_str().unwrap_or_default().chars().take(253).collect::<String>();
        let ip = match host {
            Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            Host::Domain(_) => None,
        };
        if ip.is_some_and(forbidden_ip) {
            return Err(Refusal::Forbidden { host: shown });
        }
        match &self.allowed {
            None => Ok(()),
            Some(allowed) if allowed.iter().any(|p| p.matches(&shown)) => Ok(()),
            Some(_) => Err(Refusal::ForeignHost { host: shown }),
        }
    }
}

/// Link-local (which holds every cloud's metadata service at
/// 169.254.169.254, and ECS's task metadata at 169.254.170.2), AWS's IPv6
/// metadata address and Alibaba's.
pub fn forbidden_ip(ip: IpAddr) -> bool {
    const ALIBABA_METADATA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4 == ALIBABA_METADATA,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_ip(IpAddr::V4(v4)),
            None => (v6.segments()[0] & 0xffc0) == 0xfe80 || v6 == AWS_METADATA_V6,
        },
    }
}

/// Is `ip` an address on the public internet? Loopback, private (RFC 1918,
/// RFC 4193), shared (100.64/10), link-local, unspecified, broadcast,
/// multicast, documentation, benchmarking and reserved ranges are not, and
/// neither is an IPv4 address mapped into IPv6 or NAT64 that is not.
/// (`IpAddr::is_global` is not stable yet.)
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
                return is_public(IpAddr::V4(v4));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || v6 == AWS_METADATA_V6)
        }
    }
}

const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// A DNS resolver for reqwest that checks every answer before a connection
/// is made: forbidden addresses (the metadata services) are always dropped,
/// and a name may resolve to a loopback or private address only when the
/// operator allowed that name (`private_ok`). A public name that the source's
/// DNS later points at 127.0.0.1 or 10.0.0.5 (DNS rebinding) is refused, at
/// every resolution and every redirect, so an internal service's answer is
/// never stored as media.
#[derive(Debug, Default, Clone)]
pub struct GuardedResolver {
    private_ok: Vec<HostPattern>,
    any_private: bool,
}

impl GuardedResolver {
    /// A resolver that lets these names resolve to private addresses.
    pub fn allowing_private(private_ok: Vec<HostPattern>) -> Self {
        Self { private_ok, any_private: false }
    }

    /// A resolver that lets any name resolve to a private address (never a
    /// forbidden one): for a webhook its operator added with `--allow-private`.
    pub fn allowing_any_private() -> Self {
        Self { private_ok: Vec::new(), any_private: true }
    }

    fn private_ok(&self, host: &str) -> bool {
        self.any_private || self.private_ok.iter().any(|p| p.matches(host))
    }

    /// Keep the answers `host` may connect to; an error says why none is left.
    pub fn filter(&self, host: &str, found: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refusal> {
        let private_ok = self.private_ok(host);
        let kept: Vec<SocketAddr> =
            found.iter().copied().filter(|a| !forbidden_ip(a.ip()) && (private_ok || is_public(a.ip()))).collect();
        let host = || host.chars().take(253).collect::<String>();
        if !kept.is_empty() || found.is_empty() {
            Ok(kept)
        } else if found.iter().all(|a| forbidden_ip(a.ip())) {
            Err(Refusal::Forbidden { host: host() })
        } else {
            Err(Refusal::PrivateName { host: host() })
        }
    }

    /// May a redirect from `first` lead to `next`? A literal loopback or
    /// private address is followed only to the address the first URL named
    /// itself, or to one the operator allowed; names are checked when they
    /// resolve.
    pub fn check_redirect(&self, first: &Url, next: &Url) -> Result<(), Refusal> {
        let ip = match next.host() {
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        let shown = next.host_str().unwrap_or_default().chars().take(253).collect::<String>();
        if is_public(ip) || first.host() == next.host() || self.private_ok(&shown) {
            Ok(())
        } else {
            Err(Refusal::PrivateRedirect { host: shown })
        }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let guard = self.clone();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept =
                guard.filter(&host, found).map_err(|r| Box::new(r) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A refused address is the operator's to allow (`--allow-host`) or fix.
impl crate::exit::Classify for Refusal {
    fn class(&self) -> crate::exit::ErrorClass {
        crate::exit::ErrorClass::Config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn patterns_match_hosts_and_subdomains() {
        let p: HostPattern = "*.ttvnw.net".parse().unwrap();
        assert!(p.matches("video-edge-1.abs.hls.ttvnw.net") && p.matches("ttvnw.net") && p.matches("TTVNW.NET."));
        assert!(!p.matches("evilttvnw.net") && !p.matches("ttvnw.net.evil.com"));
        let e: HostPattern = "cdn.example.com".parse().unwrap();
        assert!(e.matches("cdn.example.com") && !e.matches("a.cdn.example.com"));
        for bad in ["", "*.", "a b", "a/b", "..", "http://x", "*.*.x"] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad}");
        }
        assert_eq!("*.Example.COM".parse::<HostPattern>().unwrap().to_string(), "*.example.com");
    }

    #[test]
    fn only_the_sources_host_and_allowed_hosts_pass() {
        let policy = FetchPolicy::for_source(
            &url("http://src.example:8080/live/index.m3u8"),
            &["*.cdn.example".parse().unwrap()],
        );
        assert_eq!(policy.check(&url("http://src.example/seg/1.ts")), Ok(()));
        assert_eq!(policy.check(&url("https://edge-3.cdn.example/seg/1.ts")), Ok(()));
        assert_eq!(policy.check(&url("http://10.0.0.5/admin")), Err(Refusal::ForeignHost { host: "10.0.0.5".into() }));
        assert!(matches!(policy.check(&url("file:///etc/passwd")), Err(Refusal::Scheme(_))));
        assert!(matches!(policy.check(&url("ftp://src.example/x")), Err(Refusal::Scheme(_))));
    }

    #[test]
    fn metadata_and_link_local_addresses_are_refused_even_when_allowed() {
        for bad in [
            "http://169.254.169.254/latest/meta-data/",
            "http://169.254.170.2/v2/credentials",
            "http://[fd00:ec2::254]/latest/",
            "http://[fe80::1]/x",
            "http://[::ffff:169.254.169.254]/x",
            "http://100.100.100.200/latest/meta-data",
        ] {
            let u = url(bad);
            let own = FetchPolicy::for_source(&u, &[]);
            assert!(matches!(own.check(&u), Err(Refusal::Forbidden { .. })), "{bad}");
            assert!(matches!(FetchPolicy::any_host().check(&u), Err(Refusal::Forbidden { .. })), "{bad}");
        }
        assert_eq!(FetchPolicy::any_host().check(&url("http://127.0.0.1:9/x")), Ok(()));
    }

    #[tokio::test]
    async fn the_resolver_drops_forbidden_addresses() {
        use reqwest::dns::Resolve;
        let r = GuardedResolver::allowing_private(vec!["localhost".parse().unwrap()]);
        let addrs: Vec<SocketAddr> = r.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
        let refused = r.resolve("169.254.169.254".parse().unwrap()).await;
        assert!(refused.is_err());
    }

    /// Defect: a name that resolved to a loopback or private address was
    /// followed, so a source whose DNS changed its answer (rebinding) had
    /// the observer store an internal service's replies as segments.
    #[tokio::test]
    async fn a_name_that_resolves_private_is_refused_unless_allowed() {
        use reqwest::dns::Resolve;
        let strict = GuardedResolver::default();
        let err = strict.resolve("localhost".parse().unwrap()).await.err().expect("refused");
        assert!(err.to_string().contains("--allow-host localhost"), "{err}");
        let sock = |s: &str| -> SocketAddr { s.parse().unwrap() };
        for private in
            ["10.0.0.5:0", "192.168.1.2:0", "172.16.0.1:0", "100.64.0.1:0", "[fd00::1]:0", "[::ffff:10.0.0.1]:0"]
        {
            assert!(
                matches!(strict.filter("cdn.example", vec![sock(private)]), Err(Refusal::PrivateName { .. })),
                "{private}"
            );
        }
        let mixed = strict.filter("cdn.example", vec![sock("10.0.0.5:0"), sock("93.184.216.34:0")]).unwrap();
        assert_eq!(mixed, [sock("93.184.216.34:0")]);
        let allowed = GuardedResolver::allowing_private(vec!["*.lan".parse().unwrap()]);
        assert_eq!(allowed.filter("cam.lan", vec![sock("192.168.1.2:0")]).unwrap().len(), 1);
        assert!(matches!(allowed.filter("cam.lan", vec![sock("169.254.169.254:0")]), Err(Refusal::Forbidden { .. })));
    }

    #[test]
    fn redirects_to_private_literals_need_the_first_url_or_an_allowance() {
        let strict = GuardedResolver::default();
        let from_public = url("https://src.example/live.m3u8");
        assert!(matches!(
            strict.check_redirect(&from_public, &url("http://127.0.0.1:9/x")),
            Err(Refusal::PrivateRedirect { .. })
        ));
        assert_eq!(strict.check_redirect(&from_public, &url("https://cdn.example/x")), Ok(()));
        assert_eq!(strict.check_redirect(&from_public, &url("https://93.184.216.34/x")), Ok(()));
        let from_loopback = url("http://127.0.0.1:8080/live.m3u8");
        assert_eq!(strict.check_redirect(&from_loopback, &url("http://127.0.0.1:8080/other.m3u8")), Ok(()));
        assert!(strict.check_redirect(&from_loopback, &url("http://10.0.0.5/x")).is_err());
        let allowed = GuardedResolver::allowing_private(vec!["10.0.0.5".parse().unwrap()]);
        assert_eq!(allowed.check_redirect(&from_public, &url("http://10.0.0.5/x")), Ok(()));
    }

    #[test]
    fn public_addresses_are_told_from_the_rest() {
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.0.1",
            "192.168.0.1",
            "100.100.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
    }
}
