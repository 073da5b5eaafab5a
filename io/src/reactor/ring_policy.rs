//! What a reactor's ring may ask of the kernel. Through io_uring the kernel opens, connects,
//! unlinks or sends on a thread's behalf whatever its seccomp allowlist forbids, so each
//! ring is restricted (IORING_REGISTER_RESTRICTIONS) before it is enabled: the opcodes of
//! the op kinds its devices use and of the reactor's own work, one SQE flag (ops name
//! registered files), and two register operations once it runs: filling and clearing
//! slots of its file table as queues come and go, and of its guest RAM buffers when pages
//! are released. The VMM names the op kinds per reactor kind, beside the threads'
//! seccomp lists; an op off the list completes with -EACCES and faults its queue.

use io_uring::opcode;
use io_uring::register::Restriction;
use io_uring::squeue;

use crate::worker::IoOp;

/// The kinds of [`IoOp`], which a ring policy allows or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Read,
    Write,
    Flush,
    Fallocate,
    Delay,
    Accept,
    Poll,
    UringCmd,
}

impl OpKind {
    pub const ALL: [OpKind; 8] = [
        OpKind::Read,
        OpKind::Write,
        OpKind::Flush,
        OpKind::Fallocate,
        OpKind::Delay,
        OpKind::Accept,
        OpKind::Poll,
        OpKind::UringCmd,
    ];

    /// The opcodes the reactor submits for this kind of op (ring_loop's `submit_op`): a
    /// read or write is vectored, or fixed when its one segment lies in registered guest
    /// RAM.
    pub fn opcodes(self) -> &'static [u8] {
        match self {
            OpKind::Read => &[opcode::Readv::CODE, opcode::ReadFixed::CODE],
            OpKind::Write => &[opcode::Writev::CODE, opcode::WriteFixed::CODE],
            OpKind::Flush => &[opcode::Fsync::CODE],
            OpKind::Fallocate => &[opcode::Fallocate::CODE],
            OpKind::Delay => &[opcode::Timeout::CODE],
            OpKind::Accept => &[opcode::Accept::CODE],
            OpKind::Poll => &[opcode::PollAdd::CODE],
            OpKind::UringCmd => &[opcode::UringCmd80::CODE],
        }
    }

    /// Opcodes the reactor also submits for this kind where the kernel has them: a read
    /// or write of several segments that all lie in one registered piece of guest RAM is
    /// vectored and fixed (Linux 6.15+).
    pub fn optional_opcodes(self) -> &'static [u8] {
        match self {
            OpKind::Read => &[opcode::ReadvFixed::CODE],
            OpKind::Write => &[opcode::WritevFixed::CODE],
            _ => &[],
        }
    }
}

impl IoOp {
    /// The descriptor the op works on; `None` for a delay.
    pub fn fd(&self) -> Option<std::os::fd::RawFd> {
        match self {
            IoOp::Read { fd, .. }
            | IoOp::Write { fd, .. }
            | IoOp::Flush { fd }
            | IoOp::Fallocate { fd, .. }
            | IoOp::Accept { fd }
            | IoOp::Poll { fd, .. }
            | IoOp::UringCmd { fd, .. } => Some(*fd),
            IoOp::Delay { .. } => None,
        }
    }

    pub fn kind(&self) -> OpKind {
        match self {
            IoOp::Read { .. } => OpKind::Read,
            IoOp::Write { .. } => OpKind::Write,
            IoOp::Flush { .. } => OpKind::Flush,
            IoOp::Fallocate { .. } => OpKind::Fallocate,
            IoOp::Delay { .. } => OpKind::Delay,
            IoOp::Accept { .. } => OpKind::Accept,
            IoOp::Poll { .. } => OpKind::Poll,
            IoOp::UringCmd { .. } => OpKind::UringCmd,
        }
    }
}

/// The reactor's own opcodes, whatever it serves: reads of kick and control eventfds, and
/// the cancellation of a detached queue's armed reads.
const REACTOR_OPCODES: [u8; 2] = [opcode::Read::CODE, opcode::AsyncCancel::CODE];

/// The register operations behind `Submitter::register_files_update` and
/// `register_buffers_update` (IORING_REGISTER_FILES_UPDATE, IORING_REGISTER_BUFFERS_UPDATE
/// in include/uapi/linux/io_uring.h), which the io-uring crate does not export.
const REGISTER_FILES_UPDATE: u8 = 6;
const REGISTER_BUFFERS_UPDATE: u8 = 16;

