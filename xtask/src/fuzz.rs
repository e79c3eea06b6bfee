//! `cargo xtask fuzz`: runs the cargo-fuzz targets in `fuzz/` (a crate outside the root
//! workspace) for a while each, and the `fuzz` CI leg.
//!
//! Each target runs as `cargo +nightly fuzz run TARGET SCRATCH fuzz/corpus/TARGET -- ...`:
//! libFuzzer writes the new inputs it finds into the first corpus folder, so that is a
//! scratch folder under the target directory, and the committed seeds are read only. What
//! libFuzzer prints goes to a log file next to it; one line per target comes out here.

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::Ctx;
use crate::toolchain::{self, Missing};

pub(crate) const USAGE: &str = "\
Usage: cargo xtask fuzz [--seconds N] [--seeds] [TARGET...]

Runs each cargo-fuzz target in fuzz/ (all of them when none is named) for N seconds
(default 30) with nightly Rust and AddressSanitizer, starting from the seeds in
fuzz/corpus/TARGET. Fails at the first crash, naming the input and the command that
reproduces it. Needs `rustup toolchain install nightly --profile minimal` and
`cargo install cargo-fuzz --locked`.

Options:
  --seconds N   how long each target runs (libFuzzer's -max_total_time)
  --seeds       write the seed corpora again first (fuzz/src/bin/make_seeds.rs)

Targets:
";

/// Every target, and the largest input libFuzzer makes for it (`-max_len`): room for a few
/// frames in a stream, or a small recording (its fixed header alone is 16,936 bytes).
pub(crate) const TARGETS: &[(&str, usize)] = &[
    ("frame_decoder", 8 << 10),
    ("session_input", 4 << 10),
    ("jpeg_markers", 8 << 10),
    ("jpeg_splitter", 16 << 10),
    ("avi_reader", 64 << 10),
    ("repair", 64 << 10),
    ("http_request", 10 << 10),
    ("mjpeg_reader", 32 << 10),
];

/// What CI gives each target.
pub(crate) const CI_SECONDS: u64 = 30;

/// libFuzzer's memory limit, also applied to every single allocation (`-malloc_limit_mb`), so
/// that trusting a size read from the input shows up as a crash.
const RSS_LIMIT_MB: u32 = 2048;

/// An input that takes longer than this is reported as a hang.
const INPUT_TIMEOUT_S: u32 = 10;

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Args {
    pub seconds: u64,
    pub seeds: bool,
    pub targets: Vec<&'static str>,
}

fn usage() -> String {
    let mut text = USAGE.to_owned();
    for (name, _) in TARGETS {
        text.push_str(&format!("  {name}\n"));
    }
    text
}

/// `None` for `--help`.
pub(crate) fn parse_args(args: &[OsString]) -> Result<Option<Args>> {
    let mut parsed = Args {
        seconds: CI_SECONDS,
        seeds: false,
        targets: Vec::new(),
    };
    let mut args = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        let seconds = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--seeds" => {
                parsed.seeds = true;
                continue;
            }
            "--seconds" => args.next(),
            _ => arg.strip_prefix("--seconds=").map(str::to_owned),
        };
        if let Some(seconds) = seconds {
            parsed.seconds = seconds.parse().ok().filter(|&s| s > 0).with_context(|| {
                format!("--seconds takes a whole number of seconds above 0, got `{seconds}`")
            })?;
            continue;
        }
        if arg == "--seconds" {
            bail!("--seconds needs a number of seconds\n\n{}", usage());
        }
        let Some(&(name, _)) = TARGETS.iter().find(|(name, _)| *name == arg) else {
            bail!("`{arg}` is not a fuzz target or an option\n\n{}", usage());
        };
        if !parsed.targets.contains(&name) {
            parsed.targets.push(name);
        }
    }
    if parsed.targets.is_empty() {
        parsed.targets = TARGETS.iter().map(|(name, _)| *name).collect();
    }
    Ok(Some(parsed))
}

/// `cargo xtask fuzz [args]`.
pub(crate) fn run(ctx: &Ctx, args: &[OsString]) -> Result<()> {
    let Some(args) = parse_args(args)? else {
        print!("{}", usage());
        return Ok(());
    };
    if let Err(why) = probe() {
        bail!("cannot fuzz: {why}");
    }
    if args.seeds {
        make_seeds(ctx)?;
    }
    for target in &args.targets {
        run_target(ctx, target, args.seconds)?;
    }
    Ok(())
}

