"""The course's RNN types as Flax NNX modules, built from :mod:`seqjax.nn` and the public core.

Every model takes token ids ``[B, T]`` (int) and a ``mask [B, T]`` (bool, True = real token);
padding may be ``pre`` or ``post``. Each model's architecture is a frozen dataclass of JSON-able
fields (``model.config``; ``Model.from_config(config, rngs=...)``), and :func:`save` /
:func:`load` write and read a model with its config beside its weights.
"""

from .attention import ATTENTION_NAMES as ATTENTION_NAMES
from .attention import BahdanauAttention as BahdanauAttention
from .attention import LuongAttention as LuongAttention
from .classifier import Classifier as Classifier
from .classifier import ClassifierConfig as ClassifierConfig
from .classifier import GlobalAveragePooling1D as GlobalAveragePooling1D
from .classifier import GlobalMaxPooling1D as GlobalMaxPooling1D
from .config import ConfiguredModel as ConfiguredModel
from .config import config_from_json as config_from_json
from .config import config_to_json as config_to_json
from .config import load as load
from .config import save as save
from .crf import CRF as CRF
from .crf import CRFConfig as CRFConfig
from .crf import bio_constraints as bio_constraints
from .decoding import Decoded as Decoded
from .decoding import beam_search as beam_search
from .decoding import sample as sample
from .language_model import LanguageModel as LanguageModel
from .language_model import LanguageModelConfig as LanguageModelConfig
from .layers import CELL_NAMES as CELL_NAMES
from .layers import RecurrentStack as RecurrentStack
from .seq2seq import Seq2Seq as Seq2Seq
from .seq2seq import Seq2SeqConfig as Seq2SeqConfig
from .summary import count_params as count_params
from .summary import summary as summary
from .tagger import Tagger as Tagger
from .tagger import TaggerConfig as TaggerConfig
from .tagger import word_chars as word_chars

__all__ = [
    "ATTENTION_NAMES",
    "BahdanauAttention",
    "CELL_NAMES",
    "CRF",
    "CRFConfig",
    "Classifier",
    "ClassifierConfig",
    "ConfiguredModel",
    "Decoded",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "LanguageModel",
    "LanguageModelConfig",
    "LuongAttention",
    "RecurrentStack",
    "Seq2Seq",
    "Seq2SeqConfig",
    "Tagger",
    "TaggerConfig",
    "beam_search",
    "bio_constraints",
    "config_from_json",
    "config_to_json",
    "count_params",
    "load",
    "sample",
    "save",
    "summary",
    "word_chars",
]
