//! `loadgen watch URL`: a worker's load map in the terminal, redrawn in place, for operators on a
//! machine with no browser.
//!
//! It polls the worker's `GET /v1/cluster` every `--interval` milliseconds and redraws the whole
//! frame with two ANSI escapes (cursor home, then clear to the end of the screen). Drawing is a
//! pure function, [`render`], from the view to lines of text; the loop around it only fetches,
//! draws and waits. When stdout is not a terminal the frames are printed one after another,
//! without escapes or colour; `--once` prints a single plain frame and exits.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;
use serde_json::Value;

use crate::client::{normalise_target, Http};

/// Lines of the frame when the terminal's height is not known (`$LINES` unset).
pub const DEFAULT_ROWS: usize = 50;
/// Columns of the frame when the terminal's width is not known (`$COLUMNS` unset).
pub const DEFAULT_COLUMNS: usize = 120;
/// The widest node id shown in full; longer ids are cut, ending in `~`.
const MAX_ID_WIDTH: usize = 24;
/// Cells of the queue bar; a full bar is twice the node's slots.
const BAR_CELLS: usize = 10;
/// Lines above the node rows: title, totals, column heads.
const HEADER_LINES: usize = 3;

/// `loadgen watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// A worker's HTTP address (http://127.0.0.1:8080 or 127.0.0.1:8080).
    #[arg(value_name = "URL")]
    pub url: String,

    /// Milliseconds between two reads of the worker's /v1/cluster.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub interval: u64,

    /// Print one frame, without escapes or colour, and exit (non-zero when the worker cannot
    /// be read).
    #[arg(long)]
    pub once: bool,

    /// Lines of the frame [default: $LINES, else 50].
    #[arg(long, value_name = "N")]
    pub rows: Option<usize>,

    /// No colour, even on a terminal (also when NO_COLOR is set).
    #[arg(long)]
    pub no_color: bool,

    /// The worker's API token file (its `--api-token-file`): sent as `Authorization: Bearer`.
    #[arg(long, value_name = "PATH", env = "HEARSAY_API_TOKEN_FILE")]
    pub api_token_file: Option<std::path::PathBuf>,
}

/// `GET /v1/cluster`, the fields the view shows. Unknown fields are ignored, so that a newer
/// worker is still shown.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Snapshot {
    /// The node the map is seen from.
    pub node: String,
    /// Its incarnation.
    #[serde(default)]
    pub incarnation: u64,
    /// Every node in its map.
    pub nodes: Vec<NodeRow>,
}

/// One node of the map.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NodeRow {
    /// Its id.
    pub id: String,
    /// The viewing node's verdict: alive, suspect, dead or left.
    pub state: String,
    /// The load it last reported.
    pub load: Load,
    /// Milliseconds since its last newer report arrived; 0 for the viewing node.
    #[serde(default)]
    pub age_ms: u64,
    /// Its incarnation as last heard.
    #[serde(default)]
    pub incarnation: u64,
}

/// A node's reported load.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Load {
    /// CPU use of its machine, per mille.
    #[serde(default)]
    pub cpu_permille: u64,
    /// Jobs waiting.
    #[serde(default)]
    pub queued: u64,
    /// Jobs running.
    #[serde(default)]
    pub running: u64,
    /// Job slots.
    #[serde(default)]
    pub slots: u64,
    /// What the node says of itself: alive, or leaving.
    #[serde(default)]
    pub state: String,
}

impl NodeRow {
    /// The state shown: the verdict, or `leaving` for a node that is alive but draining.
    pub fn shown_state(&self) -> &str {
        if self.state == "alive" && self.load.state == "leaving" {
            "leaving"
        } else {
            &self.state
        }
    }

    /// Whether its load counts in the totals (it is not gone).
    fn counts(&self) -> bool {
        !matches!(self.state.as_str(), "dead" | "left")
    }
}

