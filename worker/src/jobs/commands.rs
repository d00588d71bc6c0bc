//! The commands this node offers to `exec` jobs: read from the worker's configuration file
//! (`--config PATH`, TOML), checked once at start, and used to turn a job's arguments into a
//! program and its argument vector.
//!
//! ```toml
//! [commands.thumbnail]
//! program = "/usr/bin/convert"          # absolute path of an executable file; no shell
//! args = ["{0}", "-resize", "{1}", "png:-"]
//! timeout_ms = 10000                    # default 30000; a job's timeout_ms may only lower it
//! max_output_bytes = 65536              # per stream (stdout, stderr); default and most: 64 KiB
//! allow_dash_args = false               # default: an arg starting with '-' is refused
//! ```
//!
//! An argument template is a list of elements; each is literal text with placeholders `{0}`,
//! `{1}`, ... for the job's `args` (`{{` and `}}` are literal braces). A placeholder may be a
//! whole element or part of one (`--size={0}`); either way the value lands inside that one
//! element, never split or interpreted. The placeholders of a template must be `{0}` to
//! `{n-1}` with none missing, and a job must give exactly `n` args.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hearsay_shared::job::{check_command_name, MAX_EXEC_ARGS, MAX_JOB_MS};
use hearsay_shared::offers::command_set;
use serde::Deserialize;

/// A command's timeout when its declaration gives none.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The most output kept of each stream, and the default. An outcome (both streams, escaped as
/// JSON) travels back to the entry node in one answer of at most 1 MiB.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// The most elements an argument template may have.
pub const MAX_TEMPLATE_ELEMENTS: usize = 128;

/// Why a configuration file was refused: the file, where in it, and why. Nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config {}: {at}: {reason}", file.display())]
pub struct ConfigFileError {
    /// The file.
    pub file: PathBuf,
    /// Where: `line N`, `commands.NAME`, or `commands.NAME.FIELD`.
    pub at: String,
    /// Why.
    pub reason: String,
}

/// The file as written: only `[commands.NAME]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    commands: BTreeMap<String, toml::Table>,
}

/// One `[commands.NAME]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Declaration {
    program: String,
    #[serde(default)]
    args: Vec<String>,
    timeout_ms: Option<u64>,
    max_output_bytes: Option<usize>,
    #[serde(default)]
    allow_dash_args: bool,
}

/// One piece of a template element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Arg(usize),
}

/// A declared command, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Its name.
    pub name: String,
    /// The program: an absolute path to an executable file.
    pub program: PathBuf,
    /// The argument template, element by element.
    template: Vec<Vec<Piece>>,
    /// How many args a job must give: one per placeholder index.
    arity: usize,
    /// The longest a run may last.
    pub timeout: Duration,
    /// The most output kept of each stream.
    pub max_output_bytes: usize,
    /// Whether an arg may start with `-`.
    pub allow_dash_args: bool,
}

/// Why a job's args do not fit its command: the field (`args` or `args[i]`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct BadArgs {
    /// `args`, or `args[i]` for one of them.
    pub field: String,
    /// Why.
    pub reason: String,
}

impl Command {
    /// How many args a job must give.
    #[cfg(test)]
    pub fn arity(&self) -> usize {
        self.arity
    }

    /// The argument vector for a job's `args` (checked here: the count, and no leading `-`
    /// unless the command allows it; the job parser already bounded their size and refused NUL).
    pub fn argv(&self, args: &[String]) -> Result<Vec<String>, BadArgs> {
        if args.len() != self.arity {
            return Err(BadArgs {
                field: "args".into(),
                reason: format!(
                    "command {:?} takes exactly {} args, not {}",
                    self.name,
                    self.arity,
                    args.len()
                ),
            });
        }
        if !self.allow_dash_args {
            if let Some(i) = args.iter().position(|a| a.starts_with('-')) {
                return Err(BadArgs {
                    field: format!("args[{i}]"),
                    reason: format!(
                        "must not start with '-' (command {:?} does not allow_dash_args)",
                        self.name
                    ),
                });
            }
        }
        Ok(self
            .template
            .iter()
            .map(|element| {
                element
                    .iter()
                    .map(|piece| match piece {
                        Piece::Text(text) => text.as_str(),
                        Piece::Arg(i) => args[*i].as_str(),
                    })
                    .collect()
            })
            .collect())
    }

