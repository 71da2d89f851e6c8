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
    const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4 == ALIBABA_METADATA,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_ip(IpAddr::V4(v4)),
            None => (v6.segments()[0] & 0xffc0) == 0xfe80 || v6 == AWS_METADATA_V6,
        },
    }
}

/// A DNS resolver for reqwest that drops forbidden addresses, so a host name
/// that resolves to the metadata service is refused before a connection.
#[derive(Debug, Default)]
pub struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.iter().copied().filter(|a| !forbidden_ip(a.ip())).collect();
            if allowed.is_empty() && !found.is_empty() {
                let refusal = Refusal::Forbidden { host };
                return Err(Box::new(refusal) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
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
        let r = GuardedResolver;
        let addrs: Vec<SocketAddr> = r.resolve("127.0.0.1".parse().unwrap()).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
        let refused = r.resolve("169.254.169.254".parse().unwrap()).await;
        assert!(refused.is_err());
    }
}
