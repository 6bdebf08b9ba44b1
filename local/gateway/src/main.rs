//! `local-gateway`: serves SAM templates locally on moto until Ctrl-C, each function run from its own binary.
//!
//! ```text
//! local-gateway --endpoint http://127.0.0.1:5000 [--template template.yaml] [--port 3000]
//!               [--stack-name local] [--state-file .local/stack.json] [--region us-east-1]
//!               [--parameter-overrides "Name=Value ..."]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use local_gateway::cfn::parse_overrides;
use local_gateway::run::{Options, start};

/// The project's virtualenv Python when run from the repository, else `python3`.
fn default_python() -> String {
    let venv = std::path::Path::new(".venv/bin/python");
    if venv.exists() {
        venv.display().to_string()
    } else {
        "python3".into()
    }
}

fn usage() -> &'static str {
    "usage: local-gateway --endpoint URL [--template PATH] [--port N] [--stack-name NAME] \
     [--state-file PATH] [--region REGION] [--parameter-overrides \"Name=Value ...\"] \
     [--python PATH] [--async-retry-seconds N] [--lambda-port N] [--release] [--concurrency N] \
     [--metric-minute SECONDS] [--function-endpoint URL] [--function-binary ID=PATH] [--build-only]\n\
     --build-only builds every function of the template and exits; \
     --release builds the functions with cargo's release profile; --concurrency caps the \
     execution environments of a function without reserved concurrency (default 32); \
     --metric-minute is how long one CloudWatch minute lasts locally, for alarm periods and \
     metric sampling (default 1 second); --function-endpoint is the AWS endpoint the functions \
     use instead of --endpoint (a fault-injecting proxy in front of moto, say); --function-binary \
     runs the executable PATH for the function ID (Stack.LogicalId) instead of its build"
}

fn parse_args() -> Result<Mode> {
    let mut options = Options {
        template: PathBuf::from("template.yaml"),
        endpoint: String::new(),
        region: "us-east-1".into(),
        stack_name: "local".into(),
        port: 3000,
        state_file: PathBuf::from(".local/stack.json"),
        overrides: BTreeMap::new(),
        python: default_python(),
        async_retry_unit: std::time::Duration::from_secs(1),
        lambda_port: 3100,
        release: false,
        concurrency: local_gateway::functions::DEFAULT_CONCURRENCY,
        metric_minute: std::time::Duration::from_secs(1),
        launcher: std::env::current_exe().context("cannot find the gateway's own executable")?,
        function_endpoint: None,
        function_binaries: BTreeMap::new(),
    };
    let mut raw_overrides = Vec::new();
    let mut build_only = false;
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("status") {
        args.next();
        let mut watch = false;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--state-file" => {
                    options.state_file = args.next().context("--state-file needs a value")?.into()
                }
                "--watch" => watch = true,
                other => bail!(
                    "unknown argument {other:?}\nusage: local-gateway status [--state-file PATH] [--watch]"
                ),
            }
        }
        return Ok(Mode::Status {
            state_file: options.state_file,
            watch,
        });
    }
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--template" | "-t" => options.template = value()?.into(),
            "--endpoint" => options.endpoint = value()?,
            "--region" => options.region = value()?,
            "--stack-name" => options.stack_name = value()?,
            "--port" => options.port = value()?.parse().context("--port must be a port number")?,
            "--state-file" => options.state_file = value()?.into(),
            "--parameter-overrides" | "--param" => raw_overrides.push(value()?),
            "--python" => options.python = value()?,
            "--lambda-port" => {
                options.lambda_port = value()?
                    .parse()
                    .context("--lambda-port must be a port number")?
            }
            "--release" => options.release = true,
            "--function-endpoint" => options.function_endpoint = Some(value()?),
            "--function-binary" => {
                let pair = value()?;
                let (id, path) = pair
                    .split_once('=')
                    .filter(|(id, path)| !id.is_empty() && !path.is_empty())
                    .with_context(|| {
                        format!("--function-binary takes ID=PATH, got {pair:?}\n{}", usage())
                    })?;
                let path = std::fs::canonicalize(path)
                    .with_context(|| format!("--function-binary {id}: cannot read {path}"))?;
                options.function_binaries.insert(id.to_owned(), path);
            }
            "--build-only" => build_only = true,
            "--concurrency" => {
                options.concurrency = value()?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .context("--concurrency must be a positive number")?
            }
            "--metric-minute" => {
                let seconds: f64 = value()?
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s >= 0.05 && *s <= 3600.0)
                    .context("--metric-minute must be a number of seconds from 0.05 to 3600")?;
                options.metric_minute = std::time::Duration::from_secs_f64(seconds);
            }
            "--async-retry-seconds" => {
                let seconds: f64 = value()?
                    .parse()
                    .context("--async-retry-seconds must be a number")?;
                options.async_retry_unit = std::time::Duration::from_secs_f64(seconds);
            }
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    if build_only {
        return Ok(Mode::BuildOnly(options));
    }
    if options.endpoint.is_empty() {
        bail!("--endpoint (moto's URL) is required\n{}", usage());
    }
    options.overrides = parse_overrides(&raw_overrides)?;
    Ok(Mode::Serve(options))
}

