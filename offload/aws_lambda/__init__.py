"""Lambda only: the handler wrapper, the internal extension, inline jobs after the response."""
