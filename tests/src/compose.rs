//! The mesh in containers, driven the way README's container section drives it: the
//! repository's `Dockerfile` and compose files, `docker` and `docker compose` (or
//! `docker-compose` 1.29) as the commands a user types.
//!
//! [`ComposeProject`] is one scenario's compose project (its own name, so its
//! containers, network and volumes are its own), taken down with its volumes when it is
//! dropped, even when the scenario panics. [`images`] builds what it runs: the shardmesh
//! image from the binary under test, RabbitMQ from Debian's package, both on a Debian
//! base made locally by `scripts/container-base` (no registry is reachable here).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The local Debian base the images start from (`scripts/container-base` makes it).
pub const BASE_IMAGE: &str = "local/debian:bookworm-slim";
/// RabbitMQ from Debian's package, built from `tests/containers/rabbitmq`.
pub const RABBITMQ_IMAGE: &str = "local/rabbitmq:bookworm";

/// The repository's root, where `Dockerfile` and the compose files are.
///
/// # Panics
///
/// Never: this package is a directory of the repository.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Runs `program args`, returning its output whatever its exit status.
///
/// # Panics
///
/// When the program cannot be started at all, naming it.
pub fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(repository())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"))
}

/// Runs `program args` and returns its stdout.
///
/// # Panics
///
/// When it fails, with its stderr.
pub fn run_ok(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = run(program, args, env);
    assert!(
        output.status.success(),
        "{program} {} failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Checks that Docker answers and the base image is there.
///
/// # Panics
///
/// Saying what is missing and the command that provides it: a container test never
/// passes without containers.
pub fn require_docker() {
    let info = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match info {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "the Docker engine does not answer ({}): start dockerd (scripts/test starts it as \
             root), or install docker.io",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => panic!(
            "the docker command is missing ({error}): apt-get install docker.io docker-compose \
             (scripts/test installs them as root)"
        ),
    }
    assert!(
        run("docker", &["image", "inspect", BASE_IMAGE], &[])
            .status
            .success(),
        "the base image {BASE_IMAGE} is missing: run scripts/container-base (scripts/test does)"
    );
}

/// `docker compose` when the v2 plugin is there, else `docker-compose` (1.29): the
/// program and the arguments that come before a compose command.
fn compose_command() -> (String, Vec<String>) {
    if run("docker", &["compose", "version"], &[]).status.success() {
        ("docker".to_owned(), vec!["compose".to_owned()])
    } else {
        ("docker-compose".to_owned(), Vec::new())
    }
}

/// An image removed when dropped (its layers stay cached for the next build).
#[derive(Debug)]
pub struct Image(pub String);

impl Image {
    /// `image` under a second tag, `REPOSITORY:TAG-suffix`: to a container, a new image.
    ///
    /// # Panics
    ///
    /// When `docker tag` fails.
    pub fn tagged(image: &Self, suffix: &str) -> Self {
        let tag = format!("{}-{suffix}", image.0);
        run_ok("docker", &["tag", &image.0, &tag], &[]);
        Self(tag)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = run("docker", &["rmi", "-f", &self.0], &[]);
    }
}

/// Builds the images a scenario runs and returns the shardmesh image: the binary
/// under test (stripped, so the copy is small) on the runtime stage of `Dockerfile`
/// (`--target prebuilt`), and RabbitMQ unless it is already built.
///
/// # Panics
///
/// When a build fails, with its output.
pub fn images(tag: &str) -> Image {
    if !run("docker", &["image", "inspect", RABBITMQ_IMAGE], &[])
        .status
        .success()
    {
        build(&[
            "--build-arg",
            &format!("BASE_IMAGE={BASE_IMAGE}"),
            "-t",
            RABBITMQ_IMAGE,
            "tests/containers/rabbitmq",
        ]);
    }
    let context = tempfile::tempdir().expect("a build context");
    let binary = context.path().join("shardmesh");
    std::fs::copy(crate::binary(), &binary).expect("copying the shardmesh binary");
    run_ok("strip", &[binary.to_str().expect("utf-8 path")], &[]);
    let image = format!("localhost/shardmesh:{tag}");
    let dockerfile = repository().join("Dockerfile");
    build(&[
        "-f",
        dockerfile.to_str().expect("utf-8 path"),
        "--target",
        "prebuilt",
        "--build-arg",
        &format!("RUNTIME_IMAGE={BASE_IMAGE}"),
        "--build-arg",
        "PREBUILT=shardmesh",
        "-t",
        &image,
        context.path().to_str().expect("utf-8 path"),
    ]);
    Image(image)
}

/// `docker build` with the legacy builder, which this machine's engine has without the
/// buildx plugin and which honours the stage order `Dockerfile` is written for.
fn build(args: &[&str]) {
    let mut all = vec!["build", "-q"];
    all.extend_from_slice(args);
    run_ok("docker", &all, &[("DOCKER_BUILDKIT", "0")]);
}

/// One compose project: the compose files it combines, the variables they are
/// interpolated with, and its own name. Dropping it runs `down -v --remove-orphans`.
#[derive(Debug)]
pub struct ComposeProject {
    name: String,
    files: Vec<String>,
    env: Vec<(String, String)>,
    program: String,
    prefix: Vec<String>,
    owned: bool,
}

impl ComposeProject {
    /// A project named `name` over `files` (relative to the repository), with `env` as
    /// the shell's variables. Nothing runs yet.
    pub fn new(name: &str, files: &[&str], env: &[(&str, &str)]) -> Self {
        let (program, prefix) = compose_command();
        Self {
            name: name.to_owned(),
            files: files.iter().map(|&file| file.to_owned()).collect(),
            env: env
                .iter()
                .map(|&(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
            program,
            prefix,
            owned: true,
        }
    }

    /// Files read under `name` by commands that start nothing (`config`): dropping it
    /// leaves the project alone.
    pub fn reader(name: &str, files: &[&str]) -> Self {
        let mut reader = Self::new(name, files, &[]);
        reader.owned = false;
        reader
    }

    /// The project's name (`-p`).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn args<'a>(&'a self, command: &[&'a str]) -> Vec<&'a str> {
        let mut args: Vec<&str> = self.prefix.iter().map(String::as_str).collect();
        args.extend(["-p", &self.name]);
        for file in &self.files {
            args.extend(["-f", file]);
        }
        args.extend_from_slice(command);
        args
    }

    fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.extend(
            extra
                .iter()
                .map(|&(key, value)| (key.to_owned(), value.to_owned())),
        );
        env
    }

    /// Runs a compose command (`up -d ...`, `logs`, ...) and returns its output.
    ///
    /// # Panics
    ///
    /// When the compose program cannot be started.
    pub fn output(&self, command: &[&str], extra_env: &[(&str, &str)]) -> Output {
        Command::new(&self.program)
            .args(self.args(command))
            .envs(self.env(extra_env))
            .current_dir(repository())
            .output()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", self.program))
    }

    /// Runs a compose command and returns its stdout.
    ///
    /// # Panics
    ///
    /// When it fails, with its output.
    pub fn ok(&self, command: &[&str]) -> String {
        self.ok_with(command, &[])
    }

    /// [`ComposeProject::ok`] with variables added for this one command.
    ///
    /// # Panics
    ///
    /// When it fails, with its output.
    pub fn ok_with(&self, command: &[&str], extra_env: &[(&str, &str)]) -> String {
        let output = self.output(command, extra_env);
        assert!(
            output.status.success(),
            "{} {} failed ({}):\n{}{}",
            self.program,
            self.args(command).join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The ids of `service`'s containers, running or not.
    pub fn containers(&self, service: &str) -> Vec<String> {
        self.ok(&["ps", "-a", "-q", service])
            .lines()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The host address `service`'s `port` is published on.
    ///
    /// # Panics
    ///
    /// When it is not published.
    pub fn published(&self, service: &str, port: u16) -> SocketAddr {
        let port = port.to_string();
        let out = self.ok(&["port", service, &port]);
        out.trim()
            .parse()
            .unwrap_or_else(|error| panic!("{service}:{port} is published as {out:?}: {error}"))
    }

    /// Every service's log, for a failure message.
    pub fn logs(&self) -> String {
        let output = self.output(&["logs", "--no-color", "--tail", "40"], &[]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if std::thread::panicking() {
            eprintln!("--- compose project {} ---\n{}", self.name, self.logs());
        }
        let down = self.output(&["down", "-v", "--remove-orphans", "-t", "5"], &[]);
        if !down.status.success() {
            eprintln!(
                "compose down of {} failed: {}",
                self.name,
                String::from_utf8_lossy(&down.stderr)
            );
        }
    }
}

/// `docker inspect -f FORMAT container`, trimmed.
pub fn inspect(container: &str, format: &str) -> String {
    run_ok("docker", &["inspect", "-f", format, container], &[])
        .trim()
        .to_owned()
}

/// A node container's `/metrics`, fetched from inside it (its port is not published),
/// with bash's `/dev/tcp` since the image has no HTTP client.
///
/// # Errors
///
/// What failed, when the container does not answer (stopped, still starting).
pub fn node_metrics(container: &str) -> Result<crate::Metrics, String> {
    let output = run(
        "docker",
        &[
            "exec",
            container,
            "bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3",
        ],
        &[],
    );
    if !output.status.success() {
        return Err(format!(
            "{container}'s /metrics: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let body = text.split_once("\r\n\r\n").map_or(&*text, |(_, body)| body);
    Ok(crate::Metrics::parse(body))
}
