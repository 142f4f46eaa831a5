"""paperrl: published LLM post-training recipes, reproduced on Hugging Face TRL."""

__version__ = "0.1.0"
