//! docs/cli.md is the binary's own `--help`, so the flag reference cannot drift from the
//! CLI. After changing a flag: `RINGVISOR_BLESS_DOCS=1 cargo test --test docs_cli` writes
//! the file again (and the diff shows what users will see change).

use std::path::Path;
use std::process::Command;

/// The commands whose help the reference holds, in its order.
const COMMANDS: [&[&str]; 6] = [
    &[],
    &["run"],
    &["ctl"],
    &["bench", "run"],
    &["bench", "report"],
    &["bench", "compare"],
];

fn help(command: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ringvisor"))
        .args(command)
        .arg("--help")
        // clap wraps help to the terminal's width: a fixed one makes the file stable.
        .env("COLUMNS", "100")
        .output()
        .expect("cannot run ringvisor --help");
    assert!(out.status.success(), "ringvisor {command:?} --help failed");
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

fn rendered() -> String {
    let mut doc = String::from(
        "# Command-line reference\n\n\
         Generated from the binary's own `--help` (tests/docs_cli.rs checks that it still \
         is;\n`RINGVISOR_BLESS_DOCS=1 cargo test --test docs_cli` writes it again). What each \
         device and\nsetting does in more words: [features.md](features.md).\n",
    );
    for command in COMMANDS {
        let title = std::iter::once("ringvisor")
            .chain(command.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        doc.push_str(&format!(
            "\n## `{title}`\n\n```text\n{}\n```\n",
            help(command).trim_end()
        ));
    }
    doc
}

#[test]
fn the_flag_reference_is_the_binarys_help() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md");
    let want = rendered();
    if std::env::var_os("RINGVISOR_BLESS_DOCS").is_some() {
        std::fs::write(&path, &want).expect("cannot write docs/cli.md");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have != want {
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "the end".to_string(), |n| format!("line {}", n + 1));
        panic!(
            "docs/cli.md is not `ringvisor --help` any more (first difference at {line}); \
             run `RINGVISOR_BLESS_DOCS=1 cargo test --test docs_cli` and commit the file"
        );
    }
}