/// What the command line asks for.
enum Mode {
    /// Run the stack until Ctrl-C.
    Serve(Options),
    /// Build every function of the template, then exit.
    BuildOnly(Options),
    /// Print the running stack's health (`make status`).
    Status {
        /// The running stack's description.
        state_file: PathBuf,
        /// Print it again every two seconds.
        watch: bool,
    },
}

/// Prints the health of the stack `state_file` describes (the gateway's `/_local/status`).
async fn print_status(state_file: &std::path::Path, watch: bool) -> Result<()> {
    let text = std::fs::read_to_string(state_file).with_context(|| {
        format!(
            "{} not found: start the stack with 'make local' first",
            state_file.display()
        )
    })?;
    let description: serde_json::Value = serde_json::from_str(&text)?;
    let endpoint = description["lambdaEndpoint"]
        .as_str()
        .context("the state file names no lambdaEndpoint")?;
    let client = reqwest::Client::new();
    loop {
        let snapshot: serde_json::Value = client
            .get(format!("{endpoint}/_local/status"))
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .with_context(|| format!("the local gateway at {endpoint} does not answer"))?
            .error_for_status()?
            .json()
            .await?;
        if watch {
            print!("\x1b[2J\x1b[H");
        }
        print!("{}", local_gateway::status::render(&snapshot));
        if !watch {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// The launcher of one execution environment (`local-gateway --run-environment <binary>`, run
/// by the gateway itself): asks Linux to kill this process when the gateway dies, then becomes
/// the function's binary, environment unchanged but for the launcher's own variable.
fn launch_environment(binary: &std::ffi::OsStr) -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    let parent = std::env::var(local_gateway::functions::environment::PARENT_PID_VAR).ok();
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .context("cannot ask to die with the gateway")?;
        // The gateway may have died before the request took effect: then go at once.
        if parent.as_deref() != Some(&nix::unistd::getppid().to_string()) {
            bail!("the local gateway is gone");
        }
    }
    let error = std::process::Command::new(binary)
        .env_remove(local_gateway::functions::environment::PARENT_PID_VAR)
        .exec();
    Err(error).with_context(|| format!("cannot run {}", std::path::Path::new(binary).display()))
}

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref()
        == Some(std::ffi::OsStr::new(
            local_gateway::functions::environment::LAUNCHER_FLAG,
        ))
    {
        let binary = args.next().context("--run-environment needs a binary")?;
        return launch_environment(&binary);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve())
}

