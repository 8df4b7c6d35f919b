//! Tab completion at the `console> ` prompt: command names in the first
//! word, job names where a command takes one.
//!
//! The candidates are computed by a plain function of the line, the cursor
//! and the known job names, so they can be tested without a terminal; the
//! rustyline helper only carries the job names between prompts.

use rustyline::completion::{Completer, Pair};
use rustyline::{Context, Helper, Highlighter, Hinter, Validator};

/// Command names offered in the first word: the server's commands and
/// `exit`, which the client handles itself.
pub const COMMANDS: &[&str] = &[
    "auth",
    "exit",
    "help",
    "kill",
    "killall",
    "ps",
    "quit",
    "reload",
    "schedules",
    "set_max_processes",
    "set_min_processes",
    "set_processes",
    "show",
    "shutdown",
    "status",
];

/// Commands whose first argument is a job name.
const TAKES_ONE_JOB: &[&str] = &[
    "show",
    "set_min_processes",
    "set_max_processes",
    "set_processes",
];

/// Commands whose every argument is a job name.
const TAKES_JOBS: &[&str] = &["killall"];

/// The rustyline helper; `jobs` is refreshed before every prompt.
#[derive(Default, Helper, Hinter, Highlighter, Validator)]
pub struct ConsoleHelper {
    jobs: Vec<String>,
}

impl ConsoleHelper {
    pub fn set_jobs(&mut self, jobs: Vec<String>) {
        self.jobs = jobs;
    }
}

impl Completer for ConsoleHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, words) = candidates(line, pos, &self.jobs);
        let pairs = words
            .into_iter()
            .map(|word| Pair {
                replacement: format!("{word} "),
                display: word,
            })
            .collect();
        Ok((start, pairs))
    }
}

/// Where the word under the cursor starts, and the words that could
/// replace it.
pub fn candidates(line: &str, pos: usize, jobs: &[String]) -> (usize, Vec<String>) {
    let before = &line[..pos];
    let start = before
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map_or(0, |(i, c)| i + c.len_utf8());
    // After `|` the line is shell, not console.
    if before.contains('|') {
        return (start, Vec::new());
    }
    let prefix = &before[start..];
    let earlier: Vec<&str> = before[..start].split_whitespace().collect();
    let pool: Vec<&str> = match earlier.as_slice() {
        [] => COMMANDS.to_vec(),
        [command] if TAKES_ONE_JOB.contains(command) => jobs.iter().map(String::as_str).collect(),
        [command, ..] if TAKES_JOBS.contains(command) => jobs.iter().map(String::as_str).collect(),
        _ => Vec::new(),
    };
    let matches = pool
        .into_iter()
        .filter(|word| word.starts_with(prefix))
        .map(str::to_string)
        .collect();
    (start, matches)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs() -> Vec<String> {
        vec![
            "GDExamples::Convert::convert_to_gif".into(),
            "GDExamples::Convert::convert_to_jpeg".into(),
            "Other::job".into(),
        ]
    }

    fn complete(line: &str) -> (usize, Vec<String>) {
        candidates(line, line.len(), &jobs())
    }

    #[test]
    fn first_word_completes_commands() {
        assert_eq!(complete("st"), (0, vec!["status".into()]));
        assert_eq!(
            complete("set_"),
            (
                0,
                vec![
                    "set_max_processes".into(),
                    "set_min_processes".into(),
                    "set_processes".into()
                ]
            )
        );
        assert_eq!(
            complete("  sh"),
            (2, vec!["show".into(), "shutdown".into()])
        );
        assert_eq!(complete("").1.len(), COMMANDS.len());
    }

    #[test]
    fn job_names_after_commands_that_take_one() {
        let (start, words) = complete("show GDExamples::Convert::convert_to_j");
        assert_eq!(start, 5);
        assert_eq!(words, ["GDExamples::Convert::convert_to_jpeg"]);
        let (_, words) = complete("set_processes GD");
        assert_eq!(words.len(), 2);
        assert_eq!(complete("set_min_processes ").1.len(), 3);
    }

    #[test]
    fn no_job_names_where_numbers_go() {
        assert_eq!(
            complete("set_processes Other::job ").1,
            Vec::<String>::new()
        );
        assert_eq!(complete("kill ").1, Vec::<String>::new());
        assert_eq!(complete("status ").1, Vec::<String>::new());
    }

    #[test]
    fn killall_takes_any_number_of_jobs() {
        let (start, words) = complete("killall Other::job GDExamples::Convert::convert_to_g");
        assert_eq!(start, 19);
        assert_eq!(words, ["GDExamples::Convert::convert_to_gif"]);
    }

    #[test]
    fn nothing_inside_a_pipeline() {
        assert_eq!(complete("status | gr").1, Vec::<String>::new());
        assert_eq!(complete("status | show GD").1, Vec::<String>::new());
    }

    #[test]
    fn only_the_text_before_the_cursor_counts() {
        let line = "show Oth trailing";
        assert_eq!(candidates(line, 8, &jobs()), (5, vec!["Other::job".into()]));
    }
}
