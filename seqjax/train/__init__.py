"""Training utilities for seqjax: losses, metrics, steps, ``fit``, checkpoints, data parallelism.

See :func:`seqjax.train.fit` for the loop and :mod:`seqjax.train.steps` for the loss-function
signature ``loss_fn(model, batch, key) -> loss | (loss, metrics)``.
"""

from .callbacks import Callback as Callback
from .callbacks import CallbackList as CallbackList
from .callbacks import EarlyStopping as EarlyStopping
from .callbacks import LambdaCallback as LambdaCallback
from .callbacks import TerminateOnNaN as TerminateOnNaN
from .checkpoints import Checkpointer as Checkpointer
from .checkpoints import restore_model as restore_model
from .history import History as History
from .loop import TrainingLoop as TrainingLoop
from .loop import evaluate as evaluate
from .loop import fit as fit
from .losses import bits_per_character_from_loss as bits_per_character_from_loss
from .losses import example_mask as example_mask
from .losses import masked_mean as masked_mean
from .losses import masked_sum_and_count as masked_sum_and_count
from .losses import perplexity_from_loss as perplexity_from_loss
from .losses import sequence_loss as sequence_loss
from .losses import sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy
from .losses import softmax_cross_entropy as softmax_cross_entropy
from .metrics import Ratio as Ratio
from .metrics import accuracy as accuracy
from .metrics import binary_accuracy as binary_accuracy
from .metrics import bits_per_character as bits_per_character
from .metrics import exact_match_accuracy as exact_match_accuracy
from .metrics import get_entities as get_entities
from .metrics import metric_value as metric_value
from .metrics import perplexity as perplexity
from .metrics import span_counts as span_counts
from .metrics import span_f1 as span_f1
from .metrics import span_scores as span_scores
from .parallel import DataParallel as DataParallel
from .parallel import pad_batch as pad_batch
from .plots import plot_history as plot_history
from .steps import TrainState as TrainState
from .steps import call_loss_fn as call_loss_fn
from .steps import make_eval_step as make_eval_step
from .steps import make_optimizer as make_optimizer
from .steps import make_train_step as make_train_step

__all__ = [
    "Callback",
    "CallbackList",
    "Checkpointer",
    "DataParallel",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "Ratio",
    "TerminateOnNaN",
    "TrainState",
    "TrainingLoop",
    "accuracy",
    "binary_accuracy",
    "bits_per_character",
    "bits_per_character_from_loss",
    "call_loss_fn",
    "evaluate",
    "example_mask",
    "exact_match_accuracy",
    "fit",
    "get_entities",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "masked_mean",
    "masked_sum_and_count",
    "metric_value",
    "pad_batch",
    "perplexity",
    "perplexity_from_loss",
    "plot_history",
    "restore_model",
    "sequence_loss",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    "span_counts",
    "span_f1",
    "span_scores",
]
