"""Data for seqjax: tokenizers, padding, dataset loaders, synthetic tasks and batching.

Everything returns numpy arrays; putting them on devices is the trainer's job. Real
datasets are read in place from the data directory (``$SEQJAX_DATA_DIR``, see
:func:`data_dir`), or through tensorflow-datasets with ``source="tfds"``. The text
loaders keep their encoded splits in an on-disk cache (:func:`cache_dir`,
:func:`clear_cache`, ``cache=False`` to bypass it).
"""

from .batching import Batch as Batch
from .batching import BatchIterator as BatchIterator
from .batching import DenseArrays as DenseArrays
from .cache import CACHE_DIR_ENV as CACHE_DIR_ENV
from .cache import cache_dir as cache_dir
from .cache import clear_cache as clear_cache
from .char_lm import lm_windows as lm_windows
from .char_lm import load_dinos as load_dinos
from .char_lm import load_tiny_shakespeare as load_tiny_shakespeare
from .ner import Sentence as Sentence
from .ner import bio_tag_set as bio_tag_set
from .ner import count_entities as count_entities
from .ner import iob1_to_bio as iob1_to_bio
from .ner import load_conll2003 as load_conll2003
from .ner import load_wnut17 as load_wnut17
from .ner import read_conll as read_conll
from .padding import pad_sequences as pad_sequences
from .padding import sequence_mask as sequence_mask
from .paths import DATA_DIR_ENV as DATA_DIR_ENV
from .paths import DataFormatError as DataFormatError
from .paths import data_dir as data_dir
from .records import Examples as Examples
from .records import LoadedDataset as LoadedDataset
from .subword import DEFAULT_SUBWORD_VOCAB_SIZE as DEFAULT_SUBWORD_VOCAB_SIZE
from .subword import SubwordTokenizer as SubwordTokenizer
from .synthetic import DATE_FORMATS as DATE_FORMATS
from .synthetic import DatePairs as DatePairs
from .synthetic import StringPairs as StringPairs
from .synthetic import adding_problem as adding_problem
from .synthetic import copy_task as copy_task
from .synthetic import date_translation as date_translation
from .synthetic import digit_addition as digit_addition
from .synthetic import format_date as format_date
from .text_classification import keras_word_index as keras_word_index
from .text_classification import kfold_indices as kfold_indices
from .text_classification import load_imdb as load_imdb
from .text_classification import load_imdb_keras as load_imdb_keras
from .text_classification import load_mr as load_mr
from .text_classification import load_sarcasm as load_sarcasm
from .tokenizers import KERAS_TOKENIZER_FILTERS as KERAS_TOKENIZER_FILTERS
from .tokenizers import TEXT_VECTORIZATION_PUNCTUATION as TEXT_VECTORIZATION_PUNCTUATION
from .tokenizers import CharTokenizer as CharTokenizer
from .tokenizers import WordTokenizer as WordTokenizer
from .tokenizers import load_tokenizer as load_tokenizer
from .translation import PAIR_LANGUAGES as PAIR_LANGUAGES
from .translation import load_tatoeba as load_tatoeba

__all__ = [
    "CACHE_DIR_ENV",
    "DATA_DIR_ENV",
    "DATE_FORMATS",
    "DEFAULT_SUBWORD_VOCAB_SIZE",
    "KERAS_TOKENIZER_FILTERS",
    "PAIR_LANGUAGES",
    "TEXT_VECTORIZATION_PUNCTUATION",
    "Batch",
    "BatchIterator",
    "CharTokenizer",
    "DataFormatError",
    "DatePairs",
    "DenseArrays",
    "Examples",
    "LoadedDataset",
    "Sentence",
    "StringPairs",
    "SubwordTokenizer",
    "WordTokenizer",
    "adding_problem",
    "bio_tag_set",
    "cache_dir",
    "clear_cache",
    "copy_task",
    "count_entities",
    "data_dir",
    "date_translation",
    "digit_addition",
    "format_date",
    "iob1_to_bio",
    "keras_word_index",
    "kfold_indices",
    "lm_windows",
    "load_conll2003",
    "load_dinos",
    "load_imdb",
    "load_imdb_keras",
    "load_mr",
    "load_sarcasm",
    "load_tatoeba",
    "load_tiny_shakespeare",
    "load_tokenizer",
    "load_wnut17",
    "pad_sequences",
    "read_conll",
    "sequence_mask",
]
