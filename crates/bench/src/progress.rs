//! Progress of a long benchmark on stderr (never on stdout, where `--json` rows go): a bar with
//! the measurement under way when stderr is a terminal, plain lines otherwise (a log file or a
//! CI log gets one line per measurement started and finished).

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress of one scenario's measurements.
#[derive(Debug)]
pub(crate) struct Progress {
    scenario: &'static str,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Progress over `total` measurements of `scenario`.
    pub(crate) fn new(scenario: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("[{prefix}] {bar:30} {pos}/{len} {elapsed} {msg}")
            {
                bar.set_style(style);
            }
            bar.set_prefix(scenario);
            bar
        });
        Self { scenario, bar }
    }

    /// A measurement starts.
    pub(crate) fn start(&self, label: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(label.to_owned()),
            None => eprintln!("[{}] {label} ...", self.scenario),
        }
    }

    /// A measurement finished with `summary` (kept in the scroll-back above the bar).
    pub(crate) fn done(&self, summary: &str) {
        match &self.bar {
            Some(bar) => {
                bar.println(format!("[{}] {summary}", self.scenario));
                bar.inc(1);
            }
            None => eprintln!("[{}] {summary}", self.scenario),
        }
    }

    /// Every measurement finished: the bar goes away.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
