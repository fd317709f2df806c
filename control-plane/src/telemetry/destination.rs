//! Where webhooks may be delivered: never inside. A destination's host is resolved and
//! every address it resolves to must be public — not loopback, private, link-local,
//! CGNAT, unique-local, multicast, unspecified, reserved or a cloud metadata address
//! ([`forbidden`]). Checked when a webhook is created and again at every delivery, where
//! the HTTP client's own resolver does the check ([`Destinations::resolver`]), so the
//! connection goes to exactly the addresses that were checked and a name re-pointed
//! after the check (DNS rebinding) is refused too.
//!
//! Hosts in `[telemetry] webhook_allow_hosts` are exempt (matched exactly against the
//! URL's host, case-insensitively): an operator's explicit choice of an internal receiver.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How long a creation-time lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a destination is refused.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("not an http(s) URL with a host")]
    NotUrl,
    #[error(
        "{host} ({addr}) is a {range} address; webhooks are only delivered to public addresses"
    )]
    Forbidden {
        host: String,
        addr: IpAddr,
        range: &'static str,
    },
    #[error("{host} does not resolve")]
    Unresolved {
        host: String,
        #[source]
        source: Option<std::io::Error>,
    },
}

/// Which webhook destinations may be reached from here.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    /// Lowercase hosts exempt from the address check.
    allow_hosts: Arc<HashSet<String>>,
}

/// The range `ip` lies in when webhooks must not reach it; `None` for a public address.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "cloud metadata (169.254.169.254)",
        (0, ..) => "unspecified (0.0.0.0/8)",
        (10, ..) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "shared/CGNAT (100.64.0.0/10)",
        (127, ..) => "loopback (127.0.0.0/8)",
        (169, 254, _) => "link-local (169.254.0.0/16)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignment (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay (192.88.99.0/24)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, ..) => "multicast (224.0.0.0/4)",
        (240..=255, ..) => "reserved or broadcast (240.0.0.0/4)",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // Forms that carry an IPv4 address reach that address: judge it.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified (::)",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback (::1)",
        [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] => "cloud metadata (fd00:ec2::254)",
        // NAT64 (64:ff9b::/96): a translator connects to the embedded address.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return forbidden_v4(embedded(hi, lo)),
        [0x64, 0xff9b, 1, ..] => "local-use NAT64 (64:ff9b:1::/48)",
        // 6to4 (2002::/16) embeds an IPv4 address in bits 16–48.
        [0x2002, hi, lo, ..] => return forbidden_v4(embedded(hi, lo)),
        [0x2001, 0, ..] => "Teredo (2001::/32)",
        [0x2001, 0x0db8, ..] => "documentation (2001:db8::/32)",
        [0x0100, 0, 0, 0, ..] => "discard (100::/64)",
        [0, 0, 0, 0, 0, 0, ..] => "IPv4-compatible (::/96)",
        [x, ..] if x & 0xfe00 == 0xfc00 => "unique-local (fc00::/7)",
        [x, ..] if x & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        [x, ..] if x & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        [x, ..] if x & 0xff00 == 0xff00 => "multicast (ff00::/8)",
        _ => return None,
    })
}

impl Destinations {
    pub fn new(allow_hosts: &[String]) -> Self {
        Self {
            allow_hosts: Arc::new(
                allow_hosts
                    .iter()
                    .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
                    .collect(),
            ),
        }
    }

    fn allowed(&self, host: &str) -> bool {
        self.allow_hosts
            .contains(&host.trim_matches(['[', ']']).to_ascii_lowercase())
    }

    fn check_addr(&self, host: &str, addr: IpAddr) -> Result<(), DestinationError> {
        match forbidden(addr) {
            Some(range) => Err(DestinationError::Forbidden {
                host: host.to_owned(),
                addr,
                range,
            }),
            None => Ok(()),
        }
    }

