//! Device-side latency: the control API's `histograms` answer (per queue, the non-empty
//! buckets of three HDR histograms), and the difference of two answers taken around a job.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde_json::Value;
use thiserror::Error;

use super::fio::SIGFIG;

/// The three stages, as the API names them.
pub const STAGES: [&str; 3] = [
    "kick_to_submit_ns",
    "submit_to_complete_ns",
    "complete_to_irq_ns",
];

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DeviceError {
    #[error("histograms JSON: {0}")]
    Json(String),
    #[error("histograms JSON: {0}")]
    Malformed(String),
    #[error("queue {queue} {stage}: {reason}")]
    Delta {
        queue: String,
        stage: &'static str,
        reason: String,
    },
    #[error("histogram: {0}")]
    Histogram(String),
}

/// One stage's buckets: highest equivalent value (ns) -> count.
pub type Buckets = BTreeMap<u64, u64>;

/// One queue of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueHistograms {
    pub name: String,
    pub reactor: u64,
    /// In [`STAGES`] order. Kept as buckets so two snapshots subtract exactly.
    pub stages: [Buckets; 3],
}

/// One `histograms` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub queues: Vec<QueueHistograms>,
}

/// What a device spent on a job's I/O, summed over its queues.
#[derive(Debug, Clone)]
pub struct DeviceLatency {
    pub kick_to_submit: Histogram<u64>,
    pub submit_to_complete: Histogram<u64>,
    pub complete_to_irq: Histogram<u64>,
}

impl DeviceLatency {
    /// (short stage name, histogram), in pipeline order.
    pub fn stages(&self) -> [(&'static str, &Histogram<u64>); 3] {
        [
            ("kick_to_submit", &self.kick_to_submit),
            ("submit_to_complete", &self.submit_to_complete),
            ("complete_to_irq", &self.complete_to_irq),
        ]
    }
}

fn buckets(queue: &Value, name: &str, stage: &str) -> Result<Buckets, DeviceError> {
    let bad = |why: &str| DeviceError::Malformed(format!("queue {name} {stage}: {why}"));
    let pairs = queue
        .get(stage)
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing or not a list"))?;
    let mut out = Buckets::new();
    for pair in pairs {
        let (value, count) = match pair.as_array().map(Vec::as_slice) {
            Some([v, c]) => (v.as_u64(), c.as_u64()),
            _ => (None, None),
        };
        let (Some(value), Some(count)) = (value, count) else {
            return Err(bad("a bucket is not [value, count] in unsigned integers"));
        };
        let slot = out.entry(value).or_insert(0);
        *slot = slot
            .checked_add(count)
            .ok_or_else(|| bad("count overflow"))?;
    }
    Ok(out)
}

/// Parses the API's `histograms` answer.
pub fn parse_histograms(text: &str) -> Result<Snapshot, DeviceError> {
    let root: Value = serde_json::from_str(text).map_err(|e| DeviceError::Json(e.to_string()))?;
    let queues = root
        .get("queues")
        .and_then(Value::as_array)
        .ok_or_else(|| DeviceError::Malformed("no `queues` list".into()))?;
    let mut out = Vec::with_capacity(queues.len());
    for (i, q) in queues.iter().enumerate() {
        let name = q
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| DeviceError::Malformed(format!("queue #{i} has no name")))?
            .to_string();
        if out.iter().any(|o: &QueueHistograms| o.name == name) {
            return Err(DeviceError::Malformed(format!(
                "queue {name} appears twice"
            )));
        }
        let reactor = q.get("reactor").and_then(Value::as_u64).unwrap_or(0);
        let stages = [
            buckets(q, &name, STAGES[0])?,
            buckets(q, &name, STAGES[1])?,
            buckets(q, &name, STAGES[2])?,
        ];
        out.push(QueueHistograms {
            name,
            reactor,
            stages,
        });
    }
    Ok(Snapshot { queues: out })
}

/// `after - before`, bucket by bucket; a bucket that shrank means the two are not from one
/// run of the VMM (or the queue was reset), and the difference would be meaningless.
fn subtract(
    after: &Buckets,
    before: &Buckets,
    queue: &str,
    stage: &'static str,
) -> Result<Buckets, DeviceError> {
    let mut out = after.clone();
    for (&value, &count) in before {
        let have = out.get(&value).copied().unwrap_or(0);
        if count > have {
            return Err(DeviceError::Delta {
                queue: queue.to_string(),
                stage,
                reason: format!("bucket {value} ns has {count} before but {have} after"),
            });
        }
        if have == count {
            out.remove(&value);
        } else {
            out.insert(value, have - count);
        }
    }
    Ok(out)
}

fn record(h: &mut Histogram<u64>, buckets: &Buckets) -> Result<(), DeviceError> {
    for (&value, &count) in buckets {
        h.record_n(value, count)
            .map_err(|e| DeviceError::Histogram(format!("{value} ns: {e:?}")))?;
    }
    Ok(())
}

