//! Shell completions and manual pages generated from the argument parser.

mod common;

use common::run;

fn stdout_of(args: &[&str]) -> String {
    String::from_utf8(common::stdout_of(args)).expect("utf-8")
}

#[test]
fn bash_completion_registers_and_completes_subcommands() {
    let script = stdout_of(&["completions", "bash"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ptekit.bash");
    std::fs::write(&file, &script).unwrap();
    // Source it in a real bash and ask for the completions of `ptekit ins`.
    let probe = format!(
        "source '{}'; COMP_WORDS=(ptekit ins); COMP_CWORD=1; _ptekit ptekit ins ptekit; \
         complete -p ptekit; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "-c", &probe])
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("-F _ptekit ptekit"), "{text}");
    assert!(text.lines().any(|l| l == "inspect"), "{text}");
}

#[test]
fn zsh_and_fish_completions_name_every_subcommand() {
    let zsh = stdout_of(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef ptekit"), "{zsh}");
    let fish = stdout_of(&["completions", "fish"]);
    for sub in [
        "inspect", "verify", "rewrite", "diff", "ops", "cache", "man",
    ] {
        assert!(zsh.contains(&format!("'{sub}:")), "zsh lacks {sub}");
        assert!(fish.contains(&format!("-a \"{sub}\"")), "fish lacks {sub}");
    }
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn man_pages_for_the_tool_and_each_subcommand() {
    let page = stdout_of(&["man"]);
    assert!(page.contains(".TH ptekit 1"), "{page}");
    assert!(page.contains("ptekit\\-inspect(1)"), "{page}");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    let inspect = std::fs::read_to_string(dir.path().join("ptekit-inspect.1")).expect("page");
    assert!(inspect.contains(".TH ptekit-inspect 1"), "{inspect}");
    assert!(inspect.contains("\\-\\-top"), "{inspect}");
    for name in [
        "ptekit.1",
        "ptekit-verify.1",
        "ptekit-cache-compact.1",
        "ptekit-bundle-make.1",
    ] {
        assert!(dir.path().join(name).is_file(), "{name}");
    }
}
