//! edgecam's project tasks, run as `cargo xtask <command>` (an alias in
//! `.cargo/config.toml`), so that a developer's machine and CI run the same thing.
//!
//! Commands:
//! - `cargo xtask ci`: exactly what CI runs (`.ci/run` installs the system libraries,
//!   then calls it). In order: the `cargo fmt` check; clippy with `-D warnings`; the
//!   tests under nextest, plus the doctests; the layering check (edgecam-core has no
//!   runtime, sockets, OpenCV, libjpeg-turbo or libc, only edgecam-camera-opencv
//!   depends on `opencv`, and only camera-v4l2's `sys.rs` allows unsafe code); then the
//!   feature legs that need system libraries (`turbojpeg`, `opencv`), and `board-emulate`
//!   (the armv7 build smoke-tested under qemu-arm), `soak` (one server under mixed load
//!   for 2 minutes) and `fuzz` (every cargo-fuzz target for 30 s), each skipped, with the
//!   reason, where what it needs is missing. It stops at the first failure, naming the
//!   step and the command that re-runs it, and ends with a table of legs. The test leg
//!   includes camera-v4l2's check of its kernel structs against `linux/videodev2.h`,
//!   which needs gcc, `arm-linux-gnueabihf-gcc`, qemu-arm and Rust's armv7 target: outside
//!   CI it skips, saying so, where one is missing; under CI (`CI` set) it fails.
//! - `cargo xtask layering`: the layering check alone.
//! - `cargo xtask bench [args...]`: `cargo run --release --locked -p edgecam -- bench
//!   [args...]`; the benchmark itself lives in the edgecam binary.
//! - `cargo xtask run-board [options]`: cross-compile edgecam for an ARM board (profiles
//!   in `boards.toml`), copy it there with scp and run it over ssh, or install it as a
//!   systemd service (`board.rs`); `--emulate` smoke-tests the armv7 build here under
//!   qemu-arm (`emulate.rs`), which is also the `board-emulate` CI leg. The cross
//!   toolchain checks are in `toolchain.rs`.
//! - `cargo xtask fuzz [--seconds N] [--seeds] [TARGET...]`: runs the cargo-fuzz targets in
//!   `fuzz/` (its own workspace, outside this one) with nightly Rust (`fuzz.rs`); also the
//!   `fuzz` CI leg.
//! - `cargo xtask soak [--minutes N]`: one release `edgecam serve` on loopback under mixed
//!   load (streams, single shots, slow readers, garbage, slot-holders, churn) for N minutes,
//!   checking that fds, threads and RSS do not grow and that well-behaved clients keep the
//!   camera's rate (`soak.rs`); also the `soak` CI leg, for 2 minutes.
//! - `cargo xtask help`: the usage text.
//!
//! xtask stays light on purpose: `anyhow`, a hand-written argument parser,
//! `std::process::Command`, serde + toml (parsing only) for `boards.toml`, and socket2 for
//! the soak's clients (std cannot bind a socket to a source address before connecting; it is
//! in the lock file already, for the TCP transport), so that it builds in seconds on a fresh
//! clone.

mod board;
mod emulate;
mod fuzz;
mod soak;
mod toolchain;

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::{env, fmt, fs};

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
Usage: cargo xtask <command> [args...]

Commands:
  ci               run exactly what CI runs: fmt, clippy, tests, layering check,
                   feature legs, the armv7 build under qemu; stops at the first failure
  layering         run only the layering check (a step of `ci`)
  bench [args...]  cargo run --release --locked -p edgecam -- bench [args...]
  run-board [options]
                   build edgecam for an ARM board, copy it there and run it over ssh
                   (or install it as a systemd service); --emulate runs the armv7
                   build here under qemu-arm; see `cargo xtask run-board --help`
  fuzz [--seconds N] [--seeds] [TARGET...]
                   run the cargo-fuzz targets (nightly), 30 s each by default;
                   see `cargo xtask fuzz --help`
  soak [--minutes N]
                   one release server under mixed load for N minutes (default 2);
                   fails when fds, threads or RSS grow or clients miss frames;
                   see `cargo xtask soak --help`
  help             print this text
";

