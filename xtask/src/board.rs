//! `cargo xtask run-board`: build edgecam for an ARM board, copy it there and run it.
//!
//! The work is split so that all of it but the running is plain data, unit-tested and
//! snapshot-tested: the command line ([`Options`]) and a board profile from `boards.toml`
//! ([`Profile`]) are merged into a [`Deploy`], which becomes a list of [`Action`]s (the
//! commands to run, and the systemd unit to write). `--dry-run` prints that list; a real
//! run runs it, each command after its `==>` header line. `--emulate` lives in
//! `emulate.rs`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use super::Ctx;
use crate::toolchain::{self, ARMV7_GCC, ARMV7_GNU, Machine, Missing, Std};

const USAGE: &str = "\
Usage: cargo xtask run-board [options] [-- server flags...]
       cargo xtask run-board --emulate

Cross-compiles edgecam (release) for the board, copies it there with scp and starts
`edgecam serve` over `ssh -t`, logs streaming back (Ctrl-C stops it on the board); or,
with --install-service, installs and starts it as a systemd service.

Options (each overrides the board's profile):
  --board NAME        use the profile [board.NAME] of the boards file
  --boards FILE       the boards file (default: boards.toml at the repository root)
  --host USER@BOARD   where to ssh to (required, here or in the profile)
  --target TRIPLE     Rust target (default: armv7-unknown-linux-gnueabihf); a target
                      rustup has no prebuilt std for, such as
                      armv7-unknown-linux-uclibceabihf, is built with nightly -Zbuild-std
  --linker PROGRAM    the target's C compiler used as linker
                      (default for the gnueabihf targets: arm-linux-gnueabihf-gcc)
  --remote-path PATH  where the binary goes on the board (default: /usr/local/bin/edgecam)
  --camera SPEC       the server's --camera (default: the server's own default)
  --port PORT         the port it listens on, on all interfaces (default: 6810)
  --install-service   install a systemd unit (not root, sandboxed; Restart=on-failure),
                      enable and (re)start it
  --dry-run           print every command it would run, and run none
  -- FLAGS...         more `edgecam serve` flags, after the profile's `server_flags`

  --emulate           build the armv7 binary and smoke-test it here under qemu-arm
                      (what the `board-emulate` CI leg runs)
";

const DEFAULT_PORT: u16 = 6810;
const DEFAULT_REMOTE_PATH: &str = "/usr/local/bin/edgecam";
const SERVICE: &str = "edgecam.service";
/// Where the binary and the unit are copied before they are installed: `/tmp` is writable
/// on any board, and installing from there never writes into a running binary.
const UPLOAD_BINARY: &str = "/tmp/edgecam.upload";
const UPLOAD_UNIT: &str = "/tmp/edgecam.service.upload";
/// The remote shell's prefix for commands that need root: nothing when ssh logs in as root
/// (small boards often have no sudo), `sudo` otherwise.
const SUDO: &str = r#"S=; [ "$(id -u)" = 0 ] || S=sudo"#;

/// `cargo xtask run-board [args...]`.
pub(crate) fn run_board(ctx: &Ctx, args: &[OsString]) -> Result<()> {
    let options = Options::parse(args)?;
    if options.help {
        print!("{USAGE}");
        return Ok(());
    }
    if options.emulate {
        options.check_emulate_alone()?;
        return crate::emulate::run(ctx);
    }

    let profile = match &options.board {
        Some(name) => {
            let path = options
                .boards
                .clone()
                .unwrap_or_else(|| ctx.root.join("boards.toml"));
            Boards::load(&path)?.profile(name, &path)?
        }
        None if options.boards.is_some() => {
            bail!("--boards names the boards file: choose a board in it with --board NAME")
        }
        None => Profile::default(),
    };
    let deploy = Deploy::resolve(&options, &profile)?;

    let machine = Machine::probe(&deploy.target);
    let std = machine.std_for(&deploy.target);
    let missing = machine.check_build(&deploy.target, &deploy.linker);

    let layout = Layout::new(&ctx.root, &target_dir(ctx)?);
    let plan = plan(&deploy, std, &layout);
    if options.dry_run {
        print!("{}", dry_run_text(&plan, &missing));
        return Ok(());
    }
    if !missing.is_empty() {
        bail!("{}", toolchain::missing_message(&missing));
    }
    execute(ctx, &plan)
}

// ---------------------------------------------------------------------------------------
// The command line

/// `cargo xtask run-board`'s arguments, as given: `None` where a flag is absent.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    board: Option<String>,
    boards: Option<PathBuf>,
    host: Option<String>,
    target: Option<String>,
    linker: Option<String>,
    remote_path: Option<String>,
    camera: Option<String>,
    port: Option<u16>,
    /// After `--`: appended to the profile's `server_flags`.
    server_flags: Vec<String>,
    install_service: bool,
    dry_run: bool,
    emulate: bool,
    help: bool,
}

