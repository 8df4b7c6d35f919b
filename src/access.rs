//! Who may change the driver: the admin token and the exposure of its doors.
//!
//! - [`AdminToken`]: the secret from `admin_token_file`, read once at start,
//!   refused when other users could read the file, and compared in constant
//!   time so that answer timing tells a guesser nothing about how close a
//!   guess came.
//! - [`exposed_binds`]: the start-up rule that a door listening beyond
//!   loopback needs a token (or `insecure_bind = true`). Every door passes
//!   its `(key, address)` pairs through it: the console's `console_bind`, and
//!   the HTTP listener's `http_bind`.
//!
//! What each door does with the token (the console's `auth`, HTTP's Bearer
//! header) is the door's own business; this module only answers "is this
//! the token?" and "may this address be bound?".

use std::fmt;
use std::net::{IpAddr, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use subtle::ConstantTimeEq;

/// The admin token. Its `Debug` form never shows the secret.
#[derive(Clone)]
pub struct AdminToken {
    secret: Vec<u8>,
}

impl AdminToken {
    /// Reads the token: the file's first line, without surrounding
    /// whitespace. Refuses a file that others may read (mode & 0o004), an
    /// empty first line, and a token with spaces or control characters
    /// inside (the console splits its lines on whitespace, and HTTP headers
    /// cannot carry control characters, so such a token could never be sent).
    pub fn load(path: &Path) -> Result<AdminToken, String> {
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o004 != 0 {
            return Err(format!(
                "{shown} is readable by every user (mode {mode:04o}); \
                 make it private with `chmod o-rwx {shown}`"
            ));
        }
        let text = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let first_line = text.split(|b| *b == b'\n').next().unwrap_or_default();
        AdminToken::new(first_line).map_err(|why| format!("{shown}: {why}"))
    }

    /// A token from its text (surrounding whitespace dropped).
    pub fn new(text: &[u8]) -> Result<AdminToken, String> {
        let secret = text.trim_ascii();
        if secret.is_empty() {
            return Err("the first line holds no token".into());
        }
        if secret
            .iter()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err("the token must not contain spaces or control characters".into());
        }
        Ok(AdminToken {
            secret: secret.to_vec(),
        })
    }

    /// Whether `candidate` is the token. The time taken depends only on the
    /// token's length, never on the candidate's bytes or length.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let same_length = (candidate.len() as u64).ct_eq(&(self.secret.len() as u64));
        let same_bytes = self
            .secret
            .iter()
            .enumerate()
            .fold(subtle::Choice::from(1), |acc, (i, byte)| {
                acc & byte.ct_eq(candidate.get(i).unwrap_or(&0))
            });
        (same_length & same_bytes).into()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl PartialEq for AdminToken {
    fn eq(&self, other: &AdminToken) -> bool {
        self.matches(&other.secret)
    }
}

/// The doors that may not be bound, as `(key, why)`, from every door's
/// `(key, address)` (`("console_bind", "0.0.0.0")`, `("http_bind",
/// "0.0.0.0:47301")`): none when a token guards them or the operator said
/// `insecure_bind = true`; else those not on loopback.
pub fn exposed_binds<'a>(
    binds: &[(&'a str, &str)],
    token: bool,
    insecure: bool,
) -> Vec<(&'a str, String)> {
    binds
        .iter()
        .filter_map(|(key, address)| {
            exposed_bind(key, address, token, insecure).map(|why| (*key, why))
        })
        .collect()
}

/// Why the door at `address` (the value of `key`) may not be bound, or
/// `None` when it may.
pub fn exposed_bind(key: &str, address: &str, token: bool, insecure: bool) -> Option<String> {
    if token || insecure || is_loopback(address) {
        return None;
    }
    Some(format!(
        "`{address}` is not a loopback address and no admin_token_file is set, so anyone \
         who can reach it could change or stop the driver; set admin_token_file, bind \
         {key} to 127.0.0.1, or set insecure_bind = true if a firewall guards it"
    ))
}

/// Whether `address` (`host`, `host:port`, `[v6]:port` or a bare IPv6
/// address) means loopback only. A name counts when everything it
/// resolves to is loopback; a name that does not resolve is left to the
/// bind to report.
pub fn is_loopback(address: &str) -> bool {
    let host = host_part(address);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    match (host, 0).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => true,
    }
}

fn host_part(address: &str) -> &str {
    let address = address.trim();
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        // One colon: host:port. More: a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> AdminToken {
        AdminToken::new(text.as_bytes()).unwrap()
    }

    #[test]
    fn matches_only_the_exact_token() {
        let t = token("s3cret");
        assert!(t.matches(b"s3cret"));
        for wrong in ["", "s3cre", "s3crett", "S3cret", "s3cre\0", "x3cret"] {
            assert!(!t.matches(wrong.as_bytes()), "{wrong:?}");
        }
    }

    #[test]
    fn the_first_line_trimmed_is_the_token() {
        assert!(token("  abc \r\n").matches(b"abc"));
        assert!(AdminToken::new(b"   \n").is_err());
        assert!(AdminToken::new(b"a b").is_err());
        assert!(AdminToken::new(b"a\x07b").is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        assert_eq!(format!("{:?}", token("s3cret")), "AdminToken(<redacted>)");
    }

    #[test]
    fn loading_refuses_files_others_can_read_and_empty_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\nsecond line is ignored\n").unwrap();
        let set_mode =
            |m| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
        set_mode(0o644);
        let err = AdminToken::load(&path).unwrap_err();
        assert!(err.contains("readable by every user (mode 0644)"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        set_mode(0o640);
        assert!(AdminToken::load(&path).unwrap().matches(b"s3cret"));
        std::fs::write(&path, "\nlater\n").unwrap();
        let err = AdminToken::load(&path).unwrap_err();
        assert!(err.contains("holds no token"), "{err}");
        let err = AdminToken::load(&dir.path().join("missing")).unwrap_err();
        assert!(err.contains("cannot read"), "{err}");
    }

    #[test]
    fn loopback_addresses() {
        for yes in [
            "127.0.0.1",
            "127.0.0.1:47301",
            "127.1.2.3",
            "::1",
            "[::1]:80",
            "localhost",
            "localhost:47301",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "0.0.0.0",
            "0.0.0.0:47301",
            "::",
            "[::]:80",
            "10.1.2.3",
            "192.0.2.1:5",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn exposure_needs_a_token_or_insecure_bind() {
        let msg = exposed_bind("console_bind", "0.0.0.0", false, false).unwrap();
        assert!(msg.contains("admin_token_file"), "{msg}");
        assert!(msg.contains("insecure_bind = true"), "{msg}");
        assert_eq!(exposed_bind("console_bind", "0.0.0.0", true, false), None);
        assert_eq!(exposed_bind("console_bind", "0.0.0.0", false, true), None);
        assert_eq!(
            exposed_bind("http_bind", "127.0.0.1:47301", false, false),
            None
        );
    }
}
