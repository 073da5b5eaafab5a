//! The TOML matrix expanded into jobs: each `[[job]]`'s keys (falling back to
//! `[defaults]`, then to built-in defaults) checked, and the cartesian product of its lists.

use std::collections::HashSet;

use super::matrix::{
    parse_size, Device, IoEngine, JobSpec, MatrixError, Rw, MAX_BS, MAX_IODEPTH, MAX_JOBS,
    MAX_NUMJOBS, MAX_RAMP_S, MAX_RUNTIME_S, SECTOR,
};

/// Everything one `[[job]]` varies over, each list already checked and de-duplicated.
struct Axes {
    rw: Vec<Rw>,
    bs: Vec<u32>,
    iodepth: Vec<u32>,
    numjobs: Vec<u32>,
    ioengines: Vec<IoEngine>,
    devices: Vec<Device>,
    runtime_s: u32,
    ramp_s: u32,
    size: u64,
    polled: Vec<bool>,
}

const JOB_KEYS: [&str; 10] = [
    "rw",
    "bs",
    "iodepth",
    "numjobs",
    "ioengines",
    "devices",
    "runtime",
    "ramp",
    "size",
    "polled",
];

/// Reads one section's keys, falling back to `[defaults]`, then to built-in defaults.
struct Section<'a> {
    name: String,
    table: &'a toml::Table,
    defaults: Option<&'a toml::Table>,
}

impl Section<'_> {
    fn err(&self, key: &str, reason: impl Into<String>) -> MatrixError {
        MatrixError::BadValue {
            key: key.to_string(),
            section: self.name.clone(),
            reason: reason.into(),
        }
    }

    fn get(&self, key: &str) -> Option<&toml::Value> {
        self.table
            .get(key)
            .or_else(|| self.defaults.and_then(|d| d.get(key)))
    }

    /// A value or a list of values, each mapped by `parse`; duplicates dropped.
    fn list<T: PartialEq>(
        &self,
        key: &str,
        default: Option<toml::Value>,
        parse: impl Fn(&toml::Value) -> Result<T, String>,
    ) -> Result<Vec<T>, MatrixError> {
        let value = match (self.get(key), default.as_ref()) {
            (Some(v), _) | (None, Some(v)) => v,
            (None, None) => return Err(self.err(key, "missing")),
        };
        let items: Vec<&toml::Value> = match value {
            toml::Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        if items.is_empty() {
            return Err(self.err(key, "the list is empty"));
        }
        let mut out = Vec::new();
        for item in items {
            let parsed = parse(item).map_err(|reason| self.err(key, reason))?;
            if !out.contains(&parsed) {
                out.push(parsed);
            }
        }
        Ok(out)
    }

    fn scalar<T>(
        &self,
        key: &str,
        default: toml::Value,
        parse: impl Fn(&toml::Value) -> Result<T, String>,
    ) -> Result<T, MatrixError> {
        parse(self.get(key).unwrap_or(&default)).map_err(|reason| self.err(key, reason))
    }
}

/// A TOML value in an error message (the `toml` crate here has no `Display`).
fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(_) => "a date".to_string(),
        toml::Value::Array(_) => "a list".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    }
}

fn integer(value: &toml::Value, max: i64) -> Result<u32, String> {
    match value {
        toml::Value::Integer(n) if (0..=max).contains(n) => Ok(*n as u32),
        toml::Value::Integer(n) => Err(format!("{n} is not in 0..={max}")),
        other => Err(format!("{} is not an integer", describe(other))),
    }
}

fn size(value: &toml::Value) -> Result<u64, String> {
    match value {
        toml::Value::Integer(n) if *n > 0 => Ok(*n as u64),
        toml::Value::String(s) => match parse_size(s) {
            Some(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "bad size \"{s}\" (expected e.g. 4096, 4k, 64M, 1G)"
            )),
        },
        other => Err(format!("bad size {}", describe(other))),
    }
}

fn named<T>(value: &toml::Value, parse: fn(&str) -> Option<T>, what: &str) -> Result<T, String> {
    value.as_str().and_then(parse).ok_or_else(|| {
        format!(
            "bad {what} {} (expected one of {})",
            describe(value),
            match what {
                "rw" => "randread, randwrite, randrw, read, write",
                "ioengine" => "io_uring, libaio",
                _ => "blk, scsi",
            }
        )
    })
}

fn ranged(value: &toml::Value, what: &str, max: u32) -> Result<u32, String> {
    let n = integer(value, i64::from(max))
        .map_err(|_| format!("{what} {} is not in 1..={max}", describe(value)))?;
    if n == 0 {
        return Err(format!("{what} 0 is not in 1..={max}"));
    }
    Ok(n)
}

