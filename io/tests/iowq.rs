//! The reactors' io-wq workers on real io_uring and real files: a burst of buffered
//! O_DSYNC writes and fsyncs (work the kernel hands to io-wq) never has more workers than
//! the reactor's cap, the workers stay on the reactor's core, and the data reads back.

use std::fs::{File, OpenOptions};
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringvisor_io::{
    iowq_workers, IoBatch, IoOp, IowqLimits, IrqEvent, QueueBinding, QueueFault, QueueHost,
    QueueWorker, ReactorOptions, ReactorSet,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const BLOCK: usize = 64 << 10;
/// Per queue and round: enough at once that, uncapped, io-wq starts one worker per op
/// up to its own limit (four per host CPU).
const WRITES_PER_ROUND: u64 = 32;
const FLUSHES_PER_ROUND: u64 = 16;
const ROUNDS: u64 = 6;
const QUEUES: usize = 2;

/// What a test posts: a block to write (filled with one byte), or a flush.
#[derive(Clone, Copy)]
enum Request {
    Write { block: u64, fill: u8 },
    Flush,
}

/// A queue that writes whole blocks of its file and flushes it, all posted by the test.
struct FileWriter {
    file: File,
    posted: Arc<Mutex<Vec<Request>>>,
    /// Every write's buffer, kept until the reactor is gone (the kernel reads it).
    buffers: Vec<Box<[u8]>>,
    done: Arc<Mutex<Vec<i32>>>,
    added: bool,
}

impl QueueWorker for FileWriter {
    fn drain(&mut self, batch: &mut IoBatch) -> Result<usize, QueueFault> {
        let posted: Vec<Request> = self.posted.lock().unwrap().drain(..).collect();
        let fd = self.file.as_raw_fd();
        for request in &posted {
            let tag = self.buffers.len() as u64;
            match *request {
                Request::Write { block, fill } => {
                    let mut buffer = vec![fill; BLOCK].into_boxed_slice();
                    let iovec = libc::iovec {
                        iov_base: buffer.as_mut_ptr().cast(),
                        iov_len: BLOCK,
                    };
                    self.buffers.push(buffer);
                    batch.push(
                        tag,
                        IoOp::Write {
                            fd,
                            offset: block * BLOCK as u64,
                            iovecs: vec![iovec],
                        },
                    );
                }
                Request::Flush => {
                    self.buffers.push(Box::new([]));
                    batch.push(tag, IoOp::Flush { fd });
                }
            }
        }
        Ok(posted.len())
    }

    fn complete(&mut self, _tag: u64, result: i32, _: &mut IoBatch) -> Result<(), QueueFault> {
        self.done.lock().unwrap().push(result);
        self.added = true;
        Ok(())
    }

    fn needs_interrupt(&mut self) -> Result<bool, QueueFault> {
        Ok(std::mem::take(&mut self.added))
    }

    fn disable_notification(&mut self) -> Result<(), QueueFault> {
        Ok(())
    }

    fn enable_notification(&mut self) -> Result<bool, QueueFault> {
        Ok(!self.posted.lock().unwrap().is_empty())
    }

    fn has_available(&mut self) -> Result<bool, QueueFault> {
        Ok(!self.posted.lock().unwrap().is_empty())
    }

    fn in_flight(&self) -> usize {
        self.buffers.len() - self.done.lock().unwrap().len()
    }
}

struct TestQueue {
    path: PathBuf,
    posted: Arc<Mutex<Vec<Request>>>,
    done: Arc<Mutex<Vec<i32>>>,
    kick: EventFd,
    faults: Arc<Mutex<Vec<String>>>,
    _interrupt: IrqEvent,
}

fn writer(name: &str) -> (QueueBinding, TestQueue) {
    let path = std::env::temp_dir().join(format!("ringvisor-iowq-{name}-{}", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DSYNC)
        .open(&path)
        .unwrap();
    let posted = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(Mutex::new(Vec::new()));
    let faults = Arc::new(Mutex::new(Vec::new()));
    let kick = EventFd::new(EFD_NONBLOCK).unwrap();
    let interrupt = IrqEvent::new().unwrap();
    let fault_log = faults.clone();
    let binding = QueueBinding {
        name: name.into(),
        worker: Box::new(FileWriter {
            file,
            posted: posted.clone(),
            buffers: Vec::new(),
            done: done.clone(),
            added: false,
        }),
        kick: kick.try_clone().unwrap(),
        interrupt: interrupt.try_clone().unwrap(),
        on_fault: Box::new(move |fault| fault_log.lock().unwrap().push(fault.to_string())),
    };
    let queue = TestQueue {
        path,
        posted,
        done,
        kick,
        faults,
        _interrupt: interrupt,
    };
    (binding, queue)
}

/// The byte block `block` of queue `queue` is filled with.
fn fill(queue: usize, block: u64) -> u8 {
    (queue as u64 * 97 + block * 7 + 1) as u8
}

/// The cores this thread may run on.
fn allowed_cores() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t of the size passed; 0 is the calling thread.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads within the set: the index is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// What one load run saw.
struct Seen {
    /// The most io-wq workers of the reactor at any sample.
    most_workers: usize,
    /// Every Cpus_allowed_list a worker of the reactor showed.
    cores: Vec<String>,
}

/// Runs the write-and-flush burst through one reactor on `core` started with `options`;
/// samples the reactor's io-wq workers all along; checks every op succeeded and the
/// files hold what was written.
fn burst(core: usize, options: &ReactorOptions) -> Seen {
    let reactors = ReactorSet::start_with(&[Some(core)], options).unwrap();
    let tid = reactors.stats()[0].tid;
    assert_ne!(tid, 0, "the reactor reports its thread");
    // Workers start as copies of the reactor thread and would take its affinity: widen
    // the thread's on purpose, so that only the ring's own io-wq placement keeps them on
    // the reactor's core.
    let every_core = allowed_cores();
    reactors
        .run_on(0, move || ringvisor_io::pin_current_thread(&every_core))
        .unwrap()
        .unwrap();
    let (bindings, queues): (Vec<_>, Vec<_>) =
        (0..QUEUES).map(|q| writer(&format!("q{q}-{tid}"))).unzip();
    for binding in bindings {
        reactors.attach(binding).unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = Seen {
                most_workers: 0,
                cores: Vec::new(),
            };
            while !stop.load(Ordering::Relaxed) {
                seen.most_workers = seen
                    .most_workers
                    .max(ringvisor_test_support::iowq_workers_of(tid));
                for worker in iowq_workers().into_iter().filter(|w| w.submitter == tid) {
                    if !seen.cores.contains(&worker.cores) {
                        seen.cores.push(worker.cores);
                    }
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            seen
        })
    };

    let per_round = (WRITES_PER_ROUND + FLUSHES_PER_ROUND) as usize;
    for round in 0..ROUNDS {
        for (q, queue) in queues.iter().enumerate() {
            let mut posted = queue.posted.lock().unwrap();
            for i in 0..WRITES_PER_ROUND {
                let block = round * WRITES_PER_ROUND + i;
                posted.push(Request::Write {
                    block,
                    fill: fill(q, block),
                });
                // Flushes among the writes, so both kinds of work wait at once.
                if i % 2 == 0 {
                    posted.push(Request::Flush);
                }
            }
            drop(posted);
            queue.kick.write(1).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for queue in &queues {
            let want = per_round * (round as usize + 1);
            while queue.done.lock().unwrap().len() < want {
                assert!(Instant::now() < deadline, "round {round} timed out");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let seen = sampler.join().unwrap();

    let stats = reactors.stats();
    assert_eq!(stats[0].iowq_limits, options.iowq);
    assert_eq!(stats[0].iowq_cores, vec![core]);
    drop(reactors);
    for (q, queue) in queues.iter().enumerate() {
        assert!(queue.faults.lock().unwrap().is_empty());
        let done = queue.done.lock().unwrap();
        assert!(
            done.iter().all(|&r| r == 0 || r == BLOCK as i32),
            "every write wrote its block, every flush succeeded: {done:?}"
        );
        let file = File::open(&queue.path).unwrap();
        let mut data = vec![0u8; BLOCK];
        for block in 0..ROUNDS * WRITES_PER_ROUND {
            file.read_exact_at(&mut data, block * BLOCK as u64).unwrap();
            let want = fill(q, block);
            assert!(
                data.iter().all(|&b| b == want),
                "queue {q} block {block} reads back"
            );
        }
        std::fs::remove_file(&queue.path).unwrap();
    }
    seen
}

#[test]
fn a_capped_reactor_never_has_more_io_wq_workers_than_its_cap_and_keeps_them_on_its_core() {
    // The last allowed core: a reactor pinned there is pinned for real.
    let core = *allowed_cores().last().unwrap();
    let cap = NonZeroU32::new(2).unwrap();
    let capped = burst(
        core,
        &ReactorOptions {
            iowq: Some(IowqLimits::uniform(cap)),
            ..ReactorOptions::default()
        },
    );
    // The same burst on a reactor left to the kernel's limits: how many it would have
    // taken (on a 2-core host: 8, four per CPU), for whoever reads the log.
    let uncapped = burst(core, &ReactorOptions::default());
    eprintln!(
        "io-wq workers of one reactor under the burst: at most {} capped at {cap}, {} uncapped",
        capped.most_workers, uncapped.most_workers
    );
    assert!(
        capped.most_workers >= 1,
        "the burst never reached io-wq: the test proves nothing here"
    );
    assert!(
        capped.most_workers <= cap.get() as usize,
        "{} io-wq workers, more than the cap of {cap}",
        capped.most_workers
    );
    assert_eq!(
        capped.cores,
        vec![core.to_string()],
        "the workers stay on the reactor's core"
    );
}
