//! Interactive mode: the `console> ` prompt.
//!
//! Before every prompt the job names are fetched with `status`, so Tab
//! completes the jobs as they are now, including those a `reload` added.
//! Commands go to all servers over the connections the [`Session`] keeps.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use rustyline::config::Config;
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Editor};

use crate::address::ServerAddress;
use crate::completion::ConsoleHelper;
use crate::history::HistoryFile;
use crate::input::{parse_input, Input};
use crate::output::prefixed;
use crate::pipeline::run_pipeline;
use crate::session::{ServerAnswer, Session};
use crate::token::Token;

pub const PROMPT: &str = "console> ";

const HISTORY_SIZE: usize = 1000;

pub type ConsoleEditor = Editor<ConsoleHelper, FileHistory>;

pub fn run(
    servers: Vec<ServerAddress>,
    timeout: Duration,
    history: Option<PathBuf>,
    token: Option<Token>,
) -> ExitCode {
    let mut editor = match new_editor() {
        Ok(editor) => editor,
        Err(err) => {
            eprintln!("gearman-driver-console: cannot start the line editor: {err}");
            return ExitCode::from(2);
        }
    };
    let mut history = HistoryFile::new(history);
    history.load_into(&mut editor);
    let mut session = Session::open(servers, timeout, token);
    loop {
        let jobs = session.job_names();
        if let Some(helper) = editor.helper_mut() {
            helper.set_jobs(jobs);
        }
        let line = match editor.readline(PROMPT) {
            Ok(line) => line,
            // Ctrl-C: the line is dropped, a fresh prompt follows.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => {
                end_the_prompt_line();
                break;
            }
            Err(err) => {
                eprintln!("gearman-driver-console: cannot read the input: {err}");
                return ExitCode::from(2);
            }
        };
        history.record(&mut editor, &line);
        match parse_input(&line) {
            Input::Nothing => {}
            Input::Leave => break,
            Input::Invalid(reason) => eprintln!("{reason}"),
            Input::Command { command, pipeline } => {
                let answers = session.ask_all(&command);
                show(&answers, pipeline.as_deref());
            }
        }
    }
    ExitCode::SUCCESS
}

fn new_editor() -> rustyline::Result<ConsoleEditor> {
    let config = Config::builder()
        .max_history_size(HISTORY_SIZE)?
        .history_ignore_dups(true)?
        .history_ignore_space(true)
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .build();
    let mut editor = ConsoleEditor::with_config(config)?;
    editor.set_helper(Some(ConsoleHelper::default()));
    Ok(editor)
}

/// Prints the answers, or hands them to the pipeline.
fn show(answers: &[ServerAnswer], pipeline: Option<&str>) {
    let lines: Vec<String> = answers
        .iter()
        .flat_map(|reply| {
            let address = &reply.address;
            reply
                .answer
                .lines
                .iter()
                .map(move |line| prefixed(address, line))
        })
        .collect();
    match pipeline {
        Some(pipeline) => {
            if let Err(err) = run_pipeline(pipeline, &lines) {
                eprintln!("cannot run `{pipeline}`: {err}");
            }
        }
        None => {
            let mut out = io::stdout().lock();
            for line in &lines {
                let _ = writeln!(out, "{line}");
            }
            let _ = out.flush();
        }
    }
}

/// Ctrl-D leaves the cursor after the prompt; the shell's prompt should
/// start on a line of its own.
fn end_the_prompt_line() {
    if io::stdin().is_terminal() {
        println!();
    }
}
