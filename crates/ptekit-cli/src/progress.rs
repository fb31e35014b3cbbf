//! Progress bars for long operations: drawn on stderr only when it is a terminal and
//! the output is not machine-readable.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Files smaller than this finish before a bar would be useful.
const MIN_BYTES_FOR_BAR: u64 = 64 << 20;

/// A byte-count progress bar, hidden unless stderr is a terminal and `total` is large.
pub fn bytes_bar(total: u64, what: &str) -> ProgressBar {
    if total < MIN_BYTES_FOR_BAR || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}