/// The op kinds one reactor's ring may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingPolicy {
    ops: Vec<OpKind>,
}

impl RingPolicy {
    pub fn new(ops: &[OpKind]) -> Self {
        let mut list = ops.to_vec();
        list.sort_by_key(|kind| kind.opcodes()[0]);
        list.dedup();
        Self { ops: list }
    }

    /// Every kind of op: for rings that serve whatever is attached (tests, benchmarks).
    pub fn any() -> Self {
        Self::new(&OpKind::ALL)
    }

    pub fn allows(&self, kind: OpKind) -> bool {
        self.ops.contains(&kind)
    }

    pub fn ops(&self) -> &[OpKind] {
        &self.ops
    }

    /// Every opcode the ring may submit, the reactor's own included, sorted.
    pub fn opcodes(&self) -> Vec<u8> {
        let mut codes: Vec<u8> = self
            .ops
            .iter()
            .flat_map(|kind| kind.opcodes().iter().copied())
            .collect();
        codes.extend(REACTOR_OPCODES);
        codes.sort_unstable();
        codes.dedup();
        codes
    }

    /// The restrictions to register while the ring is disabled: these opcodes, the one
    /// SQE flag ops use (IOSQE_FIXED_FILE), and the two register operations the reactor
    /// needs once enabled (updating its file table and its guest RAM buffers; no new
    /// table, no eventfd, no personality, no further restriction or io-wq change).
    ///
    /// The kinds' optional opcodes are allowed where `supported` (the kernel's probe) says
    /// the kernel has them: a restriction naming an opcode the kernel does not know is
    /// refused.
    pub(crate) fn restrictions(&self, supported: impl Fn(u8) -> bool) -> Vec<Restriction> {
        let mut codes = self.opcodes();
        codes.extend(
            self.ops
                .iter()
                .flat_map(|kind| kind.optional_opcodes().iter().copied())
                .filter(|&code| supported(code)),
        );
        codes.sort_unstable();
        codes.dedup();
        let mut list: Vec<Restriction> = codes.into_iter().map(Restriction::sqe_op).collect();
        list.push(Restriction::sqe_flags_allowed(
            squeue::Flags::FIXED_FILE.bits(),
        ));
        list.push(Restriction::register_op(REGISTER_FILES_UPDATE));
        list.push(Restriction::register_op(REGISTER_BUFFERS_UPDATE));
        list
    }
}

/// Ops no ring policy allows, for the tests of the restrictions ([`super::ReactorSet::try_forbidden`]).
#[cfg(feature = "test-hooks")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForbiddenOp {
    /// IORING_OP_OPENAT of "/".
    OpenAt,
    /// IORING_OP_CONNECT of descriptor -1 (-EBADF where it is let through).
    Connect,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opcodes_are_the_policys_and_the_reactors_own() {
        let policy = RingPolicy::new(&[OpKind::Write, OpKind::Read, OpKind::Write]);
        assert_eq!(policy.ops(), &[OpKind::Read, OpKind::Write]);
        let mut expected = vec![
            opcode::Read::CODE,
            opcode::AsyncCancel::CODE,
            opcode::Readv::CODE,
            opcode::Writev::CODE,
            opcode::ReadFixed::CODE,
            opcode::WriteFixed::CODE,
        ];
        expected.sort_unstable();
        assert_eq!(policy.opcodes(), expected);
        assert!(policy.allows(OpKind::Read));
        assert!(!policy.allows(OpKind::Accept));
        // Opcodes plus the flags rule and the two register operations; the vectored fixed
        // read and write where the kernel has them.
        assert_eq!(policy.restrictions(|_| false).len(), expected.len() + 3);
        assert_eq!(policy.restrictions(|_| true).len(), expected.len() + 5);
    }

    #[test]
    fn every_kind_has_its_own_opcode() {
        let mut codes: Vec<u8> = OpKind::ALL
            .iter()
            .flat_map(|kind| {
                kind.opcodes()
                    .iter()
                    .chain(kind.optional_opcodes())
                    .copied()
            })
            .collect();
        let count = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), count, "no opcode serves two kinds");
        assert_eq!(RingPolicy::any().ops().len(), OpKind::ALL.len());
    }
}
