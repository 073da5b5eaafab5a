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
    }
}

/// Sends one request to a running VMM's API; prints the answer (pretty JSON).
fn ctl(args: &ringvisor::cli::CtlArgs) -> ExitCode {
    let mut request = serde_json::json!({ "cmd": args.command });
    if let Some(size) = &args.size {
        request["size"] = serde_json::Value::String(size.clone());
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

fn run(config: &machine::MachineConfig) -> ExitCode {
    if let Err(err) = config.validate() {
        eprintln!("ringvisor: error: {err}");
        return ExitCode::FAILURE;
    }
    console::enter_raw_mode();
    let outcome = machine::run(config, Box::new(std::io::stdout()));
    console::restore_terminal();
    match outcome {
        Ok(exit) => {
            info!("guest stopped: {exit:?}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("ringvisor: error: {err}");
            ExitCode::FAILURE
        }
    }
}
