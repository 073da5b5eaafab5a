//! The control API on a real Unix socket, answering from real reactors (no KVM), and the
//! `ringvisor ctl` client.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::Arc;

use ringvisor::api::{call, ApiError, ApiServer, ApiState};
use ringvisor_io::ReactorSet;
use serde_json::{json, Value};

fn state() -> ApiState {
    ApiState::new(
        Arc::new(ReactorSet::start(&[None, None]).unwrap()),
        json!({ "cpus": 2, "devices": [] }),
    )
}

fn ask(socket: &std::path::Path, cmd: &str) -> Value {
    serde_json::from_str(&call(socket, &json!({ "cmd": cmd })).unwrap()).unwrap()
}

#[test]
fn the_api_answers_info_and_stats_and_survives_bad_requests() {
    let socket = std::env::temp_dir().join(format!("ringvisor-api-{}.sock", std::process::id()));
    let server = ApiServer::start(&socket, state()).unwrap();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "owner-only socket");

    let info = ask(&socket, "info");
    assert_eq!(
        info,
        json!({ "ok": true, "result": { "cpus": 2, "devices": [] } })
    );
    let stats = ask(&socket, "stats");
    assert_eq!(stats["ok"], json!(true));
    assert_eq!(stats["result"]["reactors"].as_array().unwrap().len(), 2);
    assert_eq!(stats["result"]["reactors"][1]["reactor"], json!(1));

    // Broken requests on one connection: each gets an error line, the connection and
    // the server go on.
    let stream = UnixStream::connect(&socket).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for bad in [
        "not json",
        "{\"cmd\":\"reboot\"}",
        "[]",
        "{\"cmd\":\"info\",\"x\":1}",
    ] {
        writeln!(writer, "{bad}").unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let answer: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(answer["ok"], json!(false), "{bad}");
        assert!(answer["error"].as_str().unwrap().len() > 5);
    }
    writeln!(writer, "{{\"cmd\":\"info\"}}").unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("\"ok\":true"));
    // A line longer than the limit: an error, then the server hangs up.
    let mut long = vec![b'x'; 70 * 1024];
    long.push(b'\n');
    writer.write_all(&long).unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("longer than"), "{line}");
    drop((writer, reader));

    // Without vCPUs there is nothing to pause: an error, not a crash.
    let answer = ask(&socket, "pause");
    assert_eq!(answer["ok"], json!(false));
    assert!(answer["error"].as_str().unwrap().contains("no vCPUs"));

    // The CLI client.
    let out = Command::new(env!("CARGO_BIN_EXE_ringvisor"))
        .args(["ctl", "--socket"])
        .arg(&socket)
        .arg("stats")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["reactors"].as_array().unwrap().len(), 2);
    let out = Command::new(env!("CARGO_BIN_EXE_ringvisor"))
        .args(["ctl", "--socket"])
        .arg(&socket)
        .arg("fly")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command \"fly\""));

    // One VMM per socket.
    assert!(matches!(
        ApiServer::start(&socket, state()),
        Err(ApiError::InUse { .. })
    ));
    drop(server);
    assert!(!socket.exists(), "the socket file goes with the server");
}