fn main() -> ExitCode {
    let mut args = env::args_os().skip(1);
    let command = args.next();
    let rest: Vec<OsString> = args.collect();
    let ctx = Ctx::new();
    let result = match command.as_deref().map(OsStr::to_string_lossy).as_deref() {
        None | Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Some("ci") => no_args("ci", &rest)
            .and_then(|()| ci(&ctx))
            .map(|()| ExitCode::SUCCESS),
        Some("layering") => no_args("layering", &rest)
            .and_then(|()| check_layering(&ctx))
            .map(|()| ExitCode::SUCCESS),
        Some("bench") => bench(&ctx, &rest),
        Some("run-board") => board::run_board(&ctx, &rest).map(|()| ExitCode::SUCCESS),
        Some("fuzz") => fuzz::run(&ctx, &rest).map(|()| ExitCode::SUCCESS),
        Some("soak") => soak::run(&ctx, &rest).map(|()| ExitCode::SUCCESS),
        Some(other) => {
            eprint!("error: unknown command `{other}`\n\n{USAGE}");
            Ok(ExitCode::FAILURE)
        }
    };
    result.unwrap_or_else(|err| {
        eprintln!("error: {err:#}");
        ExitCode::FAILURE
    })
}

fn no_args(command: &str, rest: &[OsString]) -> Result<()> {
    match rest.first() {
        None => Ok(()),
        Some(arg) => bail!(
            "`cargo xtask {command}` takes no arguments, got `{}`\n\n{USAGE}",
            arg.to_string_lossy()
        ),
    }
}

/// Where and with what the tasks run.
#[derive(Debug)]
struct Ctx {
    /// The cargo that runs xtask (`$CARGO`), so every step uses the same toolchain.
    cargo: OsString,
    /// The workspace root: every command runs there.
    root: PathBuf,
}

impl Ctx {
    fn new() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask's manifest lives in a folder of the workspace root")
            .to_path_buf();
        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        Ctx { cargo, root }
    }

    /// `cargo <args>` in the workspace root, after printing its header line.
    fn cargo(&self, args: &[&str], envs: &[(&str, &str)]) -> Command {
        println!("==> {}", display_cargo(args, envs));
        let mut cmd = Command::new(&self.cargo);
        cmd.args(args)
            .envs(envs.iter().copied())
            .current_dir(&self.root);
        cmd
    }

    /// Runs `cargo <args>` with its output streaming through; fails unless it succeeds.
    /// A nextest run's summary line is added to `tally`.
    fn run(&self, args: &[&str], envs: &[(&str, &str)], tally: &mut Tally) -> Result<()> {
        let shown = display_cargo(args, envs);
        let mut cmd = self.cargo(args, envs);
        let status = if args.first() == Some(&"nextest") {
            self.require_nextest()?;
            run_counting(&mut cmd, tally)
        } else {
            cmd.status()
        }
        .with_context(|| format!("could not start `{shown}`: is cargo on the PATH?"))?;
        if !status.success() {
            bail!("`{shown}` failed ({status})");
        }
        Ok(())
    }

    /// Runs `cargo <args>` and returns its standard output; its errors stream through.
    fn capture(&self, args: &[&str]) -> Result<String> {
        let shown = display_cargo(args, &[]);
        let out = self
            .cargo(args, &[])
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("could not start `{shown}`: is cargo on the PATH?"))?;
        if !out.status.success() {
            bail!("`{shown}` failed ({})", out.status);
        }
        String::from_utf8(out.stdout).with_context(|| format!("`{shown}` printed non-UTF-8"))
    }

    fn require_nextest(&self) -> Result<()> {
        let found = Command::new(&self.cargo)
            .args(["nextest", "--version"])
            .current_dir(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            bail!(
                "cargo-nextest is not installed: install it with `cargo install cargo-nextest --locked`"
            );
        }
        Ok(())
    }
}

/// Runs a nextest command, passing its standard error through line by line and adding its
/// `Summary [..] N tests run: P passed, F failed, S skipped` line to `tally`.
fn run_counting(cmd: &mut Command, tally: &mut Tally) -> std::io::Result<ExitStatus> {
    if std::io::stderr().is_terminal() {
        // Piped, nextest would drop its colours.
        cmd.env("CARGO_TERM_COLOR", "always");
    }
    let mut child = cmd.stderr(Stdio::piped()).spawn()?;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line?;
            eprintln!("{line}");
            tally.add_summary(&line);
        }
    }
    child.wait()
}

/// Tests counted over all the nextest runs of `cargo xtask ci`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    passed: u64,
    failed: u64,
    skipped: u64,
}

