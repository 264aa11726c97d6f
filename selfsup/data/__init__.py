"""Data: sources (folders, archives, arrays, named sets), decoding and caching, splits and subsets."""
from .images import ImageSpec, Prepared, StreamingImages, decode_collection, probe_spec
from .sources import Collection, collection_from_arrays, open_source
from .splits import labeled_subset, parse_labels_per_class, stratified_split, train_test

__all__ = ["Collection", "ImageSpec", "Prepared", "StreamingImages", "collection_from_arrays", "decode_collection",
           "labeled_subset", "open_source", "parse_labels_per_class", "probe_spec", "stratified_split",
           "train_test"]
