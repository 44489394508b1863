"""modclf: comment-section moderation classifier (TF-IDF + LogisticRegression)."""

__version__ = "1.0.0"
