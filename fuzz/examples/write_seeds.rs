//! Writes every target's generated seeds to `DIR/<target>/seed-N` (default `fuzz/corpus`),
//! the starting corpus for `cargo fuzz run`.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    for (name, _) in ringvisor_fuzz::TARGETS {
        let target_dir = dir.join(name);
        std::fs::create_dir_all(&target_dir)?;
        for (i, seed) in ringvisor_fuzz::seeds::seeds(name).iter().enumerate() {
            std::fs::write(target_dir.join(format!("seed-{i}")), seed)?;
        }
        println!("{}", target_dir.display());
    }
    Ok(())
}
