//! `ringvisor run --config FILE`: a TOML file holding any of `run`'s flags, so that a
//! guest's whole setup lives in one file. Each key is a flag's long name (`api-socket` or
//! `api_socket`); values are strings, numbers, booleans (switches), arrays (repeatable
//! flags) or tables, which become `key=value,...` option lists:
//!
//! ```toml
//! kernel = "/boot/vmlinuz"
//! memory = "2G,hugepages=on"
//! cpus = "4,affinity=0@2,1@3"
//! [[disk]]
//! path = "root.img"
//! queues = 4
//! [[serial-port]]
//! name = "results"
//! file = "/tmp/results.json"
//! ```
//!
//! The file becomes command-line flags placed before the real ones; a flag given on the
//! command line replaces the file's value of it (all of a repeatable flag's values).

use std::ffi::OsString;
use std::path::Path;

use clap::{ArgAction, CommandFactory};
use toml::Value;

use crate::cli::Cli;

/// A flag of `run`: its long name and whether it takes values, and several of them.
struct Flag {
    name: String,
    takes_value: bool,
    repeatable: bool,
}

fn run_flags() -> Vec<Flag> {
    let cli = Cli::command();
    let Some(run) = cli.find_subcommand("run") else {
        return Vec::new();
    };
    run.get_arguments()
        .filter_map(|arg| {
            let name = arg.get_long()?.to_owned();
            let action = arg.get_action();
            Some(Flag {
                name,
                takes_value: action.takes_values(),
                repeatable: matches!(action, ArgAction::Append),
            })
        })
        .collect()
}

/// Rewrites `args` (the whole command line) when it holds `run --config FILE`: the file's
/// settings go in front of the command line's own flags, minus those it overrides.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some(run_at) = args.iter().position(|a| a == "run") else {
        return Ok(args);
    };
    let mut path = None;
    for (i, arg) in args.iter().enumerate().skip(run_at + 1) {
        let text = arg.to_string_lossy();
        if text == "--config" {
            path = Some(
                args.get(i + 1)
                    .ok_or("--config needs a file")?
                    .to_string_lossy()
                    .into_owned(),
            );
        } else if let Some(file) = text.strip_prefix("--config=") {
            path = Some(file.to_owned());
        }
    }
    let Some(path) = path else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("--config {path}: {e}"))?;
    let from_file = config_args(&text, Path::new(&path))?;
    let given: Vec<String> = args[run_at + 1..]
        .iter()
        .filter_map(|a| {
            let text = a.to_string_lossy();
            let flag = text.strip_prefix("--")?;
            Some(flag.split('=').next().unwrap_or(flag).to_owned())
        })
        .collect();
    let mut out: Vec<OsString> = args[..=run_at].to_vec();
    for (flag, values) in from_file {
        if given.contains(&flag) {
            continue;
        }
        out.extend(values.into_iter().map(OsString::from));
    }
    out.extend(args[run_at + 1..].iter().cloned());
    Ok(out)
}

/// The flags a config file stands for, grouped by flag, in the file's order.
fn config_args(text: &str, path: &Path) -> Result<Vec<(String, Vec<String>)>, String> {
    let at = |e: String| format!("--config {}: {e}", path.display());
    let table: toml::Table = text.parse().map_err(|e| at(format!("{e}")))?;
    let flags = run_flags();
    let mut out = Vec::new();
    for (key, value) in table {
        let name = key.replace('_', "-");
        let Some(flag) = flags.iter().find(|f| f.name == name && f.name != "config") else {
            let known: Vec<&str> = flags
                .iter()
                .map(|f| f.name.as_str())
                .filter(|n| *n != "config" && *n != "help")
                .collect();
            return Err(at(format!(
                "unknown setting '{key}' (known: {})",
                known.join(", ")
            )));
        };
        let mut args = Vec::new();
        let items = match value {
            Value::Array(items) if flag.repeatable => items,
            Value::Array(_) => return Err(at(format!("'{key}' takes one value, not a list"))),
            single => vec![single],
        };
        for item in items {
            match (flag.takes_value, item) {
                (false, Value::Boolean(true)) => args.push(format!("--{name}")),
                (false, Value::Boolean(false)) => {}
                (false, other) => {
                    return Err(at(format!(
                        "'{key}' is a switch: true or false, not a {}",
                        other.type_str()
                    )))
                }
                (true, item) => {
                    args.push(format!("--{name}"));
                    args.push(
                        scalar(&item)
                            .or_else(|| option_list(&item))
                            .ok_or_else(|| {
                                at(format!(
                                    "'{key}': cannot use a {} as a value",
                                    item.type_str()
                                ))
                            })?,
                    );
                }
            }
        }
        out.push((name, args));
    }
    Ok(out)
}

