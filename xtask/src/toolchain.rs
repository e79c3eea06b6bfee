//! The cross toolchain a board build needs, and what to install when a piece is missing.
//!
//! The checks are split in two: looking at the machine (`rustup target list`, the PATH)
//! and judging what was found, so that the messages are unit-tested without a machine.

use std::path::Path;
use std::process::{Command, Stdio};

/// The board edgecam is built for by default: one Cortex-A7 core, ARMv7 hard-float, glibc.
pub(crate) const ARMV7_GNU: &str = "armv7-unknown-linux-gnueabihf";

/// Debian's cross C compiler for [`ARMV7_GNU`]; Rust uses it as the linker.
pub(crate) const ARMV7_GCC: &str = "arm-linux-gnueabihf-gcc";
/// The boards whose vendor SDK is Buildroot with uclibc (tier 3: no prebuilt std).
pub(crate) const ARMV7_UCLIBC: &str = "armv7-unknown-linux-uclibceabihf";

/// Debian's qemu-user emulator for 32-bit ARM binaries.
pub(crate) const QEMU_ARM: &str = "qemu-arm";

/// Where Debian's `libc6-armhf-cross` puts the armhf dynamic loader and C library;
/// `qemu-arm -L` looks there for them.
pub(crate) const ARMHF_SYSROOT: &str = "/usr/arm-linux-gnueabihf";

/// The armhf dynamic loader qemu-arm needs (Debian: `libc6-armhf-cross`).
const ARMHF_LOADER: &str = "/usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3";

/// A C startup file linking needs (Debian: `libc6-dev-armhf-cross`).
const ARMHF_STARTUP_FILE: &str = "/usr/arm-linux-gnueabihf/lib/Scrt1.o";

/// Something the build needs that this machine lacks, and the command that installs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Missing {
    pub what: String,
    pub install: String,
}

/// The one-line reason a CI leg is skipped: `what, what (install; install)`.
pub(crate) fn skip_reason(missing: &[Missing]) -> String {
    let what: Vec<&str> = missing.iter().map(|m| m.what.as_str()).collect();
    let install: Vec<&str> = missing.iter().map(|m| m.install.as_str()).collect();
    format!("missing {} ({})", what.join(", "), install.join("; "))
}

/// The error message for a build that cannot start: every missing piece, one a line.
pub(crate) fn missing_message(missing: &[Missing]) -> String {
    let mut text = String::from("the cross toolchain is incomplete; missing:");
    for m in missing {
        text.push_str(&format!("\n  - {}: {}", m.what, m.install));
    }
    text
}

/// How the standard library for a target is had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Std {
    /// rustup ships it prebuilt (tier 1 and 2): `rustup target add`, stable cargo.
    Prebuilt,
    /// rustup has none (tier 3, such as the uclibc targets): nightly cargo builds it from
    /// source with `-Zbuild-std`, which needs nightly's `rust-src`.
    BuildStd,
}

/// What rustup knows: every target it ships a standard library for, and the installed ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rustup {
    pub known: Vec<String>,
    pub installed: Vec<String>,
}

impl Rustup {
    /// Parses `rustup target list`: one target a line, `(installed)` after the installed ones.
    pub(crate) fn parse(list: &str) -> Rustup {
        let mut rustup = Rustup::default();
        for line in list.lines() {
            let mut words = line.split_whitespace();
            let Some(target) = words.next() else { continue };
            rustup.known.push(target.to_owned());
            if words.next() == Some("(installed)") {
                rustup.installed.push(target.to_owned());
            }
        }
        rustup
    }

