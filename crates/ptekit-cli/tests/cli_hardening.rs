//! The CLI around the parsers (issue 12): a closed standard output, inputs that are not
//! regular files, temporary files left by a kill, modes of the files written, and
//! `bundle make` given oversized or mismatched `.npz` archives.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_quiet_on_closed_stdout, corpus, root};
use ptekit_format::npz::{write_npz, DType, NpyArray};

fn os<'a>(args: &[&'a Path]) -> Vec<&'a OsStr> {
    args.iter().map(|p| p.as_os_str()).collect()
}

/// Every command that prints, on a pipe whose reader has gone: a quiet exit, never the
/// `println!` panic (exit 101) seen before.
#[test]
fn closed_stdout_is_a_quiet_exit() {
    let c = corpus();
    let pte = c.join("transformer.pte");
    let xnn = c.join("mlp_xnnpack.pte");
    let bpte = c.join("mlp.bpte");
    let ptd = c.join("external._default_external_constant.ptd");
    let fixture = root().join("tests/fixtures/mlp.pte");
    let p = |s: &'static str| Path::new(s);
    let cases: Vec<Vec<&Path>> = vec![
        vec![p("inspect"), p("--json"), &pte],
        vec![p("inspect"), &pte],
        vec![p("inspect"), p("--json"), &bpte],
        vec![p("inspect"), &ptd],
        vec![p("verify"), &pte],
        vec![p("ops"), p("--json"), &pte],
        vec![p("ops"), p("--yaml"), &xnn],
        vec![p("diff"), &pte, &fixture],
        vec![p("diff"), p("--json"), &pte, &xnn],
        vec![p("diff"), p("--json"), &ptd, &ptd],
        vec![p("xnnpack"), p("dump"), &xnn],
    ];
    for args in &cases {
        assert_quiet_on_closed_stdout(&os(args));
    }
}

/// Runs ptekit and waits for it at most `guard` (a hang is the failure under test; the
/// guard only ends the test, no duration is asserted). `None` if it had to be killed.
fn run_guarded(args: &[&OsStr], guard: Duration) -> Option<Output> {
    let mut child = Command::new(common::bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ptekit");
    let start = Instant::now();
    while child.try_wait().expect("poll ptekit").is_none() {
        if start.elapsed() > guard {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child.wait_with_output().expect("collect output"))
}

/// A FIFO given where a file is read: every reader refuses it at once, naming the path
/// and what it is (before, opening it blocked until a writer came, i.e. forever).
#[test]
fn fifo_inputs_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("model.pte");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    let out = dir.path().join("out.pte");
    let pte = corpus().join("mlp.pte");
    let ptd = corpus().join("external._default_external_constant.ptd");
    let npz = corpus().join("mlp.io.npz");
    let p = |s: &'static str| Path::new(s);
    let cases: Vec<Vec<&Path>> = vec![
        vec![p("inspect"), &fifo],
        vec![p("inspect"), p("--json"), &fifo],
        vec![p("verify"), &fifo],
        vec![p("verify"), &pte, p("--data"), &fifo],
        vec![p("rewrite"), &fifo, &out],
        vec![p("ops"), &fifo],
        vec![p("diff"), &pte, &fifo],
        vec![p("diff"), &ptd, &fifo],
        vec![p("xnnpack"), p("dump"), &fifo],
        vec![p("bundle"), p("extract-program"), &fifo, &out],
        vec![
            p("bundle"),
            p("make"),
            &fifo,
            p("--method"),
            p("forward"),
            &npz,
            &npz,
            p("-o"),
            &out,
        ],
        vec![
            p("bundle"),
            p("make"),
            &pte,
            p("--method"),
            p("forward"),
            &fifo,
            &npz,
            p("-o"),
            &out,
        ],
        vec![p("cache"), p("inspect"), &fifo],
        vec![p("cache"), p("verify"), &fifo],
        vec![p("cache"), p("stats"), &fifo],
        vec![p("cache"), p("compact"), p("--lock-timeout"), p("1"), &fifo],
    ];
    for args in &cases {
        let output = run_guarded(&os(args), Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{args:?}: still blocked after 30 s"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            matches!(output.status.code(), Some(1 | 2)),
            "{args:?}: {:?} {stderr}",
            output.status
        );
        assert!(
            stderr.contains(&format!(
                "{}: a FIFO (named pipe), not a regular file",
                fifo.display()
            )),
            "{args:?}: {stderr}"
        );
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
}

/// Runs ptekit under `umask 027` (through `sh`).
fn run_with_umask_027(args: &[&OsStr]) -> Output {
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 027 && exec \"$@\"")
        .arg("sh")
        .arg(common::bin())
        .args(args)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Every command that writes a file: a new file gets 0666 minus the umask (0640 under
/// umask 027), a replaced file keeps its mode (0664 here). Before, new files were 0644
/// whatever the umask (0600 in an earlier version).
#[test]
fn written_files_get_the_usual_modes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = corpus();
    let (pte, bpte, npz) = (c.join("mlp.pte"), c.join("mlp.bpte"), c.join("mlp.io.npz"));
    let ptd = c.join("external._default_external_constant.ptd");
    let p = |s: &'static str| Path::new(s);
    let out = |name: &str| dir.path().join(name);
    let (o_pte, o_bpte, o_ptd, o_extract, o_make) = (
        out("a.pte"),
        out("b.bpte"),
        out("c.ptd"),
        out("d.pte"),
        out("e.bpte"),
    );
    let cases: Vec<(Vec<&Path>, &Path)> = vec![
        (vec![p("rewrite"), &pte, &o_pte], &o_pte),
        (vec![p("rewrite"), &bpte, &o_bpte], &o_bpte),
        (vec![p("rewrite"), &ptd, &o_ptd], &o_ptd),
        (
            vec![p("bundle"), p("extract-program"), &bpte, &o_extract],
            &o_extract,
        ),
        (
            vec![
                p("bundle"),
                p("make"),
                &pte,
                p("--method"),
                p("forward"),
                &npz,
                &npz,
                p("-o"),
                &o_make,
            ],
            &o_make,
        ),
    ];
    for (args, written) in &cases {
        run_with_umask_027(&os(args));
        assert_eq!(
            format!("{:o}", mode(written)),
            "640",
            "new file of {args:?}"
        );
        std::fs::set_permissions(written, std::fs::Permissions::from_mode(0o664)).expect("chmod");
        run_with_umask_027(&os(args));
        assert_eq!(
            format!("{:o}", mode(written)),
            "664",
            "replaced file of {args:?}"
        );
    }
}

/// The files in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A partly written file that `pid` has open in `dir` (its size between 1 byte and
/// `full` - 1): the temporary file of a rewrite in progress.
fn partial_output_of(pid: u32, dir: &Path, input: &Path, full: u64) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            return false;
        };
        let size = std::fs::metadata(fd.path()).map_or(0, |m| m.len());
        target.starts_with(dir) && target != input && size > 0 && size < full
    })
}

