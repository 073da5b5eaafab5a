//! The CPUID a vCPU reports: what KVM supports on this host, with the per-vCPU topology filled
//! in and KVM's paravirtual leaves (kvmclock, PV EOI, steal time, ...) kept as KVM offers them.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_XSAVE: u32 = 0xd;
const LEAF_EXT_TOPOLOGY: u32 = 0xb;
const LEAF_V2_EXT_TOPOLOGY: u32 = 0x1f;
const LEAF_POWER_MANAGEMENT: u32 = 0x8000_0007;
const LEAF_ADDRESS_SIZES: u32 = 0x8000_0008;
const LEAF_AMD_TOPOLOGY: u32 = 0x8000_001e;
/// KVM_CPUID_FEATURES: the paravirtual features KVM offers.
const LEAF_KVM_FEATURES: u32 = 0x4000_0001;
/// kvm-clock through the new MSRs (0x4b564d00/01).
const KVM_FEATURE_CLOCKSOURCE2: u32 = 1 << 3;
/// The guest may trust PVCLOCK_TSC_STABLE_BIT in the kvmclock pages (QEMU's
/// kvmclock-stable-bit, on by default): its clock then needs no cross-vCPU clamping.
const KVM_FEATURE_CLOCKSOURCE_STABLE_BIT: u32 = 1 << 24;

const ECX_HYPERVISOR: u32 = 1 << 31;
const ECX_XSAVE: u32 = 1 << 26;
/// TSC-deadline mode of the local APIC timer. KVM emulates it on every host but leaves it
/// out of KVM_GET_SUPPORTED_CPUID (KVM_CAP_TSC_DEADLINE_TIMER says it is there). Without it
/// Linux calibrates the APIC timer against the PIT, which under nested or loaded hosts can
/// fail ("APIC timer disabled due to verification failure") and leaves the guest without
/// high-resolution timers.
const ECX_TSC_DEADLINE: u32 = 1 << 24;
const EDX_HTT: u32 = 1 << 28;
/// Invariant TSC: left out, as QEMU does by default. With it Linux rates the TSC above
/// kvm-clock, and a TSC that KVM cannot keep stable across pause or migration would win.
const EDX_INVARIANT_TSC: u32 = 1 << 8;

const TOPOLOGY_LEVEL_SMT: u32 = 1;
const TOPOLOGY_LEVEL_CORE: u32 = 2;

/// Bits needed to number `count` cores.
fn core_id_bits(count: u8) -> u32 {
    u32::from(count.max(1)).next_power_of_two().trailing_zeros()
}

/// Adjusts `cpuid` (as returned by KVM_GET_SUPPORTED_CPUID) for vCPU `apic_id` of `count`:
/// one socket of `count` single-threaded cores. `tsc_deadline` is KVM_CAP_TSC_DEADLINE_TIMER.
pub fn configure_for_vcpu(cpuid: &mut CpuId, apic_id: u8, count: u8, tsc_deadline: bool) {
    let core_bits = core_id_bits(count);
    for entry in cpuid.as_mut_slice() {
        configure_entry(entry, apic_id, count, core_bits);
        if entry.function == LEAF_FEATURES && tsc_deadline {
            entry.ecx |= ECX_TSC_DEADLINE;
        }
    }
}

fn configure_entry(entry: &mut kvm_cpuid_entry2, apic_id: u8, count: u8, core_bits: u32) {
    let apic = u32::from(apic_id);
    match entry.function {
        LEAF_FEATURES => {
            entry.ebx = (entry.ebx & 0x0000_ffff) | (apic << 24) | (u32::from(count) << 16);
            if entry.ebx & 0xff00 == 0 {
                entry.ebx |= 8 << 8; // CLFLUSH line size, in 8-byte units
            }
            entry.ecx |= ECX_HYPERVISOR;
            if count > 1 {
                entry.edx |= EDX_HTT;
            } else {
                entry.edx &= !EDX_HTT;
            }
        }
        LEAF_KVM_FEATURES => {
            entry.eax |= KVM_FEATURE_CLOCKSOURCE2 | KVM_FEATURE_CLOCKSOURCE_STABLE_BIT;
        }
        LEAF_CACHE_PARAMS => {
            // Cores per package minus one; the caches themselves are as the host reports.
            entry.eax = (entry.eax & 0x03ff_ffff) | ((u32::from(count) - 1) << 26);
        }
        LEAF_EXT_TOPOLOGY | LEAF_V2_EXT_TOPOLOGY => {
            entry.edx = apic;
            match entry.index {
                0 => {
                    entry.eax = 0;
                    entry.ebx = 1;
                    entry.ecx = TOPOLOGY_LEVEL_SMT << 8;
                }
                1 => {
                    entry.eax = core_bits;
                    entry.ebx = u32::from(count);
                    entry.ecx = (TOPOLOGY_LEVEL_CORE << 8) | 1;
                }
                index => {
                    entry.eax = 0;
                    entry.ebx = 0;
                    entry.ecx = index;
                }
            }
        }
        LEAF_POWER_MANAGEMENT => entry.edx &= !EDX_INVARIANT_TSC,
        LEAF_ADDRESS_SIZES => {
            entry.ecx = (core_bits << 12) | (u32::from(count) - 1);
        }
        LEAF_AMD_TOPOLOGY => {
            entry.eax = apic;
            entry.ebx = apic & 0xff; // core ID, one thread per core
            entry.ecx = 0; // node 0, one node per package
        }
        _ => {}
    }
}

