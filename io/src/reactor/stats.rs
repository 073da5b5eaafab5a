//! Per-queue counters and latency histograms, kept by the reactor that owns the queue and
//! copied out on request (never shared: the hot path takes no lock to count).

use hdrhistogram::Histogram;

use super::iowq::IowqLimits;

/// Latencies are recorded in nanoseconds, up to 60 s, with 3 significant digits.
const HISTOGRAM_MAX_NS: u64 = 60_000_000_000;
const HISTOGRAM_SIGFIG: u8 = 3;

fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (1 ≤ sigfig ≤ 5, max ≥ 2·low).
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, HISTOGRAM_SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// What one queue did since it was attached.
#[derive(Debug, Clone)]
pub struct QueueStats {
    pub name: String,
    pub reactor: usize,
    /// Chains popped from the avail ring.
    pub requests: u64,
    /// Drain passes that popped at least one chain.
    pub batches: u64,
    /// Host I/O ops submitted to io_uring.
    pub ops: u64,
    /// Those of them that named a slot of the ring's registered file table.
    pub fixed_file_ops: u64,
    /// Those of them that read or wrote a registered piece of guest RAM (READ_FIXED,
    /// WRITE_FIXED).
    pub fixed_buffer_ops: u64,
    /// Ops that completed with an error.
    pub op_errors: u64,
    /// Ops the ring refused because its policy does not list their kind (each faults
    /// the queue).
    pub ops_refused: u64,
    pub irqs_sent: u64,
    /// Completions after which the guest had asked for no interrupt (EVENT_IDX).
    pub irqs_suppressed: u64,
    /// Guest notification (kick) until the chain's op was handed to the kernel.
    pub kick_to_submit_ns: Histogram<u64>,
    /// Submission until the completion was reaped.
    pub submit_to_complete_ns: Histogram<u64>,
    /// The first completion reaped in a pass until the interrupt that reported it was
    /// signalled (suppressed interrupts record nothing).
    pub complete_to_irq_ns: Histogram<u64>,
    /// The device's own counters for the queue (frames, bytes, drops, ...), by name.
    pub device: Vec<(&'static str, u64)>,
    /// Chains popped and not completed yet when the stats were taken.
    pub in_flight: usize,
}

impl QueueStats {
    pub fn new(name: String, reactor: usize) -> Self {
        Self {
            name,
            reactor,
            requests: 0,
            batches: 0,
            ops: 0,
            fixed_file_ops: 0,
            fixed_buffer_ops: 0,
            op_errors: 0,
            ops_refused: 0,
            irqs_sent: 0,
            irqs_suppressed: 0,
            kick_to_submit_ns: histogram(),
            submit_to_complete_ns: histogram(),
            complete_to_irq_ns: histogram(),
            device: Vec::new(),
            in_flight: 0,
        }
    }
}

/// What one reactor did: its io_uring_enter calls and how many SQEs each carried; and
/// where its blocking work runs.
#[derive(Debug, Clone)]
pub struct ReactorStats {
    pub reactor: usize,
    pub core: Option<usize>,
    /// The reactor thread's id: its io-wq workers are named `iou-wrk-<tid>`.
    pub tid: u32,
    /// The io-wq worker limits in force on its ring; `None`: the kernel's own (none were
    /// asked for, or the kernel refused them).
    pub iowq_limits: Option<IowqLimits>,
    /// The cores its io-wq workers are kept on; empty: left to the kernel (none were
    /// asked for, or the kernel refused them).
    pub iowq_cores: Vec<usize>,
    pub enters: u64,
    pub sqes_submitted: u64,
    /// Descriptors in the ring's registered file table.
    pub fixed_files: usize,
    /// Guest RAM pieces registered with the ring as fixed buffers.
    pub fixed_buffers: usize,
    /// SQEs handed to the kernel per io_uring_enter that submitted any.
    pub sqes_per_enter: Histogram<u64>,
    pub queues: Vec<QueueStats>,
}

impl ReactorStats {
    pub fn new(reactor: usize, core: Option<usize>) -> Self {
        Self {
            reactor,
            core,
            tid: 0,
            iowq_limits: None,
            iowq_cores: Vec::new(),
            enters: 0,
            sqes_submitted: 0,
            fixed_files: 0,
            fixed_buffers: 0,
            sqes_per_enter: Histogram::new_with_bounds(1, 1 << 16, 2)
                .expect("constant histogram bounds are valid"),
            queues: Vec::new(),
        }
    }
}
