//! The IPAM check, run in CI: `cirrus bench ipam` creates 1000 ports concurrently on
//! one /22 subnet against an in-process API with the network controller, and verifies that
//! every port got an address, no address was handed out twice and every port's status
//! agrees with its allocation — the command fails otherwise. (The allocations/s it prints is
//! for humans; nothing here asserts a timing.)

use std::process::Command;

#[test]
fn bench_ipam_allocates_1000_ports_on_a_22_without_duplicates() {
    let out = Command::new(env!("CARGO_BIN_EXE_cirrus"))
        .args(["bench", "ipam", "--ports", "1000", "--writers", "16"])
        .output()
        .expect("run cirrus bench ipam");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cirrus bench ipam failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1000 allocations, 1000 distinct addresses, 0 duplicates"),
        "{stdout}"
    );
}