/// XCR0 with every state component CPUID leaf 0xD.0 reports, when the CPU has XSAVE.
pub fn xsave_features(cpuid: &CpuId) -> Option<u64> {
    let entries = cpuid.as_slice();
    let features = entries.iter().find(|e| e.function == LEAF_FEATURES)?;
    if features.ecx & ECX_XSAVE == 0 {
        return None;
    }
    let xsave = entries
        .iter()
        .find(|e| e.function == LEAF_XSAVE && e.index == 0)?;
    let supported = u64::from(xsave.eax) | (u64::from(xsave.edx) << 32);
    // x87 state is always on; anything else only as offered.
    Some(supported | 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ebx: 0x0012_0800,
            edx: 0xffff_ffff,
            ..Default::default()
        }
    }

    #[test]
    fn apic_id_and_count_land_in_leaf_1() {
        let mut entry = leaf(LEAF_FEATURES, 0);
        configure_entry(&mut entry, 5, 8, core_id_bits(8));
        assert_eq!(entry.ebx >> 24, 5);
        assert_eq!((entry.ebx >> 16) & 0xff, 8);
        assert_eq!((entry.ebx >> 8) & 0xff, 8);
        assert_ne!(entry.ecx & ECX_HYPERVISOR, 0);
        assert_ne!(entry.edx & EDX_HTT, 0);
    }

    #[test]
    fn kvmclock_is_offered_with_its_stable_bit() {
        let mut entry = kvm_cpuid_entry2 {
            function: LEAF_KVM_FEATURES,
            eax: 1 << 0,
            ..Default::default()
        };
        configure_entry(&mut entry, 0, 1, 0);
        assert_eq!(entry.eax & (1 << 3), 1 << 3, "KVM_FEATURE_CLOCKSOURCE2");
        assert_eq!(
            entry.eax & (1 << 24),
            1 << 24,
            "KVM_FEATURE_CLOCKSOURCE_STABLE_BIT"
        );
        assert_eq!(entry.eax & 1, 1, "what KVM offered stays");
    }

    #[test]
    fn extended_topology_reports_one_socket_of_cores() {
        let mut smt = leaf(LEAF_EXT_TOPOLOGY, 0);
        let mut core = leaf(LEAF_EXT_TOPOLOGY, 1);
        let mut end = leaf(LEAF_EXT_TOPOLOGY, 2);
        for entry in [&mut smt, &mut core, &mut end] {
            configure_entry(entry, 3, 6, core_id_bits(6));
        }
        assert_eq!((smt.ebx, smt.edx, smt.ecx >> 8), (1, 3, TOPOLOGY_LEVEL_SMT));
        assert_eq!(
            (core.eax, core.ebx, core.ecx >> 8),
            (3, 6, TOPOLOGY_LEVEL_CORE)
        );
        assert_eq!(end.ecx >> 8, 0, "level type 0 ends the enumeration");
    }

    #[test]
    fn invariant_tsc_is_hidden() {
        let mut entry = leaf(LEAF_POWER_MANAGEMENT, 0);
        configure_entry(&mut entry, 0, 1, 0);
        assert_eq!(entry.edx & EDX_INVARIANT_TSC, 0);
    }

    #[test]
    fn the_kvm_signature_leaf_is_untouched() {
        let mut entry = leaf(0x4000_0000, 0);
        let before = entry;
        configure_entry(&mut entry, 1, 2, 1);
        assert_eq!(
            (entry.eax, entry.ebx, entry.ecx, entry.edx),
            (before.eax, before.ebx, before.ecx, before.edx)
        );
    }

    #[test]
    fn tsc_deadline_timer_is_offered_only_when_kvm_emulates_it() {
        for (offered, expect) in [(true, ECX_TSC_DEADLINE), (false, 0)] {
            let mut cpuid = CpuId::from_entries(&[leaf(LEAF_FEATURES, 0)]).unwrap();
            configure_for_vcpu(&mut cpuid, 0, 1, offered);
            assert_eq!(cpuid.as_slice()[0].ecx & ECX_TSC_DEADLINE, expect);
        }
    }

    #[test]
    fn xcr0_covers_the_offered_xsave_components() {
        let mut features = leaf(LEAF_FEATURES, 0);
        let mut xsave = leaf(LEAF_XSAVE, 0);
        xsave.eax = 0x7;
        xsave.edx = 0;
        let cpuid =
            |f: kvm_cpuid_entry2, x: kvm_cpuid_entry2| CpuId::from_entries(&[f, x]).unwrap();
        features.ecx = 0;
        assert_eq!(
            xsave_features(&cpuid(features, xsave)),
            None,
            "no XSAVE, no XCR0"
        );
        features.ecx = ECX_XSAVE;
        assert_eq!(xsave_features(&cpuid(features, xsave)), Some(0x7));
        xsave.eax = 0;
        assert_eq!(
            xsave_features(&cpuid(features, xsave)),
            Some(0x1),
            "x87 is always on"
        );
    }
}