/// The CI leg: every target for [`CI_SECONDS`].
pub(crate) fn ci(ctx: &Ctx) -> Result<()> {
    for (target, _) in TARGETS {
        run_target(ctx, target, CI_SECONDS)?;
    }
    Ok(())
}

/// Whether this machine can fuzz: nightly Rust and cargo-fuzz. The reason when not.
pub(crate) fn probe() -> Result<(), String> {
    println!("==> rustup run nightly rustc --version; cargo fuzz --version");
    let mut missing = Vec::new();
    if !succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        missing.push(Missing {
            what: "the nightly toolchain".into(),
            install: "rustup toolchain install nightly --profile minimal".into(),
        });
    }
    if !succeeds(proxy_cargo().args(["fuzz", "--version"])) {
        missing.push(Missing {
            what: "cargo-fuzz".into(),
            install: "cargo install cargo-fuzz --locked".into(),
        });
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(toolchain::skip_reason(&missing))
    }
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// rustup's `cargo` proxy, which understands `+nightly`, rather than the toolchain's cargo
/// that runs xtask; without the toolchain choice the outer cargo hands down.
fn proxy_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    for var in ["RUSTUP_TOOLCHAIN", "CARGO", "RUSTC", "RUSTDOC"] {
        cmd.env_remove(var);
    }
    cmd
}

/// Where the fuzz builds, scratch corpora and logs go: `target/fuzz` (or under
/// `$CARGO_TARGET_DIR`), away from the root workspace's own build.
fn fuzz_dir(ctx: &Ctx) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| ctx.root.join("target"), PathBuf::from)
        .join("fuzz")
}

fn make_seeds(ctx: &Ctx) -> Result<()> {
    let target_dir = fuzz_dir(ctx);
    let target_dir = target_dir.to_string_lossy();
    let args = [
        "run",
        "--quiet",
        "--locked",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--target-dir",
        &target_dir,
        "--bin",
        "make_seeds",
    ];
    ctx.run(&args, &[], &mut crate::Tally::default())
}

/// The `cargo` arguments that fuzz `target` for `seconds`, the scratch corpus first.
pub(crate) fn fuzz_args(
    target: &str,
    seconds: u64,
    target_dir: &Path,
    scratch: &Path,
) -> Vec<String> {
    let max_len = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map_or(4096, |(_, len)| *len);
    vec![
        "+nightly".into(),
        "fuzz".into(),
        "run".into(),
        "--target-dir".into(),
        target_dir.display().to_string(),
        target.into(),
        scratch.display().to_string(),
        format!("fuzz/corpus/{target}"),
        "--".into(),
        format!("-max_total_time={seconds}"),
        format!("-rss_limit_mb={RSS_LIMIT_MB}"),
        format!("-malloc_limit_mb={RSS_LIMIT_MB}"),
        format!("-max_len={max_len}"),
        format!("-timeout={INPUT_TIMEOUT_S}"),
    ]
}

/// What a libFuzzer run printed: how many inputs it ran in how many seconds, and the
/// crashing input it wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    pub runs: Option<(u64, u64)>,
    pub crash: Option<String>,
}

/// Reads libFuzzer's `Done N runs in S second(s)` and `Test unit written to PATH` lines.
pub(crate) fn read_report(log: &str) -> Report {
    let mut report = Report::default();
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("Done ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let [runs, "runs", "in", seconds, ..] = words[..] {
                report.runs = runs.parse().ok().zip(seconds.parse().ok());
            }
        }
        if let Some((_, path)) = line.split_once("Test unit written to ") {
            report.crash = Some(path.trim().to_owned());
        }
    }
    report
}

