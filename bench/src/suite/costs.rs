//! What a job cost the machine, counted rather than timed: guest exits to L1 and their
//! kinds (L1's KVM statistics of the VMM's VM), the guest's disk interrupts, the VMM's
//! system calls, context switches and CPU time, over the job's window. Counts per I/O carry
//! over from the emulated lab to real hardware; the lab's timings do not.
//!
//! The orchestrator writes them as `raw/<target>/<job>.costs`, one line of `key=value`
//! words (tests/lab/l1-measure.sh: costs_snapshot, costs_diff).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The counts reports show, in this order, with their labels.
pub const COST_LABELS: [(&str, &str); 9] = [
    ("exits", "exits"),
    ("io_exits", "PIO exits"),
    ("mmio_exits", "MMIO exits"),
    ("halt_exits", "HLT exits"),
    ("irq_injections", "IRQ injections"),
    ("guest_irqs", "guest disk IRQs"),
    ("syscalls", "VMM syscalls"),
    ("ctxsw", "VMM context switches"),
    ("cpu_ms", "VMM CPU ms"),
];

/// One job's counts on one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Costs {
    counts: BTreeMap<String, u64>,
}

impl Costs {
    /// Parses `key=value` words; a word that is not one, or whose value is not a count,
    /// is left out (a guest or a missing kernel feature may leave a value empty).
    pub fn parse(text: &str) -> Costs {
        let counts = text
            .split_whitespace()
            .filter_map(|word| {
                let (key, value) = word.split_once('=')?;
                Some((key.to_string(), value.parse::<u64>().ok()?))
            })
            .collect();
        Costs { counts }
    }

    pub fn get(&self, key: &str) -> Option<u64> {
        self.counts.get(key).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// `key` per 1000 I/Os; `None` without the count or without I/Os.
    pub fn per_kio(&self, key: &str, ios: u64) -> Option<f64> {
        if ios == 0 {
            return None;
        }
        Some(self.get(key)? as f64 * 1000.0 / ios as f64)
    }

    pub fn to_json(&self, ios: u64) -> Value {
        let per_kio: Map<String, Value> = self
            .counts
            .keys()
            .filter_map(|k| Some((k.clone(), self.per_kio(k, ios)?.into())))
            .collect();
        serde_json::json!({ "counts": self.counts, "per_1000_ios": per_kio })
    }

    pub fn from_json(value: &Value) -> Option<Costs> {
        let counts = value
            .get("counts")?
            .as_object()?
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
            .collect();
        Some(Costs { counts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_parsed_and_scaled_per_thousand_ios() {
        let c = Costs::parse("exits=5000 io_exits=0 syscalls=2500 guest_irqs= bogus cpu_ms=x\n");
        assert_eq!(c.get("exits"), Some(5000));
        assert_eq!(c.get("io_exits"), Some(0));
        assert_eq!(c.get("guest_irqs"), None, "an empty value is no count");
        assert_eq!(c.get("cpu_ms"), None);
        assert_eq!(c.per_kio("syscalls", 10_000), Some(250.0));
        assert_eq!(c.per_kio("syscalls", 0), None);
    }

    #[test]
    fn json_round_trip_keeps_the_counts() {
        let c = Costs::parse("exits=30 ctxsw=7");
        let v = c.to_json(60);
        assert_eq!(v["per_1000_ios"]["exits"], 500.0);
        assert_eq!(Costs::from_json(&v), Some(c));
    }
}
