//! `cedargate invoke`: the Lambda handler on events from a file or stdin, one JSON line out per
//! event, answered as soon as each event is read (so a long-running pipe behaves like a warm
//! Lambda, including policy refreshes, which run on the runtime's worker threads meanwhile).
//! Each event reaches the handler as the text it was read as, as the Lambda runtime hands it
//! over.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, Env};
use crate::event::{AuthzRequest, EventError};

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

/// Input lines, with a way to tell whether the next read may have to wait.
struct Lines {
    input: BufReader<Box<dyn Read>>,
}

impl Lines {
    /// Appends the next line to `to`; `Ok(false)` at the end of the input.
    fn read_into(&mut self, to: &mut String) -> std::io::Result<bool> {
        self.input.read_line(to).map(|n| n > 0)
    }

    /// Whether the next read may wait for input (nothing is buffered): then the answers so
    /// far must be flushed first, so that a caller waiting for them is not kept waiting.
    fn may_block(&self) -> bool {
        // `buffer` only looks at what has already been read (`fill_buf` would block).
        self.input.buffer().is_empty()
    }
}

pub fn run(args: &Args, env: &dyn Env) -> ExitCode {
    let config = match Config::from_env(env) {
        Ok(c) => c,
        Err(e) => return super::config_failure(&e),
    };
    let input: Box<dyn Read> = match args.event.as_ref().or(args.events.as_ref()) {
        Some(path) => match std::fs::File::open(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("cedargate: cannot open `{}`: {e}", path.display());
                return ExitCode::from(1);
            }
        },
        None => Box::new(std::io::stdin()),
    };
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let authorizer = match rt.block_on(crate::build_authorizer(&config)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cedargate: {e}");
            return ExitCode::from(1);
        }
    };
    let mut lines = Lines {
        input: BufReader::with_capacity(1 << 16, input),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut pending = String::new();
    // Each event is parsed and answered on this thread, as it is read: one JSON document per
    // line, or spread over several (a document the parser finds unfinished waits for the next
    // line). The parser that finds where a document ends is the handler's own, so each event
    // is read once. Output is flushed whenever the next read may have to wait for input.
    loop {
        if lines.may_block() && out.flush().is_err() {
            return ExitCode::SUCCESS;
        }
        match lines.read_into(&mut pending) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                eprintln!("cedargate: cannot read input: {e}");
                break;
            }
        }
        if pending.trim().is_empty() {
            pending.clear();
            continue;
        }
        let event = AuthzRequest::from_json(&pending);
        if matches!(event, Err(EventError::Incomplete(_))) {
            continue;
        }
        let written = match rt.block_on(authorizer.handle_event(event, None)) {
            Ok(response) => serde_json::to_writer(&mut out, &response)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n")),
            Err(_) => writeln!(out, "{UNAUTHORIZED}"),
        };
        pending.clear();
        if written.is_err() {
            // The reader went away (closed pipe): stop quietly.
            return ExitCode::SUCCESS;
        }
    }
    if !pending.trim().is_empty() {
        eprintln!("cedargate: the input ends inside a JSON event");
        let _ = writeln!(out, "{UNAUTHORIZED}");
    }
    let _ = out.flush();
    // The process ends here: its caches need no tearing down, entry by entry (the operating
    // system takes the memory back at once). Everything written is flushed above.
    std::mem::forget(authorizer);
    ExitCode::SUCCESS
}
