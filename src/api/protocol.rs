//! Requests and the JSON the answers carry. Every request byte comes from a client that
//! may be broken or hostile: parsing never panics and refuses anything unexpected.

use hdrhistogram::Histogram;
use ringvisor_io::{IowqLimits, IowqWorker, ReactorStats};
use serde_json::{json, Map, Value};

/// The longest request line accepted.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// What a client can ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Info,
    Stats,
    Pause,
    Resume,
    /// Graceful shutdown: the ACPI power button is pressed and the guest powers itself
    /// off. With `force`, the orderly stop without asking the guest: the vCPUs stop, disk
    /// I/O drains, every disk is flushed, the VMM exits after answering.
    Shutdown {
        force: bool,
    },
    /// The balloon's state; with a size, first sets its target (guest RAM to take away).
    Balloon {
        target_bytes: Option<u64>,
    },
    /// The display's mode and counters.
    Display,
    /// Every I/O queue's latency histograms, bucket by bucket (for benchmarks, which
    /// subtract two of these to get one job's latencies).
    Histograms,
    /// Writes the screen as a PNG file at `path` (absolute, written by the VMM).
    Screenshot {
        path: std::path::PathBuf,
    },
}

/// The commands, for error messages and `ctl --help`.
pub const COMMANDS: &str =
    "info, stats, histograms, pause, resume, shutdown, balloon, display, screenshot";

/// Parses one request line.
pub fn parse_request(line: &str) -> Result<Request, String> {
    if line.len() > MAX_REQUEST_BYTES {
        return Err(format!("request longer than {MAX_REQUEST_BYTES} bytes"));
    }
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let Value::Object(object) = value else {
        return Err("a request is a JSON object".into());
    };
    let cmd = object
        .get("cmd")
        .and_then(Value::as_str)
        .ok_or("the request has no \"cmd\" string")?;
    let fields: &[&str] = match cmd {
        "balloon" => &["cmd", "size"],
        "screenshot" => &["cmd", "path"],
        "shutdown" => &["cmd", "force"],
        _ => &["cmd"],
    };
    if let Some(extra) = object.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(format!("unknown field \"{extra}\" for {cmd}"));
    }
    match cmd {
        "info" => Ok(Request::Info),
        "stats" => Ok(Request::Stats),
        "pause" => Ok(Request::Pause),
        "resume" => Ok(Request::Resume),
        "shutdown" => Ok(Request::Shutdown {
            force: match object.get("force") {
                None => false,
                Some(Value::Bool(force)) => *force,
                Some(_) => return Err("shutdown's \"force\" must be true or false".into()),
            },
        }),
        "display" => Ok(Request::Display),
        "histograms" => Ok(Request::Histograms),
        "screenshot" => {
            let path = object
                .get("path")
                .and_then(Value::as_str)
                .map(std::path::PathBuf::from)
                .ok_or("screenshot needs a \"path\" string")?;
            if !path.is_absolute() {
                return Err("the screenshot \"path\" must be absolute".into());
            }
            Ok(Request::Screenshot { path })
        }
        "balloon" => {
            let target_bytes = match object.get("size") {
                None => None,
                Some(Value::Number(n)) => {
                    Some(n.as_u64().ok_or(
                        "\"size\" must be a whole number of bytes or a string like \"256M\"",
                    )?)
                }
                Some(Value::String(text)) => {
                    Some(parse_balloon_size(text).map_err(|e| format!("\"size\": {e}"))?)
                }
                Some(_) => {
                    return Err(
                        "\"size\" must be a whole number of bytes or a string like \"256M\"".into(),
                    )
                }
            };
            Ok(Request::Balloon { target_bytes })
        }
        other => Err(format!("unknown command \"{other}\" (known: {COMMANDS})")),
    }
}

fn percentiles(h: &Histogram<u64>) -> Value {
    let mut m = Map::new();
    m.insert("count".into(), json!(h.len()));
    if !h.is_empty() {
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
            m.insert(name.into(), json!(h.value_at_quantile(q)));
        }
        m.insert("max".into(), json!(h.max()));
        m.insert("mean".into(), json!(h.mean()));
    }
    Value::Object(m)
}

/// A balloon size: "0" empties the balloon, otherwise a size with a unit.
fn parse_balloon_size(text: &str) -> Result<u64, String> {
    if text.trim() == "0" {
        return Ok(0);
    }
    crate::options::parse_size(text)
}

