//! The control API on a real Unix socket, answering from real reactors (no KVM), and the
//! `ringvisor ctl` client.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::Arc;

use ringvisor::api::{call, ApiError, ApiServer, ApiState, BalloonControl, ShutdownHook};
use ringvisor_io::{IowqLimits, ReactorOptions, ReactorSet, RingPolicy};
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
    assert_eq!(info["ok"], json!(true));
    assert_eq!(info["result"]["cpus"], json!(2));
    assert_eq!(info["result"]["devices"], json!([]));
    // Where the threads run, read live: both reactors and the API thread are there.
    let threads = info["result"]["threads"].as_array().unwrap();
    for name in ["reactor0", "reactor1", "api"] {
        assert!(
            threads
                .iter()
                .any(|t| t["name"] == json!(name) && !t["cores"].as_str().unwrap().is_empty()),
            "{name} in {threads:?}"
        );
    }
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

#[test]
fn info_lists_the_reactors_io_wq_limits_and_workers() {
    let limits = |n| IowqLimits::uniform(std::num::NonZeroU32::new(n).unwrap());
    let reactors = ReactorSet::start_with(
        &[None],
        &ReactorOptions {
            iowq: Some(limits(2)),
            ..ReactorOptions::default()
        },
    )
    .unwrap();
    let low = ReactorSet::start_low_priority_confined(
        &[],
        &ReactorOptions {
            iowq: Some(limits(1)),
            ..ReactorOptions::default()
        },
        Arc::new(|| {}),
        RingPolicy::any(),
    )
    .unwrap();
    // An fsync always runs on an io-wq worker; one submitted from the reactor's thread
    // runs on that thread's io-wq, the one its ring capped. Idle workers linger for
    // seconds, long enough for `info` to list it.
    let file = std::env::temp_dir().join(format!("ringvisor-api-iowq-{}", std::process::id()));
    std::fs::write(&file, b"data").unwrap();
    let synced = file.clone();
    let result = reactors
        .run_on(0, move || {
            let file = std::fs::File::options().write(true).open(synced).unwrap();
            let mut ring = io_uring::IoUring::new(4).unwrap();
            let fsync = io_uring::opcode::Fsync::new(io_uring::types::Fd(
                std::os::fd::AsRawFd::as_raw_fd(&file),
            ))
            .build();
            // SAFETY: the entry points at no memory; the file outlives the wait below.
            unsafe { ring.submission().push(&fsync).unwrap() };
            ring.submit_and_wait(1).unwrap();
            let result = ring.completion().next().unwrap().result();
            result
        })
        .unwrap();
    assert_eq!(result, 0, "the fsync succeeded");
    std::fs::remove_file(&file).unwrap();

    let socket =
        std::env::temp_dir().join(format!("ringvisor-api-iowq-{}.sock", std::process::id()));
    let mut state = ApiState::new(Arc::new(reactors), json!({}));
    state.low_priority = Some(Arc::new(low));
    let server = ApiServer::start(&socket, state).unwrap();
    let info = ask(&socket, "info");
    assert_eq!(info["ok"], json!(true));
    // Other tests of this process run reactors of the same names: threads are matched by
    // id, as the answer gives them.
    let threads = info["result"]["threads"].as_array().unwrap();
    let name_of = |tid: &Value| {
        threads
            .iter()
            .find(|t| t["tid"] == *tid)
            .unwrap_or_else(|| panic!("thread {tid} in {threads:?}"))["name"]
            .clone()
    };
    let iowq = &info["result"]["iowq"];
    let reactors = iowq["reactors"].as_array().unwrap();
    assert_eq!(reactors.len(), 2, "{reactors:?}");
    for (reactor, name, cap) in [(&reactors[0], "reactor0", 2), (&reactors[1], "lowprio0", 1)] {
        assert_eq!(reactor["name"], json!(name));
        assert_eq!(name_of(&reactor["tid"]), json!(name));
        assert_eq!(
            reactor["limits"],
            json!({ "bounded": cap, "unbounded": cap })
        );
        assert_eq!(
            reactor["cores"],
            Value::Null,
            "unpinned: left to the kernel"
        );
    }
    let hot_tid = reactors[0]["tid"].clone();
    let workers = iowq["workers"].as_array().unwrap();
    let ours: Vec<&Value> = workers
        .iter()
        .filter(|w| w["reactor"] == json!("reactor0"))
        .collect();
    assert!(
        (1..=2).contains(&ours.len()),
        "reactor0's io-wq worker, within its cap: {workers:?}"
    );
    for worker in ours {
        let name = json!(format!("iou-wrk-{hot_tid}"));
        assert_eq!(worker["name"], name);
        assert_eq!(
            name_of(&worker["tid"]),
            name,
            "one of the process's threads"
        );
        assert!(!worker["cores"].as_str().unwrap().is_empty());
    }
    // The same limits in `stats`, per reactor.
    let stats = ask(&socket, "stats");
    let hot = &stats["result"]["reactors"][0];
    assert_eq!(hot["iowq_limits"], json!({ "bounded": 2, "unbounded": 2 }));
    assert_eq!(hot["tid"], hot_tid);
    drop(server);
}

