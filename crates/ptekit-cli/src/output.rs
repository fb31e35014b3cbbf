//! Standard output of every command. All of it goes through [`write`] (and the
//! [`out!`](crate::out) / [`outln!`](crate::outln) macros), never through `print!`, which
//! panics when the reader has gone away (`ptekit inspect --json x.pte | head -c 100`).
//!
//! A reader that went away is not an error of the command: the process ends at once,
//! prints nothing more, and exits with [`BROKEN_PIPE_EXIT`] (141, the status a shell
//! reports for a process ended by `SIGPIPE`, as `cat` or `git log` would be in the same
//! pipeline). Not 0, so that `ptekit diff a b | head` under `set -o pipefail` or a script
//! reading `PIPESTATUS` cannot mistake cut output for a complete answer (`diff` exits 1
//! for "different"). Any other failure to write standard output (a full disk behind a
//! redirection) is reported on stderr and exits 1.

use std::fmt;
use std::io::{self, Write};

/// The exit status when standard output was closed by its reader (128 + `SIGPIPE`).
pub const BROKEN_PIPE_EXIT: i32 = 141;

/// Writes formatted text to standard output and flushes it; ends the process when that
/// fails (see the module documentation).
pub fn write(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(err) = out.write_fmt(args).and_then(|()| out.flush()) {
        drop(out);
        fail(&err);
    }
}

/// Ends the process after a failed write to standard output.
pub fn fail(err: &io::Error) -> ! {
    if err.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(BROKEN_PIPE_EXIT);
    }
    // Standard error may be gone too; nothing more can be done then.
    let _ = writeln!(io::stderr(), "ptekit: writing standard output: {err}");
    std::process::exit(1);
}

/// `print!` through [`write`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*))
    };
}

/// `println!` through [`write`].
macro_rules! outln {
    () => {
        $crate::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
