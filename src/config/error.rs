//! Configuration errors that say where the problem is: the file, the key and,
//! when the TOML parser or a span knows it, the line and column.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found while loading the driver config or a worker file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in, if it is in a file (flags are not).
    pub file: Option<PathBuf>,
    /// The dotted key path, e.g. `jobs.convert.min_processes`.
    pub key: Option<String>,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            key: None,
            position: None,
            message: message.into(),
        }
    }

    pub fn in_file(mut self, file: &Path) -> Self {
        self.file = Some(file.to_path_buf());
        self
    }

    pub fn at_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Attaches a line known without its column (column 1).
    pub fn at_line(mut self, line: usize) -> Self {
        self.position = Some((line, 1));
        self
    }

    /// Attaches the line/column of a byte offset into `source`.
    pub fn at_offset(mut self, source: &str, offset: usize) -> Self {
        self.position = Some(line_col(source, offset));
        self
    }

    /// Converts a TOML parse or type error, keeping its position and the key
    /// it names (serde's "unknown field `x`" or the path of a wrong type).
    pub fn from_toml(file: &Path, source: &str, err: &toml::de::Error) -> Self {
        let position = err.span().map(|span| line_col(source, span.start));
        let message = err.message().trim().to_string();
        let key = unknown_field_name(&message)
            .or_else(|| err.span().and_then(|span| key_at(source, span.start)));
        ConfigError {
            file: Some(file.to_path_buf()),
            key,
            position,
            message,
        }
    }
}

fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next().map(str::to_string)
}

/// The dotted key whose value sits at `offset`: the `[table]` header above
/// it joined with the key left of `=` on its line.
pub fn key_at(source: &str, offset: usize) -> Option<String> {
    let offset = offset.min(source.len());
    let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = source[line_start..].lines().next().unwrap_or("");
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let table = source[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').replace('"', ""));
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

/// 1-based line and column of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some((line, col)) = self.position {
                write!(f, ":{line}:{col}")?;
            }
            write!(f, ": ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one load, so the operator fixes them in one go.
#[derive(Debug, Clone, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn push(&mut self, err: ConfigError) {
        self.0.push(err);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(err: ConfigError) -> Self {
        ConfigErrors(vec![err])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 8), (2, 3));
    }

    #[test]
    fn key_at_joins_table_and_key() {
        let src = "a = 1\n[jobs.x]\nmin_processes = \"two\"\n";
        assert_eq!(
            key_at(src, src.find("\"two").unwrap()).as_deref(),
            Some("jobs.x.min_processes")
        );
        assert_eq!(key_at(src, 4).as_deref(), Some("a"));
    }

    #[test]
    fn display_names_file_position_and_key() {
        let err = ConfigError::new("must be a number")
            .in_file(Path::new("w/X.toml"))
            .at_key("jobs.a.min_processes")
            .at_offset("x\ny", 2);
        assert_eq!(
            err.to_string(),
            "w/X.toml:2:1: key `jobs.a.min_processes`: must be a number"
        );
    }
}