impl Axes {
    fn read(section: &Section, vcpus: u32) -> Result<Axes, MatrixError> {
        use toml::Value as V;
        let strings =
            |items: &[&str]| V::Array(items.iter().map(|s| V::String(s.to_string())).collect());
        let bs_of = |v: &V| {
            let n = size(v)?;
            if n % SECTOR != 0 || n > MAX_BS {
                return Err(format!(
                    "block size {n} is not a multiple of {SECTOR} up to {MAX_BS}"
                ));
            }
            Ok(n as u32)
        };
        let numjobs_of = |v: &V| match v {
            V::String(s) if s == "vcpus" => ranged(
                &V::Integer(i64::from(vcpus)),
                "numjobs (vcpus)",
                MAX_NUMJOBS,
            ),
            other => ranged(other, "numjobs", MAX_NUMJOBS),
        };
        let axes = Axes {
            rw: section.list("rw", None, |v| named(v, Rw::parse, "rw"))?,
            bs: section.list("bs", Some(V::String("4k".into())), bs_of)?,
            iodepth: section.list("iodepth", Some(V::Integer(1)), |v| {
                ranged(v, "iodepth", MAX_IODEPTH)
            })?,
            numjobs: section.list("numjobs", Some(V::Integer(1)), numjobs_of)?,
            ioengines: section.list("ioengines", Some(strings(&["io_uring"])), |v| {
                named(v, IoEngine::parse, "ioengine")
            })?,
            devices: section.list("devices", Some(strings(&["blk", "scsi"])), |v| {
                named(v, Device::parse, "device")
            })?,
            runtime_s: section.scalar("runtime", V::Integer(5), |v| {
                let n = integer(v, MAX_RUNTIME_S)?;
                if n == 0 {
                    return Err("0 is not in 1..=3600".into());
                }
                Ok(n)
            })?,
            ramp_s: section.scalar("ramp", V::Integer(1), |v| integer(v, MAX_RAMP_S))?,
            size: section.scalar("size", V::String("64M".into()), size)?,
            polled: section.list("polled", Some(V::Boolean(false)), |v| match v {
                V::Boolean(b) => Ok(*b),
                other => Err(format!("{} is not true or false", describe(other))),
            })?,
        };
        if let Some(&bs) = axes.bs.iter().find(|&&bs| u64::from(bs) > axes.size) {
            return Err(section.err(
                "size",
                format!("{} is smaller than the block size {bs}", axes.size),
            ));
        }
        Ok(axes)
    }

    fn count(&self) -> usize {
        [
            self.rw.len(),
            self.bs.len(),
            self.iodepth.len(),
            self.numjobs.len(),
            self.ioengines.len(),
            self.devices.len(),
            self.polled.len(),
        ]
        .iter()
        .fold(1usize, |n, &k| n.saturating_mul(k))
    }

