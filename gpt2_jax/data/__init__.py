"""Training data: sources (text, jsonl, tfds, token shards) -> cached tokens -> packed (or
random-offset) batches. No TensorFlow import here: tf.data is imported only when a tf.data.Dataset is built."""
from gpt2_jax.data.packing import PackedDataset
from gpt2_jax.data.pipeline import TrainData, as_tf_dataset, make_train_data
from gpt2_jax.data.shards import load_token_shards, load_token_stream, tokenize_to_shards
from gpt2_jax.data.sources import DataConfig
from gpt2_jax.data.windows import RandomWindows

__all__ = ["DataConfig", "PackedDataset", "RandomWindows", "TrainData", "as_tf_dataset", "load_token_shards",
           "load_token_stream", "make_train_data", "tokenize_to_shards"]
