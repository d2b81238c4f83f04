//! `cedargate invoke`: the Lambda handler on events from a file or stdin, one JSON line out per
//! event, answered as soon as each event is read (so a long-running pipe behaves like a warm
//! Lambda, including policy refreshes). Each event reaches the handler as the text it was
//! read as, as the Lambda runtime hands it over.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde::de::IgnoredAny;

use crate::config::{Config, Env};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// One event (a JSON document)
    #[arg(long, value_name = "FILE", conflicts_with = "events")]
    event: Option<PathBuf>,
    /// Events, one JSON object per line (NDJSON)
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
}

const UNAUTHORIZED: &str = r#"{"error":"Unauthorized"}"#;

/// Reads JSON documents one after another: one per line, or spread over several lines, and
/// sends each as its text. Invalid JSON yields `Err` with the reason and reading resumes at
/// the next line.
fn documents(
    mut input: Box<dyn BufRead + Send>,
    tx: tokio::sync::mpsc::Sender<Result<String, String>>,
) {
    let mut pending = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(format!("cannot read input: {e}")));
                return;
            }
        }
        if pending.is_empty() && line.trim().is_empty() {
            continue;
        }
        pending.push_str(&line);
        // Only where the document ends is needed here: skim it without building anything.
        match serde_json::from_str::<IgnoredAny>(&pending) {
            Ok(_) => {
                let doc = std::mem::take(&mut pending);
                if tx.blocking_send(Ok(doc)).is_err() {
                    return;
                }
            }
            Err(e) if e.is_eof() => continue,
            Err(e) => {
                pending.clear();
                if tx
                    .blocking_send(Err(format!("invalid JSON event: {e}")))
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    if !pending.trim().is_empty() {
        let _ = tx.blocking_send(Err("the input ends inside a JSON event".to_owned()));
    }
}

pub fn run(args: &Args, env: &dyn Env) -> ExitCode {
    let config = match Config::from_env(env) {
        Ok(c) => c,
        Err(e) => return super::config_failure(&e),
    };
    let input: Box<dyn BufRead + Send> = match args.event.as_ref().or(args.events.as_ref()) {
        Some(path) => match std::fs::File::open(path) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("cedargate: cannot open `{}`: {e}", path.display());
                return ExitCode::from(1);
            }
        },
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cedargate: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let authorizer = match crate::build_authorizer(&config).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("cedargate: {e}");
                return ExitCode::from(1);
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        std::thread::spawn(move || documents(input, tx));
        let stdout = std::io::stdout();
        while let Some(doc) = rx.recv().await {
            let line = match doc {
                Ok(event) => match authorizer.handle_json(&event).await {
                    Ok(response) => response.to_string(),
                    Err(_) => UNAUTHORIZED.to_owned(),
                },
                Err(reason) => {
                    eprintln!("cedargate: {reason}");
                    UNAUTHORIZED.to_owned()
                }
            };
            let mut out = stdout.lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                // The reader went away (closed pipe): stop quietly.
                return ExitCode::SUCCESS;
            }
        }
        ExitCode::SUCCESS
    })
}