impl Tally {
    /// Adds the counts of a nextest summary line; other lines are ignored.
    fn add_summary(&mut self, line: &str) {
        let line = strip_ansi(line);
        let Some(counts) = line
            .split_once(" tests run: ")
            .or_else(|| line.split_once(" test run: "))
            .map(|(_, counts)| counts)
        else {
            return;
        };
        for part in counts.split(", ") {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" | "timed" => self.failed += n,
                "skipped" => self.skipped += n,
                _ => {}
            }
        }
    }
}

/// The plain closing line test-result readers understand.
impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tests: {} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// `line` without its terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the sequence: its final byte is a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The command line as a person would type it, to print and to copy.
fn display_cargo(args: &[&str], envs: &[(&str, &str)]) -> String {
    let envs = envs.iter().map(|(key, value)| format!("{key}={value}"));
    let command = ["cargo"].iter().chain(args).map(|word| (*word).to_owned());
    envs.chain(command).collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------
// cargo xtask ci

/// One part of CI, run only when its probe finds what it needs.
#[derive(Debug)]
struct Leg {
    name: &'static str,
    /// `Ok(())` when the leg can run on this machine, else why it is skipped. A probe
    /// only looks for system libraries and tools: it never fails the run.
    probe: fn() -> Result<(), String>,
    steps: &'static [Step],
}

#[derive(Debug)]
enum Step {
    /// `cargo <args>`, with extra environment variables (a cross leg's linker and runner).
    Cargo {
        args: &'static [&'static str],
        envs: &'static [(&'static str, &'static str)],
    },
    /// A check written here; it prints the commands it runs and what it checked.
    Check {
        run: fn(&Ctx) -> Result<()>,
        /// The command that re-runs just this check.
        rerun: &'static str,
    },
}

const fn cargo(args: &'static [&'static str]) -> Step {
    Step::Cargo { args, envs: &[] }
}

/// What CI runs, in order.
const LEGS: &[Leg] = &[
    Leg {
        name: "fmt",
        probe: always,
        steps: &[cargo(&["fmt", "--all", "--", "--check"])],
    },
    Leg {
        name: "clippy",
        probe: always,
        // edgecam-camera-opencv links the system OpenCV: the `opencv` leg checks it.
        steps: &[cargo(&[
            "clippy",
            "--workspace",
            "--exclude",
            OPENCV_CRATE,
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ])],
    },
    Leg {
        name: "test",
        probe: always,
        steps: &[
            cargo(&[
                "nextest",
                "run",
                "--workspace",
                "--exclude",
                OPENCV_CRATE,
                "--locked",
            ]),
            // nextest does not run doctests.
            cargo(&[
                "test",
                "--workspace",
                "--exclude",
                OPENCV_CRATE,
                "--doc",
                "--locked",
            ]),
        ],
    },
    Leg {
        name: "layering",
        probe: always,
        steps: &[Step::Check {
            run: check_layering,
            rerun: "cargo xtask layering",
        }],
    },
    Leg {
        name: "turbojpeg",
        probe: can_build_turbojpeg,
        steps: &[
            cargo(&[
                "clippy",
                "-p",
                "edgecam-encode",
                "-p",
                "edgecam",
                "--features",
                "edgecam/turbojpeg",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ]),
            cargo(&[
                "nextest",
                "run",
                "-p",
                "edgecam-encode",
                "-p",
                "edgecam",
                "--features",
                "edgecam/turbojpeg",
                "--locked",
            ]),
        ],
    },
    Leg {
        name: "opencv",
        probe: has_opencv,
        steps: &[
            cargo(&[
                "clippy",
                "-p",
                OPENCV_CRATE,
                "-p",
                "edgecam",
                "--features",
                "edgecam/opencv",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ]),
            cargo(&["nextest", "run", "-p", OPENCV_CRATE, "--locked"]),
            // edgecam's own tests that need OpenCV (the others ran in `test`).
            cargo(&[
                "nextest",
                "run",
                "-p",
                "edgecam",
                "--features",
                "opencv",
                "--locked",
                "-E",
                "test(/opencv/)",
            ]),
        ],
    },
    Leg {
        name: "board-emulate",
        probe: has_armv7_toolchain_and_qemu,
        steps: &[Step::Check {
            run: emulate::run,
            rerun: "cargo xtask run-board --emulate",
        }],
    },
    // The uclibc board build (tier 3: std from source) still compiles with everything in
    // (TLS's ring, libjpeg-turbo); Debian's armhf gcc stands in for the vendor's as the C
    // compiler. Linking needs the vendor's SDK, so this checks rather than builds.
    Leg {
        name: "uclibc-check",
        probe: can_check_uclibc,
        steps: &[Step::Check {
            run: check_uclibc,
            rerun: UCLIBC_CHECK,
        }],
    },
    // A release build, then 2 minutes of load.
    Leg {
        name: "soak",
        probe: soak::probe,
        steps: &[Step::Check {
            run: soak::ci,
            rerun: "cargo xtask soak --minutes 2",
        }],
    },
    // Last: the longest leg (the nightly AddressSanitizer build, then 6 targets x 30 s).
    Leg {
        name: "fuzz",
        probe: fuzz::probe,
        steps: &[Step::Check {
            run: fuzz::ci,
            rerun: "cargo xtask fuzz --seconds 30",
        }],
    },
];

