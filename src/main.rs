//! `ringvisor`: a KVM virtual machine monitor whose I/O plane is io_uring.

use std::process::ExitCode;

use clap::Parser;
use log::info;

use ringvisor::cli::{Cli, Command};
use ringvisor::{console, logger, machine};

fn main() -> ExitCode {
    let args = match ringvisor::config_file::expand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("ringvisor: error: {err}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    logger::init(cli.log_level);
    match cli.command {
        Command::Run(args) if args.print_topology => print_topology(&args.machine_config()),
        Command::Run(args) => run(&args.machine_config()),
        Command::Ctl(args) => ctl(&args),
        Command::Bench(args) => match std::env::current_exe() {
            Ok(own) => ringvisor_bench::cli::run(args, own),
            Err(err) => {
                eprintln!("ringvisor: error: cannot find this binary's path: {err}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Sends one request to a running VMM's API; prints the answer (pretty JSON).
fn ctl(args: &ringvisor::cli::CtlArgs) -> ExitCode {
    let mut request = serde_json::json!({ "cmd": args.command });
    match (args.command.as_str(), &args.argument) {
        ("screenshot", Some(file)) => {
            // The VMM writes the file: give it a path that does not depend on its cwd.
            let path = std::path::absolute(file).unwrap_or_else(|_| file.into());
            request["path"] = serde_json::Value::String(path.to_string_lossy().into_owned());
        }
        ("screenshot", None) => {
            eprintln!("ringvisor: error: screenshot needs a FILE");
            return ExitCode::from(2);
        }
        (_, Some(size)) => request["size"] = serde_json::Value::String(size.clone()),
        (_, None) => {}
    }
    if args.force {
        if args.command != "shutdown" {
            eprintln!("ringvisor: error: --force goes with shutdown only");
            return ExitCode::from(2);
        }
        request["force"] = serde_json::Value::Bool(true);
    }
    let answer = match ringvisor::api::call(&args.socket, &request) {
        Ok(answer) => answer,
        Err(err) => {
            eprintln!("ringvisor: error: {}: {err}", args.socket.display());
            return ExitCode::FAILURE;
        }
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&answer) else {
        eprintln!("ringvisor: error: the VMM answered something that is not JSON: {answer}");
        return ExitCode::FAILURE;
    };
    if value["ok"] == serde_json::Value::Bool(true) {
        let result = &value["result"];
        println!(
            "{}",
            serde_json::to_string_pretty(result).unwrap_or_default()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "ringvisor: error: {}",
            value["error"].as_str().unwrap_or("unknown")
        );
        ExitCode::FAILURE
    }
}

/// `run --print-topology`: the checked placement of every thread, one line each.
fn print_topology(config: &machine::MachineConfig) -> ExitCode {
    use ringvisor::placement::cpu_list_string;
    let placement = match config.placement() {
        Ok(placement) => placement,
        Err(err) => {
            eprintln!("ringvisor: error: {err}");
            return ExitCode::FAILURE;
        }
    };
    for (index, core) in placement.reactors.iter().enumerate() {
        println!("reactor{index:<5} I/O reactor          core {core}");
    }
    for (index, cores) in placement.vcpus.iter().enumerate() {
        println!(
            "vcpu{index:<8} vCPU                 cores {}",
            cpu_list_string(cores)
        );
    }
    let background = cpu_list_string(&placement.background);
    println!("lowprio0     low-priority reactor cores {background}");
    println!("api          control API          cores {background}");
    for warning in &placement.warnings {
        println!("warning: {warning}");
    }
    ExitCode::SUCCESS
}

// The exit statuses of `run`: 0 when the guest powered off or reset; 1 for a failure;
// machine::EXIT_BAD_INPUT (2) for bad input; machine::EXIT_SHUTDOWN_TIMED_OUT (3) when the
// guest ignored the power button; machine::EXIT_REACTOR_FAILED (4) when an I/O reactor's
// io_uring failed (both stopped in order, disks flushed); seccomp::VIOLATION_EXIT_CODE
// (159) for a forbidden system call. GuestExit::exit_status maps a stop to its status.
use ringvisor::machine::EXIT_BAD_INPUT;

fn run(config: &machine::MachineConfig) -> ExitCode {
    let failed = |err: machine::MachineError| {
        eprintln!("ringvisor: error: {err}");
        if err.is_bad_input() {
            ExitCode::from(EXIT_BAD_INPUT)
        } else {
            ExitCode::FAILURE
        }
    };
    // What validate refuses is the user's input (a missing file, an impossible size) or a
    // host that cannot run any machine (io_uring unavailable), found before any VM exists
    // and before the terminal is touched.
    if let Err(err) = config.validate() {
        eprintln!("ringvisor: error: {err}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    console::enter_raw_mode();
    let outcome = machine::run(config, Box::new(std::io::stdout()));
    console::restore_terminal();
    match outcome {
        Ok(exit) => {
            info!("guest stopped: {exit:?}");
            ExitCode::from(exit.exit_status())
        }
        Err(err) => failed(err),
    }
}