/// What the queues of one device (names starting with `device_prefix`, e.g. `blk0/`) did
/// between the two snapshots. A queue only in `after` appeared during the job and counts
/// whole; one only in `before` went away, which the difference cannot account for.
pub fn device_delta(
    before: &Snapshot,
    after: &Snapshot,
    device_prefix: &str,
) -> Result<DeviceLatency, DeviceError> {
    let new = || Histogram::<u64>::new(SIGFIG).map_err(|e| DeviceError::Histogram(e.to_string()));
    let mut hists = [new()?, new()?, new()?];
    let ours = |q: &&QueueHistograms| q.name.starts_with(device_prefix);
    if let Some(gone) = before
        .queues
        .iter()
        .filter(ours)
        .find(|b| !after.queues.iter().any(|a| a.name == b.name))
    {
        return Err(DeviceError::Delta {
            queue: gone.name.clone(),
            stage: STAGES[0],
            reason: "in the first snapshot but not the second".into(),
        });
    }
    for a in after.queues.iter().filter(ours) {
        let b = before.queues.iter().find(|b| b.name == a.name);
        for (i, stage) in STAGES.iter().enumerate() {
            let delta = match b {
                Some(b) => subtract(&a.stages[i], &b.stages[i], &a.name, stage)?,
                None => a.stages[i].clone(),
            };
            record(&mut hists[i], &delta)?;
        }
    }
    let [kick_to_submit, submit_to_complete, complete_to_irq] = hists;
    Ok(DeviceLatency {
        kick_to_submit,
        submit_to_complete,
        complete_to_irq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"{"queues":[
        {"name":"blk0/q0","reactor":0,"kick_to_submit_ns":[[1000,5]],
         "submit_to_complete_ns":[[20000,5]],"complete_to_irq_ns":[[500,5]]},
        {"name":"scsi0/q2","reactor":1,"kick_to_submit_ns":[[900,7]],
         "submit_to_complete_ns":[],"complete_to_irq_ns":[]}]}"#;
    const AFTER: &str = r#"{"queues":[
        {"name":"blk0/q0","reactor":0,"kick_to_submit_ns":[[1000,15],[2001,10]],
         "submit_to_complete_ns":[[20000,5],[40000,20]],"complete_to_irq_ns":[[500,25]]},
        {"name":"blk0/q1","reactor":1,"kick_to_submit_ns":[[3003,4]],
         "submit_to_complete_ns":[[50000,4]],"complete_to_irq_ns":[]},
        {"name":"scsi0/q2","reactor":1,"kick_to_submit_ns":[[900,9]],
         "submit_to_complete_ns":[],"complete_to_irq_ns":[]}]}"#;

    #[test]
    fn the_delta_sums_the_device_queues() {
        let before = parse_histograms(BEFORE).unwrap();
        let after = parse_histograms(AFTER).unwrap();
        assert_eq!(after.queues.len(), 3);
        assert_eq!(after.queues[1].reactor, 1);
        let blk = device_delta(&before, &after, "blk0/").unwrap();
        // q0: 10 at 1000, 10 at 2001; q1 (new): 4 at 3003.
        assert_eq!(blk.kick_to_submit.len(), 24);
        assert_eq!(blk.kick_to_submit.count_at(1000), 10);
        assert_eq!(blk.kick_to_submit.count_at(3003), 4);
        assert_eq!(blk.submit_to_complete.len(), 24);
        assert_eq!(blk.submit_to_complete.count_at(20000), 0);
        assert_eq!(blk.complete_to_irq.len(), 20);
        assert!(blk
            .submit_to_complete
            .equivalent(blk.submit_to_complete.value_at_quantile(0.5), 40000));
        let scsi = device_delta(&before, &after, "scsi0/").unwrap();
        assert_eq!(scsi.kick_to_submit.len(), 2);
        assert!(scsi.submit_to_complete.is_empty());
        assert_eq!(
            device_delta(&before, &after, "net0/")
                .unwrap()
                .kick_to_submit
                .len(),
            0
        );
        assert_eq!(blk.stages()[1].0, "submit_to_complete");
    }

    #[test]
    fn a_before_larger_than_after_is_refused() {
        let before = parse_histograms(BEFORE).unwrap();
        let after = parse_histograms(AFTER).unwrap();
        let err = device_delta(&after, &before, "blk0/").unwrap_err();
        assert!(matches!(err, DeviceError::Delta { .. }), "{err}");
        let shrunk = AFTER.replace("[[900,9]]", "[[900,6]]");
        let err = device_delta(&before, &parse_histograms(&shrunk).unwrap(), "scsi0/").unwrap_err();
        assert_eq!(
            err.to_string(),
            "queue scsi0/q2 kick_to_submit_ns: bucket 900 ns has 7 before but 6 after"
        );
    }

    #[test]
    fn malformed_answers_are_errors() {
        for text in [
            "",
            "[]",
            r#"{"queues":{}}"#,
            r#"{"queues":[{"reactor":0}]}"#,
            r#"{"queues":[{"name":"a","kick_to_submit_ns":[[1]],"submit_to_complete_ns":[],"complete_to_irq_ns":[]}]}"#,
            r#"{"queues":[{"name":"a","kick_to_submit_ns":[[1,-1]],"submit_to_complete_ns":[],"complete_to_irq_ns":[]}]}"#,
            r#"{"queues":[{"name":"a","kick_to_submit_ns":[],"submit_to_complete_ns":[]}]}"#,
            r#"{"queues":[{"name":"a","kick_to_submit_ns":[[1,18446744073709551615],[1,1]],"submit_to_complete_ns":[],"complete_to_irq_ns":[]}]}"#,
        ] {
            assert!(parse_histograms(text).is_err(), "{text}");
        }
        let twice = format!(
            r#"{{"queues":[{q},{q}]}}"#,
            q = r#"{"name":"a","kick_to_submit_ns":[],"submit_to_complete_ns":[],"complete_to_irq_ns":[]}"#
        );
        assert!(parse_histograms(&twice).is_err());
        assert_eq!(
            parse_histograms(r#"{"queues":[]}"#).unwrap(),
            Snapshot::default()
        );
    }
}