    fn expand(&self, out: &mut Vec<JobSpec>, seen: &mut HashSet<String>) {
        for &rw in &self.rw {
            for &bs in &self.bs {
                for &iodepth in &self.iodepth {
                    for &numjobs in &self.numjobs {
                        for &ioengine in &self.ioengines {
                            for (&device, &polled) in self
                                .devices
                                .iter()
                                .flat_map(|d| self.polled.iter().map(move |p| (d, p)))
                            {
                                let job = JobSpec {
                                    rw,
                                    bs,
                                    iodepth,
                                    numjobs,
                                    ioengine,
                                    device,
                                    runtime_s: self.runtime_s,
                                    ramp_s: self.ramp_s,
                                    size: self.size,
                                    polled,
                                };
                                // A polled variant exists only where the guest can
                                // poll (io_uring on blk); files are named by id, the
                                // first job with an id wins.
                                if (!polled || job.can_poll()) && seen.insert(job.id()) {
                                    out.push(job);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The jobs of a TOML matrix, in file order, duplicates (by id) dropped.
pub(super) fn expand(text: &str, vcpus: u32) -> Result<Vec<JobSpec>, MatrixError> {
    let root = text
        .parse::<toml::Table>()
        .map_err(|e| MatrixError::Toml(e.to_string()))?;
    let unknown = |key: &str, section: &str| MatrixError::UnknownKey {
        key: key.to_string(),
        section: section.to_string(),
    };
    if let Some(key) = root.keys().find(|k| *k != "defaults" && *k != "job") {
        return Err(unknown(key, "the top level"));
    }
    let defaults = match root.get("defaults") {
        None => None,
        Some(toml::Value::Table(t)) => Some(t),
        Some(_) => return Err(MatrixError::Toml("`defaults` is not a table".into())),
    };
    if let Some(key) = defaults.and_then(|d| d.keys().find(|k| !JOB_KEYS.contains(&k.as_str()))) {
        return Err(unknown(key, "[defaults]"));
    }
    let jobs = match root.get("job") {
        None => return Err(MatrixError::NoJobs),
        Some(toml::Value::Array(jobs)) => jobs,
        Some(_) => {
            return Err(MatrixError::Toml(
                "`job` is not an array of tables ([[job]])".into(),
            ))
        }
    };
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, job) in jobs.iter().enumerate() {
        let name = format!("[[job]] #{}", i + 1);
        let toml::Value::Table(table) = job else {
            return Err(MatrixError::Toml(format!("{name} is not a table")));
        };
        if let Some(key) = table.keys().find(|k| !JOB_KEYS.contains(&k.as_str())) {
            return Err(unknown(key, &name));
        }
        let section = Section {
            name,
            table,
            defaults,
        };
        let axes = Axes::read(&section, vcpus)?;
        // Each axis is de-duplicated, so one [[job]] alone never shrinks below this.
        if axes.count() > MAX_JOBS {
            return Err(MatrixError::TooManyJobs);
        }
        axes.expand(&mut out, &mut seen);
        if out.len() > MAX_JOBS {
            return Err(MatrixError::TooManyJobs);
        }
    }
    if out.is_empty() {
        return Err(MatrixError::NoJobs);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::matrix::Matrix;
    use super::super::testutil::ids;
    use super::*;

    #[test]
    fn a_matrix_expands_in_a_stable_order() {
        let text = r#"
            [defaults]
            runtime = 5
            ramp = 1
            size = "64M"
            devices = ["blk", "scsi"]
            ioengines = ["io_uring", "libaio"]
            [[job]]
            rw = "randread"
            bs = ["4k", "64k"]
            iodepth = [1, 32]
            numjobs = [1, "vcpus"]
            [[job]]
            rw = "write"
            bs = "1M"
            runtime = 10
            devices = "blk"
            ioengines = ["io_uring", "io_uring"]
        "#;
        let m = Matrix::parse(text, 4).unwrap();
        assert_eq!(m.jobs.len(), 2 * 2 * 2 * 2 * 2 + 1);
        assert_eq!(ids(&m)[0], "randread-4k-qd1-j1-io_uring-blk");
        assert_eq!(ids(&m)[1], "randread-4k-qd1-j1-io_uring-scsi");
        assert_eq!(ids(&m)[2], "randread-4k-qd1-j1-libaio-blk");
        assert_eq!(ids(&m)[4], "randread-4k-qd1-j4-io_uring-blk");
        let last = m.jobs.last().unwrap();
        assert_eq!(last.id(), "write-1m-qd1-j1-io_uring-blk");
        assert_eq!((last.runtime_s, last.ramp_s, last.size), (10, 1, 64 << 20));
        assert_eq!(m.estimated_seconds(), 32 * 6 + 11);
        // One vCPU: numjobs [1, "vcpus"] collapses and the duplicates go.
        assert_eq!(
            Matrix::parse(text, 1).unwrap().jobs.len(),
            2 * 2 * 2 * 2 + 1
        );
    }

    #[test]
    fn bad_matrices_name_the_key_and_the_reason() {
        let err = |text: &str| Matrix::parse(text, 2).unwrap_err().to_string();
        assert_eq!(
            err("[[job]]\nrw = \"read\"\ncolour = 1"),
            "unknown key `colour` in [[job]] #1"
        );
        assert_eq!(
            err("[defaults]\nfoo = 1\n[[job]]\nrw = \"read\""),
            "unknown key `foo` in [defaults]"
        );
        assert_eq!(err("bar = 1"), "unknown key `bar` in the top level");
        assert!(err("[[job]]\nrw = \"read\"\nsize = \"12Q\"")
            .starts_with("`size` in [[job]] #1: bad size"));
        assert!(err("[[job]]\nrw = \"sideways\"").starts_with("`rw` in [[job]] #1: bad rw"));
        assert!(err("[[job]]\nrw = \"read\"\nnumjobs = 0").contains("numjobs 0 is not in 1..=64"));
        assert!(err("[[job]]\nrw = \"read\"\nnumjobs = 65").contains("`numjobs`"));
        assert!(err("[[job]]\nrw = \"read\"\niodepth = 1025").contains("`iodepth`"));
        assert!(err("[[job]]\nrw = \"read\"\niodepth = 0").contains("`iodepth`"));
        assert!(err("[[job]]\nrw = \"read\"\nbs = []").ends_with("the list is empty"));
        assert!(err("[[job]]\nrw = \"read\"\nbs = 1000").contains("`bs`"));
        assert!(err("[[job]]\nrw = \"read\"\nsize = \"1k\"\nbs = \"4k\"").contains("`size`"));
        assert_eq!(err("[[job]]\nbs = 4096"), "`rw` in [[job]] #1: missing");
        assert!(err("[[job]]\nrw = \"read\"\nruntime = 0").contains("`runtime`"));
        assert!(err("[[job]\n").starts_with("matrix TOML"));
        assert_eq!(err("[defaults]\nruntime = 1"), "the matrix has no jobs");
        // numjobs = "vcpus" with more vCPUs than fio jobs allowed.
        let vcpus = Matrix::parse("[[job]]\nrw = \"read\"\nnumjobs = \"vcpus\"", 65);
        assert!(vcpus.unwrap_err().to_string().contains("numjobs (vcpus)"));
        let big = "[[job]]\nrw = [\"read\", \"write\"]\nbs = [\"4k\", \"8k\", \"16k\", \"32k\", \"64k\"]\n\
                   iodepth = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]\n\
                   numjobs = [1, 2, 3, 4, 5]\nioengines = [\"io_uring\", \"libaio\"]";
        assert_eq!(err(big), MatrixError::TooManyJobs.to_string());
    }
}
