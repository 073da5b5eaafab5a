//! `vnc-grab ADDR FILE [--type TEXT] [--enter]`: one frame from a VNC server saved as a
//! PNG, then the keys, if any. The nested lab runs it in L1 against ringvisor's VNC
//! server (tests/lab/scenarios/ringvisor-knobs.sh); users take screenshots through the
//! API (`ringvisor ctl screenshot`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ringvisor::display::{png, summary::summarize};
use ringvisor_rig::rfb_client::RfbClient;

/// X11 keysyms: printable ASCII is its own keysym; Return is 0xff0d.
const RETURN: u32 = 0xff0d;

#[derive(Debug, Parser)]
#[command(about = "Fetch one frame from a VNC server (RFB 3.8) and save it as a PNG")]
struct Args {
    /// The server, e.g. 127.0.0.1:5900.
    #[arg(value_name = "ADDR:PORT")]
    addr: SocketAddr,
    /// Where the PNG goes.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// After the frame, type this text (key presses and releases, printable ASCII).
    #[arg(long, value_name = "TEXT")]
    r#type: Option<String>,
    /// After the frame (and the text), press Return.
    #[arg(long)]
    enter: bool,
}

fn main() -> ExitCode {
    match grab(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("vnc-grab: error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn grab(args: &Args) -> Result<(), String> {
    let text = args.r#type.as_deref().unwrap_or("");
    if let Some(bad) = text.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!("--type: {bad:?} is not printable ASCII"));
    }
    let at = |err: &dyn std::fmt::Display| format!("{}: {err}", args.addr);
    let mut client =
        RfbClient::connect(args.addr, Duration::from_secs(args.timeout)).map_err(|e| at(&e))?;
    let frame = client.grab().map_err(|e| at(&e))?;
    png::write_png(&frame, &args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    println!("{} saved to {}", summarize(&frame), args.file.display());
    let keys = text
        .chars()
        .map(u32::from)
        .chain(args.enter.then_some(RETURN));
    for keysym in keys {
        for down in [true, false] {
            client.send_key(keysym, down).map_err(|e| at(&e))?;
        }
    }
    Ok(())
}
