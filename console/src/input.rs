//! What one line typed at the `console> ` prompt asks for.
//!
//! Everything after the first `|` is a shell pipeline: console commands
//! never contain `|`, so there is nothing to escape.

/// The meaning of one interactive line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A blank line: nothing to send.
    Nothing,
    /// `quit` or `exit`: leave the console.
    Leave,
    /// A console command, and where to send its answer lines.
    Command {
        command: String,
        pipeline: Option<String>,
    },
    /// A line that cannot be run, with the reason.
    Invalid(String),
}

pub fn parse_input(line: &str) -> Input {
    let (command, pipeline) = match line.split_once('|') {
        Some((command, pipeline)) => (command.trim(), Some(pipeline.trim())),
        None => (line.trim(), None),
    };
    if pipeline == Some("") {
        return Input::Invalid("nothing after `|`: write COMMAND | SHELL PIPELINE".into());
    }
    if command.is_empty() {
        return match pipeline {
            Some(_) => Input::Invalid("no command before `|`".into()),
            None => Input::Nothing,
        };
    }
    if matches!(command.split_whitespace().next(), Some("quit" | "exit")) {
        return Input::Leave;
    }
    Input::Command {
        command: command.to_string(),
        pipeline: pipeline.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(command: &str, pipeline: Option<&str>) -> Input {
        Input::Command {
            command: command.into(),
            pipeline: pipeline.map(Into::into),
        }
    }

    #[test]
    fn plain_commands_are_trimmed() {
        assert_eq!(parse_input("  status  "), command("status", None));
        assert_eq!(
            parse_input("set_processes a 1 2"),
            command("set_processes a 1 2", None)
        );
    }

    #[test]
    fn the_first_bar_starts_the_pipeline() {
        assert_eq!(
            parse_input("status | grep jpeg"),
            command("status", Some("grep jpeg"))
        );
        assert_eq!(
            parse_input("ps|grep -c x | wc -l"),
            command("ps", Some("grep -c x | wc -l"))
        );
    }

    #[test]
    fn quit_and_exit_leave() {
        for line in ["quit", "exit", " exit now ", "quit | cat"] {
            assert_eq!(parse_input(line), Input::Leave, "{line}");
        }
        assert_eq!(parse_input("quitter"), command("quitter", None));
    }

    #[test]
    fn blank_lines_do_nothing() {
        assert_eq!(parse_input(""), Input::Nothing);
        assert_eq!(parse_input(" \t "), Input::Nothing);
    }

    #[test]
    fn half_pipelines_are_refused() {
        assert!(
            matches!(parse_input("status |"), Input::Invalid(m) if m.contains("nothing after"))
        );
        assert!(matches!(parse_input("| grep x"), Input::Invalid(m) if m.contains("no command")));
    }
}