    /// The timeout of a run: the command's, or the job's if that is shorter.
    pub fn timeout_for(&self, job_timeout_ms: Option<u64>) -> Duration {
        match job_timeout_ms {
            Some(ms) => self.timeout.min(Duration::from_millis(ms)),
            None => self.timeout,
        }
    }
}

/// The commands this node offers, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commands {
    by_name: BTreeMap<String, Command>,
}

impl Commands {
    /// No command at all (a node without `--config`).
    pub fn none() -> Self {
        Commands::default()
    }

    /// Reads and checks a configuration file.
    pub fn load(file: &Path) -> Result<Commands, ConfigFileError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigFileError {
            file: file.to_owned(),
            at: "file".into(),
            reason: format!("cannot be read: {e}"),
        })?;
        Commands::parse(&text, file)
    }

    /// Checks a configuration given as text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Commands, ConfigFileError> {
        let err = |at: String, reason: String| ConfigFileError {
            file: file.to_owned(),
            at,
            reason,
        };
        let parsed: File = toml::from_str(text).map_err(|e| {
            let at = match e.span() {
                Some(span) => format!(
                    "line {}",
                    text[..span.start.min(text.len())].matches('\n').count() + 1
                ),
                None => "file".into(),
            };
            err(at, e.message().trim().to_owned())
        })?;
        let mut by_name = BTreeMap::new();
        for (name, table) in parsed.commands {
            let at = format!("commands.{name}");
            check_command_name(&name)
                .map_err(|reason| err(at.clone(), format!("name {reason}")))?;
            let declaration: Declaration = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| err(at.clone(), e.message().trim().to_owned()))?;
            let command = check(&name, declaration)
                .map_err(|(field, reason)| err(format!("{at}.{field}"), reason))?;
            by_name.insert(name, command);
        }
        Ok(Commands { by_name })
    }

    /// The command of this name, if declared.
    pub fn get(&self, name: &str) -> Option<&Command> {
        self.by_name.get(name)
    }

    /// Whether no command is declared.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The declared names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The Bloom filter of the names, as gossiped in the node's load vector.
    pub fn offer_set(&self) -> u64 {
        command_set(self.names())
    }
}

/// Checks one declaration; the error is the field and the reason.
fn check(name: &str, d: Declaration) -> Result<Command, (&'static str, String)> {
    let program = PathBuf::from(&d.program);
    if !program.is_absolute() {
        return Err((
            "program",
            format!("must be an absolute path, not {:?}", d.program),
        ));
    }
    let meta =
        std::fs::metadata(&program).map_err(|e| ("program", format!("{}: {e}", d.program)))?;
    if !meta.is_file() {
        return Err(("program", format!("{} is not a file", d.program)));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(("program", format!("{} is not executable", d.program)));
    }
    if d.args.len() > MAX_TEMPLATE_ELEMENTS {
        return Err((
            "args",
            format!(
                "has {} elements; at most {MAX_TEMPLATE_ELEMENTS} are allowed",
                d.args.len()
            ),
        ));
    }
    let mut template = Vec::with_capacity(d.args.len());
    let mut used = [false; MAX_EXEC_ARGS];
    for (i, element) in d.args.iter().enumerate() {
        let pieces = parse_element(element)
            .map_err(|reason| ("args", format!("element {i} ({element:?}): {reason}")))?;
        for piece in &pieces {
            if let Piece::Arg(n) = piece {
                used[*n] = true;
            }
        }
        template.push(pieces);
    }
    let arity = used.iter().rposition(|&u| u).map_or(0, |last| last + 1);
    if let Some(missing) = used[..arity].iter().position(|&u| !u) {
        return Err((
            "args",
            format!("uses {{{}}} but not {{{missing}}}: placeholders must be {{0}} to {{{}}} with none missing", arity - 1, arity - 1),
        ));
    }
    let timeout_ms = d.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=MAX_JOB_MS).contains(&timeout_ms) {
        return Err((
            "timeout_ms",
            format!("must be from 1 to {MAX_JOB_MS}, not {timeout_ms}"),
        ));
    }
    let max_output_bytes = d.max_output_bytes.unwrap_or(MAX_OUTPUT_BYTES);
    if !(1..=MAX_OUTPUT_BYTES).contains(&max_output_bytes) {
        return Err((
            "max_output_bytes",
            format!("must be from 1 to {MAX_OUTPUT_BYTES}, not {max_output_bytes}"),
        ));
    }
    Ok(Command {
        name: name.to_owned(),
        program,
        template,
        arity,
        timeout: Duration::from_millis(timeout_ms),
        max_output_bytes,
        allow_dash_args: d.allow_dash_args,
    })
}

