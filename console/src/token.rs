//! The admin token the client sends as `auth <token>` on every new
//! connection, before the first command: from `--token-file` (its first
//! line), else from `GEARMAN_DRIVER_TOKEN`.

use std::fmt;
use std::path::Path;

/// The environment variable that may hold the token itself.
pub const TOKEN_ENV: &str = "GEARMAN_DRIVER_TOKEN";

/// A token. Its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The token in `text`: its first line without surrounding whitespace.
    pub fn parse(text: &str, from: &str) -> Result<Token, String> {
        let token = text.lines().next().unwrap_or("").trim();
        if token.is_empty() {
            return Err(format!("{from} holds no token"));
        }
        if token.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "the token in {from} contains spaces or control characters"
            ));
        }
        Ok(Token(token.to_string()))
    }

    /// The `auth` line that sends it.
    pub fn auth_command(&self) -> String {
        format!("auth {}", self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The token to send, if any: `--token-file` wins over the environment.
pub fn resolve(token_file: Option<&Path>, env: Option<String>) -> Result<Option<Token>, String> {
    if let Some(path) = token_file {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("cannot read the token file {shown}: {err}"))?;
        return Token::parse(&text, &format!("the token file {shown}")).map(Some);
    }
    match env {
        Some(value) => Token::parse(&value, TOKEN_ENV).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_wins_over_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\nignored\n").unwrap();
        let token = resolve(Some(&file), Some("from-env".into())).unwrap();
        assert_eq!(token.unwrap().auth_command(), "auth from-file");
        let token = resolve(None, Some(" from-env \n".into())).unwrap();
        assert_eq!(token.unwrap().auth_command(), "auth from-env");
        assert_eq!(resolve(None, None).unwrap(), None);
    }

    #[test]
    fn empty_missing_or_spaced_tokens_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(Some(&dir.path().join("none")), None).unwrap_err();
        assert!(err.contains("cannot read the token file"), "{err}");
        let err = resolve(None, Some(String::new())).unwrap_err();
        assert!(err.contains("GEARMAN_DRIVER_TOKEN holds no token"), "{err}");
        assert!(resolve(None, Some("a b".into())).is_err());
    }

    #[test]
    fn debug_hides_the_token() {
        let token = Token::parse("s3cret", "x").unwrap();
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
    }
}
