//! The reconciler's view of an instance: the Deployment's replicas and conditions, its pods
//! when it is not available, and whether the ConfigMap and Service (and the Secret, when the
//! pod reads one) are there with the same spec hash.

use draas_jobs::domain::ids::InstanceId;
use draas_jobs::settings::ProbeVia;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::ResourceExt;

use super::objects::{ANNOTATION_SPEC_HASH, name};
use super::{KubernetesPlatform, status};
use crate::platform::{Inspection, PlatformError};

impl KubernetesPlatform {
    /// What the three objects of an instance say, for the reconciler.
    pub(super) async fn look(&self, id: &InstanceId) -> Result<Inspection, PlatformError> {
        let name = name(id);
        let Some(d) = self.get::<Deployment>(&name).await? else {
            return Ok(missing(&format!("the Deployment {name} is missing")));
        };
        if status::wanted(&d) == 0 {
            return Ok(missing("the Deployment is scaled to 0 replicas"));
        }
        let (cm, svc) = tokio::try_join!(self.get::<ConfigMap>(&name), self.get::<Service>(&name))?;
        // A pod that reads the instance's Secret cannot start without it.
        let secret_ok = !reads_secret(&d) || self.get::<Secret>(&name).await?.is_some();
        let hash = status::spec_hash(&d).map(str::to_owned);
        let endpoint = svc.as_ref().map(|_| self.layout.endpoint(id, service_port(&d)));
        let up = status::rolled_out(&d) || status::available(&d) > 0;
        let message = if up { None } else { Some(status::describe(&d, &self.pods(id.as_str()).await?)) };
        Ok(Inspection {
            alive: true,
            spec_hash: set_hash(
                hash,
                cm.as_ref().map(|c| c.annotations().get(ANNOTATION_SPEC_HASH).cloned()),
                svc.is_some() && secret_ok,
            ),
            message,
            exit: None,
            endpoint: endpoint.filter(|_| self.settings().probe_via == ProbeVia::Service),
            healthy: (self.settings().probe_via == ProbeVia::Readiness).then_some(up),
        })
    }
}

/// Nothing runs: `why`.
fn missing(why: &str) -> Inspection {
    Inspection { alive: false, message: Some(why.to_owned()), ..Inspection::default() }
}

/// The spec hash of the object set: the Deployment's, when the ConfigMap carries the same one
/// and the Service (and the Secret it reads, if any) exists; otherwise a mark no configuration hashes to, so the reconciler
/// re-applies the whole set.
fn set_hash(deployment: Option<String>, config_map: Option<Option<String>>, service: bool) -> Option<String> {
    match (deployment, config_map) {
        (Some(d), Some(Some(c))) if d == c && service => Some(d),
        (Some(d), Some(Some(c))) if d != c => Some(format!("mixed:{d}/{c}")),
        (d, _) => Some(format!("incomplete:{}", d.unwrap_or_default())),
    }
}

/// Does the Deployment's server read its environment from a Secret?
fn reads_secret(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .is_some_and(|c| c.env_from.iter().flatten().any(|f| f.secret_ref.is_some()))
}

/// The container port of a Deployment (drasi-server's port).
fn service_port(d: &Deployment) -> u16 {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.ports.as_ref()?.first())
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(8080)
}

#[cfg(test)]
mod tests {
    use super::set_hash;

    #[test]
    fn only_a_complete_object_set_with_one_spec_hash_reports_that_hash() {
        let h = || Some("abc".to_owned());
        assert_eq!(set_hash(h(), Some(h()), true), h());
        assert_eq!(set_hash(h(), Some(Some("def".into())), true).as_deref(), Some("mixed:abc/def"));
        assert_eq!(set_hash(h(), None, true).as_deref(), Some("incomplete:abc"), "no ConfigMap");
        assert_eq!(set_hash(h(), Some(h()), false).as_deref(), Some("incomplete:abc"), "no Service");
        assert_eq!(set_hash(None, Some(h()), true).as_deref(), Some("incomplete:"), "no hash on the Deployment");
    }
}
