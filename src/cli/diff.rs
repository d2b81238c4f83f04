//! `cedargate diff`: who gains and who loses which route between a base bundle (a directory,
//! or a git revision of the repository the bundle is in) and the bundle.
//!
//! Exit 0 when no caller gains a route (a change that only narrows included), 4 with
//! `--fail-on-widening` when some caller gains one (the merge gate), 3 when either bundle is
//! invalid, 1 on any other error (an unreadable directory or claims file, an unknown
//! revision). 2 stays clap's usage error.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use crate::bundle::Snapshot;
use crate::review::{self, callers, render};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The base: a bundle directory, or a git revision (the bundle's path at that revision)
    #[arg(long, value_name = "REV_OR_DIR")]
    base: String,
    #[command(flatten)]
    bundle: super::BundleArgs,
    /// Output: a terminal summary, a pull-request comment, or JSON for tools
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Exit 4 when any caller gains any route
    #[arg(long)]
    fail_on_widening: bool,
    /// Sample callers: a YAML or JSON file of token claims (a list, or names to claims);
    /// repeatable
    #[arg(long, value_name = "FILE")]
    claims: Vec<PathBuf>,
    /// Most callers generated per route before it is sampled instead of enumerated
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    budget: u32,
}

/// Exit code when `--fail-on-widening` finds a gain (0–3 are taken: ok, error, deny, invalid).
const WIDENING: u8 = 4;

/// A bundle directory the command made (a git revision's files), removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The bundle at revision `rev` of the repository holding `bundle`, written to a scratch
/// directory.
fn checkout(rev: &str, bundle: &Path) -> Result<(Scratch, PathBuf), String> {
    // A revision is never an option to git.
    if rev.starts_with('-') {
        return Err(format!("`{rev}` is neither a directory nor a git revision"));
    }
    let top = git(bundle, &["rev-parse", "--show-toplevel"]).map_err(|e| {
        format!(
            "`{rev}` is not a directory, and `{}` is not in a git repository ({e})",
            bundle.display()
        )
    })?;
    let top = PathBuf::from(String::from_utf8_lossy(&top).trim());
    let prefix = git(bundle, &["rev-parse", "--show-prefix"])?;
    let prefix = String::from_utf8_lossy(&prefix).trim().to_owned();
    let commit = git(
        &top,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .map_err(|_| {
        format!(
            "`{rev}` is neither a directory nor a revision of {}",
            top.display()
        )
    })?;
    let commit = String::from_utf8_lossy(&commit).trim().to_owned();
    // At the top of the repository the prefix is empty, which git refuses as a pathspec.
    let mut ls = vec!["ls-tree", "-r", "-z", "--full-tree", commit.as_str()];
    if !prefix.is_empty() {
        ls.extend(["--", prefix.as_str()]);
    }
    let listing = git(&top, &ls)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let scratch = Scratch(
        std::env::temp_dir().join(format!("cedargate-diff-{}-{nanos}", std::process::id())),
    );
    std::fs::create_dir_all(&scratch.0)
        .map_err(|e| format!("cannot make a scratch directory: {e}"))?;
    for entry in listing.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let entry = String::from_utf8_lossy(entry);
        // `<mode> blob <sha>\t<path>`
        let Some((meta, path)) = entry.split_once('\t') else {
            continue;
        };
        let mut parts = meta.split_whitespace();
        let (Some(_mode), Some(kind), Some(sha)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some(rel) = path.strip_prefix(prefix.as_str()) else {
            continue;
        };
        if kind != "blob" || !crate::bundle::is_bundle_path(rel) {
            continue;
        }
        let bytes = git(&top, &["cat-file", "blob", sha])?;
        let target = scratch.0.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        }
        std::fs::write(&target, bytes)
            .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    }
    let dir = scratch.0.clone();
    Ok((scratch, dir))
}

fn compile(dir: &Path, origin: &str, which: &str) -> Result<Snapshot, ExitCode> {
    let files = super::read_bundle(dir)?;
    match Snapshot::compile(files, origin.to_owned()) {
        Ok((s, _warnings)) => Ok(s),
        Err(problems) => {
            for e in &problems.errors {
                eprintln!("{e:?}");
            }
            eprintln!(
                "cedargate: the {which} bundle ({origin}) is invalid ({} error(s)); `cedargate validate` shows the same",
                problems.errors.len()
            );
            Err(ExitCode::from(3))
        }
    }
}

pub fn run(args: &Args) -> ExitCode {
    let dir = match args.bundle.dir() {
        Ok(d) => d,
        Err(e) => return super::config_failure(&e),
    };
    if !dir.is_dir() {
        eprintln!(
            "cedargate: the bundle `{}` is not a directory",
            dir.display()
        );
        return ExitCode::from(1);
    }
    let base_path = Path::new(&args.base);
    let (_scratch, base_dir, base_label) = if base_path.is_dir() {
        (None, base_path.to_path_buf(), args.base.clone())
    } else {
        match checkout(&args.base, &dir) {
            Ok((scratch, d)) => {
                let label = describe_rev(&args.base, &dir);
                (Some(scratch), d, label)
            }
            Err(e) => {
                eprintln!("cedargate: --base: {e}");
                return ExitCode::from(1);
            }
        }
    };
    let mut samples = Vec::new();
    for file in &args.claims {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!(
                    "cedargate: cannot read the claims file `{}`: {e}",
                    file.display()
                );
                return ExitCode::from(1);
            }
        };
        match callers::from_samples(&file.display().to_string(), &text) {
            Ok(mut c) => samples.append(&mut c),
            Err(e) => {
                eprintln!("cedargate: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let old = match compile(&base_dir, &base_label, "base") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let label = dir.display().to_string();
    let new = match compile(&dir, &label, "new") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let review = review::review(
        &old,
        &new,
        (&base_label, &label),
        samples,
        args.budget as usize,
    );
    match args.format {
        Format::Text => print!("{}", render::text(&review)),
        Format::Markdown => print!("{}", render::markdown(&review)),
        Format::Json => println!("{}", render::json(&review)),
    }
    if args.fail_on_widening && review.widening() {
        ExitCode::from(WIDENING)
    } else {
        ExitCode::SUCCESS
    }
}

/// `REV (abbreviated commit)` for the output.
fn describe_rev(rev: &str, dir: &Path) -> String {
    match git(
        dir,
        &["rev-parse", "--short=12", &format!("{rev}^{{commit}}")],
    ) {
        Ok(c) => format!("{rev} ({})", String::from_utf8_lossy(&c).trim()),
        Err(_) => rev.to_owned(),
    }
}
