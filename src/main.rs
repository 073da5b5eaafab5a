//! `ringvisor`: a KVM virtual machine monitor whose I/O plane is io_uring.

use std::process::ExitCode;

use clap::Parser;
use log::info;

use ringvisor::cli::{Cli, Command};
use ringvisor::{console, logger, machine};

fn main() -> ExitCode {
    let cli = Cli::parse();
    logger::init(cli.log_level);
    match cli.command {
        Command::Run(args) => run(&args.machine_config()),
    }
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
