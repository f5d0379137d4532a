//! Reading rollouts and failure reasons out of Deployment and Pod objects as the API server
//! returns them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::*;

const HASH: &str = "0123456789abcdef0123456789abcdef";

fn deployment(generation: i64, status: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "draas-a", "generation": generation, "annotations": {"draas.io/spec-hash": HASH}},
        "spec": {"replicas": 1, "selector": {}, "template": {}},
        "status": status,
    }))
    .unwrap()
}

fn pod(hash: &str, container: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "draas-a-5d9f-x2x7q", "annotations": {"draas.io/spec-hash": hash}},
        "status": {"phase": "Running", "containerStatuses": [container]},
    }))
    .unwrap()
}

fn crash_looping(last_reason: &str, code: i32) -> Value {
    json!({
        "name": "drasi-server", "image": "drasi", "imageID": "", "ready": false, "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container"}},
        "lastState": {"terminated": {"reason": last_reason, "exitCode": code}},
    })
}

#[test]
fn a_deployment_is_available_once_the_controller_saw_its_generation_and_the_replica_is_up() {
    let up = json!({"observedGeneration": 2, "updatedReplicas": 1, "availableReplicas": 1, "replicas": 1});
    assert!(matches!(rollout(&deployment(2, up.clone()), &[], HASH), Rollout::Available));
    assert!(matches!(rollout(&deployment(3, up), &[], HASH), Rollout::Pending(_)), "generation 3 not yet observed");
    assert!(matches!(rollout(&deployment(1, json!({})), &[], HASH), Rollout::Pending(_)));
    let other = json!({"observedGeneration": 1, "updatedReplicas": 1, "availableReplicas": 1});
    assert!(matches!(rollout(&deployment(1, other), &[], "ffff"), Rollout::Pending(_)), "another spec hash");
}

#[test]
fn pod_states_that_do_not_cure_themselves_fail_the_rollout_with_their_code() {
    let d = deployment(1, json!({"observedGeneration": 1}));
    let cases = [
        (crash_looping("OOMKilled", 137), "oom_killed", "OOMKilled, code 137"),
        (crash_looping("Error", 1), "crash_loop", "CrashLoopBackOff (back-off 1m20s"),
        (
            json!({"name": "drasi-server", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                   "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}}),
            "image_pull_failed",
            "ImagePullBackOff",
        ),
    ];
    for (container, code, text) in cases {
        let Rollout::Failed(e) = rollout(&d, &[pod(HASH, container)], HASH) else { panic!("{code}: not failed") };
        assert_eq!(e.code.as_str(), code);
        assert!(e.message.contains(text) && e.message.contains("draas-a-5d9f-x2x7q"), "{}", e.message);
    }
}

#[test]
fn pods_of_an_older_template_or_on_their_way_out_do_not_fail_a_new_rollout() {
    let d = deployment(2, json!({"observedGeneration": 2}));
    assert!(matches!(rollout(&d, &[pod("old", crash_looping("Error", 1))], HASH), Rollout::Pending(_)));
    let mut leaving = pod(HASH, crash_looping("Error", 1));
    leaving.metadata.deletion_timestamp = serde_json::from_value(json!("2025-01-01T00:00:00Z")).unwrap();
    assert!(matches!(rollout(&d, &[leaving], HASH), Rollout::Pending(_)));
}

#[test]
fn a_stalled_rollout_fails_with_the_controllers_message() {
    let d = deployment(
        1,
        json!({"observedGeneration": 1, "conditions": [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
         "message": "ReplicaSet \"draas-a-5d9f\" has timed out progressing."}]}),
    );
    let Rollout::Failed(e) = rollout(&d, &[], HASH) else { panic!("not failed") };
    assert_eq!(e.code.as_str(), "rollout_stalled");
    assert!(e.message.contains("timed out progressing"), "{}", e.message);
}

#[test]
fn the_description_names_counts_false_conditions_and_each_pods_state() {
    let d = deployment(
        1,
        json!({"observedGeneration": 1, "availableReplicas": 0, "conditions": [
        {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
         "message": "Deployment does not have minimum availability."},
        {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]}),
    );
    let text = describe(&d, &[pod(HASH, crash_looping("OOMKilled", 137))]);
    assert_eq!(
        text,
        "0/1 replicas available; Available=False: MinimumReplicasUnavailable (Deployment does not have minimum \
         availability.); pod draas-a-5d9f-x2x7q Running: CrashLoopBackOff (back-off 1m20s restarting failed \
         container); last exit: OOMKilled, code 137"
    );
}
