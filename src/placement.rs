//! Where each thread runs: the I/O reactors, the vCPUs, and the background threads (the
//! low-priority reactor, the API, signal handling), checked against the cores this process
//! may use. Impossible placements are errors; doubtful ones (a vCPU sharing a core with a
//! reactor or with another vCPU) are warnings.

use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "--reactor-cores: core {core} is not one this process may run on (allowed: {allowed})"
    )]
    ReactorCore { core: usize, allowed: String },
    #[error("--cpus affinity: there is no vCPU {vcpu} (the guest has {count})")]
    NoSuchVcpu { vcpu: u8, count: u8 },
    #[error(
        "--cpus affinity: vCPU {vcpu} on core {core}, which this process may not run on \
         (allowed: {allowed})"
    )]
    VcpuCore {
        vcpu: u8,
        core: usize,
        allowed: String,
    },
}

/// The planned cores of every thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// One I/O reactor per entry, pinned to that core.
    pub reactors: Vec<usize>,
    /// Each vCPU's cores: its `affinity=` entry, or every allowed core.
    pub vcpus: Vec<Vec<usize>>,
    /// The low-priority reactor, the API and the other background threads: the allowed
    /// cores that no reactor and no pinned vCPU uses, or every allowed core when none is
    /// left.
    pub background: Vec<usize>,
    /// Placements that work but probably are not what the operator wants.
    pub warnings: Vec<String>,
}

/// Plans the placement of `vcpus` vCPUs (`affinity`: pinned ones) and the reactors
/// (`reactor_cores`, default every allowed core) over the `allowed` cores.
pub fn plan(
    vcpus: u8,
    affinity: &[(u8, Vec<usize>)],
    reactor_cores: Option<&[usize]>,
    allowed: &[usize],
) -> Result<Placement, PlacementError> {
    let reactors = match reactor_cores {
        None => allowed.to_vec(),
        Some(cores) => {
            if let Some(&core) = cores.iter().find(|c| !allowed.contains(c)) {
                return Err(PlacementError::ReactorCore {
                    core,
                    allowed: cpu_list_string(allowed),
                });
            }
            cores.to_vec()
        }
    };
    let mut vcpu_cores = vec![allowed.to_vec(); usize::from(vcpus)];
    let mut warnings = Vec::new();
    for (vcpu, cores) in affinity {
        let slot = vcpu_cores
            .get_mut(usize::from(*vcpu))
            .ok_or(PlacementError::NoSuchVcpu {
                vcpu: *vcpu,
                count: vcpus,
            })?;
        if let Some(&core) = cores.iter().find(|c| !allowed.contains(c)) {
            return Err(PlacementError::VcpuCore {
                vcpu: *vcpu,
                core,
                allowed: cpu_list_string(allowed),
            });
        }
        *slot = cores.clone();
        let shared: Vec<usize> = cores
            .iter()
            .copied()
            .filter(|c| reactors.contains(c))
            .collect();
        if !shared.is_empty() {
            warnings.push(format!(
                "vCPU {vcpu} shares core(s) {} with an I/O reactor (--reactor-cores)",
                cpu_list_string(&shared)
            ));
        }
    }
    for (i, (a, cores_a)) in affinity.iter().enumerate() {
        for (b, cores_b) in &affinity[i + 1..] {
            if cores_a.iter().any(|c| cores_b.contains(c)) {
                warnings.push(format!("vCPUs {a} and {b} share cores"));
            }
        }
    }
    let taken = |core: &usize| {
        reactors.contains(core) || affinity.iter().any(|(_, cores)| cores.contains(core))
    };
    let mut background: Vec<usize> = allowed.iter().copied().filter(|c| !taken(c)).collect();
    if background.is_empty() {
        background = allowed.to_vec();
    }
    Ok(Placement {
        reactors,
        vcpus: vcpu_cores,
        background,
        warnings,
    })
}

/// `[0, 1, 2, 3, 8]` → "0-3,8".
pub fn cpu_list_string(cores: &[usize]) -> String {
    let mut sorted = cores.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}-{end}");
        }
        i += 1;
    }
    out
}

/// The cores the calling thread may run on (at startup: the process's allowed set).
pub fn allowed_cpus() -> std::io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed; 0 is this thread.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, inside the set.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Every thread of this process as `(name, thread id, allowed cores)`, read from /proc:
/// the placement as it is, not as it was planned.
pub fn live_threads() -> Vec<(String, u32, String)> {
    let mut threads = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return threads;
    };
    for task in tasks.flatten() {
        let Ok(tid) = task.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        threads.push((field("Name:"), tid, field("Cpus_allowed_list:")));
    }
    threads.sort_by_key(|t| t.1);
    threads
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOWED: &[usize] = &[0, 1, 2, 3, 4, 5, 6, 7];

    #[test]
    fn reactors_vcpus_and_background_get_separate_cores() {
        let plan = plan(2, &[(0, vec![2]), (1, vec![3])], Some(&[0, 1]), ALLOWED).unwrap();
        assert_eq!(plan.reactors, vec![0, 1]);
        assert_eq!(plan.vcpus, vec![vec![2], vec![3]]);
        assert_eq!(plan.background, vec![4, 5, 6, 7]);
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    }

    #[test]
    fn unpinned_vcpus_may_run_anywhere_allowed() {
        let plan = plan(3, &[(1, vec![5, 6])], Some(&[7]), ALLOWED).unwrap();
        assert_eq!(plan.vcpus[0], ALLOWED);
        assert_eq!(plan.vcpus[1], vec![5, 6]);
        assert_eq!(plan.vcpus[2], ALLOWED);
        assert_eq!(plan.background, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn overlaps_warn() {
        let plan = plan(2, &[(0, vec![1]), (1, vec![1, 2])], Some(&[1]), ALLOWED).unwrap();
        assert_eq!(plan.warnings.len(), 3, "{:?}", plan.warnings);
        assert!(plan.warnings[0].contains("vCPU 0 shares core(s) 1"));
        assert!(plan.warnings[2].contains("vCPUs 0 and 1 share"));
    }

    #[test]
    fn impossible_placements_fail() {
        assert_eq!(
            plan(2, &[], Some(&[9]), ALLOWED),
            Err(PlacementError::ReactorCore {
                core: 9,
                allowed: "0-7".into()
            })
        );
        assert_eq!(
            plan(2, &[(2, vec![1])], None, ALLOWED),
            Err(PlacementError::NoSuchVcpu { vcpu: 2, count: 2 })
        );
        let err = plan(2, &[(1, vec![3, 12])], None, ALLOWED).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--cpus affinity: vCPU 1 on core 12, which this process may not run on (allowed: 0-7)"
        );
    }

    #[test]
    fn background_falls_back_to_everything_when_no_core_is_free() {
        let plan = plan(1, &[(0, vec![1])], Some(&[0]), &[0, 1]).unwrap();
        assert_eq!(plan.background, vec![0, 1]);
    }

    #[test]
    fn cpu_lists_print_compactly() {
        assert_eq!(cpu_list_string(&[3, 0, 1, 2, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(cpu_list_string(&[5]), "5");
        assert_eq!(cpu_list_string(&[]), "");
    }

    #[test]
    fn this_process_may_run_somewhere_and_its_threads_are_listed() {
        assert!(!allowed_cpus().unwrap().is_empty());
        let threads = live_threads();
        assert!(!threads.is_empty());
        assert!(threads.iter().all(|(_, _, cores)| !cores.is_empty()));
    }
}
