//! Standard output that fails like a command-line tool should.
//!
//! Rust's `println!` panics when a write fails (exit 101) and silently drops everything when
//! standard output was closed before the program started. Here instead:
//!
//! - a closed pipe (`san-spi ioctl list | head -c 10`) ends the process quietly the way
//!   `SIGPIPE` ends `cat`: the shell sees status 141 (128 + 13);
//! - any other write error (`> /dev/full`) prints `san-spi: cannot write the output: …` on
//!   standard error and exits 1;
//! - a standard output that was closed when the program started is the same write error,
//!   found before anything runs ([`check_open`]). Rust's runtime reopens a closed standard
//!   descriptor on `/dev/null` for reading and writing before `main`, so that is what
//!   `check_open` looks for: `/dev/null` open read-write as standard output (a shell's
//!   `> /dev/null` opens it write-only).

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

/// Exit status of a failed write of the output.
pub const EXIT_WRITE: u8 = 1;

/// Prints a line to standard output (like `println!`, with the error handling above).
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($t:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($t)*))) };
}

/// Prints to standard output (like `print!`, with the error handling above).
macro_rules! out {
    ($($t:tt)*) => { $crate::out::write(format_args!($($t)*)) };
}

pub(crate) use {out, outln};

/// Writes `args` to standard output and flushes; ends the process on failure (see the
/// module docs).
pub fn write(args: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        fail(&e)
    }
}

/// Ends the process for a failed write of the output.
fn fail(e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        // The reader is gone: end as SIGPIPE's default action would. Rust ignores SIGPIPE
        // at start-up (that is why the write returned EPIPE); restore and raise it.
        use nix::sys::signal::{raise, signal, SigHandler, Signal};
        // SAFETY: installing the default action is async-signal-safe and races with no
        // other handler: this program installs none.
        let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
        let _ = raise(Signal::SIGPIPE);
        std::process::exit(128 + 13);
    }
    let _ = writeln!(io::stderr(), "san-spi: cannot write the output: {e}");
    std::process::exit(EXIT_WRITE.into())
}

/// Whether standard output was open when the program started; if not, reports it (as a
/// failed write) and returns the exit status.
pub fn check_open() -> Result<(), ExitCode> {
    if stdout_was_closed() {
        let _ = writeln!(
            io::stderr(),
            "san-spi: cannot write the output: standard output is closed"
        );
        return Err(ExitCode::from(EXIT_WRITE));
    }
    Ok(())
}

/// Standard output is `/dev/null` opened read-write: the runtime's stand-in for a closed
/// descriptor (or the descriptor is not open at all).
fn stdout_was_closed() -> bool {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use nix::sys::stat::{fstat, stat};
    let fd = libc_stdout();
    let flags = match fcntl(fd, FcntlArg::F_GETFL) {
        Ok(f) => OFlag::from_bits_truncate(f),
        Err(_) => return true,
    };
    let (Ok(out), Ok(null)) = (fstat(fd), stat("/dev/null")) else {
        return false;
    };
    let is_null = out.st_rdev == null.st_rdev && (out.st_mode & 0o170000) == 0o020000;
    is_null && (flags & OFlag::O_ACCMODE) == OFlag::O_RDWR
}

fn libc_stdout() -> std::os::fd::RawFd {
    use std::os::fd::AsRawFd;
    io::stdout().as_raw_fd()
}
