"""Public pretrained networks (torchvision, timm, big_vision) as sources of layer-wise studies.

``nets`` holds their Flax architectures (registered in ``harness.models``), ``convert`` maps a
checkpoint file onto them, ``verify`` runs the PyTorch original next to the conversion. Only
``convert``'s file readers and ``verify`` need the optional ``zoo`` extra (torch, torchvision,
timm, safetensors); training from an imported checkpoint needs none of them. See docs/zoo.md.
"""

# harness.models adds the zoo's architectures to its tables at its end (they build on its layers):
# importing it first keeps that order when a zoo module is the first one imported.
from harness import models as _models  # noqa: F401,E402  pylint: disable=wrong-import-position