fn always() -> Result<(), String> {
    Ok(())
}

/// libjpeg-turbo 3 is built from source by the `turbojpeg` crate (Debian 12's 2.1 is too old
/// for its tj3 API); `TURBOJPEG_SOURCE=pkg-config` uses a system one >= 3.0 instead.
fn can_build_turbojpeg() -> Result<(), String> {
    println!("==> looking for cmake (and nasm on x86) to build libjpeg-turbo");
    if std::env::var("TURBOJPEG_SOURCE").is_ok_and(|s| s.starts_with("pkg")) {
        return pkg_config_has(
            "libturbojpeg",
            "libjpeg-turbo >= 3.0",
            "your system's libjpeg-turbo 3 development package",
        );
    }
    let missing = toolchain::check_vendored_turbojpeg_here();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(toolchain::skip_reason(&missing))
    }
}

fn has_opencv() -> Result<(), String> {
    pkg_config_has(
        "opencv4",
        "libopencv-dev",
        "libopencv-dev clang libclang-dev",
    )
}

fn has_armv7_toolchain_and_qemu() -> Result<(), String> {
    println!("==> rustup target list; looking for arm-linux-gnueabihf-gcc and qemu-arm");
    let missing = toolchain::check_emulate_here();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(toolchain::skip_reason(&missing))
    }
}

/// The uclibc leg's command, as a developer re-runs it.
const UCLIBC_CHECK: &str = "CC_armv7_unknown_linux_uclibceabihf=arm-linux-gnueabihf-gcc \
    cargo +nightly check -Zbuild-std=std,panic_abort --target armv7-unknown-linux-uclibceabihf \
    -p edgecam --no-default-features --features turbojpeg --locked";

/// `cargo +nightly check` of the uclibc board build. The rustup proxy picks the toolchain
/// (`+nightly`), so this runs `cargo` from the PATH, not the stable cargo running xtask.
fn check_uclibc(ctx: &Ctx) -> Result<()> {
    println!("==> {UCLIBC_CHECK}");
    let status = Command::new("cargo")
        .args([
            "+nightly",
            "check",
            "-Zbuild-std=std,panic_abort",
            "--target",
        ])
        .arg(toolchain::ARMV7_UCLIBC)
        .args([
            "-p",
            "edgecam",
            "--no-default-features",
            "--features",
            "turbojpeg",
            "--locked",
        ])
        .env("CC_armv7_unknown_linux_uclibceabihf", toolchain::ARMV7_GCC)
        // The stable toolchain's own variables would pin the proxy to stable.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .current_dir(&ctx.root)
        .status()
        .context("cannot run cargo +nightly")?;
    anyhow::ensure!(status.success(), "the uclibc check failed ({status})");
    Ok(())
}

fn can_check_uclibc() -> Result<(), String> {
    println!("==> rustup component list --toolchain nightly; looking for arm-linux-gnueabihf-gcc");
    let missing = toolchain::check_uclibc_here();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(toolchain::skip_reason(&missing))
    }
}

/// Whether pkg-config knows `module`; a missing pkg-config counts as "no".
fn pkg_config_has(module: &str, package: &str, install: &str) -> Result<(), String> {
    println!("==> pkg-config --exists {module}");
    let found = Command::new("pkg-config")
        .args(["--exists", module])
        .status()
        .is_ok_and(|status| status.success());
    if found {
        Ok(())
    } else {
        Err(format!(
            "{package} not installed (apt-get install {install})"
        ))
    }
}

