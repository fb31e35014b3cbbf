//! `ptekit cache verify|inspect|stats|compact` on a cache file that shrinks while the
//! command reads it, made deterministic: an `LD_PRELOAD` shim (`tests/cut_shim.c`,
//! compiled here with `cc`) truncates the file right after the command maps it, or
//! right after its N-th `pread` of it, for every N the command reaches. A racing thread
//! hits the short window between opening and parsing only by chance; the shim hits
//! every step.
//!
//! No run may die by a signal (reading a mapped page past the new end of the file is
//! `SIGBUS`). A run either fails with a message, or gives the answer it gives for the
//! whole file or for the cut file; a compaction that succeeds leaves a file that
//! verifies.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ptekit_cache::xpwc;

/// Compiles the shim into `dir` with the system's C compiler (`$CC`, else `cc`).
fn build_shim(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cut_shim.c");
    let so = dir.join("cut_shim.so");
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let out = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-ldl")
        .output()
        .unwrap_or_else(|e| panic!("run {cc:?} (needed to build the shim): {e}"));
    assert!(
        out.status.success(),
        "{cc:?} failed on {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

/// One command (`ptekit ARGS FILE`), without the shim.
fn run(args: &[&str], file: &Path) -> Output {
    Command::new(common::bin())
        .args(args)
        .arg(file)
        .output()
        .expect("run ptekit")
}

/// One command with the shim cutting `file` to `to` bytes after `when` (`mmap` or
/// `preadN`); also says whether the cut was made.
fn run_cut(shim: &Path, args: &[&str], file: &Path, when: &str, to: u64) -> (Output, bool) {
    let log = file.with_extension("cutlog");
    let _ = std::fs::remove_file(&log);
    let out = Command::new(common::bin())
        .args(args)
        .arg(file)
        .env("LD_PRELOAD", shim)
        .env("PTEKIT_CUT_PATH", file)
        .env("PTEKIT_CUT_AFTER", when)
        .env("PTEKIT_CUT_TO", to.to_string())
        .env("PTEKIT_CUT_LOG", &log)
        .output()
        .expect("run ptekit");
    (out, log.exists())
}

/// What a run may answer: its exit code and standard output.
fn answer(out: &Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Runs every command on `file` (rewritten from `image` before each run) with a cut to
/// each length in `cuts` after each event; checks every run and returns one line per
/// run that made its cut (`args cut@when->to: exit code`).
fn check_commands(
    shim: &Path,
    file: &Path,
    image: &[u8],
    commands: &[&[&str]],
    cuts: &[u64],
) -> Vec<String> {
    let mut seen = Vec::new();
    for &args in commands {
        let compact = args.contains(&"compact");
        for &to in cuts {
            let len = usize::try_from(to).expect("small cut");
            std::fs::write(file, image).expect("write");
            let whole = answer(&run(args, file));
            std::fs::write(file, &image[..len]).expect("write");
            let cut = answer(&run(args, file));
            let mut whens = vec!["mmap".to_string()];
            whens.extend((1..=64).map(|n| format!("pread{n}")));
            for when in &whens {
                std::fs::write(file, image).expect("write");
                let (out, was_cut) = run_cut(shim, args, file, when, to);
                let what = format!("{args:?} cut to {to} after {when}");
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert_eq!(
                    out.status.signal(),
                    None,
                    "{what}: died by a signal; stderr: {stderr}"
                );
                let code = out.status.code().expect("exit code");
                assert!((0..=2).contains(&code), "{what}: exit {code}: {stderr}");
                if when == "pread1" {
                    assert!(was_cut, "{what}: the shim saw no pread of the file");
                }
                if !was_cut {
                    if when.starts_with("pread") {
                        // Fewer reads than N: the later events do not happen either.
                        break;
                    }
                    continue;
                }
                let stdout = String::from_utf8_lossy(&out.stdout);
                seen.push(format!(
                    "{what}: exit {code}: {}{}",
                    stdout.trim(),
                    stderr.trim()
                ));
                if code != 0 {
                    assert!(
                        !stderr.trim().is_empty() || !stdout.trim().is_empty(),
                        "{what}: exit {code} and no message"
                    );
                } else if compact {
                    // Whatever was kept, the compacted file is a valid cache.
                    let check = run(&["cache", "verify"], file);
                    assert!(
                        check.status.success(),
                        "{what}: the compacted file does not verify: {}{}\ncompact said: {stdout}{stderr}",
                        String::from_utf8_lossy(&check.stdout),
                        String::from_utf8_lossy(&check.stderr)
                    );
                } else {
                    let got = answer(&out);
                    assert!(
                        got == whole || got == cut,
                        "{what}: an answer for neither the whole file ({whole:?}) nor the \
                         cut one ({cut:?}): {got:?}"
                    );
                }
            }
        }
    }
    seen
}

#[test]
fn cache_commands_on_a_file_cut_while_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shim = build_shim(dir.path());
    let read_only: &[&[&str]] = &[
        &["cache", "verify", "--json"],
        &["cache", "inspect", "--json"],
        &["cache", "stats", "--json"],
    ];

    // The reference runtime's XPWC v2 format: packed data, then an index, then a footer.
    // 64 entries of 4 KiB (a 262 KiB file): a cut to 0 or to half the file removes the
    // pages of the index and the footer.
    let entries: Vec<(String, Vec<u8>, u32)> = (0..64u32)
        .map(|i| (format!("layer{i}.weight"), vec![i as u8; 4096], i))
        .collect();
    let xp_image = xpwc::build(&entries, 1);
    let xp = dir.path().join("ref.xpwc");
    let half = (xp_image.len() as u64 / 2) & !4095;
    let mut commands = read_only.to_vec();
    commands.push(&["cache", "compact", "--lock-timeout", "5"]);
    let xp_seen = check_commands(&shim, &xp, &xp_image, &commands, &[0, half]);

    // ptekit's own format (header, index slots, packed data).
    let ptk = dir.path().join("c.pwc");
    common::make_cache(&ptk);
    let ptk_image = std::fs::read(&ptk).expect("read");
    let half = (ptk_image.len() as u64 / 2) & !4095;
    let ptk_seen = check_commands(&shim, &ptk, &ptk_image, &commands, &[0, half]);

    for line in xp_seen.iter().chain(&ptk_seen) {
        eprintln!("{line}");
    }
    // The shim cut during every command (the test reached the reads it is about).
    for seen in [&xp_seen, &ptk_seen] {
        for args in &commands {
            let name = format!("{args:?}");
            assert!(
                seen.iter().any(|s| s.starts_with(&name)),
                "no cut during {name}: {seen:#?}"
            );
        }
    }
}
