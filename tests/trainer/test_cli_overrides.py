import pytest

from trainer.cli_overrides import parse_overrides
from trainer.online import OnlineConfig


def test_overrides_parse_json_values_and_refuse_unknown_names():
    out = parse_overrides(["embed_dim=16", "anneal_lr=true", "learning_rate=1e-3",
                           "chunk_timesteps=null"], OnlineConfig)
    assert out == {"embed_dim": 16, "anneal_lr": True, "learning_rate": 1e-3,
                   "chunk_timesteps": None}
    assert OnlineConfig.profile("demo", **out).embed_dim == 16
    with pytest.raises(ValueError, match=r"^--set 'embed_dimm=16': unknown OnlineConfig field "
                                         r"embed_dimm; did you mean embed_dim\?$"):
        parse_overrides(["embed_dimm=16"], OnlineConfig)
    with pytest.raises(ValueError,
                       match=r"unknown OnlineConfig field zzz; fields: adam_eps, agent_ids, "):
        parse_overrides(["zzz=1"], OnlineConfig)
    with pytest.raises(ValueError, match=r"^--set 'embed_dim': expected NAME=VALUE$"):
        parse_overrides(["embed_dim"], OnlineConfig)
