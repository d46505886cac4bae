"""firmware_sim: the device side of edgecnn (no TensorFlow)."""
