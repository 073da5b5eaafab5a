//! The io-wq workers behind the reactors' rings. Work the kernel cannot finish inline (a
//! buffered write that would block, fsync, fallocate) goes to io-wq worker threads of the
//! submitting thread, named `iou-wrk-<submitter tid>`. Left alone they number up to four
//! per host CPU (bounded work) plus RLIMIT_NPROC (unbounded work), may run on any core of
//! the cpuset, vCPU cores included, and nothing lists them. Each reactor therefore caps
//! its workers and keeps them on its own cores (see `ring_loop::setup`), reports both in
//! its stats, and [`iowq_workers`] finds the workers themselves.

use std::num::NonZeroU32;

/// The default io-wq workers per queue a reactor serves (see [`IowqLimits::for_queues`]).
pub const WORKERS_PER_QUEUE: NonZeroU32 = match NonZeroU32::new(4) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

/// The largest limit the kernel takes (it refuses anything above INT_MAX).
const KERNEL_MAX_WORKERS: u32 = i32::MAX as u32;

/// The most io-wq workers one reactor's ring may run at a time, per kind of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IowqLimits {
    /// Work that finishes in bounded time: regular files and block devices (buffered
    /// writes that would block, fsync, fallocate).
    pub bounded: NonZeroU32,
    /// Work that may wait without bound: files that are neither regular nor pollable.
    /// io_uring waits for what the reactors read and write that may wait forever
    /// (eventfds, TAPs, sockets, FIFOs, ttys) by polling it, not in a worker, so this
    /// class stays empty in practice; the cap is a ceiling, not a budget.
    pub unbounded: NonZeroU32,
}

impl IowqLimits {
    /// The same cap on both kinds of work (`--iowq-workers N`).
    pub const fn uniform(workers: NonZeroU32) -> Self {
        Self {
            bounded: workers,
            unbounded: workers,
        }
    }

    /// The default for `reactors` reactors sharing `queues` queues (round-robin):
    /// [`WORKERS_PER_QUEUE`] for each queue of the busiest reactor, which serves at least
    /// one.
    ///
    /// Why per queue: the workers' useful parallelism is the blocking requests in flight,
    /// and those come from the queues (a Linux guest gives each vCPU its own). Why four:
    /// the kernel's own default is four per online CPU, so a queue, one guest CPU's
    /// stream, gets what a host CPU would. What blocks, measured on ext4 (6.18, 2 CPUs):
    /// every flush; page-cache writes, which io_uring serialises per file anyway (its
    /// io-wq hashes them by inode: one worker is all they use); O_DIRECT writes into the
    /// holes of a sparse image (8 workers at once when uncapped, though ext4 then
    /// serialises them on the inode lock: 1 or 8 workers took the same time; XFS need
    /// not); and every read and write on a file system without non-blocking I/O (FUSE,
    /// NFS), which do run in parallel. One worker per queue would serve those one request
    /// at a time per queue; four keep some depth while a reactor's workers stay a small,
    /// known number on its own cores, not four per host CPU anywhere.
    pub fn for_queues(queues: usize, reactors: usize) -> Self {
        let per_reactor = queues.div_ceil(reactors.max(1)).max(1);
        let workers = u32::try_from(per_reactor)
            .unwrap_or(u32::MAX)
            .saturating_mul(WORKERS_PER_QUEUE.get())
            .min(KERNEL_MAX_WORKERS);
        Self::uniform(NonZeroU32::new(workers).unwrap_or(WORKERS_PER_QUEUE))
    }

    /// The pair IORING_REGISTER_IOWQ_MAX_WORKERS takes: bounded, then unbounded.
    pub(crate) fn as_register_arg(self) -> [u32; 2] {
        [self.bounded.get(), self.unbounded.get()]
    }
}