/// `kill -9` of a rewrite while it writes a ~192 MiB file leaves nothing behind (the
/// new file has no name until complete); before, each kill left a hidden temporary file
/// of the size written so far.
#[test]
fn killed_rewrite_leaves_no_temporary_file() {
    use std::borrow::Cow;

    use ptekit_format::flat_tensor::{self, DataEntry, DataPayload, FlatTensorConfig};
    use ptekit_format::write::WriteOptions;

    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("big.ptd");
    let weights = vec![0x5au8; 16 << 20];
    let payload = DataPayload {
        buffers: (0..12).map(|_| Cow::Borrowed(&weights[..])).collect(),
        named_data: (0..12)
            .map(|i| DataEntry {
                key: format!("w{i}"),
                buffer_index: i,
                alignment: 64,
                tensor_layout: None,
            })
            .collect(),
    };
    flat_tensor::plan(&payload, &FlatTensorConfig::default())
        .expect("plan")
        .write_atomic(&input, &WriteOptions { durable: false }, None)
        .expect("write input");
    drop(weights);
    let full = std::fs::metadata(&input).expect("stat").len();
    let output = dir.path().join("out.ptd");
    let mut kills = 0;
    for _ in 0..20 {
        let mut child = Command::new(common::bin())
            .arg("rewrite")
            .arg(&input)
            .arg(&output)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ptekit");
        let pid = child.id();
        loop {
            if child.try_wait().expect("poll").is_some() {
                break;
            }
            if partial_output_of(pid, dir.path(), &input, full) {
                child.kill().expect("kill -9");
                child.wait().expect("wait");
                kills += 1;
                break;
            }
        }
        let _ = std::fs::remove_file(&output);
        assert_eq!(names_in(dir.path()), ["big.ptd"], "after {kills} kill(s)");
        if kills >= 3 {
            break;
        }
    }
    assert!(
        kills > 0,
        "the rewrite always finished before it could be killed"
    );
}

/// Arrays by name, dtype and shape (zero-filled).
type Arrays<'a> = Vec<(&'a str, DType, Vec<usize>)>;

/// Writes `arrays` as an `.npz` archive at `path`.
fn npz_at(path: &Path, arrays: &[(&str, DType, Vec<usize>)]) {
    let arrays: Vec<(String, NpyArray)> = arrays
        .iter()
        .map(|(name, dtype, shape)| {
            let len = shape.iter().product::<usize>() * dtype.size();
            let a = NpyArray::new(*dtype, shape.clone(), vec![0; len]).expect("array");
            ((*name).to_owned(), a)
        })
        .collect();
    std::fs::write(path, write_npz(&arrays).expect("npz")).expect("write npz");
}

