"""The POYO network: configuration and presets, rotary attention, growing vocabularies,
the model itself, and saving/loading/converting it.

    from popdecode.model import POYO, PRESETS, count_parameters, save_model, load_model
"""

from popdecode.model.config import PRESETS, POYOConfig
from popdecode.model.poyo import POYO, count_parameters

__all__ = ["POYO", "POYOConfig", "PRESETS", "count_parameters", "save_model", "load_model"]


def __getattr__(name):
    # io imports safetensors; keep `import popdecode.model` light and cycle-free.
    if name in ("save_model", "load_model"):
        from popdecode.model import io

        return getattr(io, name)
    raise AttributeError(name)
