"""Records in, batches out: load, detect and normalize formats, validate rows, tokenize with chat templates, pack."""

from bridle.data.formats import BadRows, detect_kind, normalize
from bridle.data.packing import PackedRow, pack_examples, packed_collate, pad_collate
from bridle.data.preference import (
    TokenizedPair,
    load_preference_dataset,
    pair_collate,
    tokenize_pair,
)
from bridle.data.ranked import TokenizedRanked, load_ranked_dataset, ranked_collate
from bridle.data.sources import RawRow, load_rows
from bridle.data.tokenize import (
    DataReport,
    TokenizedExample,
    build_sft_examples,
    load_sft_dataset,
    tokenize_sft,
)
from bridle.data.unpaired import TokenizedUnpaired, load_unpaired_dataset, sequences_collate, unpaired_collate

__all__ = [
    "BadRows",
    "DataReport",
    "PackedRow",
    "RawRow",
    "TokenizedPair",
    "TokenizedRanked",
    "TokenizedUnpaired",
    "TokenizedExample",
    "build_sft_examples",
    "detect_kind",
    "load_preference_dataset",
    "load_ranked_dataset",
    "load_unpaired_dataset",
    "load_rows",
    "load_sft_dataset",
    "normalize",
    "pack_examples",
    "packed_collate",
    "pad_collate",
    "pair_collate",
    "ranked_collate",
    "sequences_collate",
    "tokenize_pair",
    "tokenize_sft",
    "unpaired_collate",
]