/// An io-wq worker thread of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IowqWorker {
    pub tid: u32,
    /// Its name: `iou-wrk-<submitter>`.
    pub name: String,
    /// The thread whose io-wq it belongs to (a reactor's, for the reactors' rings).
    pub submitter: u32,
    /// The cores it may run on (Cpus_allowed_list), e.g. `2` or `0-3`.
    pub cores: String,
}

/// The io-wq worker name prefix; the kernel appends the submitting thread's id.
const WORKER_PREFIX: &str = "iou-wrk-";

/// Every io-wq worker of this process now, read from /proc/self/task, by thread id.
/// Threads that exit while being read are left out.
pub fn iowq_workers() -> Vec<IowqWorker> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut workers: Vec<IowqWorker> = tasks
        .flatten()
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            // Cheap filter first: most threads are not workers.
            if !comm.starts_with(WORKER_PREFIX) {
                return None;
            }
            let status = std::fs::read_to_string(task.path().join("status")).ok()?;
            parse_worker(tid, &comm, &status)
        })
        .collect();
    workers.sort_by_key(|w| w.tid);
    workers
}

/// An io-wq worker from its thread's `comm` and `status`; `None` for any other thread.
fn parse_worker(tid: u32, comm: &str, status: &str) -> Option<IowqWorker> {
    let name = comm.trim_end();
    let submitter = name.strip_prefix(WORKER_PREFIX)?.parse().ok()?;
    let cores = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .map(str::trim)
        .unwrap_or_default();
    Some(IowqWorker {
        tid,
        name: name.to_owned(),
        submitter,
        cores: cores.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(value: u32) -> NonZeroU32 {
        NonZeroU32::new(value).unwrap()
    }

    #[test]
    fn the_default_is_four_per_queue_of_the_busiest_reactor() {
        // One disk queue, one reactor.
        assert_eq!(IowqLimits::for_queues(1, 1), IowqLimits::uniform(n(4)));
        // Five queues over two reactors: one reactor serves three.
        assert_eq!(IowqLimits::for_queues(5, 2), IowqLimits::uniform(n(12)));
        assert_eq!(IowqLimits::for_queues(8, 4).bounded, n(8));
        // No queue at all, or more reactors than queues: as for one queue.
        assert_eq!(IowqLimits::for_queues(0, 4), IowqLimits::uniform(n(4)));
        assert_eq!(IowqLimits::for_queues(2, 8).unbounded, n(4));
        // No reactor is not a division by zero; absurd counts stop at the kernel's limit.
        assert_eq!(IowqLimits::for_queues(3, 0).bounded, n(12));
        assert_eq!(
            IowqLimits::for_queues(usize::MAX, 1).bounded,
            n(KERNEL_MAX_WORKERS)
        );
        assert_eq!(
            IowqLimits::uniform(n(4)).as_register_arg(),
            [4, 4],
            "bounded first, as the kernel reads them"
        );
    }

    #[test]
    fn workers_are_told_apart_by_name() {
        let status = "Name:\tiou-wrk-1234\nCpus_allowed:\t4\nCpus_allowed_list:\t2\n";
        assert_eq!(
            parse_worker(1240, "iou-wrk-1234\n", status),
            Some(IowqWorker {
                tid: 1240,
                name: "iou-wrk-1234".into(),
                submitter: 1234,
                cores: "2".into(),
            })
        );
        assert_eq!(parse_worker(7, "reactor0\n", status), None);
        assert_eq!(parse_worker(7, "iou-sqp-1234\n", status), None);
        assert_eq!(parse_worker(7, "iou-wrk-x\n", status), None);
        // A status without the field (an exiting thread) still names the worker.
        assert_eq!(
            parse_worker(9, "iou-wrk-5\n", "").map(|w| w.cores),
            Some(String::new())
        );
    }

    #[test]
    fn this_process_lists_only_workers() {
        // Whatever io-wq threads exist here (other tests' rings), each is named as one.
        for worker in iowq_workers() {
            assert!(worker.name.starts_with(WORKER_PREFIX), "{worker:?}");
        }
    }
}
