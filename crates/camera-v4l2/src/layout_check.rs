//! Checks `abi.rs` against the kernel's own `linux/videodev2.h`: a C program printing every
//! size, alignment, offset, request number and constant that [`abi::layout`] lists is
//! compiled against the header and run, and its figures must equal Rust's, for this machine
//! (gcc) and for armv7 (`arm-linux-gnueabihf-gcc`, and `abi.rs` itself built by rustc for
//! `armv7-unknown-linux-gnueabihf`, both run under `qemu-arm`).
//!
//! A missing tool skips a check with "skipped: <why>", except under CI (`CI` set), whose
//! `.ci/run` installs them all: there it fails.

use std::path::Path;
use std::process::Command;

use crate::abi;

const ARMV7: &str = "armv7-unknown-linux-gnueabihf";
const ARM_GCC: &str = "arm-linux-gnueabihf-gcc";
const ARM_SYSROOT: &str = "/usr/arm-linux-gnueabihf";

/// The C program: one `EXPRESSION VALUE` line per fact.
fn c_program() -> String {
    let mut c = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include <sys/time.h>\n\
         #include <linux/videodev2.h>\n\nint main(void) {\n",
    );
    for (expr, _) in abi::layout() {
        c.push_str(&format!(
            "    printf(\"%s %llu\\n\", \"{expr}\", (unsigned long long)({expr}));\n"
        ));
    }
    c.push_str("    return 0;\n}\n");
    c
}

/// The Rust program that prints the same facts, from `abi.rs` compiled on its own.
fn rust_program() -> String {
    let abi = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/abi.rs");
    format!(
        "#[path = {:?}]\nmod abi;\n\nfn main() {{\n    for (expr, value) in abi::layout() {{\n        \
         println!(\"{{expr}} {{value}}\");\n    }}\n}}\n",
        abi.display()
    )
}

/// Whether `tool` is on PATH; if not, says "skipped" (or fails under CI).
fn have(tool: &str, what: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    if !found {
        skip(&format!("{tool} is not installed ({what})"));
    }
    found
}

fn skip(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{why}, and CI must have it (.ci/run installs it)"
    );
    println!("skipped: {why}");
}

/// Runs `command` and returns its standard output; panics with its standard error.
fn run(command: &mut Command) -> String {
    let shown = format!("{command:?}");
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the program printed non-UTF-8")
}

/// `EXPRESSION VALUE` lines as pairs.
fn parse(output: &str) -> Vec<(String, u64)> {
    output
        .lines()
        .map(|line| {
            let (expr, value) = line.rsplit_once(' ').expect("a line without a value");
            (
                expr.to_owned(),
                value.parse().expect("a value that is not a number"),
            )
        })
        .collect()
}

/// Panics listing every fact where the header and Rust disagree.
fn compare(target: &str, header: &[(String, u64)], rust: &[(String, u64)]) {
    assert_eq!(
        header.len(),
        rust.len(),
        "{target}: the C and Rust programs list different facts"
    );
    let wrong: Vec<String> = header
        .iter()
        .zip(rust)
        .filter(|(h, r)| h != r)
        .map(|((expr, h), (rexpr, r))| {
            assert_eq!(
                expr, rexpr,
                "{target}: the programs list facts in different orders"
            );
            format!("  {expr}: the header says {h} ({h:#x}), abi.rs {r} ({r:#x})")
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{target}: abi.rs disagrees with linux/videodev2.h:\n{}",
        wrong.join("\n")
    );
    println!(
        "{target}: {} facts agree with linux/videodev2.h",
        rust.len()
    );
}

#[test]
fn the_layout_matches_the_kernel_header_on_this_machine() {
    if !have(
        "gcc",
        "compiles the layout program against linux/videodev2.h",
    ) {
        return;
    }
    if !Path::new("/usr/include/linux/videodev2.h").is_file() {
        return skip("/usr/include/linux/videodev2.h is missing (apt-get install linux-libc-dev)");
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("layout.c");
    std::fs::write(&source, c_program()).unwrap();
    let binary = dir.path().join("layout");
    run(Command::new("gcc")
        .args(["-std=gnu11", "-Wall", "-o"])
        .arg(&binary)
        .arg(&source));
    let header = parse(&run(&mut Command::new(&binary)));
    let rust: Vec<(String, u64)> = abi::layout()
        .into_iter()
        .map(|(expr, value)| (expr.to_owned(), value))
        .collect();
    compare(std::env::consts::ARCH, &header, &rust);
}

#[test]
fn the_layout_matches_the_kernel_header_on_armv7() {
    if !have(ARM_GCC, "compiles the layout program for armv7")
        || !have("qemu-arm", "runs the armv7 layout programs")
        || !have("rustc", "builds abi.rs for armv7")
    {
        return;
    }
    if !Path::new(ARM_SYSROOT)
        .join("include/linux/videodev2.h")
        .is_file()
    {
        return skip(&format!(
            "{ARM_SYSROOT}/include/linux/videodev2.h is missing (apt-get install libc6-dev-armhf-cross)"
        ));
    }
    let libdir = run(Command::new("rustc").args(["--print", "target-libdir", "--target", ARMV7]));
    if !Path::new(libdir.trim()).is_dir() {
        return skip(&format!(
            "Rust's {ARMV7} standard library is not installed (rustup target add {ARMV7})"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let c_source = dir.path().join("layout.c");
    std::fs::write(&c_source, c_program()).unwrap();
    let c_binary = dir.path().join("layout-c");
    run(Command::new(ARM_GCC)
        .args(["-std=gnu11", "-Wall", "-o"])
        .arg(&c_binary)
        .arg(&c_source));
    let rust_source = dir.path().join("layout.rs");
    std::fs::write(&rust_source, rust_program()).unwrap();
    let rust_binary = dir.path().join("layout-rust");
    run(Command::new("rustc")
        .args(["--edition", "2024", "--target", ARMV7, "-C"])
        .arg(format!("linker={ARM_GCC}"))
        .arg("-o")
        .arg(&rust_binary)
        .arg(&rust_source));
    let qemu = |binary: &Path| {
        run(Command::new("qemu-arm")
            .args(["-L", ARM_SYSROOT])
            .arg(binary))
    };
    let header = parse(&qemu(&c_binary));
    let rust = parse(&qemu(&rust_binary));
    compare("armv7", &header, &rust);
}