impl Options {
    fn parse(args: &[OsString]) -> Result<Options> {
        let args = args
            .iter()
            .map(|arg| {
                arg.to_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("argument {arg:?} is not UTF-8"))
            })
            .collect::<Result<Vec<String>>>()?;
        let mut options = Options::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--" {
                options.server_flags.extend(args.by_ref());
                break;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
                _ => (arg.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| anyhow!("`{name}` needs a value\n\n{USAGE}"))
            };
            match name {
                "--board" => options.board = Some(value()?),
                "--boards" => options.boards = Some(value()?.into()),
                "--host" => options.host = Some(value()?),
                "--target" => options.target = Some(value()?),
                "--linker" => options.linker = Some(value()?),
                "--remote-path" => options.remote_path = Some(value()?),
                "--camera" => options.camera = Some(value()?),
                "--port" => {
                    let port = value()?;
                    options.port = Some(parse_port(&port).map_err(|why| anyhow!("--port {why}"))?);
                }
                "--install-service" | "--dry-run" | "--emulate" | "-h" | "--help"
                    if inline.is_some() =>
                {
                    bail!("`{name}` takes no value, got `{arg}`")
                }
                "--install-service" => options.install_service = true,
                "--dry-run" => options.dry_run = true,
                "--emulate" => options.emulate = true,
                "-h" | "--help" => options.help = true,
                _ => bail!("unknown argument `{arg}` for `cargo xtask run-board`\n\n{USAGE}"),
            }
        }
        Ok(options)
    }

    /// `--emulate` runs on this machine, with fixed settings: board flags make no sense.
    fn check_emulate_alone(&self) -> Result<()> {
        let alone = Options {
            emulate: true,
            ..Options::default()
        };
        if *self != alone {
            bail!(
                "`cargo xtask run-board --emulate` takes no other arguments: it runs the \
                 {ARMV7_GNU} build here under qemu-arm, with the synthetic camera"
            );
        }
        Ok(())
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("must be a port number, 1 to 65535, got `{text}`")),
        Ok(port) => Ok(port),
    }
}

// ---------------------------------------------------------------------------------------
// boards.toml

/// A boards file: `[board.NAME]` tables, one a board.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Boards {
    #[serde(default)]
    board: BTreeMap<String, Profile>,
}

/// One board's settings; every one optional, and every one overridden by its flag.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    /// `--host`: the ssh destination, `user@board` or a name from `~/.ssh/config`.
    host: Option<String>,
    /// `--target`: the Rust target triple.
    target: Option<String>,
    /// `--linker`: the target's C compiler, used to link.
    linker: Option<String>,
    /// `--remote-path`: where the binary is installed on the board.
    remote_path: Option<String>,
    /// `--camera`: the server's camera.
    camera: Option<String>,
    /// `--port`: the port the server listens on.
    port: Option<u16>,
    /// More `edgecam serve` flags; those after `--` on the command line come after them.
    #[serde(default)]
    server_flags: Vec<String>,
}

impl Boards {
    fn load(path: &Path) -> Result<Boards> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "could not read the boards file {}: create it (see boards.toml at the \
                 repository root) or name another with --boards FILE",
                path.display()
            )
        })?;
        Boards::parse(&text, path)
    }

    /// Parses a boards file; `path` is only for the error, which gives the line.
    fn parse(text: &str, path: &Path) -> Result<Boards> {
        toml::from_str(text)
            .map_err(|err| anyhow!("{} is not a valid boards file: {err}", path.display()))
    }

    fn profile(&self, name: &str, path: &Path) -> Result<Profile> {
        if let Some(profile) = self.board.get(name) {
            return Ok(profile.clone());
        }
        let known = if self.board.is_empty() {
            "it has none".to_owned()
        } else {
            let names: Vec<&str> = self.board.keys().map(String::as_str).collect();
            format!("known boards: {}", names.join(", "))
        };
        bail!(
            "no board `{name}` in {}: {known} (add a [board.{name}] table, or pick \
             another with --board)",
            path.display()
        )
    }
}

// ---------------------------------------------------------------------------------------
// What to do

/// The settings of one deployment: flags over profile over defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Deploy {
    host: String,
    target: String,
    linker: String,
    remote_path: String,
    camera: Option<String>,
    port: u16,
    server_flags: Vec<String>,
    install_service: bool,
}

impl Deploy {
    fn resolve(options: &Options, profile: &Profile) -> Result<Deploy> {
        let pick = |flag: &Option<String>, field: &Option<String>| flag.clone().or(field.clone());
        let board = options.board.as_deref();
        let in_profile = |key: &str| match board {
            Some(name) => format!("`{key} = ...` in [board.{name}] of the boards file"),
            None => format!("`{key} = ...` in a board profile (--board NAME)"),
        };

        let host = pick(&options.host, &profile.host).ok_or_else(|| {
            anyhow!(
                "no board to deploy to: give --host USER@BOARD, or {}",
                in_profile("host")
            )
        })?;
        if host.is_empty() || host.starts_with('-') || host.contains(char::is_whitespace) {
            bail!("`{host}` is not an ssh destination: expected USER@BOARD or a host name");
        }

        let target = pick(&options.target, &profile.target).unwrap_or_else(|| ARMV7_GNU.into());
        let linker = match pick(&options.linker, &profile.linker) {
            Some(linker) => linker,
            None => default_linker(&target).map(str::to_owned).ok_or_else(|| {
                anyhow!(
                    "no default linker for {target}: give the board SDK's gcc with --linker \
                     PROGRAM, or {}",
                    in_profile("linker")
                )
            })?,
        };

        let remote_path = pick(&options.remote_path, &profile.remote_path)
            .unwrap_or_else(|| DEFAULT_REMOTE_PATH.into());
        if !remote_path.starts_with('/') {
            bail!(
                "the remote path must be absolute (systemd requires it, and a bare name \
                 would be looked up on the PATH), got `{remote_path}`"
            );
        }
        let camera = pick(&options.camera, &profile.camera);
        let port = options.port.or(profile.port).unwrap_or(DEFAULT_PORT);
        if port == 0 {
            bail!("the port must be 1 to 65535, got 0 (`port` in the boards file)");
        }
        let mut server_flags = profile.server_flags.clone();
        server_flags.extend(options.server_flags.iter().cloned());

        Ok(Deploy {
            host,
            target,
            linker,
            remote_path,
            camera,
            port,
            server_flags,
            install_service: options.install_service,
        })
    }

