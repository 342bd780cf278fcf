"""One reader (and writer) per checkpoint format, the safe unpickler and the shared checkpoint errors."""
