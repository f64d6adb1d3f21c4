"""The backend profile of a run's resources (the table is `embed_ft/profiles.py`) and the GPU stages' automation."""

from __future__ import annotations

from dagster import AutomationCondition

from ..profiles import BackendProfile, profile_for_backend
from ..resources import CustomizerResource

# GPU stages rebuild when their inputs change, but only while the `gpu_stages_automation` sensor is running:
# it is stopped by default so that nothing expensive starts by surprise.
GPU_STAGE_CONDITION = AutomationCondition.eager()


def backend_defaults(customizer: CustomizerResource) -> BackendProfile:
    """The profile of the backend that trains: the embedded platform or a cluster, on the API generation set."""
    return profile_for_backend(customizer.uses_local_platform, customizer.api_profile())