    /// `edgecam serve` with its flags, as the board runs it.
    fn serve_argv(&self) -> Vec<String> {
        let mut argv = vec![
            self.remote_path.clone(),
            "serve".to_owned(),
            "--bind".to_owned(),
            format!("0.0.0.0:{}", self.port),
        ];
        if let Some(camera) = &self.camera {
            argv.extend(["--camera".to_owned(), camera.clone()]);
        }
        argv.extend(self.server_flags.iter().cloned());
        argv
    }

    /// The ports below 1024 the server is told to listen on: `--port`, and `--http-bind`
    /// among the server flags. Binding one is the only capability the service keeps.
    fn privileged_ports(&self) -> Vec<u16> {
        let mut ports = vec![self.port];
        let mut flags = self.server_flags.iter();
        while let Some(flag) = flags.next() {
            let addr = match flag.strip_prefix("--http-bind") {
                Some("") => flags.next().map(String::as_str),
                Some(rest) => rest.strip_prefix('='),
                None => None,
            };
            let port = addr
                .and_then(|addr| addr.rsplit_once(':'))
                .and_then(|(_, port)| port.parse::<u16>().ok());
            ports.extend(port);
        }
        // Port 0 is any free port, which is never below 1024.
        ports.retain(|&port| port != 0 && port < 1024);
        ports.dedup();
        ports
    }
}

/// The linker Debian's cross gcc packages provide for a target, if it is one of those.
fn default_linker(target: &str) -> Option<&'static str> {
    match target {
        "armv7-unknown-linux-gnueabihf" | "arm-unknown-linux-gnueabihf" => Some(ARMV7_GCC),
        "aarch64-unknown-linux-gnu" => Some("aarch64-linux-gnu-gcc"),
        _ => None,
    }
}

/// Where things are on this machine; paths under the root are shown relative to it,
/// since every command runs there.
#[derive(Debug)]
pub(crate) struct Layout {
    target_dir: String,
}

impl Layout {
    pub(crate) fn new(root: &Path, target_dir: &Path) -> Layout {
        let shown = target_dir.strip_prefix(root).unwrap_or(target_dir);
        let shown = if shown.as_os_str().is_empty() {
            Path::new(".")
        } else {
            shown
        };
        Layout {
            target_dir: shown.to_string_lossy().into_owned(),
        }
    }

    /// The binary cargo builds for `target` (the `board` profile).
    pub(crate) fn binary(&self, target: &str) -> String {
        format!("{}/{target}/board/edgecam", self.target_dir)
    }

    /// The native debug binary, as `cargo build -p edgecam` builds it.
    pub(crate) fn native_binary(&self) -> String {
        format!("{}/debug/edgecam", self.target_dir)
    }

    /// A folder of xtask's own files in the target directory.
    pub(crate) fn scratch(&self, name: &str) -> String {
        format!("{}/xtask/{name}", self.target_dir)
    }
}