#[derive(Debug)]
enum Outcome {
    Ok,
    Skipped(String),
    Failed,
    NotRun,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Skipped(why) => write!(f, "skipped: {why}"),
            Outcome::Failed => f.write_str("FAILED"),
            Outcome::NotRun => f.write_str("not run: an earlier leg failed"),
        }
    }
}

/// A step that failed: what it was, why, and how to run it again.
#[derive(Debug)]
struct Failure {
    leg: &'static str,
    error: anyhow::Error,
    rerun: String,
}

fn ci(ctx: &Ctx) -> Result<()> {
    let mut outcomes = Vec::with_capacity(LEGS.len());
    let mut failure = None;
    let mut tally = Tally::default();
    for leg in LEGS {
        if failure.is_some() {
            outcomes.push(Outcome::NotRun);
            continue;
        }
        println!("\n=== {}", leg.name);
        if let Err(why) = (leg.probe)() {
            println!("skipped: {why}");
            outcomes.push(Outcome::Skipped(why));
            continue;
        }
        match run_leg(ctx, leg, &mut tally) {
            Ok(()) => outcomes.push(Outcome::Ok),
            Err(err) => {
                outcomes.push(Outcome::Failed);
                failure = Some(err);
            }
        }
    }

    let width = LEGS.iter().map(|leg| leg.name.len()).max().unwrap_or(0);
    println!("\n=== summary");
    for (leg, outcome) in LEGS.iter().zip(&outcomes) {
        println!("  {:width$}  {outcome}", leg.name);
    }
    // Last, so that it is the run's closing line.
    println!("{tally}");

    match failure {
        None => Ok(()),
        Some(Failure { leg, error, rerun }) => {
            bail!("CI leg `{leg}` failed: {error:#}\n  re-run it with: {rerun}")
        }
    }
}