/// `bundle make` checks every array against the method's inputs and outputs (mlp.pte:
/// one float input [2, 16], one float output [2, 4], static shapes) and names the test
/// case, the value, what the program expects and what it got. Before, only dtypes were
/// checked: wrong shapes made a `.bpte` whose tests the runtime cannot load.
#[test]
fn bundle_make_checks_arrays_against_the_method() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pte = corpus().join("mlp.pte");
    let good = dir.path().join("good.npz");
    npz_at(
        &good,
        &[
            ("in0", DType::F32, vec![2, 16]),
            ("out0", DType::F32, vec![2, 4]),
        ],
    );
    let out = dir.path().join("out.bpte");
    let make = |pairs: &[&Path]| {
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("bundle"),
            OsStr::new("make"),
            pte.as_os_str(),
            OsStr::new("--method"),
            OsStr::new("forward"),
        ];
        args.extend(pairs.iter().map(|p| p.as_os_str()));
        args.extend([OsStr::new("-o"), out.as_os_str()]);
        common::ptekit(&args)
    };
    assert!(make(&[&good, &good]).status.success());
    std::fs::remove_file(&out).expect("remove");
    let cases: [(&str, Arrays<'_>, &str); 5] = [
        (
            "dtype",
            vec![("in0", DType::I64, vec![2, 16])],
            "test_cases[1].inputs[0]: dtype <i8 (LONG) but the program expects FLOAT",
        ),
        (
            "shape",
            vec![("in0", DType::F32, vec![3, 16])],
            "test_cases[1].inputs[0]: shape [3, 16] but the program expects static shape [2, 16]",
        ),
        (
            "rank",
            vec![("in0", DType::F32, vec![32])],
            "test_cases[1].inputs[0]: shape [32] but the program expects static shape [2, 16]",
        ),
        (
            "index",
            vec![("in0", DType::F32, vec![2, 16]), ("in1", DType::F32, vec![1])],
            "test_cases[1].inputs[1]: the method has 1 inputs",
        ),
        (
            "output",
            vec![("out0", DType::F32, vec![2, 5])],
            "test_cases[1].expected_outputs[0]: shape [2, 5] but the program expects static shape [2, 4]",
        ),
    ];
    for (name, arrays, want) in cases {
        let bad = dir.path().join(format!("{name}.npz"));
        npz_at(&bad, &arrays);
        // The second test case is the bad one: its inputs or its outputs.
        let pairs: Vec<&Path> = if name == "output" {
            vec![&good, &good, &good, &bad]
        } else {
            vec![&good, &good, &bad, &good]
        };
        let output = make(&pairs);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        let want = format!("{}: method_test_suites[forward].{want}", bad.display());
        assert!(stderr.contains(&want), "{name}: {stderr}\nwanted {want}");
        assert!(!out.exists(), "{name}: wrote {}", out.display());
    }
}

/// A zip bomb: a 0.5 MB `.npz` whose `in0.npy` expands to 512 MiB of zeros. `bundle
/// make` refuses it from the declared sizes and the `.npy` header, before reading the
/// data: under a 400 MB address-space limit it ends with an error naming the array.
/// Before, it read the whole member into memory (the allocation failed under the limit;
/// without it, the 1 GiB `.bpte` of the issue).
#[test]
fn bundle_make_refuses_a_zip_bomb_before_reading_it() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let bomb = dir.path().join("bomb.npz");
    let npy = npy_header_bytes("<f4", 1 << 27);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&bomb).expect("create"));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(false);
    zip.start_file("in0.npy", options).expect("member");
    zip.write_all(&npy).expect("header");
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..512 {
        zip.write_all(&zeros).expect("data");
    }
    zip.finish().expect("finish");
    let size = std::fs::metadata(&bomb).expect("stat").len();
    assert!(size < 1 << 20, "the bomb is {size} bytes");

    let pte = corpus().join("mlp.pte");
    let good = corpus().join("mlp.io.npz");
    let out = dir.path().join("out.bpte");
    let output = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 400000 && exec \"$@\"")
        .arg("sh")
        .arg(common::bin())
        .args(["bundle", "make"])
        .arg(&pte)
        .args(["--method", "forward"])
        .arg(&bomb)
        .arg(&good)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("test_cases[0].inputs[0]: shape [134217728] but the program expects"),
        "{stderr}"
    );
    assert!(!out.exists());
}

/// `--max-npz-bytes` bounds what all archives together expand to, checked against the
/// sizes they declare before a member is read.
#[test]
fn bundle_make_takes_a_limit_on_npz_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pte = corpus().join("mlp.pte");
    let npz = corpus().join("mlp.io.npz");
    let out = dir.path().join("out.bpte");
    let make = |limit: &str| {
        let p = |s: &'static str| Path::new(s);
        let args = [
            p("bundle"),
            p("make"),
            &pte,
            p("--method"),
            p("forward"),
            &npz,
            &npz,
            p("-o"),
            &out,
            p("--max-npz-bytes"),
            Path::new(limit),
        ];
        common::ptekit(&os(&args))
    };
    // in0 (2 x 16 floats) fits, out0 (2 x 4 floats) does not.
    let output = make("300");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("npz member out0.npy: 160 bytes uncompressed, more than the 44 bytes left of the 300-byte limit"),
        "{stderr}"
    );
    assert!(!out.exists());
    assert!(make("1000").status.success());
}

/// The `.npy` (format 1.0) bytes before the data of a one-dimensional array of `len`
/// elements of type `descr`.
fn npy_header_bytes(descr: &str, len: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({len},), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(
        &u16::try_from(header.len())
            .expect("short header")
            .to_le_bytes(),
    );
    out.extend_from_slice(header.as_bytes());
    out
}
