"""The API server refuses bad ReasoningRuns, naming the field, before any controller sees them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.invalid_runs import INVALID, INVALID_NAMES, run, sky_t1, with_change

GROUP, VERSION, PLURAL = "reasoning.dev", "v1alpha1", "reasoningruns"


def create(custom: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    return created


def test_the_full_recipe_is_accepted_and_defaults_are_filled_in(
    custom: client.CustomObjectsApi, namespace: str, reasoning_crd: None
) -> None:
    created = create(custom, namespace, sky_t1())
    assert created["spec"]["training"]["globalBatchSize"] == 96
    minimal = create(custom, namespace, run("defaults", {}))
    spec = minimal["spec"]
    assert spec["generation"]["teacher"] == {
        "model": "Qwen/QwQ-32B-Preview",
        "engine": "vllm",
        "nodePool": "h100",
        "tensorParallelSize": 8,
        "replicas": 1,
        "dtype": "bfloat16",
        "gpuMemoryUtilization": 0.9,
        "enforceEager": False,
        "cpuKvCacheGib": 1,
    }
    assert spec["generation"]["sampling"]["temperature"] == 0.7
    assert [p["name"] for p in spec["nodePools"]] == ["cpu", "h100"]
    assert spec["training"]["deepspeed"] == {
        "zeroStage": 3,
        "offloadOptimizer": "cpu",
        "offloadParameters": "cpu",
    }


@pytest.mark.parametrize(("spec", "message"), [pytest.param(s, m, id=i) for i, s, m in INVALID])
def test_invalid_specs_are_refused_naming_the_field(
    custom: client.CustomObjectsApi, namespace: str, reasoning_crd: None, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiException) as refused:
        create(custom, namespace, run("invalid", spec))
    assert refused.value.status == 422
    assert message in json.loads(refused.value.body)["message"]


@pytest.mark.parametrize("name", [pytest.param(n, id=i) for i, n in INVALID_NAMES])
def test_run_names_that_cannot_name_a_service_or_a_label_are_refused(
    custom: client.CustomObjectsApi, namespace: str, reasoning_crd: None, name: str
) -> None:
    with pytest.raises(ApiException) as refused:
        create(custom, namespace, run(name, sky_t1()["spec"]))
    assert refused.value.status == 422
    assert "metadata.name must be at most 63 lower-case letters" in json.loads(refused.value.body)["message"]


def test_unknown_fields_are_refused_with_strict_field_validation(
    custom: client.CustomObjectsApi, namespace: str, reasoning_crd: None
) -> None:
    spec = with_change("training.learningrate", 1e-5)
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, run("typo", spec), field_validation="Strict"
        )
    assert 'unknown field "spec.training.learningrate"' in json.loads(refused.value.body)["message"]


def test_the_recipe_cannot_change_once_the_run_has_started(
    custom: client.CustomObjectsApi, namespace: str, reasoning_crd: None
) -> None:
    create(custom, namespace, sky_t1())
    name = "sky-t1-32b-preview"
    # before it starts, a user may still edit it
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": {"suspend": True}}
    )
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": {"training": {"epochs": 2}}}
    )
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": {"phase": "Running", "currentStage": "generate"}}
    )
    with pytest.raises(ApiException) as refused:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"spec": {"training": {"epochs": 3}}}
        )
    assert "spec.training cannot change once the run has started" in json.loads(refused.value.body)["message"]
    # suspending a running run is what suspend is for
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": {"suspend": False}}
    )


@pytest.mark.parametrize(
    "sandbox",
    [
        pytest.param({}, id="project-seccomp-profile"),
        pytest.param(
            {"appArmorProfile": {"type": "Localhost", "localhostProfile": "sandbox"}}, id="apparmor-localhost"
        ),
        pytest.param({"appArmorProfile": {"type": "RuntimeDefault"}}, id="apparmor-runtime-default"),
    ],
)
def test_a_sandboxed_pod_of_every_profile_the_schema_takes_passes_restricted_pod_security(
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    restricted: str,
    reasoning_crd: None,
    sandbox: dict[str, Any],
) -> None:
    """What the schema takes for the sandbox container's profiles, the API server's Pod Security admission
    takes in a `restricted` namespace: the run as the API server stored it, its filter pod as the
    operator builds it, created (dry run) as the Job controller would create it."""
    from reasoning_operator import stages
    from reasoning_operator.run import RunRef
    from reasoning_pipeline.spec import Stage

    spec = with_change("sandbox", sandbox)
    stored = create(custom, restricted, run("sandboxed", spec))
    job = next(
        c for c in stages.driver_children(RunRef.from_body(stored), Stage.FILTER, 1) if c["kind"] == "Job"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sandboxed-filter"},
        "spec": job["spec"]["template"]["spec"],
    }
    created = core.create_namespaced_pod(restricted, pod, dry_run="All")  # 403 if it violated "restricted"
    (container,) = [c for c in created.spec.init_containers if c.name == "sandbox"]
    wanted = sandbox.get("appArmorProfile")
    profile = container.security_context.app_armor_profile
    assert (profile.to_dict() if profile else None) == (
        {"type": wanted["type"], "localhost_profile": wanted.get("localhostProfile")} if wanted else None
    )
