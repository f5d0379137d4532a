//! Settings of what users may run (`policy` section): which images, how many CPUs and how
//! much memory an instance may ask for, and what it gets when it asks for nothing. An admin
//! token is exempt from the allow-list and the maximums (the defaults still apply).

use serde::Deserialize;

use crate::domain::model::{Platform, RuntimeOptions, parse_memory};
use crate::domain::policy::Limits;

/// What users may run.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PolicySettings {
    /// Images an instance may name besides the platform's own (`docker.image`,
    /// `kubernetes.image`): exact references, or prefixes ending in `*`
    /// (`DRAAS_POLICY__IMAGES=ghcr.io/drasi-project/*,registry.example/drasi:*`). Empty: only
    /// the platform's own.
    pub images: Vec<String>,
    /// CPU limit of a container or pod that names none (cores; unset: no limit).
    pub default_cpus: Option<f64>,
    /// Most cores an instance may ask for.
    pub max_cpus: f64,
    /// Memory limit of a container or pod that names none (a quantity such as `1Gi`; unset:
    /// no limit).
    pub default_memory: Option<String>,
    /// Most memory an instance may ask for (a quantity).
    pub max_memory: String,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            images: Vec::new(),
            default_cpus: Some(1.0),
            max_cpus: 4.0,
            default_memory: Some("1Gi".into()),
            max_memory: "8Gi".into(),
        }
    }
}

impl PolicySettings {
    /// The limits on instances of `platform`, whose own image is `own_image`.
    pub fn limits<'a>(&'a self, own_image: Option<&'a str>) -> Limits<'a> {
        Limits {
            images: &self.images,
            own_image,
            max_cpus: Some(self.max_cpus),
            max_memory: parse_memory(&self.max_memory),
        }
    }

    /// `r` with the default CPU and memory limits where it names none (what a container or
    /// pod gets; the record keeps what the user asked for).
    pub fn with_defaults(&self, r: &RuntimeOptions) -> RuntimeOptions {
        RuntimeOptions {
            image: r.image.clone(),
            cpus: r.cpus.or(self.default_cpus),
            memory: r.memory.clone().or_else(|| self.default_memory.clone()),
        }
    }

    /// Problems of these settings, for start-up validation.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if parse_memory(&self.max_memory).is_none() {
            out.push(format!("policy.max_memory '{}' is not a quantity such as 8Gi", self.max_memory));
        }
        if let Some(m) = &self.default_memory
            && parse_memory(m).is_none()
        {
            out.push(format!("policy.default_memory '{m}' is not a quantity such as 1Gi"));
        }
        if !(0.01..=1024.0).contains(&self.max_cpus) {
            out.push("policy.max_cpus must be between 0.01 and 1024".into());
        }
        if let Some(c) = self.default_cpus
            && !(0.01..=self.max_cpus).contains(&c)
        {
            out.push("policy.default_cpus must be between 0.01 and policy.max_cpus".into());
        }
        out
    }
}

/// The platform's own image, which the allow-list always admits.
pub fn own_image(settings: &super::Settings, platform: Platform) -> Option<&str> {
    match platform {
        Platform::Docker => Some(&settings.docker.image),
        Platform::Kubernetes => Some(&settings.kubernetes.image),
        Platform::Process => None,
    }
}