    /// Every address `host` resolves to, each checked (unless the host is allow-listed).
    async fn resolve_checked(&self, host: &str) -> Result<Vec<SocketAddr>, DestinationError> {
        let lookup = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, 0)));
        let addrs: Vec<SocketAddr> = match lookup.await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(source)) => {
                return Err(DestinationError::Unresolved {
                    host: host.to_owned(),
                    source: Some(source),
                });
            }
            Err(_) => Vec::new(),
        };
        if addrs.is_empty() {
            return Err(DestinationError::Unresolved {
                host: host.to_owned(),
                source: None,
            });
        }
        if !self.allowed(host) {
            for addr in &addrs {
                self.check_addr(host, addr.ip())?;
            }
        }
        Ok(addrs)
    }

    /// Checks `url`'s host: an address literal directly, a name by resolving it now.
    pub async fn check(&self, url: &str) -> Result<(), DestinationError> {
        let url = Url::parse(url).map_err(|_| DestinationError::NotUrl)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(DestinationError::NotUrl);
        }
        let Some(host) = url.host_str() else {
            return Err(DestinationError::NotUrl);
        };
        if self.allowed(host) {
            return Ok(());
        }
        // The URL parser has normalised address literals (`http://2130706433/` is
        // 127.0.0.1), so what is left to parse as one is one.
        match host.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(addr) => self.check_addr(host, addr),
            Err(_) => self.resolve_checked(host).await.map(drop),
        }
    }

    /// Checks `url`'s host when it is an address literal (names: [`Self::resolver`]).
    pub fn check_literal(&self, url: &str) -> Result<(), DestinationError> {
        let url = Url::parse(url).map_err(|_| DestinationError::NotUrl)?;
        let host = url.host_str().ok_or(DestinationError::NotUrl)?;
        match host.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(addr) if !self.allowed(host) => self.check_addr(host, addr),
            _ => Ok(()),
        }
    }

    /// A resolver for the delivery client: resolution and check in one step, so the
    /// client connects only to addresses that passed. (Address literals never reach a
    /// resolver; deliveries [`check`](Self::check) them first.)
    pub fn resolver(&self) -> Arc<dyn Resolve> {
        Arc::new(Guarded(self.clone()))
    }
}

struct Guarded(Destinations);

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let destinations = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = destinations.resolve_checked(&host).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The form of a webhook URL that is shown after creation: `scheme://host[:port]/…`.
/// Paths and queries often carry a receiver's secret (Slack, Teams, Zapier hooks), so
/// they are never shown again, nor written to the audit log.
pub fn redacted(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or_default();
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{host}{port}/…", u.scheme())
        }
        Err(_) => "…".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn inside_addresses_are_forbidden() {
        for inside in [
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.170",
            "198.18.0.1",
            "::",
            "::1",
            "fd00:ec2::254",
            "fc00::1",
            "fdff:ffff::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "::7f00:1",
            "2001::1",
        ] {
            assert!(
                forbidden(ip(inside)).is_some(),
                "{inside} must be forbidden"
            );
        }
        assert!(
            forbidden(ip("169.254.169.254"))
                .unwrap()
                .contains("metadata")
        );
        assert!(forbidden(ip("fd00:ec2::254")).unwrap().contains("metadata"));
        assert!(forbidden(ip("100.64.0.1")).unwrap().contains("CGNAT"));
        assert!(forbidden(ip("fd12::1")).unwrap().contains("unique-local"));
    }

    #[test]
    fn public_addresses_pass() {
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(forbidden(ip(public)), None, "{public} is public");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_by_literal_and_by_resolution() {
        let none = Destinations::default();
        for url in [
            "http://127.0.0.1:9/x",
            "http://[::1]/x",
            "https://169.254.169.254/latest/meta-data",
            "http://[fd00:ec2::254]/",
            "http://localhost:8080/hook",
            "http://2130706433/",
            "http://0x7f.1/",
        ] {
            assert!(
                matches!(
                    none.check(url).await,
                    Err(DestinationError::Forbidden { .. })
                ),
                "{url}"
            );
        }
        assert!(matches!(
            none.check("ftp://example.com/").await,
            Err(DestinationError::NotUrl)
        ));
        assert!(none.check("https://8.8.8.8/hook").await.is_ok());
        assert!(none.check_literal("http://[::ffff:7f00:1]/").is_err());
        assert!(
            none.check_literal("http://localhost/").is_ok(),
            "names: the resolver's job"
        );

        let some = Destinations::new(&["127.0.0.1".into(), "LocalHost".into(), "[::1]".into()]);
        assert!(some.check("http://127.0.0.1:9/x").await.is_ok());
        assert!(some.check("http://localhost:9/x").await.is_ok());
        assert!(some.check("http://[::1]:9/x").await.is_ok());
        assert!(
            some.check("http://127.0.0.2:9/x").await.is_err(),
            "only the hosts named"
        );
    }

    #[tokio::test]
    async fn the_delivery_resolver_refuses_names_of_inside_addresses() {
        let none = Destinations::default();
        let refused = none
            .resolver()
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("refused");
        assert!(refused.to_string().contains("loopback"), "{refused}");
        let allowed = Destinations::new(&["localhost".into()])
            .resolver()
            .resolve("localhost".parse().unwrap())
            .await
            .expect("allow-listed");
        assert!(allowed.into_iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn shown_urls_keep_only_scheme_host_and_port() {
        assert_eq!(
            redacted("https://hooks.slack.com/services/T0/B0/secret?token=x"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redacted("http://127.0.0.1:8080/a/b"),
            "http://127.0.0.1:8080/…"
        );
        assert_eq!(redacted("http://user:pw@[::1]:81/a"), "http://[::1]:81/…");
        assert_eq!(redacted("not a url"), "…");
    }
}
