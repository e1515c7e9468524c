"""The artifact format, in one place: model artifacts (spec, state, structure, quant, lineage, metrics), the
lineage records every stage appends, the sidecars beside exported files, atomic writes and the hashes.

Every other package reads and writes models through this one; it imports nothing above ``models``.
"""

from slimbench.artifact.core import (
    FORMAT,
    FORMAT_VERSION,
    Artifact,
    artifact_from_payload,
    atomic_torch_save,
    atomic_write,
    build_from_artifact,
    code_version,
    config_hash,
    load_artifact,
    load_model,
    now_iso,
    publish,
    safe_torch_load,
    save_artifact,
    state_digest,
)
from slimbench.artifact.lineage import (
    inherited_lineage,
    lineage_step,
    recipe_of,
    training_config,
    training_data,
)
from slimbench.artifact.sidecar import (
    SIDECAR_FORMAT,
    is_exported_file,
    read_sidecar,
    sidecar_path,
    update_sidecar_metrics,
    write_sidecar,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SIDECAR_FORMAT",
    "Artifact",
    "artifact_from_payload",
    "atomic_torch_save",
    "atomic_write",
    "build_from_artifact",
    "code_version",
    "config_hash",
    "inherited_lineage",
    "is_exported_file",
    "lineage_step",
    "load_artifact",
    "load_model",
    "now_iso",
    "publish",
    "read_sidecar",
    "recipe_of",
    "safe_torch_load",
    "save_artifact",
    "sidecar_path",
    "state_digest",
    "training_config",
    "training_data",
    "update_sidecar_metrics",
    "write_sidecar",
]
