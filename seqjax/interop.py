"""Weights from and to PyTorch and Keras: from_torch/to_torch, from_keras/to_keras."""
