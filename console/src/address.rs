//! Console server addresses as users write them on the command line.
//!
//! One `--server` value may hold several addresses separated by spaces or
//! commas, because Gearman::Driver's console took `--server "host1 host2"`
//! and scripts still pass lists that way. An address is `host`,
//! `host:port`, `[ipv6]` or `[ipv6]:port`; a bare IPv6 address without
//! brackets is taken whole as the host, since its last group cannot be told
//! apart from a port.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// The port the supervisor's console listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 47300;

/// One console server. It prints as `host:port` (`[host]:port` for IPv6),
/// which is also the prefix of its answer lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddress {
    host: String,
    port: u16,
}

impl ServerAddress {
    pub fn new(host: impl Into<String>, port: u16) -> ServerAddress {
        ServerAddress {
            host: host.into(),
            port,
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every socket address the name resolves to, in resolver order.
    pub fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port).to_socket_addrs()?.collect();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} resolves to no address", self.host),
            ));
        }
        Ok(addrs)
    }

    fn is_ipv6(&self) -> bool {
        self.host.contains(':')
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ipv6() {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses one `--server` value: one or more addresses separated by spaces
/// or commas.
pub fn parse_server_list(text: &str) -> Result<Vec<ServerAddress>, String> {
    let addresses: Vec<ServerAddress> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|word| !word.is_empty())
        .map(parse_address)
        .collect::<Result<_, _>>()?;
    if addresses.is_empty() {
        return Err("no server address given".to_string());
    }
    Ok(addresses)
}

fn parse_address(text: &str) -> Result<ServerAddress, String> {
    if let Some(rest) = text.strip_prefix('[') {
        return parse_bracketed(text, rest);
    }
    match text.matches(':').count() {
        0 => Ok(ServerAddress::new(checked_host(text, text)?, DEFAULT_PORT)),
        1 => {
            let (host, port) = text.split_once(':').unwrap_or((text, ""));
            Ok(ServerAddress::new(
                checked_host(text, host)?,
                parse_port(text, port)?,
            ))
        }
        _ => Ok(ServerAddress::new(text, DEFAULT_PORT)),
    }
}

fn parse_bracketed(text: &str, after_bracket: &str) -> Result<ServerAddress, String> {
    let (host, after_host) = after_bracket
        .split_once(']')
        .ok_or_else(|| format!("`{text}`: missing `]` after the IPv6 address"))?;
    let host = checked_host(text, host)?;
    let port = match after_host {
        "" => DEFAULT_PORT,
        _ => {
            let port = after_host.strip_prefix(':').ok_or_else(|| {
                format!("`{text}`: expected `:port` after `]`, found `{after_host}`")
            })?;
            parse_port(text, port)?
        }
    };
    Ok(ServerAddress::new(host, port))
}

fn checked_host<'a>(text: &str, host: &'a str) -> Result<&'a str, String> {
    if host.is_empty() {
        return Err(format!("`{text}`: the host name is empty"));
    }
    Ok(host)
}

fn parse_port(text: &str, port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!(
            "`{text}`: `{port}` is not a port (expected a number from 1 to 65535)"
        )),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> ServerAddress {
        let list = parse_server_list(text).unwrap();
        assert_eq!(list.len(), 1, "{text} should be one address");
        list.into_iter().next().unwrap()
    }

    #[test]
    fn host_alone_gets_the_default_port() {
        assert_eq!(one("localhost"), ServerAddress::new("localhost", 47300));
        assert_eq!(one("localhost").to_string(), "localhost:47300");
    }

    #[test]
    fn host_and_port() {
        assert_eq!(
            one("gd1.example:47301"),
            ServerAddress::new("gd1.example", 47301)
        );
        assert_eq!(one("10.0.0.1:1").to_string(), "10.0.0.1:1");
    }

    #[test]
    fn several_addresses_split_on_spaces_and_commas() {
        let list = parse_server_list(" host1 host2:47301,host3, \thost4 ").unwrap();
        let printed: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(
            printed,
            ["host1:47300", "host2:47301", "host3:47300", "host4:47300"]
        );
    }

    #[test]
    fn bracketed_ipv6_with_and_without_port() {
        assert_eq!(one("[::1]:47301"), ServerAddress::new("::1", 47301));
        assert_eq!(one("[::1]"), ServerAddress::new("::1", 47300));
        assert_eq!(one("[::1]:47301").to_string(), "[::1]:47301");
    }

    #[test]
    fn bare_ipv6_is_all_host() {
        assert_eq!(one("fe80::1"), ServerAddress::new("fe80::1", 47300));
        assert_eq!(one("fe80::1").to_string(), "[fe80::1]:47300");
    }

    #[test]
    fn bad_ports_are_rejected_with_the_address_named() {
        for text in ["host:", "host:abc", "host:0", "host:65536", "[::1]:x"] {
            let err = parse_server_list(text).unwrap_err();
            assert!(err.contains(text), "{err:?} should name {text}");
            assert!(err.contains("not a port"), "{err:?}");
        }
    }

    #[test]
    fn malformed_addresses_are_rejected() {
        assert!(parse_server_list(":47300")
            .unwrap_err()
            .contains("host name is empty"));
        assert!(parse_server_list("[]:1")
            .unwrap_err()
            .contains("host name is empty"));
        assert!(parse_server_list("[::1")
            .unwrap_err()
            .contains("missing `]`"));
        assert!(parse_server_list("[::1]47300")
            .unwrap_err()
            .contains("expected `:port`"));
        assert!(parse_server_list(" , ")
            .unwrap_err()
            .contains("no server address"));
    }

    #[test]
    fn loopback_resolves() {
        let addrs = ServerAddress::new("127.0.0.1", 5).resolve().unwrap();
        assert_eq!(addrs, ["127.0.0.1:5".parse::<SocketAddr>().unwrap()]);
    }
}
