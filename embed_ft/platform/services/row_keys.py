"""Which fields of each stored kind's documents name its row: the row's id is their values joined by ``/``.

The context opens the store with this table, so a row whose document does not name it (a field missing, not
text, or naming another row: a hand edit, a disk error, an older version) is set aside at start-up and named,
instead of answering 500 on the list and get routes that read those fields.
"""

from __future__ import annotations

from .automodel import AUTOMODEL_KIND
from .customization import CONFIG_KIND as CUSTOMIZATION_CONFIG_KIND
from .datastore_namespaces import DATASTORE_NAMESPACE_KIND
from .deployments import CONFIG_KIND as DEPLOYMENT_CONFIG_KIND, DEPLOYMENT_KIND
from .entities import DATASET_KIND, MODEL_KIND, NAMESPACE_KIND
from .evaluation.resources import CONFIG_KIND as EVALUATION_CONFIG_KIND, TARGET_KIND as EVALUATION_TARGET_KIND
from .evaluation.service import JOB_KIND as EVALUATION_JOB_KIND, RESULT_KIND as EVALUATION_RESULT_KIND
from .model_weights import TARGET_KIND as CUSTOMIZATION_TARGET_KIND
from .training.service import JOB_KIND as CUSTOMIZATION_JOB_KIND
from .v2_deployments import CONFIG_KIND as V2_DEPLOYMENT_CONFIG_KIND

NAMED = ("namespace", "name")  # entities addressed as <namespace>/<name>
ROW_KEYS: dict[str, tuple[str, ...]] = {
    NAMESPACE_KIND: ("id",),
    DATASET_KIND: NAMED,
    MODEL_KIND: NAMED,
    CUSTOMIZATION_TARGET_KIND: NAMED,
    CUSTOMIZATION_CONFIG_KIND: NAMED,
    CUSTOMIZATION_JOB_KIND: ("id",),
    DATASTORE_NAMESPACE_KIND: ("namespace",),
    DEPLOYMENT_CONFIG_KIND: NAMED,
    DEPLOYMENT_KIND: NAMED,
    EVALUATION_CONFIG_KIND: NAMED,
    EVALUATION_TARGET_KIND: NAMED,
    EVALUATION_JOB_KIND: ("id",),
    EVALUATION_RESULT_KIND: ("id",),
    AUTOMODEL_KIND: NAMED,  # v2: <workspace>/<name>
    V2_DEPLOYMENT_CONFIG_KIND: NAMED,
}
