//! What a Deployment and its pods say about an instance: rolled out, still coming up, or
//! failed with a reason (CrashLoopBackOff, ImagePullBackOff, OOMKilled, ...). Pure functions
//! over the objects the API server returned.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::objects::ANNOTATION_SPEC_HASH;
use crate::platform::{ErrorCode, PlatformError};

/// Where a rollout stands.
#[derive(Debug)]
pub enum Rollout {
    /// The Deployment reports its replica of the current template available.
    Available,
    /// Not yet; why, in words.
    Pending(String),
    /// It will not come up by itself: the pods show why.
    Failed(PlatformError),
}

/// The spec hash annotation of a Deployment.
pub fn spec_hash(d: &Deployment) -> Option<&str> {
    d.metadata.annotations.as_ref()?.get(ANNOTATION_SPEC_HASH).map(String::as_str)
}

/// Replicas the Deployment asks for.
pub fn wanted(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Replicas the deployment controller reports available.
pub fn available(d: &Deployment) -> i32 {
    d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

/// Has the deployment controller seen the current spec and made its replicas available?
pub fn rolled_out(d: &Deployment) -> bool {
    let Some(s) = &d.status else { return false };
    let seen = s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    let want = wanted(d);
    seen && s.updated_replicas.unwrap_or(0) >= want && s.available_replicas.unwrap_or(0) >= want
}

/// Where the rollout of the Deployment (with spec hash `hash`) stands, given its pods.
pub fn rollout(d: &Deployment, pods: &[Pod], hash: &str) -> Rollout {
    if spec_hash(d) == Some(hash) && rolled_out(d) {
        return Rollout::Available;
    }
    // Pods of an older template, or on their way out (a restart's stop), say nothing about
    // this rollout.
    let current: Vec<&Pod> =
        pods.iter().filter(|p| pod_hash(p) == Some(hash) && p.metadata.deletion_timestamp.is_none()).collect();
    if let Some(e) = current.iter().find_map(|p| trouble(p)) {
        return Rollout::Failed(e);
    }
    if let Some(c) = condition(d, "Progressing").filter(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded")) {
        let why = c.message.clone().unwrap_or_default();
        return Rollout::Failed(PlatformError::new(
            ErrorCode::RolloutStalled,
            format!("the Deployment made no progress: {why}"),
        ));
    }
    Rollout::Pending(describe(d, pods))
}

fn pod_hash(p: &Pod) -> Option<&str> {
    p.metadata.annotations.as_ref()?.get(ANNOTATION_SPEC_HASH).map(String::as_str)
}

fn condition<'a>(d: &'a Deployment, kind: &str) -> Option<&'a k8s_openapi::api::apps::v1::DeploymentCondition> {
    d.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == kind)
}

/// A pod state that will not cure itself, as the error a start fails with.
pub fn trouble(p: &Pod) -> Option<PlatformError> {
    let name = p.metadata.name.as_deref().unwrap_or("?");
    containers(p).find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let code = match waiting.reason.as_deref()? {
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
                ErrorCode::ImagePullFailed
            }
            "CrashLoopBackOff" if last_exit_reason(c) == Some("OOMKilled") => ErrorCode::OomKilled,
            "CrashLoopBackOff" => ErrorCode::CrashLoop,
            "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
                ErrorCode::ContainerConfigError
            }
            _ => return None,
        };
        Some(PlatformError::new(code, format!("pod {name}: {}", container_state(c))))
    })
}

fn containers(p: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let s = p.status.as_ref();
    let init = s.and_then(|s| s.init_container_statuses.as_deref()).unwrap_or_default();
    let main = s.and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    init.iter().chain(main)
}

fn last_exit_reason(c: &ContainerStatus) -> Option<&str> {
    c.last_state.as_ref()?.terminated.as_ref()?.reason.as_deref()
}

/// One container's state in words: `CrashLoopBackOff (back-off 5m0s …); last exit: OOMKilled, code 137`.
fn container_state(c: &ContainerStatus) -> String {
    let state = c.state.as_ref();
    let mut out = if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
        with_message(w.reason.as_deref().unwrap_or("Waiting"), w.message.as_deref())
    } else if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        format!("{}, code {}", t.reason.as_deref().unwrap_or("Terminated"), t.exit_code)
    } else if c.ready {
        "ready".to_owned()
    } else {
        "running, not ready".to_owned()
    };
    if let Some(t) = c.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
        out.push_str(&format!("; last exit: {}, code {}", t.reason.as_deref().unwrap_or("Terminated"), t.exit_code));
    }
    out
}

fn with_message(reason: &str, message: Option<&str>) -> String {
    match message.filter(|m| !m.is_empty()) {
        Some(m) => format!("{reason} ({m})"),
        None => reason.to_owned(),
    }
}

/// Why the Deployment is not available, in one line: replica counts, conditions that are not
/// true, and each pod's phase and container states.
pub fn describe(d: &Deployment, pods: &[Pod]) -> String {
    let mut parts = vec![format!("{}/{} replicas available", available(d), wanted(d))];
    for c in d.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default() {
        if c.status != "True" {
            let reason = with_message(c.reason.as_deref().unwrap_or("?"), c.message.as_deref());
            parts.push(format!("{}={}: {reason}", c.type_, c.status));
        }
    }
    for p in pods {
        parts.push(describe_pod(p));
    }
    parts.join("; ")
}

fn describe_pod(p: &Pod) -> String {
    let name = p.metadata.name.as_deref().unwrap_or("?");
    let status = p.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let mut out = format!("pod {name} {phase}");
    if let Some(reason) = status.and_then(|s| s.reason.as_deref()) {
        out.push_str(&format!(" ({reason})"));
    }
    let unscheduled = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(c) = unscheduled {
        out.push_str(&format!(
            ": {}",
            with_message(c.reason.as_deref().unwrap_or("Unschedulable"), c.message.as_deref())
        ));
    }
    for c in containers(p) {
        out.push_str(&format!(": {}", container_state(c)));
    }
    out
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