fn run_leg(ctx: &Ctx, leg: &Leg, tally: &mut Tally) -> Result<(), Failure> {
    for step in leg.steps {
        let (result, rerun) = match step {
            Step::Cargo { args, envs } => (ctx.run(args, envs, tally), display_cargo(args, envs)),
            Step::Check { run, rerun } => (run(ctx), (*rerun).to_owned()),
        };
        result.map_err(|error| Failure {
            leg: leg.name,
            error,
            rerun,
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The layering check

/// Crates edgecam-core must never depend on, even indirectly: core is sans-IO, with no
/// runtime, no sockets, no OpenCV, no libjpeg-turbo and no OS bindings.
const CORE_FORBIDDEN: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "async-std",
    "smol",
    "opencv",
    "turbojpeg",
    "libc",
    "nix",
];

/// The one crate allowed to depend on `opencv`.
const OPENCV_CRATE: &str = "edgecam-camera-opencv";

fn check_layering(ctx: &Ctx) -> Result<()> {
    check_core_dependencies(ctx)?;
    check_opencv_dependents(ctx)?;
    check_unsafe_confined(&ctx.root)
}

fn check_core_dependencies(ctx: &Ctx) -> Result<()> {
    // edgecam-core's normal dependencies, one crate a line: `name vX.Y.Z [(path)] [(*)]`.
    let tree = ctx.capture(&[
        "tree",
        "-p",
        "edgecam-core",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--locked",
    ])?;
    let deps: BTreeSet<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "edgecam-core")
        .collect();
    let found: Vec<&str> = CORE_FORBIDDEN
        .iter()
        .copied()
        .filter(|name| deps.contains(name))
        .collect();
    if let Some(first) = found.first() {
        bail!(
            "edgecam-core must not depend on {}, even indirectly: it is sans-IO; \
             see what pulls it in with `cargo tree -p edgecam-core -e normal -i {first}`",
            found.join(", ")
        );
    }
    println!(
        "ok: none of edgecam-core's {} normal dependencies is one of {}",
        deps.len(),
        CORE_FORBIDDEN.join(", ")
    );
    Ok(())
}

/// Only edgecam-camera-opencv may depend on opencv (the rest may reach it through it).
fn check_opencv_dependents(ctx: &Ctx) -> Result<()> {
    let lock_path = ctx.root.join("Cargo.lock");
    let lock = fs::read_to_string(&lock_path)
        .with_context(|| format!("could not read {}", lock_path.display()))?;
    if !lock.lines().any(|line| line.trim() == r#"name = "opencv""#) {
        println!("ok: opencv is not in Cargo.lock, so no crate depends on it");
        return Ok(());
    }
    // All features and all targets, so that no optional or platform-only use hides.
    let tree = ctx.capture(&[
        "tree",
        "--workspace",
        "-i",
        "opencv",
        "-e",
        "normal",
        "--all-features",
        "--target",
        "all",
        "--prefix",
        "depth",
        "--locked",
    ])?;
    // With `--prefix depth`, direct dependents are the lines that start with `1`.
    let direct: BTreeSet<&str> = tree
        .lines()
        .filter_map(|line| line.strip_prefix('1'))
        .filter(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let intruders: Vec<&str> = direct
        .iter()
        .copied()
        .filter(|name| *name != OPENCV_CRATE)
        .collect();
    if !intruders.is_empty() {
        bail!(
            "only {OPENCV_CRATE} may depend on opencv (the others reach it through it), \
             but so do: {}; see with `cargo tree --workspace -i opencv -e normal --all-features`",
            intruders.join(", ")
        );
    }
    println!("ok: opencv's only direct dependents are {direct:?} (allowed: {OPENCV_CRATE})");
    Ok(())
}

/// The one file that may hold unsafe code (the V4L2 ioctls and `mmap`), relative to the root.
const UNSAFE_ALLOWED_IN: &str = "crates/camera-v4l2/src/sys.rs";

/// The workspace denies `unsafe_code`; this checks that nothing escapes that: every member
/// takes the workspace's lints, and no source file but [`UNSAFE_ALLOWED_IN`] allows the lint
/// (or expects it, or lowers it to a warning). The `fuzz` workspace is not ours to build here.
fn check_unsafe_confined(root: &Path) -> Result<()> {
    let mut sources = Vec::new();
    for top in ["crates", "xtask", "tests"] {
        rust_sources(&root.join(top), &mut sources)?;
    }
    let mut offences = Vec::new();
    for path in &sources {
        let text = fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        let rel = path.strip_prefix(root).unwrap_or(path);
        if rel != Path::new(UNSAFE_ALLOWED_IN) {
            offences.extend(
                lint_mentions(&text, "unsafe_code")
                    .map(|line| format!("{}:{line} allows unsafe code", rel.display())),
            );
        }
    }
    let manifests = fs::read_dir(root.join("crates"))
        .context("could not list crates/")?
        .map(|entry| entry.map(|e| e.path().join("Cargo.toml")))
        .chain([Ok(root.join("xtask/Cargo.toml"))]);
    let mut members = 0;
    for manifest in manifests {
        let manifest = manifest.context("could not list crates/")?;
        let text = fs::read_to_string(&manifest)
            .with_context(|| format!("could not read {}", manifest.display()))?;
        members += 1;
        if !takes_workspace_lints(&text) {
            offences.push(format!(
                "{} lacks `[lints]` `workspace = true`, so the workspace's deny(unsafe_code) does not reach it",
                manifest.strip_prefix(root).unwrap_or(&manifest).display()
            ));
        }
    }
    if !offences.is_empty() {
        bail!(
            "unsafe code belongs in {UNSAFE_ALLOWED_IN} alone (ARCHITECTURE.md's invariants); \
             use a safe wrapper (rustix, std) instead:\n  {}",
            offences.join("\n  ")
        );
    }
    println!(
        "ok: {members} members take the workspace's deny(unsafe_code), and of {} source files only {UNSAFE_ALLOWED_IN} allows it",
        sources.len()
    );
    Ok(())
}

/// Every `.rs` file under `dir`, build output and node packages left out.
fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("could not list {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("could not list {}", dir.display()))?
            .path();
        let name = path.file_name().unwrap_or_default();
        if path.is_dir() {
            if name != "target" && name != "node_modules" {
                rust_sources(&path, out)?;
            }
        } else if path.extension() == Some(OsStr::new("rs")) {
            out.push(path);
        }
    }
    Ok(())
}

/// The 1-based numbers of the lines, outside `//` comments, where `lint` follows `allow(`,
/// `expect(` or `warn(` (an attribute, inner or outer, or inside `cfg_attr`).
fn lint_mentions<'a>(text: &'a str, lint: &'a str) -> impl Iterator<Item = usize> + 'a {
    text.lines().enumerate().filter_map(move |(i, line)| {
        let code = line.split("//").next().unwrap_or_default();
        let at = code.find(lint)?;
        ["allow(", "expect(", "warn("]
            .iter()
            .any(|level| code[..at].contains(level))
            .then_some(i + 1)
    })
}

/// Whether a member's manifest has `workspace = true` in its `[lints]` table.
fn takes_workspace_lints(manifest: &str) -> bool {
    let mut in_lints = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_lints = line == "[lints]";
        } else if in_lints && line.replace(' ', "") == "workspace=true" {
            return true;
        }
    }
    false
}