/// A balloon that remembers its target.
struct FakeBalloon(std::sync::Mutex<u64>);

impl BalloonControl for FakeBalloon {
    fn set_target(&self, bytes: u64) -> Result<(), String> {
        if bytes > 1 << 30 {
            return Err("larger than the guest".into());
        }
        *self.0.lock().unwrap() = bytes;
        Ok(())
    }

    fn stats(&self) -> Value {
        json!({ "target_bytes": *self.0.lock().unwrap() })
    }
}

/// A shutdown that records its steps, in order.
#[derive(Default)]
struct FakeShutdown(std::sync::Mutex<Vec<&'static str>>);

impl ShutdownHook for FakeShutdown {
    fn press_power_button(&self) -> Result<Value, String> {
        self.0.lock().unwrap().push("power button");
        Ok(json!({ "power_button": "pressed" }))
    }

    fn prepare(&self) -> Result<Value, String> {
        self.0.lock().unwrap().push("prepare");
        Ok(json!({ "flushed": ["disk.img"] }))
    }

    fn finish(&self) {
        self.0.lock().unwrap().push("finish");
    }
}

#[test]
fn balloon_and_shutdown_go_through_their_hooks() {
    let socket = std::env::temp_dir().join(format!("ringvisor-api2-{}.sock", std::process::id()));
    // Without a balloon or a shutdown hook: errors, not crashes.
    let server = ApiServer::start(&socket, state()).unwrap();
    for cmd in ["balloon", "shutdown"] {
        let answer = ask(&socket, cmd);
        assert_eq!(answer["ok"], json!(false), "{cmd}: {answer}");
    }
    drop(server);

    let balloon = Arc::new(FakeBalloon(std::sync::Mutex::new(0)));
    let shutdown = Arc::new(FakeShutdown::default());
    let mut with_hooks = state();
    with_hooks.balloon = Some(balloon.clone());
    with_hooks.shutdown = Some(shutdown.clone());
    let _server = ApiServer::start(&socket, with_hooks).unwrap();
    let ctl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ringvisor"))
            .args(["ctl", "--socket"])
            .arg(&socket)
            .args(args)
            .output()
            .unwrap()
    };
    let out = ctl(&["balloon", "64M"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["target_bytes"], json!(64u64 << 20));
    assert_eq!(*balloon.0.lock().unwrap(), 64 << 20);
    let out = ctl(&["balloon", "2G"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("larger than the guest"));
    assert_eq!(
        *balloon.0.lock().unwrap(),
        64 << 20,
        "a refused target changes nothing"
    );

    // Graceful: the power button only; the machine ends when the guest powers off.
    let out = ctl(&["shutdown"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["power_button"], json!("pressed"));
    assert_eq!(*shutdown.0.lock().unwrap(), ["power button"]);
    let out = ctl(&["balloon", "--force"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--force goes with shutdown only"
    );

    // Forced: prepare (stop, drain, flush) answers, then finish (the VMM's exit) comes
    // once the answer went out.
    let out = ctl(&["shutdown", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["flushed"], json!(["disk.img"]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while shutdown.0.lock().unwrap().len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        *shutdown.0.lock().unwrap(),
        ["power button", "prepare", "finish"]
    );
}
