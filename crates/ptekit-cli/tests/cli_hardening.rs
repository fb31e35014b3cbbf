//! The CLI around the parsers (issue 12): a closed standard output, inputs that are not
//! regular files, temporary files left by a kill, modes of the files written, and
//! `bundle make` given oversized or mismatched `.npz` archives.

mod common;

use std::ffi::OsStr;
use std::path::Path;

use common::{assert_quiet_on_closed_stdout, corpus, root};

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
        vec![p("xnnpack"), p("dump"), &xnn],
    ];
    for args in &cases {
        assert_quiet_on_closed_stdout(&os(args));
    }
}
