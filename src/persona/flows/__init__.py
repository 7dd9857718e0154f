"""Plain-Python flows: the same step functions the Mage blocks call, runnable without Mage."""
