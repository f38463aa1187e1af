"""One pure loss function per method. Each returns (loss, metrics) and touches no optimizer, file or model."""

from bridle.objectives.sft import sft

__all__ = ["sft"]
