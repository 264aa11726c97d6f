"""Text data: plain-text, folder and TSV/CSV sources (``tables``), deduplication (``dedup``), phrase
groups (``groups``), a tokenizer trained on the corpus (``tokenizer``) and token-id pools (``pool``)."""
from .dedup import deduplicate, labeled_text_sets, labeled_texts, normalize_text
from .groups import phrase_groups
from .pool import TextPool, open_text_pool, token_counts
from .tables import TEXT_COLUMNS, TEXT_SUFFIXES, TextCollection, is_text_source, read_texts
from .tokenizer import (CLS, DEFAULT_MAX_LENGTH, DEFAULT_VOCAB_SIZE, FIRST_WORD, IGNORE, MASK, PAD, SEP,
                        SPECIAL_TOKENS, TOKENIZER_FILE, UNK, TokenSpec, encode, load_tokenizer, token_spec_of,
                        tokenizer_beside, train_tokenizer, trim_padding)

__all__ = ["CLS", "DEFAULT_MAX_LENGTH", "DEFAULT_VOCAB_SIZE", "FIRST_WORD", "IGNORE", "MASK", "PAD", "SEP",
           "SPECIAL_TOKENS", "TEXT_COLUMNS", "TEXT_SUFFIXES", "TOKENIZER_FILE", "UNK", "TextCollection", "TextPool",
           "TokenSpec", "deduplicate", "encode", "is_text_source", "labeled_text_sets", "labeled_texts",
           "load_tokenizer", "normalize_text", "open_text_pool", "phrase_groups", "read_texts", "token_counts",
           "token_spec_of", "tokenizer_beside", "train_tokenizer", "trim_padding"]
