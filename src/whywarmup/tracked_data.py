"""The prepared dataset as MLflow dataset inputs (`mlflow.log_input`'s entities): the run table's Dataset column, its
dataset filter and the run page's dataset panel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .data import PreparedData

if TYPE_CHECKING:
    from mlflow.entities import DatasetInput


def _split_sizes(data: PreparedData) -> dict[str, int]:
    sizes = {"train": len(data.x_train)}
    if data.x_val is not None and len(data.x_val):
        sizes["validation"] = len(data.x_val)
    return {**sizes, "test": len(data.x_test)}


DIGEST_CHARS = 12  # of the sha256 in the Dataset column (MLflow's own digests have 8; its limit is 36)
# MLflow's contexts for the three splits (the UI shows them beside each dataset)
CONTEXTS = {"train": "training", "validation": "validation", "test": "evaluation"}


def dataset_inputs(data: PreparedData, prepared_file: Path, origin: str) -> list[DatasetInput]:
    """One MLflow dataset per split of the prepared file: name `<dataset>/<split>`, source the file, digest the first
    DIGEST_CHARS hex digits of the file's sha256 (its checksum file's), context training / validation / evaluation,
    and a profile with the number of examples, the input shape, the task, the classes (a language model's
    vocabulary), `origin` (where the files come from) and the whole sha256."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    class PreparedSplit(MetaDataset):
        """MLflow's metadata-only dataset with a profile (the UI shows it on the run page)."""

        def __init__(self, profile: dict[str, Any], **kwargs: Any):
            self._profile = profile
            super().__init__(**kwargs)

        @property
        def profile(self) -> dict[str, Any]:
            return self._profile

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self._profile)}

    sha256 = json.loads(prepared_file.with_suffix(".json").read_text())["sha256"]
    source = LocalArtifactDatasetSource(str(prepared_file.resolve()))
    inputs = []
    for split, size in _split_sizes(data).items():
        profile = {
            "examples": size,
            "input_shape": list(data.input_shape),
            "task": data.task,
            "num_classes": data.num_classes,  # the vocabulary of a language model
            "origin": origin,
            "prepared_file_sha256": sha256,
        }
        dataset = PreparedSplit(profile, source=source, name=f"{data.dataset}/{split}", digest=sha256[:DIGEST_CHARS])
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, CONTEXTS[split])]
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags))
    return inputs
