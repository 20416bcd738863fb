"""The one code location: `dagster dev -m pipelines.definitions` (or `make ui`)."""

import dagster as dg

from pipelines.assets.baselines import random_rollouts
from pipelines.resources import LakeResource

defs = dg.Definitions(
    assets=[random_rollouts],
    resources={"lake": LakeResource()},
)
