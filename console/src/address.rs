//! Console server addresses as users write them on the command line.
//!
//! One `--server` value may hold several addresses separated by spaces or
//! commas, because Gearman::Driver's console took `--server "host1 host2"`
//! and scripts still pass lists that way. An address is `host`,
//! `host:port`, `[ipv6]` or `[ipv6]:port`; a bare IPv6 address without
//! brackets is taken whole as the host, since its last group cannot be told
//! apart from a port. `unix:/path/console.sock`, or any address with a `/`
//! in it, is the driver's console socket (`console_socket`).

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// The port the supervisor's console listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 47300;

/// One console server. It prints as `host:port` (`[host]:port` for IPv6,
/// `unix:/path` for a socket), which is also the prefix of its answer lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerAddress {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl ServerAddress {
    pub fn new(host: impl Into<String>, port: u16) -> ServerAddress {
        ServerAddress::Tcp {
            host: host.into(),
            port,
        }
    }

    pub fn unix(path: impl Into<PathBuf>) -> ServerAddress {
        ServerAddress::Unix(path.into())
    }

    /// The socket's path, for a Unix socket address.
    pub fn socket_path(&self) -> Option<&Path> {
        match self {
            ServerAddress::Unix(path) => Some(path),
            ServerAddress::Tcp { .. } => None,
        }
    }

    /// Every socket address a TCP server's name resolves to, in resolver
    /// order.
    pub fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        let ServerAddress::Tcp { host, port } = self else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a Unix socket has no network address",
            ));
        };
        let addrs: Vec<SocketAddr> = (host.as_str(), *port).to_socket_addrs()?.collect();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} resolves to no address"),
            ));
        }
        Ok(addrs)
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddress::Tcp { host, port } if host.contains(':') => {
                write!(f, "[{host}]:{port}")
            }
            ServerAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
            ServerAddress::Unix(path) => write!(f, "unix:{}", path.display()),
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
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!("`{text}`: the socket path is empty"));
        }
        return Ok(ServerAddress::unix(path));
    }
    if text.contains('/') {
        return Ok(ServerAddress::unix(text));
    }
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
    fn unix_sockets_by_prefix_or_slash() {
        assert_eq!(
            one("unix:/run/gd/console.sock"),
            ServerAddress::unix("/run/gd/console.sock")
        );
        assert_eq!(one("./console.sock"), ServerAddress::unix("./console.sock"));
        assert_eq!(one("unix:rel.sock"), ServerAddress::unix("rel.sock"));
        assert_eq!(
            one("/run/gd/console.sock").to_string(),
            "unix:/run/gd/console.sock"
        );
        let list = parse_server_list("/a.sock localhost:1").unwrap();
        assert_eq!(list[1], ServerAddress::new("localhost", 1));
        assert!(parse_server_list("unix:")
            .unwrap_err()
            .contains("socket path is empty"));
    }

    #[test]
    fn loopback_resolves() {
        let addrs = ServerAddress::new("127.0.0.1", 5).resolve().unwrap();
        assert_eq!(addrs, ["127.0.0.1:5".parse::<SocketAddr>().unwrap()]);
    }
}
