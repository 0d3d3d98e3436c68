//! `ramctrl params …`: PostgreSQL parameters (validate, info, list, optimize) over
//! `/api/v1/parameter/*`.

use clap::Subcommand;
use serde_json::json;

use ramd_ref::api::types::ParameterValidateRequest;

use super::{CliError, Ctx, print_json, refused};

/// `ramctrl params …`.
#[derive(Subcommand, Debug, Clone)]
pub enum ParamsCmd {
    /// Check a value the way PostgreSQL parses it (exit 1 when refused). The catalog is
    /// built in: with `--version` (or `--local`, or when no agent answers) the check runs
    /// here, without a cluster; otherwise the cluster's agent checks it for the cluster's
    /// major. The output says which.
    Validate {
        /// Parameter name.
        name: String,
        /// Value, as in postgresql.conf (values starting with `-`, e.g. `-1`, are values).
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// PostgreSQL major (13..17); checks locally with the built-in catalog.
        #[arg(long)]
        version: Option<u32>,
        /// Check locally even when an agent is reachable (PostgreSQL 15 unless --version).
        #[arg(long)]
        local: bool,
    },
    /// Describe one parameter.
    Info {
        /// Parameter name.
        name: String,
        /// PostgreSQL major (default: the cluster's).
        #[arg(long)]
        version: Option<u32>,
    },
    /// List parameters.
    List {
        /// Only this context: postmaster, sighup, user, superuser, backend, …
        #[arg(long)]
        context: Option<String>,
        /// Only names containing this text.
        #[arg(long)]
        search: Option<String>,
        /// PostgreSQL major (default: the cluster's).
        #[arg(long)]
        version: Option<u32>,
    },
    /// Recommended settings for a machine and workload.
    Optimize {
        /// Memory for PostgreSQL: 8GB, 512MB, or bytes.
        #[arg(long)]
        memory: String,
        /// CPU cores.
        #[arg(long)]
        cpus: u32,
        /// Expected client connections.
        #[arg(long)]
        connections: Option<u32>,
        /// oltp, web, data_warehouse or mixed.
        #[arg(long, default_value = "mixed")]
        workload: String,
        /// ssd, hdd or network.
        #[arg(long, default_value = "ssd")]
        storage: String,
        /// Standbys in the cluster.
        #[arg(long)]
        standbys: Option<u32>,
        /// PostgreSQL major (default: the cluster's).
        #[arg(long)]
        version: Option<u32>,
    },
}

/// Parses `8GB`, `512MB`, `16GiB`, `1TB` or a byte count (binary multiples, as
/// PostgreSQL's units).
pub fn parse_bytes(text: &str) -> Result<u64, CliError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| CliError::Usage(format!("invalid size {text:?}: use e.g. 8GB, 512MB")))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(CliError::Usage(format!(
                "invalid size unit {other:?} in {text:?}"
            )));
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| CliError::Usage(format!("size {text:?} is too large")))
}

/// Runs `ramctrl params …`.
pub async fn run(cmd: ParamsCmd, ctx: &Ctx) -> Result<(), CliError> {
    match cmd {
        ParamsCmd::Validate {
            name,
            value,
            version,
            local,
        } => {
            let input = rale_params::api::InputValue::Text(value);
            let here = |why: &str| -> Result<rale_params::api::ValidateResponse, CliError> {
                let major = match version {
                    Some(v) => rale_params::PgMajor::new(v)
                        .map_err(|e| CliError::Usage(format!("--version: {e}")))?,
                    None => rale_params::PgMajor::BASE,
                };
                eprintln!("validated here with the built-in catalog of PostgreSQL {major} ({why})");
                let mut parameters = std::collections::BTreeMap::new();
                parameters.insert(name.clone(), input.clone());
                Ok(rale_params::api::validate_request(
                    &rale_params::api::ValidateRequest {
                        version: major,
                        parameters,
                    },
                ))
            };
            let resp = if version.is_some() || local {
                here(if local { "--local" } else { "--version given" })?
            } else {
                let req = ParameterValidateRequest {
                    version: None,
                    name: Some(name.clone()),
                    value: Some(input.clone()),
                    ..ParameterValidateRequest::default()
                };
                match ctx.client.params_validate(&req).await {
                    Ok(r) => {
                        eprintln!(
                            "validated by the cluster's agent, for its PostgreSQL {}",
                            r.version
                        );
                        r
                    }
                    Err(ramd_ref::client::Error::Unreachable(_)) => {
                        here("no agent answered; give --version for another major")?
                    }
                    Err(ramd_ref::client::Error::Refused { status: 401, .. }) => {
                        here("the agent asks for credentials: give --user/--password to use it")?
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            if ctx.json {
                print_json(&resp)?;
            } else {
                for r in &resp.results {
                    match &r.verdict {
                        rale_params::Verdict::Ok(a) => println!(
                            "{} = {}: valid for PostgreSQL {} (setting {}{}, {:?})",
                            r.name,
                            r.input,
                            resp.version,
                            a.setting,
                            a.unit.map(|u| format!(" {u}")).unwrap_or_default(),
                            a.apply
                        ),
                        rale_params::Verdict::Rejected(x) => println!(
                            "{} = {}: invalid for PostgreSQL {}: {}",
                            r.name, r.input, resp.version, x.message
                        ),
                    }
                }
            }
            if resp.valid {
                Ok(())
            } else {
                Err(refused("refused"))
            }
        }
        ParamsCmd::Info { name, version } => {
            let info = ctx.client.params_info(&name, version).await?;
            print_json(&info)
        }
        ParamsCmd::List {
            context,
            search,
            version,
        } => {
            let mut q = Vec::new();
            if let Some(c) = context {
                q.push(format!("context={c}"));
            }
            if let Some(s) = search {
                q.push(format!("search={s}"));
            }
            if let Some(v) = version {
                q.push(format!("version={v}"));
            }
            let list = ctx.client.params_list(&q.join("&")).await?;
            if ctx.json {
                return print_json(&list);
            }
            println!("PostgreSQL {}: {} parameters", list.version, list.count);
            for p in &list.parameters {
                println!(
                    "{:<40} {:<18} {}",
                    p.name,
                    p.context.as_str(),
                    p.description
                );
            }
            Ok(())
        }
        ParamsCmd::Optimize {
            memory,
            cpus,
            connections,
            workload,
            storage,
            standbys,
            version,
        } => {
            let req = json!({
                "version": version,
                "total_memory_bytes": parse_bytes(&memory)?,
                "cpu_count": cpus,
                "max_connections": connections,
                "workload": workload,
                "storage": storage,
                "standby_count": standbys,
            });
            let resp = ctx.client.params_optimize(&req).await?;
            if ctx.json {
                return print_json(&resp);
            }
            for r in &resp.recommendations {
                let restart = if r.needs_restart { " (restart)" } else { "" };
                println!("{} = '{}'{restart}  # {}", r.name, r.value, r.rationale);
            }
            for n in &resp.notes {
                println!("# {n}");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("8GB").ok(), Some(8 << 30));
        assert_eq!(parse_bytes("512MB").ok(), Some(512 << 20));
        assert_eq!(parse_bytes("1024").ok(), Some(1024));
        assert!(parse_bytes("8 parsecs").is_err());
    }
}
