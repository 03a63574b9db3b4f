//! Runs real static C programs (glibc) in the user-mode harness and in
//! qemu-riscv64, and compares their output and exit status.

mod common;

use common::{compile, qemu};
use spin_emu_riscv::user::run_elf;

const PROGRAM: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) { h ^= (unsigned char)*s++; h *= 1099511628211ull; }
    return h;
}

int main(int argc, char **argv) {
    int n = 20000;
    char *sieve = calloc(n + 1, 1);
    int count = 0;
    for (int i = 2; i <= n; i++) {
        if (!sieve[i]) { count++; for (int j = 2 * i; j <= n; j += i) sieve[j] = 1; }
    }
    printf("primes below %d: %d\n", n, count);
    double x = 1.0;
    for (int i = 1; i < 30; i++) x = x * 1.5 + 1.0 / i;
    printf("float: %.10f %g %e\n", x, x / 7.0, (float)x * 3.25f);
    char buf[256];
    snprintf(buf, sizeof buf, "%s-%d-%lx", argv[0], argc, (unsigned long)fnv("spin"));
    printf("hash %016llx of %s\n", (unsigned long long)fnv(buf), buf);
    long long acc = 0;
    for (long long i = 1; i < 100000; i++) acc += (i * i) % 97 - (i / 3);
    printf("acc %lld\n", acc);
    char *big = malloc(1 << 20);
    memset(big, 'a', 1 << 20);
    big[(1 << 20) - 1] = 0;
    printf("len %zu\n", strlen(big));
    free(big);
    free(sieve);
    return (int)(acc & 0x3f);
}
"#;

#[test]
fn static_glibc_program_matches_qemu() {
    let elf = compile("cprog", PROGRAM, "c", &[]);
    let (qcode, qout) = qemu(&elf, &[]);
    let ours = run_elf(&elf, &["prog"], 2_000_000_000).expect("program runs");
    assert!(!qout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&qout)
    );
    assert_eq!(ours.exit_code, qcode);
}