async fn serve() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".into()),
        )
        .with_target(false)
        .init();
    let options = match parse_args()? {
        Mode::Serve(options) => options,
        Mode::Status { state_file, watch } => return print_status(&state_file, watch).await,
        Mode::BuildOnly(options) => {
            let built =
                local_gateway::functions::build::build_template(&options.template, options.release)
                    .await?;
            eprintln!(
                "built {} functions of {}",
                built.len(),
                options.template.display()
            );
            return Ok(());
        }
    };
    let running = start(&options).await?;
    print_banner(&running.description, &options);
    shutdown_signal().await;
    // The description only holds while the stack runs: a stale one would send scripts to
    // ports nobody listens on.
    let _ = std::fs::remove_file(&options.state_file);
    eprintln!("local gateway stopped");
    Ok(())
}

fn print_banner(description: &serde_json::Value, options: &Options) {
    println!(
        "\nLocal stack '{}' is up (moto at {}).",
        options.stack_name, options.endpoint
    );
    if let Some(patterns) = description["patterns"].as_object() {
        for (name, pattern) in patterns {
            println!(
                "\n== {name} ({})",
                pattern["template"].as_str().unwrap_or_default()
            );
            let mut post_url = None;
            for (name, api) in pattern["apis"].as_object().into_iter().flatten() {
                let base = api["baseUrl"].as_str().unwrap_or_default();
                println!("  API {name}: {base}");
                if api["auth"] == "AWS_IAM" {
                    let signing = &description["signing"];
                    // The first POST route with the OpenAPI document's example body, signed.
                    let post = api["routes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r.as_str())
                        .find(|r| r.starts_with("POST ") && !r.contains('{'));
                    let target = post
                        .map(|r| {
                            let body = api["examples"][r].to_string();
                            let body = if body == "null" {
                                "{}".to_owned()
                            } else {
                                body
                            };
                            format!(
                                "-H 'Content-Type: application/json' -d '{body}' {base}{}",
                                &r[5..]
                            )
                        })
                        .unwrap_or_else(|| base.to_owned());
                    println!(
                        "  try (SigV4): curl --aws-sigv4 'aws:amz:{}:execute-api' --user '{}:{}' \\\n         {target}",
                        signing["region"].as_str().unwrap_or_default(),
                        signing["accessKeyId"].as_str().unwrap_or_default(),
                        signing["secretAccessKey"].as_str().unwrap_or_default()
                    );
                }
                for route in api["routes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.as_str())
                {
                    println!("    {route}");
                    if let Some(path) = route.strip_prefix("POST ") {
                        // Path parameters get a sample value, so the line works as pasted.
                        let path: Vec<String> = path
                            .split('/')
                            .map(|s| {
                                if s.starts_with('{') {
                                    "demo-1".to_owned()
                                } else {
                                    s.to_owned()
                                }
                            })
                            .collect();
                        let body = api["examples"][route].to_string();
                        post_url.get_or_insert_with(|| (format!("{base}{}", path.join("/")), body));
                    }
                }
            }
            let creds = &pattern["credentials"];
            if let (Some(user), Some(password)) =
                (creds["username"].as_str(), creds["password"].as_str())
            {
                println!("  Basic auth (local only): {user} / {password}");
                if let Some((url, example)) = post_url {
                    // The OpenAPI document's example body when it has one, else a sample event.
                    let body = if example == "null" {
                        r#"{"eventId":"demo-1","message":"hello"}"#.to_owned()
                    } else {
                        example
                    };
                    println!(
                        "  try: curl -s -u '{user}:{password}' -H 'Content-Type: application/json' \\\n         -d '{body}' {url}"
                    );
                }
            }
        }
    }
    println!(
        "\nLambda Invoke API: {} (aws lambda invoke --endpoint-url ..., or make invoke)",
        description["lambdaEndpoint"].as_str().unwrap_or_default()
    );
    let alarms: usize = description["patterns"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, p)| p["alarms"].as_object().map(|a| a.len()))
        .sum();
    println!(
        "Alarms: {alarms} in moto's CloudWatch, evaluated locally (one CloudWatch minute lasts {:?}); \
         make status shows the stack's health.",
        options.metric_minute
    );
    println!(
        "Stack description: {}. Ctrl-C stops.\n",
        options.state_file.display()
    );
}

/// Ctrl-C or SIGTERM (what `kill` and process supervisors send).
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
