//! `latency.hlog`: every histogram of the run in an HdrHistogram interval log, one interval
//! per (job, series), so the full distributions survive the summary's percentiles and any
//! HdrHistogram tool (HistogramLogAnalyzer, hdr-plot) can read them.

use std::io::Write;
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use thiserror::Error;

use super::model::{SuiteResults, Target};

#[derive(Debug, Error)]
pub enum HlogError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot serialize {tag}: {reason}")]
    Serialize { tag: String, reason: String },
    #[error("{0:?} cannot be an interval tag")]
    Tag(String),
    #[error("parse error at byte {0}")]
    Parse(usize),
    #[error("interval {tag}: {reason}")]
    Decode { tag: String, reason: String },
}

/// The log's series for one run: (tag, where the job's interval starts, its length,
/// histogram). Jobs are laid end to end in matrix order, each interval after its ramp: the
/// targets ran at different times, so these are positions in the suite, not wall-clock.
fn series(results: &SuiteResults) -> Vec<(String, Duration, Duration, Histogram<u64>)> {
    let mut out = Vec::new();
    let mut offset = Duration::ZERO;
    for job in &results.jobs {
        let id = job.id();
        let start = offset + Duration::from_secs(u64::from(job.spec.ramp_s));
        let length = Duration::from_secs(u64::from(job.spec.runtime_s));
        offset += Duration::from_secs(job.spec.estimated_seconds());
        for target in Target::ALL {
            if let Some(h) = job
                .get(target)
                .and_then(|r| r.fio.as_ref())
                .and_then(|f| f.clat_hist())
            {
                out.push((format!("{id}/{}/clat", target.as_str()), start, length, h));
            }
        }
        if let Some(latency) = job.device.as_ref().ok().and_then(|d| d.latency.as_ref()) {
            for (stage, h) in latency.stages() {
                out.push((format!("{id}/device/{stage}"), start, length, h.clone()));
            }
        }
    }
    out
}

/// Writes the interval log of `results` to `writer`.
pub fn write_hlog<W: Write>(results: &SuiteResults, writer: &mut W) -> Result<(), HlogError> {
    let mut serializer = V2DeflateSerializer::new();
    let m = &results.meta;
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .add_comment("ringvisor fio suite: completion latency per target (<job>/<target>/clat) and")
        .add_comment("ringvisor's device-side stages (<job>/device/<stage>), in nanoseconds;")
        .add_comment("one interval per job and series, jobs laid end to end in matrix order")
        .add_comment(&format!(
            "preset {} vcpus {} lab {} ringvisor {} started {}",
            m.preset, m.vcpus, m.lab, m.vmm_version, m.started
        ));
    let mut log = builder.begin_log_with(writer, &mut serializer)?;
    for (tag, start, length, h) in series(results) {
        let t = Tag::new(&tag).ok_or_else(|| HlogError::Tag(tag.clone()))?;
        log.write_histogram(&h, start, length, Some(t))
            .map_err(|e| HlogError::Serialize {
                tag: tag.clone(),
                reason: format!("{e:?}"),
            })?;
    }
    Ok(())
}

/// One interval read back.
#[derive(Debug, Clone)]
pub struct Interval {
    pub tag: Option<String>,
    pub start: Duration,
    pub duration: Duration,
    pub histogram: Histogram<u64>,
}

/// Standard base64 with padding, as the interval log encodes histograms.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let bytes = text.trim_end().as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i + 1 == bytes.len() / 4;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | sextet(c)?;
        }
        n <<= 6 * pad as u32;
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Some(out)
}

/// Reads an interval log back (as written by [`write_hlog`] or any other writer).
pub fn read_hlog(bytes: &[u8]) -> Result<Vec<Interval>, HlogError> {
    let mut out = Vec::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        let entry = entry.map_err(|e| match e {
            hdrhistogram::serialization::interval_log::LogIteratorError::ParseError { offset } => {
                HlogError::Parse(offset)
            }
        })?;
        let LogEntry::Interval(interval) = entry else {
            continue;
        };
        let tag = interval.tag().map(|t| t.as_str().to_string());
        let decode = |reason: String| HlogError::Decode {
            tag: tag.clone().unwrap_or_default(),
            reason,
        };
        let raw = base64_decode(interval.encoded_histogram())
            .ok_or_else(|| decode("bad base64".into()))?;
        let histogram: Histogram<u64> = deserializer
            .deserialize(&mut raw.as_slice())
            .map_err(|e| decode(e.to_string()))?;
        out.push(Interval {
            tag,
            start: interval.start_timestamp(),
            duration: interval.duration(),
            histogram,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{known_raw_dir, TempDir};
    use super::*;

    #[test]
    fn the_log_reads_back_with_the_same_counts() {
        let tmp = TempDir::new("hlog");
        let results = SuiteResults::load(&known_raw_dir(tmp.path())).unwrap();
        let mut bytes = Vec::new();
        write_hlog(&results, &mut bytes).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("#ringvisor fio suite"), "{text}");
        let intervals = read_hlog(&bytes).unwrap();
        let tags: Vec<&str> = intervals.iter().filter_map(|i| i.tag.as_deref()).collect();
        assert_eq!(
            tags,
            [
                "randread-4k-qd32-j1-io_uring-blk/ringvisor/clat",
                "randread-4k-qd32-j1-io_uring-blk/bare/clat",
                "randread-4k-qd32-j1-io_uring-blk/device/kick_to_submit",
                "randread-4k-qd32-j1-io_uring-blk/device/submit_to_complete",
                "randread-4k-qd32-j1-io_uring-blk/device/complete_to_irq",
                "randrw-4k-qd1-j1-io_uring-scsi/ringvisor/clat",
                "randrw-4k-qd1-j1-io_uring-scsi/bare/clat",
                "randrw-4k-qd1-j1-io_uring-scsi/device/kick_to_submit",
                "randrw-4k-qd1-j1-io_uring-scsi/device/submit_to_complete",
                "randrw-4k-qd1-j1-io_uring-scsi/device/complete_to_irq",
            ]
        );
        for (written, read) in series(&results).iter().zip(&intervals) {
            assert_eq!(written.3, read.histogram, "{}", written.0);
            assert_eq!((written.1, written.2), (read.start, read.duration));
        }
        assert_eq!(intervals[0].histogram.len(), 11236);
        assert_eq!(intervals[5].histogram.len(), 10667 + 10635);
        assert_eq!(intervals[3].histogram.len(), 100);
        // Job 1 starts after job 0's ramp and runtime, and its own ramp.
        assert_eq!(intervals[5].start, Duration::from_secs(5));
    }

    #[test]
    fn base64_and_garbage() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert!(base64_decode("aGk").is_none());
        assert!(base64_decode("a=Gk").is_none());
        assert!(base64_decode("aG=k").is_none());
        assert!(read_hlog(b"Tag=x,0.0,1.0,2.0,!!!!\n").is_err());
        assert!(read_hlog(b"Tag=x,0.0,1.0,2.0,aGk=\n").is_err());
        assert!(read_hlog(b"#only a comment\n").unwrap().is_empty());
    }
}
