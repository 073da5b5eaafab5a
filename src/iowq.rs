//! How many io-wq workers (the kernel's threads for blocking io_uring work) each reactor
//! may run: `--iowq-workers N`, or a default from the queues the reactors serve.

use std::num::NonZeroU32;

use ringvisor_devices::virtio::net::NetConfig;
use ringvisor_devices::virtio::scsi::ScsiConfig;
use ringvisor_io::IowqLimits;

use crate::options::DiskSpec;

/// The low-priority reactor's default: its only blocking work is a console's file
/// backend (buffered writes, never a flush), and it must never take time from the I/O
/// reactors.
pub const LOW_PRIORITY_IOWQ_WORKERS: NonZeroU32 = NonZeroU32::MIN;

/// The largest `--iowq-workers`: far above any useful count (the kernel's own default is
/// four per host CPU), low enough that a typo is caught.
pub const MAX_IOWQ_WORKERS: u32 = 1024;

/// The queues whose requests may turn into blocking host work, all served by the I/O
/// reactors: every disk queue, every SCSI request queue, and a receive and a transmit
/// queue per NIC queue pair. The control and event queues carry no such work.
pub fn hot_queue_count(disks: &[DiskSpec], scsi: Option<&ScsiConfig>, nets: &[NetConfig]) -> usize {
    let disk_queues: usize = disks.iter().map(|d| usize::from(d.queues)).sum();
    let scsi_queues = scsi.map_or(0, |s| usize::from(s.queues));
    let net_queues: usize = nets.iter().map(|n| 2 * usize::from(n.queue_pairs)).sum();
    disk_queues + scsi_queues + net_queues
}

/// Each I/O reactor's limits: `given` (`--iowq-workers`) or, by default, four workers
/// per queue of the busiest reactor (see [`IowqLimits::for_queues`]).
pub fn hot_limits(given: Option<NonZeroU32>, hot_queues: usize, hot_reactors: usize) -> IowqLimits {
    given.map_or_else(
        || IowqLimits::for_queues(hot_queues, hot_reactors),
        IowqLimits::uniform,
    )
}

/// The low-priority reactor's limits: `given` (`--iowq-workers`, which caps every
/// reactor) or [`LOW_PRIORITY_IOWQ_WORKERS`].
pub fn low_priority_limits(given: Option<NonZeroU32>) -> IowqLimits {
    IowqLimits::uniform(given.unwrap_or(LOW_PRIORITY_IOWQ_WORKERS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{parse_disk, parse_net, parse_scsi};
    use ringvisor_devices::virtio::scsi::ScsiConfig;

    fn n(value: u32) -> NonZeroU32 {
        NonZeroU32::new(value).unwrap()
    }

    #[test]
    fn the_hot_queues_are_disk_and_scsi_request_queues_and_both_directions_of_each_pair() {
        let disks = [
            parse_disk("path=a,queues=4").unwrap(),
            parse_disk("path=b").unwrap(),
        ];
        let scsi = ScsiConfig {
            queues: parse_scsi("queues=2").unwrap().queues,
            disks: Vec::new(),
        };
        let nets = [parse_net("tap=t0,queues=2").unwrap()];
        assert_eq!(
            hot_queue_count(&disks, Some(&scsi), &nets),
            4 + 1 + 2 + 2 * 2
        );
        assert_eq!(hot_queue_count(&[], None, &[]), 0);
    }

    #[test]
    fn the_default_divides_the_queues_among_the_reactors_and_the_flag_overrides_it() {
        // 11 queues over 4 reactors: the busiest serves 3.
        assert_eq!(hot_limits(None, 11, 4), IowqLimits::uniform(n(12)));
        // A machine without I/O devices gets a queue's worth.
        assert_eq!(hot_limits(None, 0, 2), IowqLimits::uniform(n(4)));
        assert_eq!(hot_limits(Some(n(7)), 11, 4), IowqLimits::uniform(n(7)));
        assert_eq!(low_priority_limits(None), IowqLimits::uniform(n(1)));
        assert_eq!(low_priority_limits(Some(n(2))), IowqLimits::uniform(n(2)));
    }
}
