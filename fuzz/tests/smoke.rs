//! A short, deterministic run of every fuzz target on stable Rust without cargo-fuzz:
//! seeds, every saved regression input, and a few thousand mutated and random inputs.
//! RINGVISOR_FUZZ_SMOKE_ITERATIONS changes the count (default 2000 per target).

fn iterations() -> usize {
    std::env::var("RINGVISOR_FUZZ_SMOKE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

macro_rules! smoke {
    ($($name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                let runs = ringvisor_fuzz::seeds::smoke(stringify!($name), iterations());
                assert!(runs >= iterations());
            }
        )+

        #[test]
        fn every_target_has_a_smoke_test_and_seeds() {
            let tested = [$(stringify!($name)),+];
            for (name, _) in ringvisor_fuzz::TARGETS {
                assert!(tested.contains(name), "{name} has no smoke test");
                assert!(!ringvisor_fuzz::seeds::seeds(name).is_empty(), "{name} has no seeds");
            }
        }
    };
}

smoke!(
    virtio_chain,
    virtio_blk,
    virtio_scsi,
    virtio_net,
    virtio_console,
    virtio_balloon,
    qxl,
    pci_config,
    api_request,
);
