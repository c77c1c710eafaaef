"""The CRD in crds/ is generated from the spec models, never edited by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
from reasoning_operator.crd import CHART_CRDS, CRD_FILE, custom_resource_definition, render

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("folder", [Path("crds"), CHART_CRDS], ids=str)
def test_crds_folder_matches_the_spec_models(folder: Path) -> None:
    committed = (REPO / folder / CRD_FILE).read_text()
    assert committed == render(), f"{folder}/ is stale: run `make crds` and commit the result"


def test_schema_carries_descriptions_defaults_and_keys() -> None:
    version = custom_resource_definition()["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    training = spec["properties"]["training"]
    assert training["properties"]["globalBatchSize"]["default"] == 96
    assert training["properties"]["globalBatchSize"]["description"].startswith("micro batch")
    generation = spec["properties"]["generation"]
    assert generation["default"] == {}  # the API server then fills in each field's own default
    assert generation["properties"]["teacher"]["default"] == {"model": "Qwen/QwQ-32B-Preview"}
    assert spec["properties"]["nodePools"]["x-kubernetes-list-map-keys"] == ["name"]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase",
        "Stage",
        "Progress",
        "Estimated",
        "Spent",
        "Budget",
        "Age",
    ]
    assert version["subresources"] == {"status": {}}