    /// Asks this machine's rustup; `None` where there is no rustup.
    pub(crate) fn probe() -> Option<Rustup> {
        let out = Command::new("rustup")
            .args(["target", "list"])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|out| out.status.success())?;
        Some(Rustup::parse(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Prebuilt when rustup ships the target; build-std (tier 3) when it does not.
    pub(crate) fn std_for(&self, target: &str) -> Std {
        if self.known.iter().any(|t| t == target) {
            Std::Prebuilt
        } else {
            Std::BuildStd
        }
    }
}

/// What was found on a machine: the facts the checks judge.
#[derive(Debug)]
pub(crate) struct Machine {
    /// `None` where there is no rustup.
    pub rustup: Option<Rustup>,
    /// Whether nightly Rust has `rust-src` (asked only when a build-std target needs it).
    pub nightly_rust_src: bool,
    /// Whether a program can be run.
    pub program: fn(&str) -> bool,
    /// Whether a file exists.
    pub file: fn(&str) -> bool,
}

impl Machine {
    /// Looks at this machine, for a build of `target`.
    pub(crate) fn probe(target: &str) -> Machine {
        let rustup = Rustup::probe();
        let build_std = rustup
            .as_ref()
            .is_some_and(|rustup| rustup.std_for(target) == Std::BuildStd);
        Machine {
            rustup,
            nightly_rust_src: build_std && nightly_has_rust_src(),
            program: on_path,
            file: |path| Path::new(path).is_file(),
        }
    }

    /// How `target`'s standard library is had; prebuilt where rustup cannot say.
    pub(crate) fn std_for(&self, target: &str) -> Std {
        self.rustup
            .as_ref()
            .map_or(Std::Prebuilt, |rustup| rustup.std_for(target))
    }

    /// What a build of `target` linked by `linker` lacks here.
    pub(crate) fn check_build(&self, target: &str, linker: &str) -> Vec<Missing> {
        let mut missing = Vec::new();
        match &self.rustup {
            None => missing.push(Missing {
                what: "rustup".to_owned(),
                install: format!("install rustup, then `rustup target add {target}`"),
            }),
            Some(rustup) => match rustup.std_for(target) {
                Std::Prebuilt if !rustup.installed.iter().any(|t| t == target) => {
                    missing.push(Missing {
                        what: format!("Rust target {target}"),
                        install: format!("rustup target add {target}"),
                    });
                }
                Std::Prebuilt => {}
                Std::BuildStd if !self.nightly_rust_src => missing.push(Missing {
                    what: format!(
                        "nightly Rust with rust-src ({target} is tier 3: its standard library \
                         is built from source with -Zbuild-std)"
                    ),
                    install: "rustup toolchain install nightly --component rust-src".to_owned(),
                }),
                Std::BuildStd => {}
            },
        }
        missing.extend(self.tool_missing(linker));
        // libjpeg-turbo is built from source for the board; NEON needs only the C compiler.
        missing.extend(self.tool_missing("cmake"));
        // Debian's cross gcc only recommends the C library's startup files, and a
        // `--no-install-recommends` install leaves them out: linking then fails on Scrt1.o.
        if linker == ARMV7_GCC && !(self.file)(ARMHF_STARTUP_FILE) {
            missing.push(Missing {
                what: format!("the armhf C library's development files ({ARMHF_STARTUP_FILE})"),
                install: "apt-get install libc6-dev-armhf-cross".to_owned(),
            });
        }
        missing
    }

    /// `Some` when `tool` cannot be run, with what installs it.
    pub(crate) fn tool_missing(&self, tool: &str) -> Option<Missing> {
        if (self.program)(tool) {
            return None;
        }
        let install = match tool {
            "arm-linux-gnueabihf-gcc" => "apt-get install gcc-arm-linux-gnueabihf".to_owned(),
            "aarch64-linux-gnu-gcc" => "apt-get install gcc-aarch64-linux-gnu".to_owned(),
            "qemu-arm" => "apt-get install qemu-user".to_owned(),
            "cmake" => "apt-get install cmake".to_owned(),
            "ffmpeg" => "apt-get install ffmpeg".to_owned(),
            "nasm" => "apt-get install nasm".to_owned(),
            _ => "put the board vendor's SDK bin folder on the PATH, or give the linker's full \
                  path (`linker` in boards.toml, or --linker)"
                .to_owned(),
        };
        Some(Missing {
            what: format!("{tool} on the PATH"),
            install,
        })
    }

    /// What `--emulate` needs beyond the armv7 build: qemu-user, the armhf dynamic loader and
    /// C library it runs the binary with, and ffmpeg (the `exec:` cameras' program).
    pub(crate) fn check_emulator(&self) -> Vec<Missing> {
        let mut missing: Vec<Missing> = self.tool_missing(QEMU_ARM).into_iter().collect();
        missing.extend(self.tool_missing("ffmpeg"));
        if !(self.file)(ARMHF_LOADER) {
            missing.push(Missing {
                what: format!("the armhf C library ({ARMHF_LOADER})"),
                install: "apt-get install libc6-armhf-cross".to_owned(),
            });
        }
        missing
    }
}

/// What building libjpeg-turbo from source for this machine lacks: cmake, and on x86 nasm
/// (its SIMD; the build requires SIMD rather than silently leaving it out).
pub(crate) fn check_vendored_turbojpeg_here() -> Vec<Missing> {
    let machine = Machine::probe(ARMV7_GNU);
    let mut missing: Vec<Missing> = machine.tool_missing("cmake").into_iter().collect();
    if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
        missing.extend(machine.tool_missing("nasm"));
    }
    missing
}

/// Everything `--emulate` (and the `board-emulate` CI leg) lacks on this machine.
pub(crate) fn check_emulate_here() -> Vec<Missing> {
    let machine = Machine::probe(ARMV7_GNU);
    let mut missing = machine.check_build(ARMV7_GNU, ARMV7_GCC);
    missing.extend(machine.check_emulator());
    missing
}

/// Everything the `uclibc-check` CI leg lacks on this machine: nightly with rust-src, the
/// armhf gcc as the C compiler, and cmake (libjpeg-turbo's build).
pub(crate) fn check_uclibc_here() -> Vec<Missing> {
    let machine = Machine::probe(ARMV7_UCLIBC);
    machine.check_build(ARMV7_UCLIBC, ARMV7_GCC)
}

/// Whether nightly Rust is installed with its `rust-src` component.
pub(crate) fn nightly_has_rust_src() -> bool {
    Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .is_some_and(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|line| line.starts_with("rust-src"))
        })
}

