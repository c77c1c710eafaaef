"""The ground every later test stands on: a real API server, real controllers, kwok node pools."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.kwok import finish_on_cue
from tests.support.waiting import wait_for

H100_PRODUCT = "NVIDIA-H100-80GB-HBM3"
GPU = "nvidia.com/gpu"
IMAGE = "registry.invalid/reasoning/pipeline:test"  # kwok never pulls it


def restricted_container(name: str, **extra: Any) -> client.V1Container:
    """A container that satisfies the `restricted` Pod Security Standard."""
    return client.V1Container(
        name=name,
        image=IMAGE,
        security_context=client.V1SecurityContext(
            run_as_non_root=True,
            run_as_user=1000,
            allow_privilege_escalation=False,
            capabilities=client.V1Capabilities(drop=["ALL"]),
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        ),
        **extra,
    )


def gpu_pod_spec(gpus: int, container_name: str = "main") -> dict[str, Any]:
    return {
        "nodeSelector": {"nvidia.com/gpu.product": H100_PRODUCT},
        "tolerations": [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [{"name": container_name, "image": IMAGE, "resources": {"limits": {GPU: str(gpus)}}}],
    }


def job_finished_on_cue(name: str, annotations: dict[str, str]) -> client.V1Job:
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(annotations=annotations),
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    node_selector={"reasoning.dev/pool": "cpu"},
                    containers=[restricted_container("stage")],
                ),
            ),
        ),
    )


def job_condition(batch: client.BatchV1Api, namespace: str, name: str, condition: str) -> bool:
    job = batch.read_namespaced_job_status(name, namespace)
    return any(c.type == condition and c.status == "True" for c in job.status.conditions or [])


def only_pod_of_job(core: client.CoreV1Api, namespace: str, job: str) -> client.V1Pod:
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def test_job_on_cpu_pool_succeeds_and_its_termination_message_is_readable(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    summary = json.dumps({"stage": "data", "records": 12, "sha256": "0" * 64})
    cue = finish_on_cue("Succeeded", termination_message=summary, run_for="1s")
    batch.create_namespaced_job(namespace, job_finished_on_cue("data", cue))

    wait_for(
        lambda: job_condition(batch, namespace, "data", "Complete"), timeout=60, what="Job data Complete"
    )

    pod = only_pod_of_job(core, namespace, "data")
    assert pod.spec.node_name.startswith("cpu-")
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0
    assert json.loads(terminated.message) == json.loads(summary)
    assert batch.read_namespaced_job_status("data", namespace).status.succeeded == 1


def test_failed_pod_fails_its_job_with_exit_code_and_message(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    cue = finish_on_cue("Failed", termination_message="no \\boxed{} in record 7", exit_code=3)
    batch.create_namespaced_job(namespace, job_finished_on_cue("filter", cue))

    wait_for(
        lambda: job_condition(batch, namespace, "filter", "Failed"), timeout=60, what="Job filter Failed"
    )

    terminated = only_pod_of_job(core, namespace, "filter").status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")
    assert terminated.message == "no \\boxed{} in record 7"


def h100_nodes(core: client.CoreV1Api) -> set[str]:
    nodes = core.list_node(label_selector=f"nvidia.com/gpu.product={H100_PRODUCT}").items
    return {n.metadata.name for n in nodes}


def test_pytorchjob_pods_land_on_h100_nodes_and_the_job_succeeds(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str
) -> None:
    gpu_nodes = h100_nodes(core)
    if len(gpu_nodes) < 2:
        pytest.skip("needs two nodes labelled as 8-GPU H100 nodes (the embedded cluster has them)")

    def replica(annotations: dict[str, str]) -> dict[str, Any]:
        # the training operator finds the training container by this name
        template = {"metadata": {"annotations": annotations}, "spec": gpu_pod_spec(8, "pytorch")}
        return {"replicas": 1, "restartPolicy": "OnFailure", "template": template}

    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "sft"},
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": replica(finish_on_cue("Succeeded", run_for="2s")),
                "Worker": replica(finish_on_cue("Succeeded", run_for="1s")),
            }
        },
    }
    custom.create_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs", job)

    def bound_pods() -> list[client.V1Pod] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="training.kubeflow.org/job-name=sft").items
        return pods if len(pods) == 2 and all(p.spec.node_name for p in pods) else None

    pods = wait_for(bound_pods, timeout=60, what="two PyTorchJob pods bound to nodes")
    roles = {p.metadata.labels["training.kubeflow.org/replica-type"] for p in pods}
    assert roles == {"master", "worker"}
    placed_on = {p.spec.node_name for p in pods}
    # 8 GPUs each on 8-GPU nodes: one pod per node, both on the H100 pool
    assert placed_on <= gpu_nodes
    assert len(placed_on) == 2
    worker = next(p for p in pods if p.metadata.labels["training.kubeflow.org/replica-type"] == "worker")
    env = {e.name: e.value for e in worker.spec.containers[0].env or []}
    assert env["MASTER_ADDR"] == "sft-master-0"
    assert env["WORLD_SIZE"] == "2"
    assert env["RANK"] == "1"

    def job_succeeded() -> bool:
        status = custom.get_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs", "sft")
        conditions = status.get("status", {}).get("conditions", [])
        return any(c["type"] == "Succeeded" and c["status"] == "True" for c in conditions)

    wait_for(job_succeeded, timeout=90, what="PyTorchJob sft Succeeded")


def test_pod_asking_for_more_gpus_than_a_node_has_stays_pending_with_reason(
    core: client.CoreV1Api, namespace: str
) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "greedy"}, "spec": gpu_pod_spec(9)}
    core.create_namespaced_pod(namespace, pod)

    def scheduling_failure() -> str | None:
        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=greedy,reason=FailedScheduling"
        ).items
        return events[0].message if events else None

    message = wait_for(scheduling_failure, timeout=60, what="a FailedScheduling event for pod greedy")
    assert f"Insufficient {GPU}" in message
    pod_now = core.read_namespaced_pod("greedy", namespace)
    assert pod_now.status.phase == "Pending"
    assert pod_now.spec.node_name is None


def test_deleting_an_owner_deletes_its_children(
    core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str
) -> None:
    labels = {"app": "teacher"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="teacher"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    node_selector={"reasoning.dev/pool": "cpu"}, containers=[restricted_container("server")]
                ),
            ),
        ),
    )
    owner = apps.create_namespaced_deployment(namespace, deployment)
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name="teacher-config",
                owner_references=[
                    client.V1OwnerReference(
                        api_version="apps/v1", kind="Deployment", name="teacher", uid=owner.metadata.uid
                    )
                ],
            ),
            data={"model": "tiny-teacher"},
        ),
    )

    def running_pods() -> list[client.V1Pod]:
        pods = core.list_namespaced_pod(namespace, label_selector="app=teacher").items
        return [p for p in pods if p.status.phase == "Running"]

    wait_for(running_pods, timeout=60, what="the teacher Deployment's pod Running")
    assert apps.list_namespaced_replica_set(namespace, label_selector="app=teacher").items

    apps.delete_namespaced_deployment("teacher", namespace)

    def children_left() -> list[str]:
        return (
            [r.metadata.name for r in apps.list_namespaced_replica_set(namespace).items]
            + [p.metadata.name for p in core.list_namespaced_pod(namespace).items]
            + [
                c.metadata.name
                for c in core.list_namespaced_config_map(namespace).items
                if c.metadata.owner_references
            ]
        )

    wait_for(lambda: not children_left(), timeout=60, what="the garbage collector to delete every child")


def test_restricted_namespace_rejects_a_privileged_pod_and_admits_a_compliant_one(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    privileged = client.V1Pod(
        metadata=client.V1ObjectMeta(name="privileged"),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="main", image=IMAGE, security_context=client.V1SecurityContext(privileged=True)
                )
            ]
        ),
    )
    with pytest.raises(ApiException) as rejected:
        core.create_namespaced_pod(namespace, privileged)
    assert rejected.value.status == 403
    message = json.loads(rejected.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message
    assert 'privileged (container "main" must not set securityContext.privileged=true)' in message

    compliant = client.V1Pod(
        metadata=client.V1ObjectMeta(name="compliant"),
        spec=client.V1PodSpec(containers=[restricted_container("main")]),
    )
    assert core.create_namespaced_pod(namespace, compliant).metadata.name == "compliant"
