"""Models built from the pooling layers: element encoders, output networks and set models."""

from .mlp import ResNetMLP
from .set_model import SetModel

__all__ = ["ResNetMLP", "SetModel"]
from .conv import ConvEncoder, DownsamplingBlock  # noqa: E402

__all__ += ["ConvEncoder", "DownsamplingBlock"]