/// Reads a `/v1/cluster` answer.
pub fn parse(value: Value) -> Result<Snapshot> {
    serde_json::from_value(value).context("the answer is not a Hearsay worker's /v1/cluster view")
}

/// How a frame is drawn.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The address watched, for the title.
    pub url: String,
    /// Lines the frame may take, at least 5.
    pub rows: usize,
    /// Columns a line may take; longer lines are cut.
    pub columns: usize,
    /// Colour the states with ANSI escapes.
    pub color: bool,
    /// The refresh interval shown in the title, when refreshing.
    pub refresh_ms: Option<u64>,
}

/// The frame of `snapshot`: at most `options.rows` lines of at most `options.columns` visible
/// characters, nodes sorted by id, and `+N more` when they do not all fit.
pub fn render(snapshot: &Snapshot, options: &RenderOptions) -> Vec<String> {
    let mut nodes: Vec<&NodeRow> = snapshot.nodes.iter().collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));

    let mut lines = vec![title(options, Some(snapshot))];

    let mut by_state: Vec<(&str, usize)> = ["alive", "suspect", "dead", "left", "leaving"]
        .iter()
        .map(|s| (*s, 0))
        .collect();
    for node in &nodes {
        let shown = node.shown_state();
        match by_state.iter_mut().find(|(s, _)| *s == shown) {
            Some((_, n)) => *n += 1,
            None => by_state.push((shown, 1)),
        }
    }
    let states = by_state
        .iter()
        .filter(|(s, n)| *n > 0 || matches!(*s, "alive" | "suspect" | "dead"))
        .map(|(s, n)| format!("{n} {}", paint(s, s, options.color)))
        .collect::<Vec<_>>()
        .join(", ");
    let live = nodes.iter().filter(|n| n.counts());
    let (queued, running, slots) = live.fold((0u64, 0u64, 0u64), |(q, r, s), n| {
        (q + n.load.queued, r + n.load.running, s + n.load.slots)
    });
    lines.push(format!(
        "{} nodes: {states} | queued {queued}, running {running}, slots {slots} (live nodes)",
        nodes.len()
    ));

    let id_width = nodes
        .iter()
        .map(|n| n.id.chars().count())
        .max()
        .unwrap_or(2)
        .clamp(2, MAX_ID_WIDTH);
    let inc_width = nodes
        .iter()
        .map(|n| n.incarnation.to_string().len())
        .max()
        .unwrap_or(3)
        .max(3);
    lines.push(format!(
        "{:<id_width$}  {:<8} {:>11} {:<width$}  {:>4}  {:>5}  {:>7}  {:>inc_width$}",
        "ID",
        "STATE",
        "QUEUE/SLOTS",
        "LOAD",
        "RUN",
        "CPU%",
        "AGE ms",
        "INC",
        width = BAR_CELLS + 2,
    ));

    let room = options.rows.max(HEADER_LINES + 2) - HEADER_LINES;
    let shown = if nodes.len() > room {
        room - 1
    } else {
        nodes.len()
    };
    for node in &nodes[..shown] {
        lines.push(row(node, id_width, inc_width, options.color));
    }
    if shown < nodes.len() {
        lines.push(format!(
            "+{} more (a taller terminal, or --rows, shows more)",
            nodes.len() - shown
        ));
    }
    lines
        .into_iter()
        .map(|line| cut(&line, options.columns))
        .collect()
}

/// The frame shown while the worker cannot be read.
pub fn render_unreachable(reason: &str, options: &RenderOptions) -> Vec<String> {
    [
        title(options, None),
        format!("unreachable: {reason}, retrying"),
    ]
    .iter()
    .map(|line| cut(line, options.columns))
    .collect()
}

fn title(options: &RenderOptions, snapshot: Option<&Snapshot>) -> String {
    let mut text = format!("hearsay watch {}", options.url);
    if let Some(s) = snapshot {
        text.push_str(&format!(
            " | seen from {} (incarnation {})",
            s.node, s.incarnation
        ));
    }
    if let Some(ms) = options.refresh_ms {
        text.push_str(&format!(" | every {ms} ms, ctrl-c quits"));
    }
    text
}