/// A string, number or boolean (on/off) as the command line spells it.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Integer(n) => Some(n.to_string()),
        Value::Float(x) => Some(x.to_string()),
        Value::Boolean(b) => Some(if *b { "on" } else { "off" }.to_owned()),
        _ => None,
    }
}

/// A table of scalars as `key=value,...`.
fn option_list(value: &Value) -> Option<String> {
    let Value::Table(table) = value else {
        return None;
    };
    let mut parts = Vec::with_capacity(table.len());
    for (key, value) in table {
        parts.push(format!("{}={}", key.replace('_', "-"), scalar(value)?));
    }
    Some(parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("rv-config-{name}-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn expanded(config: &Path, cli: &[&str]) -> Result<Vec<String>, String> {
        let mut args: Vec<OsString> = ["ringvisor", "run", "--config"]
            .iter()
            .map(OsString::from)
            .collect();
        args.push(config.into());
        args.extend(cli.iter().map(OsString::from));
        expand(args).map(|a| a.iter().map(|s| s.to_string_lossy().into_owned()).collect())
    }

    const GUEST: &str = r#"
        kernel = "/boot/vmlinuz"
        memory = "2G,hugepages=on"
        cpus = "2,affinity=0@0,1@1"
        poll_us = 50
        iowq-workers = 3
        disk = ["path=a.img,queues=2"]
        [[scsi-disk]]
        path = "b.img"
        readonly = true
        [[serial-port]]
        name = "results"
        file = "/tmp/results.json"
    "#;

    #[test]
    fn a_whole_guest_in_one_file() {
        let path = file("guest", GUEST);
        let args = expanded(&path, &[]).unwrap();
        let cli = Cli::try_parse_from(&args).unwrap();
        let crate::cli::Command::Run(run) = cli.command else {
            panic!("not run")
        };
        let config = run.machine_config();
        assert_eq!(config.kernel, Path::new("/boot/vmlinuz"));
        assert_eq!(config.memory_bytes, 2 << 30);
        assert!(config.memory_options.hugepages.is_some());
        assert_eq!(config.vcpu_affinity, vec![(0, vec![0]), (1, vec![1])]);
        assert_eq!(config.poll_us, 50);
        assert_eq!(config.iowq_workers.map(|n| n.get()), Some(3));
        assert_eq!(config.disks.len(), 1);
        assert_eq!(config.disks[0].queues, 2);
        let scsi = config.scsi.unwrap();
        assert!(scsi.disks[0].read_only);
        assert_eq!(config.console.unwrap().ports[0].name, "results");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_command_line_wins() {
        let path = file("override", GUEST);
        let args = expanded(&path, &["--memory", "1G", "--disk", "path=c.img"]).unwrap();
        let cli = Cli::try_parse_from(&args).unwrap();
        let crate::cli::Command::Run(run) = cli.command else {
            panic!("not run")
        };
        let config = run.machine_config();
        assert_eq!(config.memory_bytes, 1 << 30);
        assert!(config.memory_options.hugepages.is_none());
        assert_eq!(
            config.disks.len(),
            1,
            "the command line's disks replace the file's"
        );
        assert_eq!(config.disks[0].path, Path::new("c.img"));
        assert_eq!(config.cpus, 2, "what the command line leaves alone stays");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        for (text, want) in [
            ("kernel = ", "--config"),
            ("kernal = \"/k\"", "unknown setting 'kernal'"),
            ("kernel = [\"/a\", \"/b\"]", "takes one value"),
            ("print-topology = \"yes\"", "is a switch"),
            ("disk = [[1, 2]]", "cannot use"),
            ("config = \"other.toml\"", "unknown setting 'config'"),
        ] {
            let path = file("bad", text);
            let err = expanded(&path, &[]).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
            let _ = std::fs::remove_file(path);
        }
        let err = expanded(Path::new("/nonexistent.toml"), &[]).unwrap_err();
        assert!(err.contains("/nonexistent.toml"), "{err}");
    }

    #[test]
    fn without_config_nothing_changes() {
        let args: Vec<OsString> = ["ringvisor", "run", "--kernel", "/k"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(expand(args.clone()).unwrap(), args);
    }
}