/// The `stats` result: the I/O reactors, then the low-priority one; per queue, its
/// counters; latencies in nanoseconds.
pub fn stats_json(io: &[ReactorStats], low_priority: &[ReactorStats]) -> Value {
    json!({
        "reactors": reactors_json(io),
        "low_priority_reactors": reactors_json(low_priority),
    })
}

/// The non-empty buckets of `h`: [highest equivalent value, count] pairs, from which
/// the histogram can be rebuilt (and two snapshots subtracted) elsewhere.
fn buckets(h: &Histogram<u64>) -> Value {
    Value::Array(
        h.iter_recorded()
            .map(|v| json!([v.value_iterated_to(), v.count_at_value()]))
            .collect(),
    )
}

/// The `histograms` answer: every queue of the I/O reactors with its three latency
/// histograms in full.
pub fn histograms_json(io: &[ReactorStats]) -> Value {
    let queues: Vec<Value> = io
        .iter()
        .flat_map(|r| r.queues.iter())
        .map(|q| {
            json!({
                "name": q.name,
                "reactor": q.reactor,
                "kick_to_submit_ns": buckets(&q.kick_to_submit_ns),
                "submit_to_complete_ns": buckets(&q.submit_to_complete_ns),
                "complete_to_irq_ns": buckets(&q.complete_to_irq_ns),
            })
        })
        .collect();
    json!({ "queues": queues })
}

fn limits_json(limits: Option<IowqLimits>) -> Value {
    match limits {
        Some(limits) => json!({ "bounded": limits.bounded, "unbounded": limits.unbounded }),
        None => Value::Null,
    }
}

/// The `iowq` part of the `info` result: per reactor (I/O ones `reactorN`, then the
/// low-priority `lowprioN`), its thread, the io-wq limits in force (null: the kernel's)
/// and the cores its workers are kept on (null: any); then every io-wq worker thread of
/// the process with the reactor it works for (null: another thread's io-wq).
pub fn iowq_json(
    io: &[ReactorStats],
    low_priority: &[ReactorStats],
    workers: &[IowqWorker],
) -> Value {
    let named = io
        .iter()
        .map(|r| (format!("reactor{}", r.reactor), r))
        .chain(
            low_priority
                .iter()
                .map(|r| (format!("lowprio{}", r.reactor), r)),
        );
    let mut owners: Vec<(u32, String)> = Vec::new();
    let mut reactors = Vec::new();
    for (name, r) in named {
        owners.push((r.tid, name.clone()));
        let cores =
            (!r.iowq_cores.is_empty()).then(|| crate::placement::cpu_list_string(&r.iowq_cores));
        reactors.push(json!({
            "name": name,
            "tid": r.tid,
            "limits": limits_json(r.iowq_limits),
            "cores": cores,
        }));
    }
    let workers: Vec<Value> = workers
        .iter()
        .map(|w| {
            let reactor = owners
                .iter()
                .find(|(tid, _)| *tid == w.submitter)
                .map(|(_, name)| name.as_str());
            json!({ "tid": w.tid, "name": w.name, "reactor": reactor, "cores": w.cores })
        })
        .collect();
    json!({ "reactors": reactors, "workers": workers })
}

