//! The interactive history file, `~/.gearman_driver_history` unless
//! `--history` says otherwise (the name Gearman::Driver's console used).
//!
//! Each command is appended as soon as it is entered, so a console that is
//! killed or loses its terminal keeps what was typed, and two consoles open
//! at once both add to the file instead of overwriting each other.

use std::env;
use std::io;
use std::path::{Path, PathBuf};

use rustyline::error::ReadlineError;

use crate::interactive::ConsoleEditor;

pub const DEFAULT_FILE_NAME: &str = ".gearman_driver_history";

pub struct HistoryFile {
    path: Option<PathBuf>,
    /// Set after the first failed write, so a read-only home directory
    /// costs one warning rather than one per command.
    warned: bool,
}

impl HistoryFile {
    /// The file given, else the default one in `$HOME`; without either,
    /// history lives only as long as the console.
    pub fn new(explicit: Option<PathBuf>) -> HistoryFile {
        HistoryFile {
            path: explicit.or_else(default_path),
            warned: false,
        }
    }

    pub fn load_into(&self, editor: &mut ConsoleEditor) {
        let Some(path) = &self.path else { return };
        match editor.load_history(path) {
            Ok(()) => {}
            Err(ReadlineError::Io(err)) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => warn(path, "cannot read the history", &err),
        }
    }

    /// Adds a non-blank line to the editor's history and to the file.
    /// Trailing blanks go: Tab completion leaves one after a job name.
    pub fn record(&mut self, editor: &mut ConsoleEditor, line: &str) {
        let line = line.trim_end();
        if line.trim().is_empty() {
            return;
        }
        if editor.add_history_entry(line).is_err() {
            return;
        }
        let Some(path) = &self.path else { return };
        if let Err(err) = editor.append_history(path) {
            if !self.warned {
                warn(path, "cannot save the history", &err);
                self.warned = true;
            }
        }
    }
}

fn default_path() -> Option<PathBuf> {
    env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(|home| PathBuf::from(home).join(DEFAULT_FILE_NAME))
}

fn warn(path: &Path, what: &str, err: &ReadlineError) {
    eprintln!(
        "gearman-driver-console: {what} in {}: {err}",
        path.display()
    );
}
