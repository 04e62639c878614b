//! Progress of the running dumps: a spinner per database (bytes, rate, elapsed) when stderr is a
//! terminal, otherwise a log line per database every 10 s. Log lines and spinners share stderr
//! through [`Progress::log_writer`], which clears the spinners while a line is printed. Sizes are
//! shown by [`human_bytes`].

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A size as people read it: `10 B`, `1.5 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if value < 1024.0 || unit == "TiB" {
            return if unit == "B" {
                format!("{bytes} B")
            } else {
                format!("{value:.1} {unit}")
            };
        }
        value /= 1024.0;
    }
    format!("{bytes} B")
}

/// How often the non-terminal reporter logs a running dump.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Where progress goes: chosen once per run.
#[derive(Clone, Debug)]
pub enum Progress {
    /// Periodic `[db] 12.0 MiB written in 30s` log lines (stderr is a file or a pipe).
    Log,
    /// One spinner per running dump.
    Bars(MultiProgress),
}

impl Progress {
    /// Spinners when stderr is a terminal, log lines otherwise.
    pub fn for_stderr() -> Progress {
        if io::stderr().is_terminal() {
            Progress::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Progress::Log
        }
    }

    /// Starts reporting one dump, labelled like its log lines (`[label]`).
    pub fn start(&self, label: &str) -> DumpProgress {
        match self {
            Progress::Log => DumpProgress::Log(LogProgress::new(label, Instant::now())),
            Progress::Bars(multi) => {
                let bar = multi.add(ProgressBar::new_spinner());
                let style = ProgressStyle::with_template(
                    "{spinner} {prefix:.bold} {binary_bytes} ({binary_bytes_per_sec}) {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
                bar.set_style(style);
                bar.set_prefix(label.escape_debug().to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                DumpProgress::Bar(bar)
            }
        }
    }

    /// A `tracing` writer for stderr that does not tear the spinners.
    pub fn log_writer(&self) -> LogWriter {
        LogWriter(match self {
            Progress::Log => None,
            Progress::Bars(multi) => Some(multi.clone()),
        })
    }
}

/// The progress of one running dump; cleared when dropped.
#[derive(Debug)]
pub enum DumpProgress {
    /// Periodic log lines.
    Log(LogProgress),
    /// A spinner.
    Bar(ProgressBar),
}

impl DumpProgress {
    /// `total` bytes have been written so far.
    pub fn update(&mut self, total: u64) {
        match self {
            DumpProgress::Log(log) => {
                if let Some(line) = log.update(total, Instant::now()) {
                    tracing::info!("{line}");
                }
            }
            DumpProgress::Bar(bar) => bar.set_position(total),
        }
    }
}

impl Drop for DumpProgress {
    fn drop(&mut self) {
        if let DumpProgress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// The throttle behind the log lines, apart from the clock so it can be tested.
#[derive(Debug)]
pub struct LogProgress {
    label: String,
    started: Instant,
    last: Instant,
}

impl LogProgress {
    /// Starts at `now`.
    pub fn new(label: &str, now: Instant) -> LogProgress {
        LogProgress {
            label: label.to_string(),
            started: now,
            last: now,
        }
    }

    /// The line to log at `now` for `total` bytes, at most one per [`LOG_INTERVAL`].
    pub fn update(&mut self, total: u64, now: Instant) -> Option<String> {
        if now.duration_since(self.last) < LOG_INTERVAL {
            return None;
        }
        self.last = now;
        Some(format!(
            "[{}] {} written in {:.0}s",
            self.label,
            human_bytes(total),
            now.duration_since(self.started).as_secs_f64()
        ))
    }
}

/// Writes log output to stderr, hiding the spinners (if any) while it does.
#[derive(Clone, Debug)]
pub struct LogWriter(Option<MultiProgress>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.0 {
            None => io::stderr().write(buf),
            Some(multi) => multi.suspend(|| io::stderr().write(buf)),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &self.0 {
            None => io::stderr().write_all(buf),
            Some(multi) => multi.suspend(|| io::stderr().write_all(buf)),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_come_at_most_every_interval() {
        let start = Instant::now();
        let mut log = LogProgress::new("a\"b", start);
        assert_eq!(log.update(10, start + Duration::from_secs(3)), None);
        assert_eq!(
            log.update(3 << 20, start + LOG_INTERVAL).as_deref(),
            Some("[a\"b] 3.0 MiB written in 10s")
        );
        assert_eq!(log.update(4 << 20, start + Duration::from_secs(19)), None);
        assert!(log
            .update(5 << 20, start + Duration::from_secs(21))
            .is_some());
    }

    #[test]
    fn a_pipe_gets_log_lines() {
        // Under `cargo test` stderr is captured or a pipe in CI; either way the Log path must
        // be usable and updates must not panic.
        let mut progress = Progress::Log.start("db");
        progress.update(1);
        assert!(matches!(progress, DumpProgress::Log(_)));
    }
}
