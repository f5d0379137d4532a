//! The image policy: pull always, when missing, or never. A pull that fails fails the
//! operation at once (`image_pull_failed`), a missing image under `never` too
//! (`image_missing`); an engine that does not answer is retried (`docker_unavailable`).

use bollard::errors::Error as DockerError;
use bollard::query_parameters::CreateImageOptions;
use draas_jobs::settings::ImagePolicy;
use futures::TryStreamExt;

use super::engine::{Engine, is_not_found, is_transport};
use super::spec::pull_reference;
use crate::platform::{ErrorCode, PlatformError};

/// Make sure the engine has `image`, as `policy` says.
pub async fn ensure(engine: &Engine, image: &str, policy: ImagePolicy) -> Result<(), PlatformError> {
    let docker = engine.client().await?;
    let present = match docker.inspect_image(image).await {
        Ok(_) => true,
        Err(e) if is_not_found(&e) => false,
        Err(e) => return Err(engine.classify(e)),
    };
    match policy {
        ImagePolicy::Never if !present => Err(PlatformError::new(
            ErrorCode::ImageMissing,
            format!("image '{image}' is not on the docker engine and docker.image_policy is 'never'; load it first"),
        )),
        ImagePolicy::Never | ImagePolicy::IfMissing if present => Ok(()),
        _ => pull(engine, image).await,
    }
}

async fn pull(engine: &Engine, image: &str) -> Result<(), PlatformError> {
    let docker = engine.client().await?;
    let reference = pull_reference(image);
    tracing::info!(image = %reference, "pulling image");
    let options = CreateImageOptions { from_image: Some(reference.clone()), ..Default::default() };
    docker.create_image(Some(options), None, None).try_for_each(|_| async { Ok(()) }).await.map_err(|e| {
        if is_transport(&e) {
            engine.classify(e)
        } else {
            PlatformError::new(ErrorCode::ImagePullFailed, format!("cannot pull image '{reference}': {}", reason(&e)))
        }
    })
}

fn reason(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        DockerError::DockerStreamError { error } => error.clone(),
        e => e.to_string(),
    }
}
