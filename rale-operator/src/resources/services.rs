//! The headless Service, the three client Services and the PodDisruptionBudget.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Identity, pod_selector};
use crate::crd::{RaleClusterSpec, ServiceSpec as ClientSpec};
use crate::labels;
use crate::ramd_config::{API_PORT, PG_PORT, headless_service_name};

/// The three client Services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientService {
    /// `-rw`: the primary (pods labelled `rale.dev/role=primary`).
    ReadWrite,
    /// `-ro`: the replicas (pods labelled `rale.dev/role=replica`).
    ReadOnly,
    /// `-r`: every ready instance.
    Any,
}

impl ClientService {
    /// All three, in a fixed order.
    pub const ALL: [ClientService; 3] = [
        ClientService::ReadWrite,
        ClientService::ReadOnly,
        ClientService::Any,
    ];

    fn suffix(self) -> &'static str {
        match self {
            ClientService::ReadWrite => "rw",
            ClientService::ReadOnly => "ro",
            ClientService::Any => "r",
        }
    }

    fn role(self) -> Option<&'static str> {
        match self {
            ClientService::ReadWrite => Some(labels::ROLE_PRIMARY),
            ClientService::ReadOnly => Some(labels::ROLE_REPLICA),
            ClientService::Any => None,
        }
    }

    fn spec(self, spec: &RaleClusterSpec) -> &ClientSpec {
        match self {
            ClientService::ReadWrite => &spec.services.rw,
            ClientService::ReadOnly => &spec.services.ro,
            ClientService::Any => &spec.services.r,
        }
    }
}

/// `<cluster>-rw`, `<cluster>-ro` or `<cluster>-r`.
pub fn client_service_name(cluster: &str, which: ClientService) -> String {
    format!("{cluster}-{}", which.suffix())
}

fn port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: i32::from(port),
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

pub(super) fn headless_service(id: &Identity) -> Service {
    Service {
        metadata: id.meta(headless_service_name(&id.name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // Members must find each other before they are ready: a cluster without a
            // primary has no ready member at all.
            publish_not_ready_addresses: Some(true),
            selector: Some(pod_selector(&id.name)),
            ports: Some(vec![port("api", API_PORT), port("postgresql", PG_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub(super) fn client_services(
    id: &Identity,
    spec: &RaleClusterSpec,
) -> (Vec<Service>, Vec<String>) {
    let mut enabled = Vec::new();
    let mut disabled = Vec::new();
    for which in ClientService::ALL {
        let s = which.spec(spec);
        let name = client_service_name(&id.name, which);
        if !s.enabled {
            disabled.push(name);
            continue;
        }
        let mut meta = id.meta(name);
        let mut all_labels: BTreeMap<String, String> = s.labels.clone();
        all_labels.extend(meta.labels.take().unwrap_or_default());
        meta.labels = Some(all_labels);
        if !s.annotations.is_empty() {
            meta.annotations = Some(s.annotations.clone());
        }
        let mut selector = pod_selector(&id.name);
        if let Some(role) = which.role() {
            selector.insert(labels::ROLE.into(), role.into());
        }
        enabled.push(Service {
            metadata: meta,
            spec: Some(ServiceSpec {
                type_: Some(s.type_.as_str().into()),
                selector: Some(selector),
                ports: Some(vec![port("postgresql", PG_PORT)]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        });
    }
    (enabled, disabled)
}

pub(super) fn pdb(id: &Identity, spec: &RaleClusterSpec) -> Option<PodDisruptionBudget> {
    if !spec.pod_disruption_budget.enabled {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: id.meta(id.name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(spec.pod_disruption_budget.max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(pod_selector(&id.name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}