/// Splits a template element into text and placeholders. The error is the reason.
fn parse_element(element: &str) -> Result<Vec<Piece>, String> {
    if element.contains('\0') {
        return Err("contains a NUL character".into());
    }
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = element.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut index = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(d) if d.is_ascii_digit() && index.len() < 3 => index.push(d),
                        Some(other) => {
                            return Err(format!(
                                "a placeholder is {{N}} with N from 0 to {}; found {other:?} after {{{index}",
                                MAX_EXEC_ARGS - 1
                            ))
                        }
                        None => return Err("has a '{' that is never closed (write {{ for a brace)".into()),
                    }
                }
                let n: usize = index
                    .parse()
                    .map_err(|_| "has an empty placeholder {}".to_owned())?;
                if n >= MAX_EXEC_ARGS {
                    return Err(format!(
                        "placeholder {{{n}}} is beyond the last allowed, {{{}}}",
                        MAX_EXEC_ARGS - 1
                    ));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Arg(n));
            }
            '}' => return Err("has a '}' that opens nothing (write }} for a brace)".into()),
            c => text.push(c),
        }
    }
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Commands, ConfigFileError> {
        Commands::parse(text, Path::new("/etc/hearsay.toml"))
    }

    fn refused(text: &str) -> ConfigFileError {
        parse(text).unwrap_err()
    }

    #[test]
    fn a_good_file_declares_its_commands() {
        let commands = parse(
            r#"
            [commands.echo]
            program = "/bin/echo"
            args = ["-n", "{0}", "--size={1}x{1}", "{{literal}}"]
            timeout_ms = 500
            max_output_bytes = 10

            [commands.date]
            program = "/bin/date"
            "#,
        )
        .unwrap();
        assert_eq!(commands.names().collect::<Vec<_>>(), ["date", "echo"]);
        let echo = commands.get("echo").unwrap();
        assert_eq!(echo.arity(), 2);
        assert_eq!(echo.timeout, Duration::from_millis(500));
        assert_eq!(echo.max_output_bytes, 10);
        assert_eq!(
            echo.argv(&["a b".into(), "3".into()]).unwrap(),
            ["-n", "a b", "--size=3x3", "{literal}"],
            "a value stays inside its element, whatever it holds"
        );
        let date = commands.get("date").unwrap();
        assert_eq!(date.arity(), 0);
        assert_eq!(date.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
        assert_eq!(date.max_output_bytes, MAX_OUTPUT_BYTES);
        assert!(!date.allow_dash_args);
        assert_eq!(date.timeout_for(Some(10)), Duration::from_millis(10));
        assert_eq!(
            date.timeout_for(Some(10_000_000)),
            date.timeout,
            "a job may lower the timeout, never raise it"
        );
        assert!(parse("").unwrap().is_empty());
        assert_ne!(commands.offer_set(), 0);
    }

    #[test]
    fn bad_files_name_the_file_the_command_and_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "[commands.x]\nprogram = \"/bin/echo\"\nshell = true\n",
                "commands.x",
                "shell",
            ),
            ("colour = 1\n", "line 1", "colour"),
            ("[commands.x\n", "line 1", ""),
            (
                "[commands.X]\nprogram = \"/bin/echo\"\n",
                "commands.X",
                "a-z",
            ),
            (
                &format!("[commands.{}]\nprogram = \"/bin/echo\"\n", "a".repeat(33)),
                "commands.aaaa",
                "32",
            ),
            ("[commands.x]\nargs = []\n", "commands.x", "program"),
            (
                "[commands.x]\nprogram = \"echo\"\n",
                "commands.x.program",
                "absolute",
            ),
            (
                "[commands.x]\nprogram = \"/nonexistent/prog\"\n",
                "commands.x.program",
                "/nonexistent/prog",
            ),
            (
                "[commands.x]\nprogram = \"/tmp\"\n",
                "commands.x.program",
                "not a file",
            ),
            (
                "[commands.x]\nprogram = \"/etc/passwd\"\n",
                "commands.x.program",
                "not executable",
            ),
            (
                "[commands.x]\nprogram = \"/bin/echo\"\nargs = [\"{1}\"]\n",
                "commands.x.args",
                "not {0}",
            ),
            (
                "[commands.x]\nprogram = \"/bin/echo\"\nargs = [\"{a}\"]\n",
                "commands.x.args",
                "placeholder",
            ),
            (
                "[commands.x]\nprogram = \"/bin/echo\"\nargs = [\"{}\"]\n",
                "commands.x.args",
                "empty",
            ),
            (
                "[commands.x]\nprogram = \"/bin/echo\"\nargs = [\"{0\"]\n",
                "commands.x.args",
                "never closed",
            ),
            (
                "[commands.x]\nprogram = \"/bin/echo\"\nargs = [\"a}\"]\n",
                "commands.x.args",
                "opens nothing",
            ),
            (
                "[commands.x]\nprogram = \"/bin/echo\"\nargs = [\"{32}\"]\n",
                "commands.x.args",
                "beyond",
            ),
            (
                "[commands.x]\nprogram = \"/bin/echo\"\nargs = [\"a\\u0000\"]\n",
                "commands.x.args",
                "NUL",
            ),
            (
                "[commands.x]\nprogram = \"/bin/echo\"\nargs = \"{0}\"\n",
                "commands.x",
                "sequence",
            ),
            (
                "[commands.x]\nprogram = \"/bin/echo\"\ntimeout_ms = 0\n",
                "commands.x.timeout_ms",
                "from 1",
            ),
            (
                "[commands.x]\nprogram = \"/bin/echo\"\ntimeout_ms = 3600001\n",
                "commands.x.timeout_ms",
                "3600000",
            ),
            (
                "[commands.x]\nprogram = \"/bin/echo\"\nmax_output_bytes = 0\n",
                "commands.x.max_output_bytes",
                "from 1",
            ),
            (
                "[commands.x]\nprogram = \"/bin/echo\"\nmax_output_bytes = 65537\n",
                "commands.x.max_output_bytes",
                "65536",
            ),
            (
                "[commands.x]\nprogram = \"/bin/echo\"\nallow_dash_args = \"yes\"\n",
                "commands.x",
                "bool",
            ),
        ];
        for (text, at, reason) in cases {
            let e = refused(text);
            assert!(
                e.at.starts_with(at),
                "{text:?}: at {:?}, not {at:?} ({e})",
                e.at
            );
            assert!(e.reason.contains(reason), "{text:?}: {e}");
            assert!(
                e.to_string().starts_with("config /etc/hearsay.toml: "),
                "{e}"
            );
        }
        let missing = Commands::load(Path::new("/nonexistent/hearsay.toml")).unwrap_err();
        assert!(missing.to_string().contains("cannot be read"), "{missing}");
    }

    #[test]
    fn job_args_must_fit_the_template() {
        let commands = parse(
            "[commands.cat]\nprogram = \"/bin/cat\"\nargs = [\"{0}\"]\n\
             [commands.any]\nprogram = \"/bin/echo\"\nargs = [\"{0}\"]\nallow_dash_args = true\n",
        )
        .unwrap();
        let cat = commands.get("cat").unwrap();
        assert_eq!(cat.argv(&["f".into()]).unwrap(), ["f"]);
        assert_eq!(cat.argv(&[]).unwrap_err().field, "args");
        assert_eq!(
            cat.argv(&["a".into(), "b".into()]).unwrap_err().field,
            "args"
        );
        let dash = cat.argv(&["--help".into()]).unwrap_err();
        assert_eq!(dash.field, "args[0]");
        assert!(dash.reason.contains("allow_dash_args"), "{dash}");
        let any = commands.get("any").unwrap();
        assert_eq!(any.argv(&["-n".into()]).unwrap(), ["-n"]);
    }
}
