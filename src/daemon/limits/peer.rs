//! Who the client is: the TCP peer, or behind trusted proxies the right-most hop of
//! `X-Forwarded-For` that none of them is. Never believes the header otherwise.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::{header::HeaderName, HeaderMap};

use super::settings::ProxyNet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client behind a request that `peer` delivered with `headers`.
///
/// Without trusted proxies, or when `peer` is not one, that is `peer`. Otherwise the
/// hops of every `X-Forwarded-For` line are read from the right (the nearest proxy's
/// entry) past trusted proxies; the first untrusted hop is the client. A hop that does
/// not parse ends the walk at the proxy that wrote it, which is then taken as the
/// client: a forged entry left of it cannot choose someone else's bucket.
pub fn client_ip(trusted: &[ProxyNet], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    let lines: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    for hop in lines.iter().rev().flat_map(|line| line.rsplit(',')) {
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = ip;
        if !is_trusted(&client) {
            return client;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, or an address with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The key a client is counted under: its IPv4 address, or its IPv6 /64 block (one
/// subscriber usually holds a whole /64, so single addresses would be free to mint).
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(&X_FORWARDED_FOR, line.parse().unwrap());
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<ProxyNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_header_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let h = headers(&["1.1.1.1"]);
        assert_eq!(client_ip(&[], ip("10.0.0.5"), &h), ip("10.0.0.5"));
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip(&trusted, ip("192.0.2.9"), &h), ip("192.0.2.9"));
        assert_eq!(client_ip(&trusted, ip("10.0.0.5"), &h), ip("1.1.1.1"));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "172.16.0.1"]);
        // The client forged "6.6.6.6"; the edge proxy appended the real address.
        let h = headers(&["6.6.6.6, 203.0.113.4, 10.1.1.1", "172.16.0.1"]);
        assert_eq!(client_ip(&trusted, ip("10.0.0.5"), &h), ip("203.0.113.4"));
        // Ports and IPv4-mapped IPv6 are understood.
        let h = headers(&["203.0.113.4:5555, [::ffff:10.1.1.1]:80"]);
        assert_eq!(client_ip(&trusted, ip("10.0.0.5"), &h), ip("203.0.113.4"));
    }

    #[test]
    fn garbage_or_an_all_trusted_chain_stops_at_the_last_proxy() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&["1.2.3.4, not-an-ip, 10.2.2.2"]);
        assert_eq!(client_ip(&trusted, ip("10.0.0.5"), &h), ip("10.2.2.2"));
        let h = headers(&["10.3.3.3, 10.2.2.2"]);
        assert_eq!(client_ip(&trusted, ip("10.0.0.5"), &h), ip("10.3.3.3"));
        assert_eq!(
            client_ip(&trusted, ip("10.0.0.5"), &HeaderMap::new()),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn ipv6_keys_are_64_blocks_and_mapped_v4_is_v4() {
        assert_eq!(ip_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(ip_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(ip_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