fn reactors_json(stats: &[ReactorStats]) -> Value {
    let reactors: Vec<Value> = stats
        .iter()
        .map(|r| {
            let queues: Vec<Value> = r
                .queues
                .iter()
                .map(|q| {
                    let device: Map<String, Value> = q
                        .device
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), json!(v)))
                        .collect();
                    json!({
                        "name": q.name,
                        "requests": q.requests,
                        "batches": q.batches,
                        "ops": q.ops,
                        "fixed_file_ops": q.fixed_file_ops,
                        "fixed_buffer_ops": q.fixed_buffer_ops,
                        "op_errors": q.op_errors,
                        "ops_refused": q.ops_refused,
                        "irqs_sent": q.irqs_sent,
                        "irqs_suppressed": q.irqs_suppressed,
                        "kick_to_submit_ns": percentiles(&q.kick_to_submit_ns),
                        "submit_to_complete_ns": percentiles(&q.submit_to_complete_ns),
                        "complete_to_irq_ns": percentiles(&q.complete_to_irq_ns),
                        "in_flight": q.in_flight,
                        "device": device,
                    })
                })
                .collect();
            json!({
                "reactor": r.reactor,
                "core": r.core,
                "tid": r.tid,
                "iowq_limits": limits_json(r.iowq_limits),
                "enters": r.enters,
                "sqes_submitted": r.sqes_submitted,
                "fixed_files": r.fixed_files,
                "fixed_buffers": r.fixed_buffers,
                "sqes_per_enter": percentiles(&r.sqes_per_enter),
                "queues": queues,
            })
        })
        .collect();
    Value::Array(reactors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_carry_the_registered_files_and_buffers() {
        let mut reactor = ReactorStats::new(0, Some(1));
        reactor.fixed_files = 2;
        reactor.fixed_buffers = 3;
        let mut queue = ringvisor_io::QueueStats::new("blk0/q0".into(), 0);
        queue.ops = 10;
        queue.fixed_file_ops = 9;
        queue.fixed_buffer_ops = 8;
        reactor.queues.push(queue);
        let json = stats_json(&[reactor], &[]);
        let io = &json["reactors"][0];
        assert_eq!(
            (io["fixed_files"].as_u64(), io["fixed_buffers"].as_u64()),
            (Some(2), Some(3))
        );
        let queue = &io["queues"][0];
        assert_eq!(
            (
                queue["fixed_file_ops"].as_u64(),
                queue["fixed_buffer_ops"].as_u64()
            ),
            (Some(9), Some(8))
        );
    }

    #[test]
    fn requests_parse_and_bad_ones_say_why() {
        assert_eq!(parse_request(r#"{"cmd":"info"}"#), Ok(Request::Info));
        assert_eq!(parse_request(r#" {"cmd": "stats"} "#), Ok(Request::Stats));
        assert_eq!(
            parse_request(r#"{"cmd":"shutdown"}"#),
            Ok(Request::Shutdown { force: false })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"shutdown","force":true}"#),
            Ok(Request::Shutdown { force: true })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"balloon"}"#),
            Ok(Request::Balloon { target_bytes: None })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"balloon","size":"256M"}"#),
            Ok(Request::Balloon {
                target_bytes: Some(256 << 20)
            })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"balloon","size":"0"}"#),
            Ok(Request::Balloon {
                target_bytes: Some(0)
            })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"balloon","size":4096}"#),
            Ok(Request::Balloon {
                target_bytes: Some(4096)
            })
        );
        for (line, want) in [
            ("", "not a JSON object"),
            ("{", "not a JSON object"),
            ("[1]", "is a JSON object"),
            (r#"{"cmd":7}"#, "no \"cmd\" string"),
            (r#"{"command":"info"}"#, "no \"cmd\" string"),
            (r#"{"cmd":"reboot"}"#, "unknown command \"reboot\""),
            (r#"{"cmd":"info","x":1}"#, "unknown field \"x\""),
            (r#"{"cmd":"shutdown","size":1}"#, "unknown field \"size\""),
            (
                r#"{"cmd":"shutdown","force":"yes"}"#,
                "must be true or false",
            ),
            (r#"{"cmd":"balloon","size":"12Q"}"#, "unknown unit"),
            (r#"{"cmd":"balloon","size":-1}"#, "whole number of bytes"),
            (r#"{"cmd":"balloon","size":[1]}"#, "whole number of bytes"),
        ] {
            let err = parse_request(line).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
        let long = format!(
            r#"{{"cmd":"info","pad":"{}"}}"#,
            "a".repeat(MAX_REQUEST_BYTES)
        );
        assert!(parse_request(&long).unwrap_err().contains("longer than"));
    }

    #[test]
    fn iowq_lists_each_reactors_limits_and_ties_workers_to_reactors() {
        use std::num::NonZeroU32;
        let limits = IowqLimits::uniform(NonZeroU32::new(3).unwrap());
        let mut hot = ReactorStats::new(0, Some(2));
        hot.tid = 100;
        hot.iowq_limits = Some(limits);
        hot.iowq_cores = vec![2];
        let mut low = ReactorStats::new(0, None);
        low.tid = 200;
        let worker = |tid: u32, submitter: u32| IowqWorker {
            tid,
            name: format!("iou-wrk-{submitter}"),
            submitter,
            cores: "2".into(),
        };
        let value = iowq_json(&[hot], &[low], &[worker(101, 100), worker(301, 300)]);
        assert_eq!(
            value["reactors"],
            json!([
                { "name": "reactor0", "tid": 100, "limits": { "bounded": 3, "unbounded": 3 }, "cores": "2" },
                { "name": "lowprio0", "tid": 200, "limits": null, "cores": null },
            ])
        );
        assert_eq!(
            value["workers"],
            json!([
                { "tid": 101, "name": "iou-wrk-100", "reactor": "reactor0", "cores": "2" },
                { "tid": 301, "name": "iou-wrk-300", "reactor": null, "cores": "2" },
            ])
        );
    }
}