// ---------------------------------------------------------------------------------------
// cargo xtask bench

fn bench(ctx: &Ctx, args: &[OsString]) -> Result<ExitCode> {
    // libjpeg-turbo where this machine can build it, so that the figures compare it with the
    // pure-Rust encoder. Not OpenCV: its libraries alone add some 70 MiB to the server's RSS;
    // `cargo run --release -p edgecam --features turbojpeg,opencv -- bench` adds its encoder.
    let mut fixed = vec!["run", "--release", "--locked", "-p", "edgecam"];
    match can_build_turbojpeg() {
        Ok(()) => fixed.extend(["--features", "turbojpeg"]),
        Err(why) => println!("bench without libjpeg-turbo: skipped: {why}"),
    }
    fixed.extend(["--", "bench"]);
    let mut shown = display_cargo(&fixed, &[]);
    for arg in args {
        shown.push(' ');
        shown.push_str(&arg.to_string_lossy());
    }
    println!("==> {shown}");
    let status = Command::new(&ctx.cargo)
        .args(fixed)
        .args(args)
        .current_dir(&ctx.root)
        .status()
        .with_context(|| format!("could not start `{shown}`: is cargo on the PATH?"))?;
    Ok(exit_code(status))
}

/// The child's exit status as ours, so that `cargo xtask bench` fails as the bench does.
/// Kills `child` unless it has exited, and reaps it.
fn kill(child: &mut std::process::Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn exit_code(status: ExitStatus) -> ExitCode {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            // The shell's convention for "killed by a signal".
            return ExitCode::from(u8::try_from(128 + signal).unwrap_or(u8::MAX));
        }
    }
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowing_unsafe_code_is_found_in_any_attribute_form_but_not_in_comments_or_deny() {
        // Spelled apart, so that this file does not itself hold what the check looks for.
        let lint = ["unsafe", "_code"].concat();
        let text = format!(
            "#![allow({lint})]\n\
             fn a() {{}}\n\
             #[cfg_attr(test, expect(dead_code, {lint}))]\n\
             // #[allow({lint})] in a comment\n\
             #[deny({lint})]\n\
             #[warn({lint})] fn b() {{}} // and a trailing comment\n"
        );
        assert_eq!(lint_mentions(&text, &lint).collect::<Vec<_>>(), [1, 3, 6]);
    }

    #[test]
    fn a_manifest_takes_workspace_lints_only_from_its_lints_table() {
        assert!(takes_workspace_lints(
            "[package]\nname = \"x\"\n\n[lints]\nworkspace = true\n"
        ));
        assert!(!takes_workspace_lints(
            "[package]\nname = \"x\"\n[dependencies]\nfoo.workspace = true\n"
        ));
        assert!(!takes_workspace_lints(
            "[lints.rust]\nunsafe_code = \"allow\"\n[package]\nworkspace = true\n"
        ));
    }

    #[test]
    fn the_tally_adds_nextest_summaries_and_ignores_other_lines() {
        let mut tally = Tally::default();
        for line in [
            "     Summary [  18.244s] 167 tests run: 167 passed, 0 skipped",
            "        PASS [   0.005s] (3/54) edgecam client::tests::legacy_frames_have_no_latency",
            "\u{1b}[32;1m     Summary\u{1b}[0m [  1.0s] 12 tests run: 9 passed, 2 failed, 1 timed out, 3 skipped",
            "     Summary [   0.000s] 1 test run: 1 passed, 0 skipped",
            "test result: ok. 5 passed; 0 failed",
        ] {
            tally.add_summary(line);
        }
        assert_eq!(
            tally,
            Tally {
                passed: 177,
                failed: 3,
                skipped: 3
            }
        );
        assert_eq!(tally.to_string(), "tests: 177 passed, 3 failed, 3 skipped");
    }
}
