"""hybridbatch: hybrid-batch training and LAReQA-style evaluation of multilingual retrievers."""

__version__ = "0.1.0"
