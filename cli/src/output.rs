//! What a person sees: progress on stderr (a spinner on a terminal, plain
//! lines otherwise), results on stdout.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    start: Instant,
    terminal: bool,
    /// Put before every line: whose progress it is (a fleet's server).
    label: Option<String>,
}

impl Progress {
    pub fn new() -> Self {
        Progress { start: Instant::now(), terminal: std::io::stderr().is_terminal(), label: None }
    }

    /// Plain lines (no spinner: several run at once), each named `label`.
    pub fn labelled(label: Option<&str>) -> Self {
        match label {
            Some(l) => Progress { start: Instant::now(), terminal: false, label: Some(l.to_owned()) },
            None => Progress::new(),
        }
    }

    fn stamp(&self) -> String {
        match &self.label {
            Some(l) => format!("[{:>5.1}s] {l}:", self.start.elapsed().as_secs_f64()),
            None => format!("[{:>5.1}s]", self.start.elapsed().as_secs_f64()),
        }
    }

    pub fn line(&self, msg: impl AsRef<str>) {
        eprintln!("{} {}", self.stamp(), msg.as_ref());
    }

    /// A spinner for a wait; plain lines when stderr is not a terminal.
    pub fn spinner(&self, msg: impl Into<String>) -> Spinner<'_> {
        let msg = msg.into();
        let bar = if self.terminal {
            let bar = ProgressBar::new_spinner();
            bar.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar.set_message(msg);
            Some(bar)
        } else {
            self.line(&msg);
            None
        };
        Spinner { progress: self, bar }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Spinner<'a> {
    progress: &'a Progress,
    bar: Option<ProgressBar>,
}

impl Spinner<'_> {
    pub fn line(&self, msg: impl AsRef<str>) {
        let line = format!("{} {}", self.progress.stamp(), msg.as_ref());
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A plain text table, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: Vec<&str>| {
        let line: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    };
    push_row(headers.to_vec());
    for row in rows {
        push_row(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_pads_columns() {
        let t = super::table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    BB\nxyz  1\n");
    }
}