fn row(node: &NodeRow, id_width: usize, inc_width: usize, color: bool) -> String {
    let id: String = if node.id.chars().count() > id_width {
        node.id.chars().take(id_width - 1).chain(['~']).collect()
    } else {
        node.id.clone()
    };
    let state = node.shown_state();
    let load = &node.load;
    format!(
        "{id:<id_width$}  {} {:>11} [{}]  {:>4}  {:>5.1}  {:>7}  {:>inc_width$}",
        paint(&format!("{state:<8}"), state, color),
        format!("{}/{}", load.queued, load.slots),
        bar(load.running, load.queued, load.slots),
        load.running,
        load.cpu_permille as f64 / 10.0,
        node.age_ms,
        node.incarnation,
    )
}

/// `BAR_CELLS` cells, a full bar being twice the slots: `#` for running jobs, `+` for queued
/// ones, and `>` in the last cell when there is more than fits.
pub fn bar(running: u64, queued: u64, slots: u64) -> String {
    let full = 2 * slots.max(1);
    let cells = |n: u64| -> usize {
        // Any job at all shows at least one cell.
        let c = (n * BAR_CELLS as u64).div_ceil(full);
        usize::try_from(c).unwrap_or(usize::MAX)
    };
    let run = cells(running).min(BAR_CELLS);
    let queue = cells(queued).min(BAR_CELLS - run);
    let mut text = "#".repeat(run) + &"+".repeat(queue);
    let overflow = running + queued > full;
    text.push_str(&" ".repeat(BAR_CELLS - run - queue));
    if overflow {
        text.pop();
        text.push('>');
    }
    text
}

