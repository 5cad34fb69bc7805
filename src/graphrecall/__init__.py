"""graphrecall: graph-neural-network recall for recommender systems."""

__version__ = "0.1.0"
