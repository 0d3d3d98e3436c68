//! `rale-operator`: the Kubernetes operator of RALE.
//!
//! Run with `rale-operator run` (in a pod, or with a kubeconfig); `rale-operator crd`
//! prints the CRD manifest; `rale-operator render FILE` prints every object the operator
//! would create for the `RaleCluster` in FILE (YAML), without any API server.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rale_operator::crd::{RaleCluster, crd_yaml};
use rale_operator::resources::{Credentials, desired_objects};

#[derive(Parser)]
#[command(
    name = "rale-operator",
    version,
    about = "Kubernetes operator for RALE clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Watch RaleCluster resources and reconcile them (the default).
    Run,
    /// Print the CustomResourceDefinition of RaleCluster (YAML).
    Crd,
    /// Print the objects the operator creates for the RaleCluster in FILE (YAML stream).
    Render {
        /// A RaleCluster manifest (metadata.namespace and metadata.uid default to
        /// `default` and a fixed placeholder).
        file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Crd => print!("{}", crd_yaml()),
        Command::Render { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut cluster: RaleCluster = serde_yaml::from_str(&text)
                .with_context(|| format!("parsing {}", file.display()))?;
            cluster
                .metadata
                .namespace
                .get_or_insert_with(|| "default".into());
            cluster
                .metadata
                .uid
                .get_or_insert_with(|| "00000000-0000-4000-8000-000000000000".into());
            let objects = desired_objects(&cluster, &Credentials::default())?;
            for v in objects.to_values()? {
                print!("---\n{}", serde_yaml::to_string(&v)?);
            }
        }
        Command::Run => {
            tracing_subscriber::fmt()
                .json()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("RALE_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let client = kube::Client::try_default()
                .await
                .context("Kubernetes client")?;
            tracing::info!("rale-operator started");
            rale_operator::controller::run(client).await;
        }
    }
    Ok(())
}