fn paint(text: &str, state: &str, color: bool) -> String {
    if !color {
        return text.to_owned();
    }
    let code = match state {
        "alive" => "32",
        "suspect" => "33",
        "dead" => "31",
        "leaving" => "36",
        "left" => "2",
        _ => return text.to_owned(),
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// `line` cut to `columns` visible characters, escape sequences not counted (and colour reset
/// when a cut falls inside it).
fn cut(line: &str, columns: usize) -> String {
    let mut out = String::with_capacity(line.len());
    let mut visible = 0;
    let mut chars = line.chars().peekable();
    let mut cut_short = false;
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            out.push(c);
            for e in chars.by_ref() {
                out.push(e);
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        if visible == columns {
            cut_short = true;
            break;
        }
        out.push(c);
        visible += 1;
    }
    if cut_short && out.contains('\x1b') {
        out.push_str("\x1b[0m");
    }
    out
}

/// A positive number from an environment variable such as `LINES`.
fn env_size(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
}

/// Restores the cursor when the watch ends, however it ends.
struct Screen {
    live: bool,
}

impl Screen {
    fn enter(live: bool) -> Self {
        if live {
            // Hide the cursor and start from a clear screen.
            print!("\x1b[?25l\x1b[H\x1b[2J");
            std::io::stdout().flush().ok();
        }
        Screen { live }
    }

    fn draw(&self, lines: &[String]) {
        let mut out = String::new();
        if self.live {
            out.push_str("\x1b[H");
            for line in lines {
                out.push_str(line);
                out.push_str("\x1b[K\n");
            }
            out.push_str("\x1b[J");
        } else {
            for line in lines {
                out.push_str(line);
                out.push('\n');
            }
            out.push('\n');
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(out.as_bytes()).ok();
        stdout.flush().ok();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if self.live {
            print!("\x1b[0m\x1b[?25h");
            std::io::stdout().flush().ok();
        }
    }
}

/// `loadgen watch`.
pub async fn watch(args: WatchArgs) -> Result<()> {
    let base = normalise_target(&args.url).map_err(anyhow::Error::msg)?;
    if args.interval == 0 {
        bail!("--interval must be at least 1 ms");
    }
    if args.interval > 3_600_000 {
        bail!("--interval must be at most an hour (3600000 ms)");
    }
    if args.rows == Some(0) {
        bail!("--rows must be at least 1");
    }
    let terminal = std::io::stdout().is_terminal();
    let color = terminal && !args.once && !args.no_color && std::env::var_os("NO_COLOR").is_none();
    let options = RenderOptions {
        url: base.clone(),
        rows: args
            .rows
            .or_else(|| env_size("LINES"))
            .unwrap_or(DEFAULT_ROWS),
        columns: env_size("COLUMNS").unwrap_or(DEFAULT_COLUMNS),
        color,
        refresh_ms: (!args.once).then_some(args.interval),
    };
    let interval = Duration::from_millis(args.interval);
    let timeout = interval.clamp(Duration::from_secs(1), Duration::from_secs(5));
    let http = Http::new(Duration::from_secs(1))
        .with_token_file(args.api_token_file.as_deref())
        .map_err(anyhow::Error::msg)
        .context("--api-token-file")?;
    let fetch = || async {
        let value = http
            .get_json(&base, "/v1/cluster", timeout)
            .await
            .map_err(anyhow::Error::new)?;
        parse(value)
    };

    if args.once {
        let snapshot = fetch()
            .await
            .with_context(|| format!("cannot read {base}/v1/cluster"))?;
        Screen::enter(false).draw(&render(&snapshot, &options)[..]);
        return Ok(());
    }

    let screen = Screen::enter(terminal);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = crate::signals::interrupted();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = ticker.tick() => {}
        }
        let frame = tokio::select! {
            () = &mut stop => break,
            result = fetch() => match result {
                Ok(snapshot) => render(&snapshot, &options),
                Err(e) => {
                    let reason = format!("{e:#}").replace('\n', " ");
                    render_unreachable(&reason, &options)
                }
            },
        };
        screen.draw(&frame);
    }
    drop(screen);
    if terminal {
        println!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn options(rows: usize) -> RenderOptions {
        RenderOptions {
            url: "http://127.0.0.1:8080".into(),
            rows,
            columns: 200,
            color: false,
            refresh_ms: None,
        }
    }

    fn node(id: &str, state: &str, queued: u64, slots: u64) -> Value {
        json!({
            "id": id, "api": "127.0.0.1:8001", "gossip": "127.0.0.1:7001",
            "incarnation": 7, "seq": 3, "state": state,
            "load": {"cpu_permille": 250, "queued": queued, "running": 1, "slots": slots,
                     "state": "alive"},
            "age_ms": 120, "state_changes": 0, "phi": 0.5
        })
    }

    fn view(nodes: Vec<Value>) -> Value {
        json!({
            "node": "n-b", "incarnation": 42, "nodes": nodes,
            "gossip": {"rounds": 1, "datagrams_sent": 0, "bytes_sent": 0,
                       "datagrams_received": 0, "bytes_received": 0, "decode_errors": 0,
                       "reports_merged": 0, "refutations": 0, "encode_errors": 0}
        })
    }

    #[test]
    fn three_nodes_show_id_state_and_queue() {
        let snapshot = parse(view(vec![
            node("n-c", "dead", 0, 2),
            node("n-a", "alive", 3, 4),
            node("n-b", "suspect", 5, 1),
        ]))
        .unwrap();
        let lines = render(&snapshot, &options(50));
        let text = lines.join("\n");
        assert!(
            lines[0].contains("seen from n-b (incarnation 42)"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("3 nodes: 1 alive, 1 suspect, 1 dead"),
            "{text}"
        );
        // Dead nodes' loads are not counted.
        assert!(lines[1].contains("queued 8, running 2, slots 5"), "{text}");
        let rows = &lines[HEADER_LINES..];
        assert_eq!(rows.len(), 3, "{text}");
        for (row, (id, state, qs)) in rows.iter().zip([
            ("n-a", "alive", "3/4"),
            ("n-b", "suspect", "5/1"),
            ("n-c", "dead", "0/2"),
        ]) {
            assert!(row.starts_with(id), "{row}");
            assert!(row.contains(state), "{row}");
            assert!(row.contains(qs), "{row}");
            assert!(row.contains("25.0"), "cpu in {row}");
            assert!(row.contains("120"), "age in {row}");
        }
        assert!(
            !text.contains('\x1b'),
            "no escapes without colour: {text:?}"
        );
        assert!(!text.contains("more"), "{text}");
    }

    #[test]
    fn colour_wraps_the_state_only() {
        let snapshot = parse(view(vec![node("n-a", "suspect", 0, 1)])).unwrap();
        let mut opts = options(50);
        opts.color = true;
        let lines = render(&snapshot, &opts);
        assert!(
            lines[HEADER_LINES].contains("\x1b[33msuspect "),
            "{lines:?}"
        );
    }

    #[test]
    fn two_hundred_nodes_in_twenty_rows_say_how_many_more() {
        let nodes = (0..200)
            .map(|i| node(&format!("node-{i:03}"), "alive", i % 7, 2))
            .collect();
        let snapshot = parse(view(nodes)).unwrap();
        let lines = render(&snapshot, &options(20));
        assert_eq!(lines.len(), 20, "{lines:#?}");
        assert!(lines[1].starts_with("200 nodes: 200 alive"), "{}", lines[1]);
        // 3 header lines, 16 nodes, the "+N more" line.
        assert!(lines[HEADER_LINES].starts_with("node-000"));
        assert!(lines[18].starts_with("node-015"));
        assert!(lines[19].starts_with("+184 more"), "{}", lines[19]);
    }

    #[test]
    fn long_lines_and_ids_are_cut() {
        let long = "x".repeat(60);
        let snapshot = parse(view(vec![node(&long, "alive", 1, 1)])).unwrap();
        let mut opts = options(50);
        opts.columns = 40;
        opts.color = true;
        let lines = render(&snapshot, &opts);
        for line in &lines {
            let plain: String = {
                let mut s = String::new();
                let mut esc = false;
                for c in line.chars() {
                    match (esc, c) {
                        (false, '\x1b') => esc = true,
                        (true, c) if c.is_ascii_alphabetic() => esc = false,
                        (false, c) => s.push(c),
                        _ => {}
                    }
                }
                s
            };
            assert!(plain.chars().count() <= 40, "{line:?}");
        }
        assert!(lines[HEADER_LINES].starts_with(&format!("{}~", "x".repeat(23))));
    }

    #[test]
    fn the_bar_shows_running_queued_and_overflow() {
        assert_eq!(bar(0, 0, 4), "          ");
        assert_eq!(bar(4, 0, 4), "#####     ");
        assert_eq!(bar(1, 1, 1), "#####+++++");
        assert_eq!(bar(1, 9, 1), "#####++++>");
        assert_eq!(bar(1, 0, 100), "#         ");
    }

    #[test]
    fn a_leaving_node_and_an_unreachable_frame() {
        let mut leaving = node("n-a", "alive", 0, 1);
        leaving["load"]["state"] = json!("leaving");
        let snapshot = parse(view(vec![leaving])).unwrap();
        let lines = render(&snapshot, &options(50));
        assert!(lines[HEADER_LINES].contains("leaving"), "{lines:?}");
        assert!(lines[1].contains("1 leaving"), "{lines:?}");
        let lines = render_unreachable("cannot connect: refused", &options(50));
        assert_eq!(lines[1], "unreachable: cannot connect: refused, retrying");
    }

    #[test]
    fn not_a_cluster_view_is_an_error() {
        assert!(parse(json!({"error": {"code": "x"}})).is_err());
    }
}