/// Whether `program` can be run: a path that is a file, or a name found in a PATH folder.
pub(crate) fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LIST: &str = "\
aarch64-unknown-linux-gnu
armv7-unknown-linux-gnueabihf (installed)
armv7-unknown-linux-musleabihf
x86_64-unknown-linux-gnu (installed)
";

    /// A machine with `list` as rustup's targets, where everything else is there.
    fn complete(list: &str) -> Machine {
        Machine {
            rustup: Some(Rustup::parse(list)),
            nightly_rust_src: true,
            program: |_| true,
            file: |_| true,
        }
    }

    /// A machine with `list` as rustup's targets, and nothing else.
    fn bare(list: &str) -> Machine {
        Machine {
            rustup: Some(Rustup::parse(list)),
            nightly_rust_src: false,
            program: |_| false,
            file: |_| false,
        }
    }

    #[test]
    fn rustup_target_list_is_parsed_into_known_and_installed() {
        let rustup = Rustup::parse(LIST);
        assert_eq!(rustup.known.len(), 4);
        assert_eq!(
            rustup.installed,
            ["armv7-unknown-linux-gnueabihf", "x86_64-unknown-linux-gnu"]
        );
        assert_eq!(rustup.std_for(ARMV7_GNU), Std::Prebuilt);
        assert_eq!(
            rustup.std_for("armv7-unknown-linux-uclibceabihf"),
            Std::BuildStd
        );
    }

    #[test]
    fn a_complete_toolchain_lacks_nothing() {
        let machine = complete(LIST);
        assert_eq!(machine.check_build(ARMV7_GNU, ARMV7_GCC), []);
        assert_eq!(machine.check_emulator(), []);
    }

    #[test]
    fn a_missing_target_linker_and_libc_are_named_with_their_install_commands() {
        let machine = bare("armv7-unknown-linux-gnueabihf\nx86_64-unknown-linux-gnu (installed)\n");
        let missing = machine.check_build(ARMV7_GNU, ARMV7_GCC);
        insta::assert_snapshot!(missing_message(&missing), @r"
        the cross toolchain is incomplete; missing:
          - Rust target armv7-unknown-linux-gnueabihf: rustup target add armv7-unknown-linux-gnueabihf
          - arm-linux-gnueabihf-gcc on the PATH: apt-get install gcc-arm-linux-gnueabihf
          - cmake on the PATH: apt-get install cmake
          - the armhf C library's development files (/usr/arm-linux-gnueabihf/lib/Scrt1.o): apt-get install libc6-dev-armhf-cross
        ");
        assert_eq!(
            skip_reason(&missing[..2]),
            "missing Rust target armv7-unknown-linux-gnueabihf, arm-linux-gnueabihf-gcc on the PATH \
             (rustup target add armv7-unknown-linux-gnueabihf; apt-get install gcc-arm-linux-gnueabihf)"
        );
    }

    #[test]
    fn a_tier3_target_needs_nightly_rust_src_and_the_vendor_linker() {
        let uclibc = "armv7-unknown-linux-uclibceabihf";
        let linker = "arm-buildroot-linux-uclibcgnueabihf-gcc";
        assert_eq!(bare(LIST).std_for(uclibc), Std::BuildStd);
        let missing = bare(LIST).check_build(uclibc, linker);
        insta::assert_snapshot!(missing_message(&missing), @r"
        the cross toolchain is incomplete; missing:
          - nightly Rust with rust-src (armv7-unknown-linux-uclibceabihf is tier 3: its standard library is built from source with -Zbuild-std): rustup toolchain install nightly --component rust-src
          - arm-buildroot-linux-uclibcgnueabihf-gcc on the PATH: put the board vendor's SDK bin folder on the PATH, or give the linker's full path (`linker` in boards.toml, or --linker)
          - cmake on the PATH: apt-get install cmake
        ");
        assert_eq!(complete(LIST).check_build(uclibc, linker), []);
    }

    #[test]
    fn without_rustup_the_target_cannot_be_added() {
        let machine = Machine {
            rustup: None,
            ..complete(LIST)
        };
        assert_eq!(machine.std_for(ARMV7_GNU), Std::Prebuilt);
        let missing = machine.check_build(ARMV7_GNU, ARMV7_GCC);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].what, "rustup");
        assert!(
            missing[0]
                .install
                .contains("rustup target add armv7-unknown-linux-gnueabihf")
        );
    }

    #[test]
    fn the_emulator_check_names_qemu_user_ffmpeg_and_the_armhf_libc() {
        assert_eq!(
            skip_reason(&bare(LIST).check_emulator()),
            "missing qemu-arm on the PATH, ffmpeg on the PATH, the armhf C library \
             (/usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3) \
             (apt-get install qemu-user; apt-get install ffmpeg; apt-get install libc6-armhf-cross)"
        );
    }

    #[test]
    fn a_program_with_a_slash_is_looked_up_as_a_path() {
        assert!(on_path("/bin/sh"));
        assert!(!on_path("/nonexistent/edgecam-gcc"));
        assert!(!on_path("edgecam-no-such-program-on-the-path"));
    }
}
