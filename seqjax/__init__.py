"""seqjax: recurrent sequence models for JAX.

Cells are pure functions (``seqjax.lstm``, ``seqjax.gru``, ...), run over time by
``seqjax.rnn`` / ``seqjax.bidirectional`` / ``seqjax.stacked``; ``seqjax.nn`` wraps them as Flax NNX
modules; ``seqjax.models`` builds the course's models from those; ``seqjax.interop`` converts
weights from and to PyTorch and Keras.
"""

from seqjax import data as data
from seqjax import interop as interop
from seqjax import kernels as kernels
from seqjax import models as models
from seqjax import nn as nn
from seqjax import train as train
from seqjax.cells import Cell as Cell
from seqjax.cells import CellSpec as CellSpec
from seqjax.cells import GRUCarry as GRUCarry
from seqjax.cells import GRUParams as GRUParams
from seqjax.cells import LSTMCarry as LSTMCarry
from seqjax.cells import LSTMParams as LSTMParams
from seqjax.cells import MinParams as MinParams
from seqjax.cells import RNNCarry as RNNCarry
from seqjax.cells import RNNParams as RNNParams
from seqjax.cells import gru as gru
from seqjax.cells import lstm as lstm
from seqjax.cells import min_gru as min_gru
from seqjax.cells import min_lstm as min_lstm
from seqjax.cells import simple_rnn as simple_rnn
from seqjax.cells import simplified_gru as simplified_gru
from seqjax.rnn import MERGE_MODES as MERGE_MODES
from seqjax.rnn import bidirectional as bidirectional
from seqjax.rnn import rnn as rnn
from seqjax.rnn import stacked as stacked

__version__ = "0.1.0"

__all__ = [
    "Cell",
    "CellSpec",
    "GRUCarry",
    "GRUParams",
    "LSTMCarry",
    "LSTMParams",
    "MERGE_MODES",
    "MinParams",
    "RNNCarry",
    "RNNParams",
    "bidirectional",
    "data",
    "gru",
    "interop",
    "kernels",
    "lstm",
    "min_gru",
    "min_lstm",
    "models",
    "nn",
    "rnn",
    "simple_rnn",
    "simplified_gru",
    "stacked",
    "train",
]