/// The target directory cargo builds into: an absolute `CARGO_TARGET_DIR`, else what
/// `cargo metadata` says (which knows `build.target-dir`, or `<root>/target`).
pub(crate) fn target_dir(ctx: &Ctx) -> Result<PathBuf> {
    let from_env = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
    if let Some(dir) = from_env.filter(|dir| dir.is_absolute()) {
        return Ok(dir);
    }
    let out = Command::new(&ctx.cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(&ctx.root)
        .output()
        .context("could not start `cargo metadata`: is cargo on the PATH?")?;
    if !out.status.success() {
        bail!(
            "`cargo metadata` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let json = String::from_utf8_lossy(&out.stdout);
    json_string_field(&json, "target_directory")
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("`cargo metadata` printed no target_directory"))
}

/// The value of the first `"key":"..."` in `json`, unescaped (xtask has no JSON crate).
fn json_string_field(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = json[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// One step of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// A command that must succeed.
    Run(Cmd),
    /// A file xtask writes, for a later command to copy (the systemd unit).
    Write { path: String, contents: String },
}

/// A command: environment, program, arguments, as data to print, compare and run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cmd {
    envs: Vec<(String, String)>,
    program: String,
    args: Vec<String>,
}

impl Cmd {
    pub(crate) fn new(program: &str) -> Cmd {
        Cmd {
            envs: Vec::new(),
            program: program.to_owned(),
            args: Vec::new(),
        }
    }

    pub(crate) fn arg(mut self, arg: impl Into<String>) -> Cmd {
        self.args.push(arg.into());
        self
    }

    pub(crate) fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Cmd {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub(crate) fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Cmd {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// The command to run in the repository root. `cargo` is the cargo running xtask,
    /// except with a `+toolchain` argument, which only rustup's `cargo` understands.
    pub(crate) fn command(&self, ctx: &Ctx) -> Command {
        let program: OsString = if self.program == "cargo"
            && !self.args.first().is_some_and(|arg| arg.starts_with('+'))
        {
            ctx.cargo.clone()
        } else if self.program.contains('/') {
            // A relative path is relative to the root (which `current_dir` does not say).
            ctx.root.join(&self.program).into_os_string()
        } else {
            self.program.clone().into()
        };
        let mut cmd = Command::new(program);
        cmd.args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .current_dir(&ctx.root);
        cmd
    }

    /// Runs it with its output streaming through, after its `==>` line; fails unless it
    /// succeeds.
    pub(crate) fn run(&self, ctx: &Ctx) -> Result<()> {
        println!("==> {self}");
        let status = self
            .command(ctx)
            .status()
            .with_context(|| format!("could not start `{self}`: is {} installed?", self.program))?;
        if !status.success() {
            bail!("`{self}` failed ({status})");
        }
        Ok(())
    }
}

/// The command line exactly as a shell would take it: words quoted where needed.
impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in &self.envs {
            write!(f, "{key}={} ", shell_quote(value))?;
        }
        f.write_str(&shell_quote(&self.program))?;
        for arg in &self.args {
            write!(f, " {}", shell_quote(arg))?;
        }
        Ok(())
    }
}

/// `word` as one POSIX shell word: as it is when that is safe, else in single quotes.
pub(crate) fn shell_quote(word: &str) -> Cow<'_, str> {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"_-+=:,./@%".contains(&b);
    if !word.is_empty() && word.bytes().all(safe) {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
    }
}

/// `argv` as one remote shell command line.
fn shell_line(argv: &[String]) -> String {
    let words: Vec<Cow<'_, str>> = argv.iter().map(|word| shell_quote(word)).collect();
    words.join(" ")
}

/// `CARGO_TARGET_<TRIPLE>_LINKER`: how cargo is told a target's linker.
fn linker_env(target: &str) -> String {
    let triple: String = target
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    format!("CARGO_TARGET_{triple}_LINKER")
}

/// The build of the `edgecam` binary for `target`, linked by `linker`: the `board` profile
/// (release without debug info or symbols: a small upload and a small file on flash).
pub(crate) fn build_cmd(target: &str, linker: &str, std: Std) -> Cmd {
    // The same gcc compiles libjpeg-turbo (cmake, through the cc crate's `CC_<target>`).
    let cargo = Cmd::new("cargo")
        .env(linker_env(target), linker)
        .env(format!("CC_{}", target.replace(['-', '.'], "_")), linker);
    let cargo = match std {
        Std::Prebuilt => cargo.arg("build"),
        // Tier 3: no prebuilt standard library, so nightly builds it from source.
        Std::BuildStd => cargo.args(["+nightly", "build", "-Zbuild-std=std,panic_abort"]),
    };
    // No default features: those are for desktops (`edgecam view`'s window). libjpeg-turbo,
    // built from source for the board (NEON), is the encoder `--encoder auto` picks there.
    cargo.args([
        "--profile",
        "board",
        "--locked",
        "-p",
        "edgecam",
        "--no-default-features",
        "--features",
        "turbojpeg",
        "--target",
        target,
    ])
}

/// The deployment, step by step.
fn plan(deploy: &Deploy, std: Std, layout: &Layout) -> Vec<Action> {
    let host = &deploy.host;
    let path = shell_quote(&deploy.remote_path);
    let mut actions = vec![Action::Run(build_cmd(&deploy.target, &deploy.linker, std))];
    let unit_path = format!("{}/{SERVICE}", layout.scratch("run-board"));
    if deploy.install_service {
        actions.push(Action::Write {
            path: unit_path.clone(),
            contents: systemd_unit(deploy),
        });
    }
    actions.push(Action::Run(
        Cmd::new("scp")
            .arg(layout.binary(&deploy.target))
            .arg(format!("{host}:{UPLOAD_BINARY}")),
    ));
    if deploy.install_service {
        actions.push(Action::Run(
            Cmd::new("scp")
                .arg(&unit_path)
                .arg(format!("{host}:{UPLOAD_UNIT}")),
        ));
    }

    // One ssh for the rest: installing, then running. `install` writes a new file, so a
    // binary that is running (the service's) is replaced safely.
    let install =
        format!("{SUDO}; $S install -D -m 0755 {UPLOAD_BINARY} {path} && rm -f {UPLOAD_BINARY}");
    let remote = if deploy.install_service {
        let unit = format!("/etc/systemd/system/{SERVICE}");
        // `enable` and then `restart` rather than `enable --now`: `--now` leaves a running
        // service on its old binary.
        format!(
            "{install} && $S install -D -m 0644 {UPLOAD_UNIT} {unit} && rm -f {UPLOAD_UNIT} \
             && $S systemctl daemon-reload && $S systemctl enable {SERVICE} \
             && $S systemctl restart {SERVICE} && systemctl --no-pager status {SERVICE}"
        )
    } else {
        // `exec`, so that Ctrl-C (sent through `ssh -t`) reaches edgecam itself.
        format!("{install} && exec {}", shell_line(&deploy.serve_argv()))
    };
    // `-t`: a terminal on the board, so that Ctrl-C stops the server there and sudo can ask
    // for a password.
    actions.push(Action::Run(Cmd::new("ssh").arg("-t").arg(host).arg(remote)));
    actions
}

/// The systemd unit that runs the server on the board: not as root, and sandboxed. Each
/// setting that is not self-evident says why in the unit itself, for whoever reads it on
/// the board; README.md ("Running on a board") gives the sandbox's `systemd-analyze
/// security` score, which a test below checks.
fn systemd_unit(deploy: &Deploy) -> String {
    let exec: Vec<String> = deploy
        .serve_argv()
        .iter()
        .map(|word| systemd_quote(word))
        .collect();
    let capabilities = match deploy.privileged_ports().as_slice() {
        [] => "# No capabilities, and no way to gain any (a port below 1024 would need\n\
               # CAP_NET_BIND_SERVICE: run-board adds it for one).\n\
               CapabilityBoundingSet=\n\
               AmbientCapabilities=\n"
            .to_owned(),
        ports => {
            let names: Vec<String> = ports.iter().map(u16::to_string).collect();
            let (what, is, them) = match ports {
                [_] => ("Port", "is", "it"),
                _ => ("Ports", "are", "them"),
            };
            format!(
                "# {what} {} {is} below 1024: binding {them} is the one capability it keeps.\n\
                 CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n\
                 AmbientCapabilities=CAP_NET_BIND_SERVICE\n",
                names.join(" and ")
            )
        }
    };
    format!(
        "# Written by `cargo xtask run-board --install-service`: an install replaces it.\n\
         [Unit]\n\
         Description=edgecam camera server\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         # DeviceAllow=char-video4linux below is resolved when the service starts: load\n\
         # videodev first (nothing to do where it is built in).\n\
         Wants=modprobe@videodev.service\n\
         After=modprobe@videodev.service\n\
         \n\
         [Service]\n\
         ExecStart={}\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         \n\
         {IDENTITY}\
         \n\
         {capabilities}\
         NoNewPrivileges=yes\n\
         \n\
         {SANDBOX}\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        exec.join(" ")
    )
}

/// Who the service runs as, and its one writable folder.
const IDENTITY: &str = "\
# Not root: a user made while the service runs (no useradd on the board), in the group
# that owns the cameras. Its one writable folder is $STATE_DIRECTORY (/var/lib/edgecam),
# where the TLS key and certificate are kept across restarts, the key 0600.
DynamicUser=yes
SupplementaryGroups=video
StateDirectory=edgecam
UMask=0077
";

/// The rest of the sandbox: devices, files, the kernel, sockets and system calls.
const SANDBOX: &str = "\
# Devices: the cameras, no others. video4linux is /dev/video* and /dev/v4l-subdev*;
# libcamera (rpicam-vid as an exec: camera) also opens /dev/media* and /dev/dma_heap/*
# (which the video group owns only where a udev rule says so, as on Raspberry Pi OS).
# Not PrivateDevices=yes: it would hide them all.
DevicePolicy=closed
DeviceAllow=char-video4linux rw
DeviceAllow=char-media rw
DeviceAllow=char-dma_heap rw

# Files: all read-only but the state folder; no /home; its own /tmp (so a pipe:
# camera's FIFO must live elsewhere, e.g. under /run).
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateMounts=yes

# The kernel: nothing to tune, load, read from its log or set (clock, host name); other
# users' processes hidden. Not ProcSubset=pid: libjpeg-turbo, built for ARMv7 without
# assuming NEON, looks for it in /proc/cpuinfo, and would otherwise encode without it.
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible

# Sockets: IP for the clients, from any address (LAN clients must connect, so no
# IPAddressDeny=; the server's --allow limits who may); AF_UNIX for the journal and user
# lookups; AF_NETLINK to list the board's addresses (getifaddrs, for the self-signed
# certificate) and for libcamera's device events (udev).
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes

# System calls; these hold for an exec: camera's program too, which may run (nothing is
# noexec) and, as a C tool, needs no memory both writable and executable (a JIT would).
# A call outside the filter fails with EPERM instead of killing the process: a tool that
# tries to raise a thread's priority gets the answer any user gets. `native`: a 32-bit
# build does not run on a 64-bit OS; build for the board's (--target aarch64-...).
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM

# Not PrivateUsers=yes: where the kernel has no user namespaces (many board kernels) the
# service would not start at all; and inside one the video group and the cameras show as
# nogroup (the kernel still grants the group's access).
";

/// `word` as one argument of a systemd `ExecStart=`: `%` and `$` doubled (systemd would
/// expand them), and in double quotes where it has spaces, quotes or backslashes.
fn systemd_quote(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    let plain = !escaped.is_empty()
        && !escaped
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'));
    if plain {
        escaped
    } else {
        format!("\"{}\"", escaped.replace('\\', r"\\").replace('"', "\\\""))
    }
}

/// What `--dry-run` prints: each action as a real run prints it, and runs none.
fn dry_run_text(plan: &[Action], missing: &[Missing]) -> String {
    let mut text = String::from(
        "dry run: these are the commands run-board would run, in order; it runs none\n",
    );
    for action in plan {
        match action {
            Action::Run(cmd) => text.push_str(&format!("==> {cmd}\n")),
            Action::Write { path, contents } => text.push_str(&write_header(path, contents)),
        }
    }
    if !missing.is_empty() {
        text.push_str(&format!(
            "note: a real run would stop before these: {}\n",
            toolchain::missing_message(missing)
        ));
    }
    text
}

/// The `==> write` line and the file's contents, indented.
fn write_header(path: &str, contents: &str) -> String {
    let mut text = format!("==> write {path}:\n");
    for line in contents.lines() {
        text.push_str(&format!("    {line}\n").replace("    \n", "\n"));
    }
    text
}

fn execute(ctx: &Ctx, plan: &[Action]) -> Result<()> {
    for action in plan {
        match action {
            Action::Run(cmd) => cmd.run(ctx)?,
            Action::Write { path, contents } => {
                print!("{}", write_header(path, contents));
                let path = ctx.root.join(path);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("could not create {}", dir.display()))?;
                }
                std::fs::write(&path, contents)
                    .with_context(|| format!("could not write {}", path.display()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The profile the snapshot tests deploy with.
    const TEST_BOARDS: &str = r#"
[board.kitchen]
host = "pi@kitchen.local"
camera = "sim:1280x720@15"
port = 7000
server_flags = ["--quality", "70", "--stats-interval", "10"]

[board.garage]
host = "root@garage.local"
target = "armv7-unknown-linux-uclibceabihf"
linker = "arm-buildroot-linux-uclibcgnueabihf-gcc"
remote_path = "/opt/edgecam/bin/edgecam"
"#;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn boards() -> Boards {
        Boards::parse(TEST_BOARDS, Path::new("test-boards.toml")).expect("the test profile parses")
    }

    /// What `cargo xtask run-board <words>` deploys with the test profiles.
    fn deploy(words: &[&str]) -> Result<Deploy> {
        let options = Options::parse(&args(words))?;
        let profile = match &options.board {
            Some(name) => boards().profile(name, Path::new("test-boards.toml"))?,
            None => Profile::default(),
        };
        Deploy::resolve(&options, &profile)
    }

    fn dry_run(words: &[&str], std: Std) -> String {
        let deploy = deploy(words).expect("the deployment resolves");
        let layout = Layout::new(Path::new("/src/edgecam"), Path::new("/src/edgecam/target"));
        dry_run_text(&plan(&deploy, std, &layout), &[])
    }

    #[test]
    fn the_dry_run_of_a_foreground_run_prints_build_copy_and_ssh() {
        insta::assert_snapshot!(dry_run(&["--board", "kitchen", "--dry-run"], Std::Prebuilt));
    }

    #[test]
    fn the_dry_run_of_a_service_install_prints_the_unit_and_systemctl() {
        insta::assert_snapshot!(dry_run(
            &[
                "--board",
                "kitchen",
                "--install-service",
                "--dry-run",
                "--",
                "-v"
            ],
            Std::Prebuilt
        ));
    }

    #[test]
    fn the_dry_run_of_a_uclibc_board_builds_std_with_nightly() {
        insta::assert_snapshot!(dry_run(&["--board", "garage", "--dry-run"], Std::BuildStd));
    }

    /// The settings `systemd-analyze security` may find open in the typical unit, each left
    /// open on purpose (the unit says why): anything else open is a lost setting.
    const OPEN_ON_PURPOSE: &[&str] = &[
        // It runs the board's own programs (exec: cameras), from the board's root.
        "RootDirectory=/RootImage=",
        // The video group, which owns the cameras.
        "SupplementaryGroups=",
        // It would hide the cameras; DeviceAllow= limits the devices instead.
        "PrivateDevices=",
        // The camera device groups (and ProtectClock's read-only char-rtc).
        "DeviceAllow=",
        // A server for the LAN, from any address; the server's --allow limits who.
        "PrivateNetwork=",
        "IPAddressDeny=",
        "RestrictAddressFamilies=~AF_(INET|INET6)",
        // The journal and user lookups.
        "RestrictAddressFamilies=~AF_UNIX",
        // getifaddrs for the certificate's addresses, and libcamera's udev events.
        "RestrictAddressFamilies=~AF_NETLINK",
        // libjpeg-turbo looks for NEON in /proc/cpuinfo.
        "ProcSubset=",
        // It fails the service on kernels without user namespaces.
        "PrivateUsers=",
    ];

    /// The highest overall exposure `systemd-analyze security` may give the typical unit:
    /// it gives 1.5 with Debian 12's systemd 252 (README.md, "Running on a board").
    const MAX_EXPOSURE: f64 = 1.6;

    /// Whether systemd-analyze 252 or later (the first with `security --offline`) is here.
    /// Where it is not, a test that needs it prints "skipped: ..." and returns, except under
    /// CI (`CI` set), whose `.ci/run` installs systemd: there it fails, as the end-to-end
    /// tests' `have_tool` does.
    fn have_systemd_analyze() -> bool {
        let version = Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| {
                // "systemd 252 (252.38-1~deb12u1)"
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.split_whitespace().nth(1)?.parse::<u32>().ok()
            });
        let missing = match version {
            Some(version) if version >= 252 => return true,
            Some(version) => format!(
                "systemd-analyze is systemd {version}'s, and `security --offline` needs 252"
            ),
            None => "systemd-analyze not installed (apt-get install systemd)".to_owned(),
        };
        assert!(
            std::env::var_os("CI").is_none(),
            "{missing}, and CI must have it (.ci/run installs systemd)"
        );
        println!("skipped: {missing}");
        false
    }

    /// `deploy`'s unit, written as `edgecam.service` in a fresh folder of its own.
    fn write_unit(test: &str, deploy: &Deploy) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edgecam-xtask-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(SERVICE);
        std::fs::write(&path, systemd_unit(deploy)).unwrap();
        path
    }

    /// `systemd-analyze ARGS... UNIT` in the C locale (plain `+`/`-` marks): its standard
    /// output, after checking that it succeeded and warned of nothing (an unknown key or a
    /// bad value is only a warning to systemd, which then ignores the line).
    fn systemd_analyze(args: &[&str], unit: &Path) -> String {
        let out = Command::new("systemd-analyze")
            .args(args)
            .arg(unit)
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success() && stderr.is_empty(),
            "systemd-analyze {args:?} {}: {}\n{stdout}{stderr}",
            unit.display(),
            out.status
        );
        stdout
    }

    #[test]
    fn the_service_unit_is_sandboxed_as_systemd_analyze_security_counts_it() {
        if !have_systemd_analyze() {
            return;
        }
        let deploy = deploy(&["--board", "kitchen", "--install-service"]).unwrap();
        let unit = write_unit("security", &deploy);
        let report = systemd_analyze(&["security", "--offline=yes"], &unit);

        let open: Vec<&str> = report
            .lines()
            .filter_map(|line| line.strip_prefix("- ")?.split_whitespace().next())
            .collect();
        let lost: Vec<&&str> = open
            .iter()
            .filter(|name| !OPEN_ON_PURPOSE.contains(name))
            .collect();
        assert!(
            lost.is_empty(),
            "systemd-analyze finds {lost:?} open in the unit: set it, or add it to \
             OPEN_ON_PURPOSE with the reason\n{report}"
        );
        let exposure: f64 = report
            .lines()
            .find_map(|line| line.strip_prefix("-> Overall exposure level for edgecam.service: "))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no overall exposure level in\n{report}"));
        assert!(
            exposure <= MAX_EXPOSURE,
            "exposure {exposure}, over {MAX_EXPOSURE}\n{report}"
        );
        println!("systemd-analyze security: exposure {exposure}, open: {open:?}");
        let _ = std::fs::remove_dir_all(unit.parent().unwrap());
    }

    #[test]
    fn the_service_unit_passes_systemd_analyze_verify() {
        if !have_systemd_analyze() {
            return;
        }
        // verify checks that ExecStart's program exists here: this test's own binary.
        let exe = std::env::current_exe().unwrap();
        let deploy = deploy(&[
            "--board",
            "kitchen",
            "--install-service",
            "--remote-path",
            exe.to_str().unwrap(),
        ])
        .unwrap();
        let unit = write_unit("verify", &deploy);
        systemd_analyze(&["verify", "--man=no"], &unit);
        let _ = std::fs::remove_dir_all(unit.parent().unwrap());
    }

    #[test]
    fn only_a_port_below_1024_keeps_a_capability() {
        let ports = |words: &[&str]| deploy(words).unwrap().privileged_ports();
        assert_eq!(ports(&["--host", "pi@b"]), [] as [u16; 0]);
        assert_eq!(ports(&["--host", "pi@b", "--port", "80"]), [80]);
        assert_eq!(
            ports(&["--host", "pi@b", "--", "--http-bind", "0.0.0.0:443"]),
            [443]
        );
        assert_eq!(
            ports(&["--host", "pi@b", "--port=80", "--", "--http-bind=[::]:8080"]),
            [80]
        );
        assert_eq!(
            ports(&["--host", "pi@b", "--", "--http-bind", "0.0.0.0:0"]),
            [] as [u16; 0]
        );

        let unit = |words: &[&str]| systemd_unit(&deploy(words).unwrap());
        let unprivileged = unit(&["--host", "pi@b", "--install-service"]);
        assert!(
            unprivileged.contains("\nCapabilityBoundingSet=\nAmbientCapabilities=\n"),
            "{unprivileged}"
        );
        let port_80 = unit(&["--host", "pi@b", "--install-service", "--port", "80"]);
        assert!(
            port_80.contains(
                "# Port 80 is below 1024: binding it is the one capability it keeps.\n\
                 CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n\
                 AmbientCapabilities=CAP_NET_BIND_SERVICE\n"
            ),
            "{port_80}"
        );
        assert_eq!(port_80.matches("CapabilityBoundingSet=").count(), 1);
        let two = unit(&[
            "--host",
            "pi@b",
            "--install-service",
            "--port",
            "80",
            "--",
            "--http-bind",
            "[::]:443",
        ]);
        assert!(
            two.contains("# Ports 80 and 443 are below 1024: binding them is the one"),
            "{two}"
        );
    }

    #[test]
    fn the_repository_boards_file_parses() {
        let text = include_str!("../../boards.toml");
        let boards = Boards::parse(text, Path::new("boards.toml")).expect("boards.toml parses");
        assert!(!boards.board.is_empty());
        for (name, profile) in &boards.board {
            let options = Options {
                board: Some(name.clone()),
                ..Options::default()
            };
            Deploy::resolve(&options, profile).expect("each example profile resolves");
        }
    }

    #[test]
    fn flags_override_the_profile_and_extra_flags_come_after_its_own() {
        let deploy = deploy(&[
            "--board",
            "kitchen",
            "--host=admin@other",
            "--port",
            "6811",
            "--camera",
            "sim:320x240@5",
            "--remote-path",
            "/home/admin/edgecam",
            "--",
            "--max-clients",
            "4",
        ])
        .expect("resolves");
        assert_eq!(
            deploy,
            Deploy {
                host: "admin@other".into(),
                target: ARMV7_GNU.into(),
                linker: ARMV7_GCC.into(),
                remote_path: "/home/admin/edgecam".into(),
                camera: Some("sim:320x240@5".into()),
                port: 6811,
                server_flags: [
                    "--quality",
                    "70",
                    "--stats-interval",
                    "10",
                    "--max-clients",
                    "4"
                ]
                .map(String::from)
                .into(),
                install_service: false,
            }
        );
    }

    #[test]
    fn without_a_profile_the_defaults_apply() {
        let deploy = deploy(&["--host", "pi@board"]).expect("resolves");
        assert_eq!(deploy.target, ARMV7_GNU);
        assert_eq!(deploy.linker, ARMV7_GCC);
        assert_eq!(deploy.remote_path, DEFAULT_REMOTE_PATH);
        assert_eq!(deploy.port, DEFAULT_PORT);
        assert_eq!(deploy.camera, None);
        assert_eq!(
            deploy.serve_argv(),
            ["/usr/local/bin/edgecam", "serve", "--bind", "0.0.0.0:6810"]
        );
    }

    #[test]
    fn a_missing_host_says_where_to_give_one() {
        let err = deploy(&["--dry-run"]).unwrap_err().to_string();
        assert_eq!(
            err,
            "no board to deploy to: give --host USER@BOARD, or `host = ...` in a board \
             profile (--board NAME)"
        );
        let boards =
            Boards::parse("[board.bare]\nport = 1\n", Path::new("b.toml")).expect("parses");
        let options = Options::parse(&args(&["--board", "bare"])).expect("parses");
        let profile = boards.profile("bare", Path::new("b.toml")).expect("found");
        let err = Deploy::resolve(&options, &profile).unwrap_err().to_string();
        assert!(err.contains("`host = ...` in [board.bare]"), "{err}");
    }

    #[test]
    fn an_unknown_board_lists_the_known_ones() {
        let err = boards()
            .profile("attic", Path::new("test-boards.toml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "no board `attic` in test-boards.toml: known boards: garage, kitchen (add a \
             [board.attic] table, or pick another with --board)"
        );
        let empty = Boards::parse("", Path::new("empty.toml")).expect("an empty file parses");
        let err = empty.profile("attic", Path::new("empty.toml")).unwrap_err();
        assert!(err.to_string().contains(": it has none"), "{err}");
    }

    #[test]
    fn a_malformed_boards_file_is_reported_with_its_line() {
        let text = "[board.kitchen]\nhost = \"pi@kitchen\"\nport = \"6810\"\n";
        let err = Boards::parse(text, Path::new("boards.toml")).unwrap_err();
        insta::assert_snapshot!(err.to_string(), @r#"
        boards.toml is not a valid boards file: TOML parse error at line 3, column 8
          |
        3 | port = "6810"
          |        ^^^^^^
        invalid type: string "6810", expected u16
        "#);
        let err = Boards::parse("[board.kitchen]\nhots = \"pi\"\n", Path::new("boards.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("unknown field `hots`"),
            "{err}"
        );
        let err = Boards::parse("[board.kitchen\n", Path::new("boards.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn bad_arguments_are_named() {
        let err = |words: &[&str]| Options::parse(&args(words)).unwrap_err().to_string();
        assert!(
            err(&["--port", "0"]).starts_with("--port must be a port number, 1 to 65535, got `0`")
        );
        assert!(err(&["--port", "http"]).contains("got `http`"));
        assert!(err(&["--host"]).starts_with("`--host` needs a value"));
        assert!(err(&["--dry-run=yes"]).starts_with("`--dry-run` takes no value"));
        assert!(err(&["--frobnicate"]).starts_with("unknown argument `--frobnicate`"));
        let err = deploy(&["--host", "-oProxyCommand=x"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not an ssh destination"), "{err}");
        let err = deploy(&["--host", "pi@b", "--remote-path", "edgecam"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be absolute"), "{err}");
        let err = deploy(&["--host", "pi@b", "--target", "riscv64gc-unknown-linux-gnu"])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("no default linker for riscv64gc-unknown-linux-gnu"),
            "{err}"
        );
    }

    #[test]
    fn emulate_takes_no_board_arguments() {
        let alone = Options::parse(&args(&["--emulate"])).expect("parses");
        alone
            .check_emulate_alone()
            .expect("--emulate alone is fine");
        let with_host = Options::parse(&args(&["--emulate", "--host", "pi@b"])).expect("parses");
        assert!(with_host.check_emulate_alone().is_err());
    }

    #[test]
    fn words_are_quoted_for_the_shell_and_for_systemd() {
        assert_eq!(shell_quote("sim:640x480@30"), "sim:640x480@30");
        assert_eq!(
            shell_quote("sim:640x480@30#stall_ms=5"),
            "'sim:640x480@30#stall_ms=5'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(systemd_quote("--camera"), "--camera");
        assert_eq!(systemd_quote("50%"), "50%%");
        assert_eq!(systemd_quote("$HOME"), "$$HOME");
        assert_eq!(systemd_quote("two words"), "\"two words\"");
        assert_eq!(systemd_quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn the_linker_variable_is_named_after_the_triple() {
        assert_eq!(
            linker_env("armv7-unknown-linux-gnueabihf"),
            "CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER"
        );
    }

    #[test]
    fn the_target_directory_is_read_from_cargo_metadata() {
        let json = r#"{"packages":[],"target_directory":"/w/my \"t\"\\dir","version":1}"#;
        assert_eq!(
            json_string_field(json, "target_directory").as_deref(),
            Some(r#"/w/my "t"\dir"#)
        );
        assert_eq!(json_string_field(json, "workspace_root"), None);
        let outside = Layout::new(Path::new("/src/edgecam"), Path::new("/tmp/target"));
        assert_eq!(
            outside.binary(ARMV7_GNU),
            "/tmp/target/armv7-unknown-linux-gnueabihf/board/edgecam"
        );
    }
}