fn run_target(ctx: &Ctx, target: &str, seconds: u64) -> Result<()> {
    let dir = fuzz_dir(ctx);
    let scratch = dir.join("corpus").join(target);
    let log_path = dir.join("logs").join(format!("{target}.log"));
    for folder in [&scratch, &dir.join("logs")] {
        fs::create_dir_all(folder)
            .with_context(|| format!("could not create {}", folder.display()))?;
    }
    let args = fuzz_args(target, seconds, &dir, &scratch);
    let shown = format!("cargo {}", args.join(" "));
    println!("==> {shown} (output in {})", log_path.display());
    let log = File::create(&log_path)
        .with_context(|| format!("could not create {}", log_path.display()))?;
    let status = proxy_cargo()
        .args(&args)
        .current_dir(&ctx.root)
        .stdout(log.try_clone().context("could not share the log file")?)
        .stderr(log)
        .status()
        .with_context(|| format!("could not start `{shown}`: is cargo on the PATH?"))?;
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let report = read_report(&text);
    if let Some(crash) = report.crash {
        let crash = if Path::new(&crash).is_absolute() {
            crash
        } else {
            // cargo-fuzz runs libFuzzer in fuzz/.
            format!("fuzz/{}", crash.trim_start_matches("./"))
        };
        println!("fuzz {target}: CRASH, input in {crash}");
        print_tail(&text);
        bail!(
            "fuzz target {target} crashed on {crash}; reproduce with \
             `cargo +nightly fuzz run {target} {crash}` (full output in {})",
            log_path.display()
        );
    }
    match (status.success(), report.runs) {
        (true, Some((runs, elapsed))) => {
            println!("fuzz {target}: {runs} runs in {elapsed} s, ok");
            Ok(())
        }
        _ => {
            print_tail(&text);
            bail!(
                "`{shown}` failed ({status}) before fuzzing finished; full output in {}",
                log_path.display()
            )
        }
    }
}

/// The end of a log: where a build error or a crash's stack trace is.
fn print_tail(log: &str) {
    let lines: Vec<&str> = log.lines().collect();
    for line in &lines[lines.len().saturating_sub(40)..] {
        println!("    {line}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn no_targets_means_all_for_30_seconds() {
        let parsed = parse_args(&[]).unwrap().unwrap();
        assert_eq!(parsed.seconds, 30);
        assert!(!parsed.seeds);
        assert_eq!(parsed.targets.len(), TARGETS.len());
    }

    #[test]
    fn seconds_seeds_and_targets_are_read() {
        let parsed = parse_args(&args(&["--seconds", "5", "repair", "--seeds", "repair"]))
            .unwrap()
            .unwrap();
        assert_eq!(
            parsed,
            Args {
                seconds: 5,
                seeds: true,
                targets: vec!["repair"]
            }
        );
        let parsed = parse_args(&args(&["--seconds=7", "avi_reader"]))
            .unwrap()
            .unwrap();
        assert_eq!(parsed.seconds, 7);
        assert_eq!(parsed.targets, vec!["avi_reader"]);
    }

    #[test]
    fn bad_arguments_are_named() {
        let err = parse_args(&args(&["nope"])).unwrap_err().to_string();
        assert!(err.contains("`nope` is not a fuzz target"), "{err}");
        assert!(err.contains("jpeg_splitter"), "{err}");
        let err = parse_args(&args(&["--seconds", "x"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--seconds takes"), "{err}");
        assert!(parse_args(&args(&["--seconds"])).is_err());
        assert!(parse_args(&args(&["--help"])).unwrap().is_none());
    }

    #[test]
    fn the_scratch_corpus_comes_first_and_the_seeds_are_read_only() {
        let a = fuzz_args(
            "repair",
            30,
            Path::new("/t/fuzz"),
            Path::new("/t/fuzz/corpus/repair"),
        );
        assert_eq!(
            a.join(" "),
            "+nightly fuzz run --target-dir /t/fuzz repair /t/fuzz/corpus/repair fuzz/corpus/repair \
             -- -max_total_time=30 -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len=65536 -timeout=10"
        );
    }

    #[test]
    fn libfuzzer_output_is_read() {
        let ok = "#1024\tpulse  cov: 10\nDone 123456 runs in 31 second(s)\n";
        assert_eq!(
            read_report(ok),
            Report {
                runs: Some((123456, 31)),
                crash: None
            }
        );
        let crash = "==1== ERROR: libFuzzer: deadly signal\n\
                     artifact_prefix='/w/fuzz/artifacts/repair/'; Test unit written to /w/fuzz/artifacts/repair/crash-abc\n";
        assert_eq!(
            read_report(crash).crash.as_deref(),
            Some("/w/fuzz/artifacts/repair/crash-abc")
        );
    }
}
