"""Sable network: multi-scale retention (`retention`) and the encoder-decoder (`sable`).
"""

from trainer import lazy_exports

_MODULES = {
    "trainer.networks.config": ("SableConfig",),
    "trainer.networks.sable": (
        "ActResult", "Sable", "SableOutput", "SableState", "init_state", "param_count",
        "previous_action_tokens",
    ),
}
__all__ = sorted(name for names in _MODULES.values() for name in names)

__getattr__ = lazy_exports(__name__, _MODULES)
