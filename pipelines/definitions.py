"""The one code location: `dagster dev -m pipelines.definitions` (or `make ui`)."""

import dagster as dg

from pipelines.assets.baselines import random_rollouts
from pipelines.assets.offline import offline_eval_test, offline_eval_train, offline_model
from pipelines.assets.online import online_checks, online_sable
from pipelines.resources import LakeResource

defs = dg.Definitions(
    assets=[random_rollouts, online_sable, offline_model, offline_eval_train, offline_eval_test],
    asset_checks=[*online_checks],
    resources={"lake": LakeResource()},
)
