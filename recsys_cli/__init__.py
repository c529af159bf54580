"""recsys: turn a pretrained causal language model into a recommender (RecSysLLM)."""

__version__ = "0.1.0"
